# Fuzzing (tests/fuzz/): libFuzzer targets for what the monitor reads from untrusted files.
#   fuzz_kernel_image  the --kernel file: parse, load into guest RAM, zero page, PVH start_info, MP table
#   fuzz_config_json   the --config file: config_apply_json_text
#   fuzz_virtq         a split virtqueue laid out by a hostile guest (header + guest RAM image)
#   fuzz_agent_request what a client writes to the guest agent: frames, and the JSON of each request
# make check-fuzz-corpus  replays tests/fuzz/corpus/<target>/ through each target, built with $(CC) and
#                         the sanitizers against the ASan objects (no clang needed; part of make check)
# make fuzz               builds the libFuzzer binaries with $(CLANG) and runs each for FUZZ_SECONDS;
#                         new inputs go to $(BUILD)/fuzz/corpus/<target>/, crashes to $(BUILD)/fuzz/crashes/
# make fuzz-coverage      line coverage of the monitor's files by both corpora (committed + found)
# A crash file replays with: $(BUILD)/asan/fuzz/replay-<target> FILE...
# tests/fuzz/mkcorpus*.py write the committed seeds. Only the files under test are linked: nothing that
# registers a device in the kvmbox_devices section (clang's ASan would pad those globals).
FUZZ_TARGETS := kernel_image config_json virtq vsock net_tx agent_request
FUZZ_LIB_kernel_image := boot/elf.c boot/bzimage.c boot/kernel_image.c boot/linux_x86.c boot/pvh.c \
	vmm/guest_mem.c vmm/log.c arch/x86/mptable.c
FUZZ_LIB_config_json := vmm/config.c vmm/log.c
FUZZ_LIB_virtq := vmm/virtq.c vmm/iov.c vmm/guest_mem.c vmm/log.c
FUZZ_LIB_vsock := devices/vsock_conn.c vmm/iov.c vmm/log.c
FUZZ_LIB_net_tx := devices/net_hdr.c vmm/virtq.c vmm/iov.c vmm/guest_mem.c vmm/log.c
FUZZ_LIB_agent_request := tools/agent/frame.c tools/agent/request.c tools/agent/utf8.c
FUZZ_MAX_LEN_kernel_image := 65536
FUZZ_MAX_LEN_config_json := 4096
FUZZ_MAX_LEN_virtq := 65552
FUZZ_MAX_LEN_vsock := 16384
FUZZ_MAX_LEN_net_tx := 4096
FUZZ_MAX_LEN_agent_request := 65536
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?=
FUZZ_OUT := $(BUILD)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link
LLVM_PROFDATA ?= llvm-profdata
LLVM_COV ?= llvm-cov
FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# clang objects for the libFuzzer builds (the gcc ASan objects come from the top-level rules).
$(FUZZ_OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) $(FUZZ_CFLAGS) $(WARN) -c $< -o $@

# clang objects with source-based coverage, for fuzz-coverage.
$(FUZZ_OUT)/cov/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) -O0 -g -fprofile-instr-generate -fcoverage-mapping $(WARN) -c $< -o $@

define fuzz_target_rules
$(BUILD)/asan/fuzz/replay-$(1): $(BUILD)/asan/obj/tests/fuzz/replay.o $(BUILD)/asan/obj/tests/fuzz/fuzz_$(1).o \
		$(FUZZ_LIB_$(1):%.c=$(BUILD)/asan/obj/%.o)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(SAN) -o $$@ $$^ $$(LDLIBS) -lm
$(FUZZ_OUT)/fuzz-$(1): $(FUZZ_OUT)/obj/tests/fuzz/fuzz_$(1).o $(FUZZ_LIB_$(1):%.c=$(FUZZ_OUT)/obj/%.o)
	$$(CLANG) -g $$(FUZZ_SAN) -fsanitize=fuzzer -o $$@ $$^ $$(LDLIBS) -lm
$(FUZZ_OUT)/cov/replay-$(1): $(FUZZ_OUT)/cov/obj/tests/fuzz/replay.o $(FUZZ_OUT)/cov/obj/tests/fuzz/fuzz_$(1).o \
		$(FUZZ_LIB_$(1):%.c=$(FUZZ_OUT)/cov/obj/%.o)
	$$(CLANG) -fprofile-instr-generate -o $$@ $$^ $$(LDLIBS) -lm
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_target_rules,$(t))))

check-fuzz-corpus: $(FUZZ_TARGETS:%=$(BUILD)/asan/fuzz/replay-%)
	$(foreach t,$(FUZZ_TARGETS),$(FUZZ_ENV) $(BUILD)/asan/fuzz/replay-$(t) tests/fuzz/corpus/$(t) &&) true

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_OUT)/fuzz-%)

# One run per target, one after the other (or side by side under make -j). The committed corpus is
# read, never written: libFuzzer adds new inputs to the first folder only.
fuzz: $(FUZZ_TARGETS:%=fuzz-run-%) fuzz-virtio-blk
fuzz-run-%: $(FUZZ_OUT)/fuzz-%
	@mkdir -p $(FUZZ_OUT)/corpus/$* $(FUZZ_OUT)/crashes
	@echo "fuzz: $* for $(FUZZ_SECONDS) s, log in $(FUZZ_OUT)/$*.log"
	@$(FUZZ_ENV) $(FUZZ_OUT)/fuzz-$* $(FUZZ_OUT)/corpus/$* tests/fuzz/corpus/$* \
		-max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$*) -timeout=10 -rss_limit_mb=2048 \
		$(if $(wildcard tests/fuzz/$*.dict),-dict=tests/fuzz/$*.dict) -artifact_prefix=$(FUZZ_OUT)/crashes/$*- -print_final_stats=1 \
		$(FUZZ_FLAGS) >$(FUZZ_OUT)/$*.log 2>&1; rc=$$?; \
		grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE)|stat::|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)' \
			$(FUZZ_OUT)/$*.log; \
		if [ $$rc -ne 0 ]; then echo "fuzz: $* FAILED (rc $$rc), see $(FUZZ_OUT)/$*.log"; fi; exit $$rc

fuzz-coverage: $(FUZZ_TARGETS:%=$(FUZZ_OUT)/cov/replay-%)
	@set -e; $(foreach t,$(FUZZ_TARGETS),mkdir -p $(FUZZ_OUT)/corpus/$(t); \
	rm -f $(FUZZ_OUT)/cov/$(t).profraw; \
	LLVM_PROFILE_FILE=$(FUZZ_OUT)/cov/$(t).profraw $(FUZZ_OUT)/cov/replay-$(t) tests/fuzz/corpus/$(t) \
		$(FUZZ_OUT)/corpus/$(t) 2>/dev/null; \
	$(LLVM_PROFDATA) merge -o $(FUZZ_OUT)/cov/$(t).profdata $(FUZZ_OUT)/cov/$(t).profraw; \
	echo "== $(t)"; \
	$(LLVM_COV) report $(FUZZ_OUT)/cov/replay-$(t) -instr-profile=$(FUZZ_OUT)/cov/$(t).profdata \
		$(filter-out vmm/log.c,$(FUZZ_LIB_$(t))); )

.PHONY: check-fuzz-corpus fuzz fuzz-build fuzz-coverage
