/*
 * Boot-time marker (Firecracker's boot timer habit): a guest write of the byte 123 to the first MMIO
 * slot logs how long after the monitor's own start the guest got there. /init writes it with
 * `devmem 0xd0000000 8 123`; benchmarks and boot-test read the log line.
 */
#include "vmm/arch.h"
#include "vmm/vm.h"

#include <stdlib.h>

#define BOOT_MARKER_MAGIC 123

struct boot_marker {
	struct vm *vm;
};

static void boot_marker_access(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct boot_marker *b = dev;
	if (!is_write) {
		for (uint32_t i = 0; i < len; i++)
			data[i] = 0;
		return;
	}
	if (offset == 0 && data[0] == BOOT_MARKER_MAGIC) {
		atomic_store(&b->vm->boot_marker_seen, true);
		log_info(&b->vm->log, "boot marker: the guest reached it %.3f ms after the monitor started",
			 log_elapsed_ms(&b->vm->log));
	}
}

static int boot_marker_create(struct vm *vm, void **state, struct error *err)
{
	struct boot_marker *b = calloc(1, sizeof(*b));
	if (!b)
		return error_set(err, "out of memory");
	*state = b;
	b->vm = vm;
	return bus_register(&vm->mmio, arch_boot_marker_addr(), 0x1000, boot_marker_access, b, "boot marker", err);
}

static const struct device_desc boot_marker = {
	.name = "boot-marker",
	.create = boot_marker_create,
	.destroy = free,
};
DEVICE_REGISTER(boot_marker);
