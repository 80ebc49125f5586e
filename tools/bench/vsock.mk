# The virtio-vsock benchmark (tools/bench/vsock): a Linux guest's vsock through kvmbox-vmm, the device model
# alone (tools/bench/vsock-harness.c, driven in-process like tests/harness, no KVM) and the raw host path
# (Unix sockets), all with the same host client, in the same run. Include after tests/harness/harness.mk
# (uses HARNESS_SRCS, HARNESS_LDLIBS and the $(BUILD)/obj rules).
#   $(BUILD)/bench/vsock-bench    both ends (tools/bench/vsock-bench.c), static: it also runs in the guest
#   $(BUILD)/bench/vsock-harness  the device model with an in-process driver
#   make bench-vsock              runs it; BENCH_VSOCK_ARGS passes options, e.g. '--runs 3 --json'
BENCH_VSOCK_ARGS ?=
BENCH_VSOCK_LIB_SRCS := devices/virtio_vsock.c devices/vsock_conn.c vmm/cmdline.c vmm/io_ring.c vmm/virtio_mmio.c vmm/virtq.c vmm/iov.c vmm/guest_mem.c \
	vmm/bus.c vmm/event_loop.c vmm/log.c vmm/config.c

$(BUILD)/bench/vsock-bench: tools/bench/vsock-bench.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O2 $(WARN) -static -o $@ $<

$(BUILD)/bench/vsock-harness: $(BUILD)/obj/tools/bench/vsock-harness.o \
		$(HARNESS_SRCS:%.c=$(BUILD)/obj/%.o) $(BENCH_VSOCK_LIB_SRCS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(HARNESS_LDLIBS)

bench-vsock: $(BUILD)/kvmbox-vmm $(BUILD)/images/vmlinux $(BUILD)/images/initramfs.cpio.gz \
		$(BUILD)/bench/vsock-bench $(BUILD)/bench/vsock-harness
	@python3 tools/bench/vsock --build $(BUILD) $(BENCH_VSOCK_ARGS)

.PHONY: bench-vsock
