# The in-process virtio-blk harness (tests/harness/virtio_driver.h): the real device model
# (devices/virtio_blk.c on the virtio-mmio transport, virtqueues, buses, event loop) driven by a fake
# guest driver, with tests/harness/vm_stubs.c instead of vmm/vm.c, vmm/vcpu.c and arch/ (no KVM needed).
# Include after tests/unit/unit.mk and tests/fuzz/fuzz.mk (uses BUILD, CC, CLANG, CFLAGS, WARN, CPPFLAGS,
# SAN, the $(BUILD)/obj, $(BUILD)/asan/obj and $(BUILD)/fuzz/obj object rules).
#
#   make check-harness                  Criterion tests tests/unit/test_virtio_blk.c, release and ASan/UBSan:
#                                       $(BUILD)/unit/kvmbox-unit-virtio, $(BUILD)/asan/unit/kvmbox-unit-virtio
#   make check-fuzz-virtio-blk-corpus   replays tests/fuzz/corpus/virtio_blk/ (gcc, ASan/UBSan)
#   make fuzz-virtio-blk                libFuzzer (clang) for FUZZ_SECONDS; crashes in $(BUILD)/fuzz/crashes/
#   make bench-blk                      tools/bench/blk: the device model against raw fio, same file;
#                                       BENCH_BLK_ARGS passes options (e.g. '--runtime 3 --json')
# A crash replays with: $(BUILD)/asan/fuzz/replay-virtio_blk FILE...
HARNESS_SRCS := tests/harness/virtio_driver.c tests/harness/vm_stubs.c
HARNESS_LIB_SRCS := devices/virtio_blk.c vmm/cmdline.c vmm/io_ring.c vmm/virtio_mmio.c vmm/virtq.c vmm/iov.c vmm/guest_mem.c vmm/bus.c \
	vmm/event_loop.c vmm/log.c vmm/config.c
HARNESS_ALL := $(HARNESS_SRCS) $(HARNESS_LIB_SRCS)
HARNESS_LDLIBS := -ljansson -luring -lpthread -lm
HARNESS_RUN_FLAGS ?= --jobs 2 --short-filename
UNIT_KNOWN_BUGS ?= 0

# ---- Unit tests: their own binary. The test file is empty unless KVMBOX_UNIT_VIRTIO is defined, so
# tests/unit/unit.mk's wildcard build of kvmbox-unit (which does not link the device) is unaffected.
HARNESS_UNIT_FLAG := $(BUILD)/unit/known-bugs.flag
$(BUILD)/unit-virtio/obj/%.o: tests/unit/%.c $(HARNESS_UNIT_FLAG)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -DKVMBOX_UNIT_VIRTIO=1 -DKVMBOX_UNIT_KNOWN_BUGS=$(UNIT_KNOWN_BUGS) -c $< -o $@
$(BUILD)/asan/unit-virtio/obj/%.o: tests/unit/%.c $(HARNESS_UNIT_FLAG)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(SAN) -DKVMBOX_UNIT_VIRTIO=1 -DKVMBOX_UNIT_KNOWN_BUGS=$(UNIT_KNOWN_BUGS) \
		-c $< -o $@

