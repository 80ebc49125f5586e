/*
 * The bare minimum of the i8042 keyboard controller: its status reads "idle", and the reset command
 * (0xfe to port 0x64) ends the VM as a guest reboot. Linux uses it with reboot=k.
 */
#include "vmm/vm.h"

#include <stdlib.h>

#define I8042_DATA_PORT 0x60
#define I8042_COMMAND_PORT 0x64
#define I8042_CMD_RESET 0xfe

struct i8042 {
	struct vm *vm;
};

static void i8042_access(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct i8042 *k = dev;
	(void)offset;
	if (!is_write) {
		for (uint32_t i = 0; i < len; i++)
			data[i] = 0; /* no data, input buffer empty */
		return;
	}
	if (data[0] == I8042_CMD_RESET)
		vm_request_exit(k->vm, VM_EXIT_OK, "guest rebooted (i8042 reset)");
}

static void i8042_data_access(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	(void)dev;
	(void)offset;
	if (!is_write)
		for (uint32_t i = 0; i < len; i++)
			data[i] = 0;
}

static int i8042_create(struct vm *vm, void **state, struct error *err)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return error_set(err, "out of memory");
	*state = k;
	k->vm = vm;
	if (bus_register(&vm->pio, I8042_DATA_PORT, 1, i8042_data_access, k, "i8042 data", err))
		return -1;
	return bus_register(&vm->pio, I8042_COMMAND_PORT, 1, i8042_access, k, "i8042 command", err);
}

static const struct device_desc i8042 = {
	.name = "i8042",
	.create = i8042_create,
	.destroy = free,
};
DEVICE_REGISTER(i8042);
