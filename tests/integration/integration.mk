# Integration tests: real guests on /dev/kvm, driven by Python's unittest (tests/integration/test_*.py).
# They run against the release build, then the monitor's own tests again against the ASan/UBSan build
# (the sanitizers slow the monitor, not the guest, so this stays fast), and kvmboxd's API tests against
# the ASan/UBSan daemon.
INTEGRATION_DEPS := $(BUILD)/kvmbox-vmm $(BUILD)/asan/kvmbox-vmm $(BUILD)/asan/kvmboxd guests tools images

check-integration: $(INTEGRATION_DEPS)
	KVMBOX_BUILD=$(BUILD) KVMBOX_VMM=$(BUILD)/kvmbox-vmm \
		python3 -m unittest discover -s tests/integration -p 'test_*.py' -v
	for t in guests guest_blk linux bad_input blk vsock net agent agent_boot; do \
		KVMBOX_BUILD=$(BUILD) KVMBOX_VMM=$(BUILD)/asan/kvmbox-vmm \
		python3 -m unittest discover -s tests/integration -p "test_$$t.py" -v || exit 1; done
	KVMBOX_BUILD=$(BUILD) KVMBOX_KVMBOXD=$(BUILD)/asan/kvmboxd \
		python3 -m unittest discover -s tests/integration -p 'test_kvmboxd.py' -v

.PHONY: check-integration
