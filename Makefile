# kvmbox — top-level build. `make` builds everything into build/, `make check` runs every test,
# `make images` builds the guest kernel, initramfs and rootfs, `make fuzz` runs the fuzzers.
BUILD    ?= build
CC       ?= gcc
CLANG    ?= clang
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN     := -Wall -Wextra -Werror
CPPFLAGS := -std=gnu11 -D_GNU_SOURCE -Iinclude -I. -MMD -MP
LDLIBS   := -ljansson -luring -lpthread
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# The monitor: every .c under these folders; vmm/main.c is the only file with main().
VMM_SRCS := $(sort $(wildcard vmm/*.c arch/x86/*.c boot/*.c devices/*.c))
LIB_SRCS := $(filter-out vmm/main.c,$(VMM_SRCS))
# The guest agent (tools/agent/, static, shipped in the images) and the host library that speaks its
# protocol (tools/libkvmbox/, include/kvmbox.h); both share the frame codec. Rules in tools/tools.mk.
AGENT_SRCS := $(sort $(wildcard tools/agent/*.c))
AGENT_LIB_SRCS := $(filter-out tools/agent/main.c,$(AGENT_SRCS))
LIBKVMBOX_SRCS := $(sort $(wildcard tools/libkvmbox/*.c))
# The sandbox daemon (tools/kvmboxd/, docs/api.md); main.c is the only file with main().
KVMBOXD_SRCS := $(sort $(wildcard tools/kvmboxd/*.c))
KVMBOXD_LIB_SRCS := $(filter-out tools/kvmboxd/main.c,$(KVMBOXD_SRCS))
KVMBOXD_LDLIBS := -lmicrohttpd -ljansson -lkeyutils -lpthread

all: $(BUILD)/kvmbox-vmm tools guests

# Objects: $(BUILD)/obj for the release build, $(BUILD)/asan/obj for the sanitizer build.
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c $< -o $@
$(BUILD)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(SAN) -c $< -o $@

$(BUILD)/kvmbox-vmm: $(VMM_SRCS:%.c=$(BUILD)/obj/%.o)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/asan/kvmbox-vmm: $(VMM_SRCS:%.c=$(BUILD)/asan/obj/%.o)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)

# Each area keeps its own rules next to its code.
include tests/unit/unit.mk
include tests/guests/guests.mk
include tests/fuzz/fuzz.mk
include tests/harness/harness.mk
include tools/bench/vsock.mk
include tools/tools.mk
include images/images.mk
include tests/integration/integration.mk

# make check: unit tests (release and ASan/UBSan, including the device models driven in-process by
# tests/harness), fuzz corpus replays, then integration tests with real guests on /dev/kvm.
check: all check-unit check-harness check-fuzz-corpus check-fuzz-virtio-blk-corpus check-integration
	@echo "make check: all tests passed"

# make install: the programs, the library, the daemon's unit and the images, where kvmboxd looks by default.
PREFIX   ?= /usr/local
DESTDIR  ?=
IMAGEDIR ?= /var/lib/kvmbox/images
install: all $(BUILD)/libkvmbox.a $(BUILD)/images/vmlinux $(BUILD)/images/rootfs.ext4
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(IMAGEDIR)/default
	install -m 755 $(BUILD)/kvmbox-vmm $(BUILD)/kvmbox $(BUILD)/kvmboxd $(DESTDIR)$(PREFIX)/bin/
	install -m 755 tools/net/kvmbox-net $(DESTDIR)$(PREFIX)/sbin/
	install -m 644 $(BUILD)/libkvmbox.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/kvmbox.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/images/vmlinux $(DESTDIR)$(IMAGEDIR)/default/vmlinux.tmp
	mv $(DESTDIR)$(IMAGEDIR)/default/vmlinux.tmp $(DESTDIR)$(IMAGEDIR)/default/vmlinux
	cp --sparse=always $(BUILD)/images/rootfs.ext4 $(DESTDIR)$(IMAGEDIR)/default/rootfs.ext4.tmp
	mv $(DESTDIR)$(IMAGEDIR)/default/rootfs.ext4.tmp $(DESTDIR)$(IMAGEDIR)/default/rootfs.ext4
	if [ -d $(DESTDIR)/etc/systemd/system ]; then \
		sed 's|/usr/local|$(PREFIX)|g' tools/kvmboxd.service > $(DESTDIR)/etc/systemd/system/kvmboxd.service; fi
	@echo "install: programs in $(PREFIX)/bin, image 'default' in $(IMAGEDIR)"

clean:
	rm -rf $(BUILD)

.PHONY: all check clean install
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