$(BUILD)/unit/kvmbox-unit-virtio: $(BUILD)/unit-virtio/obj/test_virtio_blk.o $(HARNESS_ALL:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lcriterion $(HARNESS_LDLIBS)
$(BUILD)/asan/unit/kvmbox-unit-virtio: $(BUILD)/asan/unit-virtio/obj/test_virtio_blk.o \
		$(HARNESS_ALL:%.c=$(BUILD)/asan/obj/%.o)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ -lcriterion $(HARNESS_LDLIBS)

check-harness: $(BUILD)/unit/kvmbox-unit-virtio $(BUILD)/asan/unit/kvmbox-unit-virtio
	$(BUILD)/unit/kvmbox-unit-virtio $(HARNESS_RUN_FLAGS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(BUILD)/asan/unit/kvmbox-unit-virtio $(HARNESS_RUN_FLAGS)
	@[ "$(UNIT_KNOWN_BUGS)" != 0 ] || echo "check-harness: skipped $$(grep -c '^Test(.*KNOWN_BUG)' \
		tests/unit/test_virtio_blk.c) tests of known monitor bugs; UNIT_KNOWN_BUGS=1 runs them"

# ---- Fuzzing: fuzz_virtio_blk (tests/fuzz/fuzz_virtio_blk.c) ----
HARNESS_FUZZ_OUT := $(BUILD)/fuzz
HARNESS_FUZZ_SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
HARNESS_FUZZ_MAX_LEN := 65600
HARNESS_FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?=

# gcc + ASan replay of files/folders (no clang needed).
$(BUILD)/asan/fuzz/replay-virtio_blk: $(BUILD)/asan/obj/tests/fuzz/replay.o \
		$(BUILD)/asan/obj/tests/fuzz/fuzz_virtio_blk.o $(HARNESS_ALL:%.c=$(BUILD)/asan/obj/%.o)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(HARNESS_LDLIBS)
# libFuzzer build; the objects come from fuzz.mk's $(BUILD)/fuzz/obj/%.o rule (clang, ASan/UBSan, sancov).
$(HARNESS_FUZZ_OUT)/fuzz-virtio_blk: $(HARNESS_FUZZ_OUT)/obj/tests/fuzz/fuzz_virtio_blk.o \
		$(HARNESS_ALL:%.c=$(HARNESS_FUZZ_OUT)/obj/%.o)
	@mkdir -p $(dir $@)
	$(CLANG) -g $(HARNESS_FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(HARNESS_LDLIBS)

check-fuzz-virtio-blk-corpus: $(BUILD)/asan/fuzz/replay-virtio_blk
	$(HARNESS_FUZZ_ENV) $(BUILD)/asan/fuzz/replay-virtio_blk tests/fuzz/corpus/virtio_blk

# The committed corpus is read, never written: new inputs go to $(BUILD)/fuzz/corpus/virtio_blk.
fuzz-virtio-blk: $(HARNESS_FUZZ_OUT)/fuzz-virtio_blk
	@mkdir -p $(HARNESS_FUZZ_OUT)/corpus/virtio_blk $(HARNESS_FUZZ_OUT)/crashes
	@echo "fuzz: virtio_blk for $(FUZZ_SECONDS) s, log in $(HARNESS_FUZZ_OUT)/virtio_blk.log"
	@$(HARNESS_FUZZ_ENV) $(HARNESS_FUZZ_OUT)/fuzz-virtio_blk $(HARNESS_FUZZ_OUT)/corpus/virtio_blk \
		tests/fuzz/corpus/virtio_blk -max_total_time=$(FUZZ_SECONDS) -max_len=$(HARNESS_FUZZ_MAX_LEN) \
		-timeout=10 -rss_limit_mb=2048 -dict=tests/harness/virtio_blk.dict \
		-artifact_prefix=$(HARNESS_FUZZ_OUT)/crashes/virtio_blk- -print_final_stats=1 \
		$(FUZZ_FLAGS) >$(HARNESS_FUZZ_OUT)/virtio_blk.log 2>&1; rc=$$?; \
		grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE)|stat::|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)' \
			$(HARNESS_FUZZ_OUT)/virtio_blk.log; \
		if [ $$rc -ne 0 ]; then echo "fuzz: virtio_blk FAILED (rc $$rc), see $(HARNESS_FUZZ_OUT)/virtio_blk.log"; fi; \
		exit $$rc

# ---- Benchmark: tools/bench/blk runs $(BUILD)/bench/blk-harness and fio on the same file ----
BENCH_BLK_ARGS ?=
$(BUILD)/bench/blk-harness: $(BUILD)/obj/tools/bench/blk-harness.o $(HARNESS_ALL:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(HARNESS_LDLIBS)

bench-blk: $(BUILD)/bench/blk-harness
	@python3 tools/bench/blk --build $(BUILD) $(BENCH_BLK_ARGS)

.PHONY: check-harness check-fuzz-virtio-blk-corpus fuzz-virtio-blk bench-blk

# tools/bench/net: the virtio-net device model against the tap used directly.
BENCH_NET_ARGS ?=
$(BUILD)/bench/net-harness: $(BUILD)/obj/tools/bench/net-harness.o $(HARNESS_ALL:%.c=$(BUILD)/obj/%.o) \
		$(BUILD)/obj/devices/virtio_net.o $(BUILD)/obj/devices/net_hdr.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(HARNESS_LDLIBS)
bench-net: $(BUILD)/bench/net-harness
	python3 tools/bench/net --build $(BUILD) $(BENCH_NET_ARGS)
.PHONY: bench-net
