# Integration tests: real guests on /dev/kvm, driven by Python's unittest (tests/integration/test_*.py).
# They run against the release build, then the guest and bad-input tests again against the ASan/UBSan
# build (fast guests only: the sanitizers slow the monitor, not the guest).
INTEGRATION_DEPS := $(BUILD)/kvmbox-vmm $(BUILD)/asan/kvmbox-vmm guests tools images

check-integration: $(INTEGRATION_DEPS)
	KVMBOX_BUILD=$(BUILD) KVMBOX_VMM=$(BUILD)/kvmbox-vmm \
		python3 -m unittest discover -s tests/integration -p 'test_*.py' -v
	KVMBOX_BUILD=$(BUILD) KVMBOX_VMM=$(BUILD)/asan/kvmbox-vmm \
		python3 -m unittest discover -s tests/integration -p 'test_guest*.py' -v
	KVMBOX_BUILD=$(BUILD) KVMBOX_VMM=$(BUILD)/asan/kvmbox-vmm \
		python3 -m unittest discover -s tests/integration -p 'test_linux*.py' -v
	KVMBOX_BUILD=$(BUILD) KVMBOX_VMM=$(BUILD)/asan/kvmbox-vmm \
		python3 -m unittest discover -s tests/integration -p 'test_bad_input*.py' -v

.PHONY: check-integration
