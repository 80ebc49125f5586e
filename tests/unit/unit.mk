# Unit tests (Criterion): tests/unit/*.c linked with the monitor sources they exercise, built twice:
#   $(BUILD)/unit/kvmbox-unit       against the release objects ($(BUILD)/obj/...)
#   $(BUILD)/asan/unit/kvmbox-unit  against the ASan/UBSan objects ($(BUILD)/asan/obj/...), with LeakSanitizer
# `make check-unit` builds and runs both; under ASan every suite declared with UNIT_SUITE() runs a leak
# check after each test (tests/unit/unit.h). Tests for monitor bugs not fixed yet are skipped unless
# UNIT_KNOWN_BUGS=1 (they are marked KNOWN_BUG in the sources).
# Only the files under test are linked: no device registers itself in the kvmbox_devices section.
UNIT_SRCS := $(sort $(wildcard tests/unit/*.c))
UNIT_LIB_SRCS := boot/elf.c boot/bzimage.c boot/kernel_image.c boot/linux_x86.c boot/pvh.c \
	vmm/guest_mem.c vmm/log.c vmm/config.c vmm/bus.c vmm/virtq.c vmm/iov.c arch/x86/mptable.c devices/vsock_conn.c devices/net_hdr.c \
	$(AGENT_LIB_SRCS) $(LIBKVMBOX_SRCS) $(KVMBOXD_LIB_SRCS)
UNIT_LDLIBS := -lcriterion -ljansson -lpthread -lm -lmicrohttpd -lkeyutils
UNIT_KNOWN_BUGS ?= 0
UNIT_JOBS ?= 2
UNIT_RUN_FLAGS ?= --jobs $(UNIT_JOBS) --short-filename

# The objects depend on a file holding UNIT_KNOWN_BUGS, rewritten only when the value changes.
UNIT_FLAG := $(BUILD)/unit/known-bugs.flag
$(UNIT_FLAG): unit-force
	@mkdir -p $(dir $@)
	@echo $(UNIT_KNOWN_BUGS) | cmp -s - $@ || echo $(UNIT_KNOWN_BUGS) > $@
unit-force:

$(BUILD)/unit/obj/%.o: tests/unit/%.c $(UNIT_FLAG)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -DKVMBOX_UNIT_KNOWN_BUGS=$(UNIT_KNOWN_BUGS) -c $< -o $@
$(BUILD)/asan/unit/obj/%.o: tests/unit/%.c $(UNIT_FLAG)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(SAN) -DKVMBOX_UNIT_KNOWN_BUGS=$(UNIT_KNOWN_BUGS) -c $< -o $@

$(BUILD)/unit/kvmbox-unit: $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/obj/%.o) \
		$(UNIT_LIB_SRCS:%.c=$(BUILD)/obj/%.o)
	$(CC) $(CFLAGS) -o $@ $^ $(UNIT_LDLIBS)
$(BUILD)/asan/unit/kvmbox-unit: $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/asan/unit/obj/%.o) \
		$(UNIT_LIB_SRCS:%.c=$(BUILD)/asan/obj/%.o)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(UNIT_LDLIBS)

check-unit: $(BUILD)/unit/kvmbox-unit $(BUILD)/asan/unit/kvmbox-unit
	$(BUILD)/unit/kvmbox-unit $(UNIT_RUN_FLAGS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(BUILD)/asan/unit/kvmbox-unit $(UNIT_RUN_FLAGS)
	@[ "$(UNIT_KNOWN_BUGS)" != 0 ] || echo "check-unit: tests of known monitor bugs (marked KNOWN_BUG) were" \
		"skipped; make check-unit UNIT_KNOWN_BUGS=1 runs them"

.PHONY: check-unit unit-force
