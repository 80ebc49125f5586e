# Tools (included by the top-level Makefile: BUILD, CC, CFLAGS, WARN, CPPFLAGS):
#   $(BUILD)/kvmbox               the kvmbox CLI over kvmboxd (tools/kvmbox/, docs/cli.md) and `kvmbox boot-test`
#                                 (docs/boot-test.md)
#   $(BUILD)/kvmboxd              the sandbox daemon (tools/kvmboxd/, docs/api.md)
#   $(BUILD)/kvmbox-agent         the guest agent, static (tools/agent/, docs/agent-protocol.md)
#   $(BUILD)/libkvmbox.a          the agent protocol's host library (tools/libkvmbox/, docs/libkvmbox.md)
#   $(BUILD)/bench/hello-pvh.elf  the benchmark's trivial PVH guest (tools/bench/hello-pvh.S)
#   $(BUILD)/bench/maxrss         runs a command and reports its peak RSS (tools/bench/maxrss.c)
# `make bench` runs tools/bench/boot (kvmbox-vmm against QEMU microvm); BENCH_ARGS passes options to it,
# e.g. `make bench BENCH_ARGS='--runs 20 --json'`.
TOOLS_KVMBOX_SRCS := $(sort $(wildcard tools/kvmbox/*.c))
TOOLS_LDLIBS      := -ljansson -lcurl -lpthread -lm
BENCH_OUT         := $(BUILD)/bench
BENCH_ARGS        ?=
BENCH_AGENT_ARGS  ?=

tools: $(BUILD)/kvmbox $(BUILD)/kvmboxd $(BUILD)/kvmbox-agent $(BUILD)/libkvmbox.a $(BENCH_OUT)/hello-pvh.elf $(BENCH_OUT)/maxrss \
	$(BENCH_OUT)/agent-bench

# The guest agent: static (the guest has no libc), with Debian's libjansson.a. It runs on the host too
# (`kvmbox-agent --listen unix:PATH`), which is how the unit tests and libkvmbox's tests drive it.
$(BUILD)/kvmbox-agent: $(AGENT_SRCS:%.c=$(BUILD)/obj/%.o)
	$(CC) $(CFLAGS) -static -o $@ $^ -ljansson
$(BUILD)/asan/kvmbox-agent: $(AGENT_SRCS:%.c=$(BUILD)/asan/obj/%.o)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ -ljansson

# libkvmbox: the host side of the agent protocol, for embedders, kvmboxd and the CLI (docs/libkvmbox.md).
$(BUILD)/libkvmbox.a: $(LIBKVMBOX_SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/tools/agent/frame.o \
		$(BUILD)/obj/tools/agent/utf8.o
	@rm -f $@
	ar rcs $@ $^

# Compiled by the top-level $(BUILD)/obj/%.o rule (same flags as the monitor).
$(BUILD)/kvmbox: $(TOOLS_KVMBOX_SRCS:%.c=$(BUILD)/obj/%.o)
	$(CC) $(CFLAGS) -o $@ $^ $(TOOLS_LDLIBS)

# The trivial guest: 32-bit PVH code in an ELF64 at 1 MiB with the Xen PHYS32_ENTRY note (both
# kvmbox-vmm and QEMU's microvm load it); fail when the note did not survive the link.
$(BENCH_OUT)/hello-pvh.o: tools/bench/hello-pvh.S
	@mkdir -p $(@D)
	$(CC) -c $< -o $@
$(BENCH_OUT)/hello-pvh.elf: $(BENCH_OUT)/hello-pvh.o tools/bench/hello-pvh.ld
	$(CC) -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack -Wl,-z,max-page-size=4096 \
		-T tools/bench/hello-pvh.ld -o $@.tmp $<
	@readelf -n $@.tmp | grep -q 'Xen.*0x00000012' || { echo "$@: no PVH note (XEN_ELFNOTE_PHYS32_ENTRY)" >&2; \
		rm -f $@.tmp; exit 1; }
	mv $@.tmp $@

# Static, so that the floor it puts under its child's ru_maxrss stays small (see the file).
$(BENCH_OUT)/maxrss: tools/bench/maxrss.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O2 $(WARN) -static -o $@ $<

# kvmboxd: the sandbox daemon (docs/api.md), on libkvmbox.
$(BUILD)/kvmboxd: $(KVMBOXD_SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/libkvmbox.a
	$(CC) $(CFLAGS) -o $@ $^ $(KVMBOXD_LDLIBS)
$(BUILD)/asan/kvmboxd: $(KVMBOXD_SRCS:%.c=$(BUILD)/asan/obj/%.o) $(LIBKVMBOX_SRCS:%.c=$(BUILD)/asan/obj/%.o) \
		$(BUILD)/asan/obj/tools/agent/frame.o $(BUILD)/asan/obj/tools/agent/utf8.o
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(KVMBOXD_LDLIBS)

# The agent benchmark (tools/bench/agent): its libkvmbox client, run against the guest's agent and a host one.
$(BENCH_OUT)/agent-bench: $(BUILD)/obj/tools/bench/agent-bench.o $(BUILD)/libkvmbox.a
	$(CC) $(CFLAGS) -o $@ $^ -ljansson
bench-agent: $(BUILD)/kvmbox-vmm $(BUILD)/kvmbox-agent $(BUILD)/images/vmlinux $(BUILD)/images/initramfs.cpio.gz \
		$(BENCH_OUT)/agent-bench
	python3 tools/bench/agent --build $(BUILD) $(BENCH_AGENT_ARGS)

# The sandbox benchmark (tools/bench/sandbox): kvmboxd through its API.
BENCH_SANDBOX_ARGS ?=
bench-sandbox: $(BUILD)/kvmboxd $(BUILD)/kvmbox-vmm $(BUILD)/images/vmlinux $(BUILD)/images/rootfs.ext4
	python3 tools/bench/sandbox --build $(BUILD) $(BENCH_SANDBOX_ARGS)

# The boot benchmark needs the monitor, the Linux images and the trivial guest.
bench: $(BUILD)/kvmbox-vmm $(BUILD)/images/vmlinux $(BUILD)/images/initramfs.cpio.gz $(BENCH_OUT)/hello-pvh.elf \
		$(BENCH_OUT)/maxrss
	python3 tools/bench/boot --build $(BUILD) $(BENCH_ARGS)

.PHONY: tools bench bench-agent bench-sandbox
