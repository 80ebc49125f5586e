/* The I/O bus: registration rules and dispatch. */
#include <criterion/criterion.h>

#include "tests/unit/unit.h"
#include "vmm/bus.h"

UNIT_SUITE(bus);

struct fake_dev {
	int calls;
	uint64_t offset;
	uint32_t len;
	bool is_write;
	uint8_t written[8];
	uint8_t reply;
};

static void fake_access(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct fake_dev *d = dev;
	d->calls++;
	d->offset = offset;
	d->len = len;
	d->is_write = is_write;
	if (is_write)
		memcpy(d->written, data, len);
	else
		memset(data, d->reply, len);
}

static struct bus bus;
static struct fake_dev uart, kbd;
static struct error err;

static void setup(void)
{
	memset(&bus, 0, sizeof(bus));
	bus.name = "port";
	memset(&uart, 0, sizeof(uart));
	memset(&kbd, 0, sizeof(kbd));
	uart.reply = 0x5a;
	kbd.reply = 0x11;
	cr_assert_eq(bus_register(&bus, 0x3f8, 8, fake_access, &uart, "uart", &err), 0, "%s", err.msg);
	cr_assert_eq(bus_register(&bus, 0x60, 1, fake_access, &kbd, "kbd", &err), 0, "%s", err.msg);
}

static int reg(uint64_t base, uint64_t len)
{
	return bus_register(&bus, base, len, fake_access, &kbd, "new", &err);
}

Test(bus, overlap_refused, .init = setup)
{
	cr_assert_eq(reg(0x3fc, 8), -1, "overlaps the end of uart");
	cr_assert(strstr(err.msg, "overlaps uart"), "%s", err.msg);
	cr_assert_eq(reg(0x3f0, 9), -1, "overlaps uart's first byte");
	cr_assert_eq(reg(0x3f9, 1), -1, "inside uart");
	cr_assert_eq(reg(0x300, 0x200), -1, "covers uart");
	cr_assert_eq(reg(0x60, 1), -1, "same range");
	cr_assert_eq(bus.nr_ranges, 2, "refused ranges are not added");
}

Test(bus, adjacent_ranges_ok, .init = setup)
{
	cr_assert_eq(reg(0x3f0, 8), 0, "%s", err.msg);
	cr_assert_eq(reg(0x400, 1), 0, "%s", err.msg);
	cr_assert_eq(reg(0x5f, 1), 0, "%s", err.msg);
	cr_assert_eq(reg(0x61, 1), 0, "%s", err.msg);
	cr_assert_eq(bus.nr_ranges, 6);
}

Test(bus, bad_ranges, .init = setup)
{
	cr_assert_eq(reg(0x1000, 0), -1, "empty");
	cr_assert_eq(reg(UINT64_MAX, 2), -1, "wraps");
	cr_assert_eq(reg(UINT64_MAX - 0xf, 0x20), -1, "wraps");
}

Test(bus, full, .init = setup)
{
	for (int i = 2; i < BUS_MAX_RANGES; i++)
		cr_assert_eq(reg(0x1000 + 0x10 * (uint64_t)i, 0x10), 0, "%s", err.msg);
	cr_assert_eq(reg(0x8000, 1), -1);
	cr_assert(strstr(err.msg, "full"), "%s", err.msg);
	cr_assert_eq(bus.nr_ranges, BUS_MAX_RANGES);
}

Test(bus, dispatch_with_offset, .init = setup)
{
	uint8_t data[8] = { 0 };
	cr_assert(bus_access(&bus, 0x3fa, data, 1, false));
	cr_assert_eq(uart.calls, 1);
	cr_assert_eq(uart.offset, 2);
	cr_assert_eq(uart.len, 1);
	cr_assert_not(uart.is_write);
	cr_assert_eq(data[0], 0x5a);
	cr_assert_eq(kbd.calls, 0);

	uint8_t w[2] = { 0xab, 0xcd };
	cr_assert(bus_access(&bus, 0x3ff, w, 2, true), "last byte of the range");
	cr_assert_eq(uart.calls, 2);
	cr_assert_eq(uart.offset, 7);
	cr_assert(uart.is_write);
	cr_assert_eq(uart.written[0], 0xab);
	cr_assert_eq(uart.written[1], 0xcd);

	cr_assert(bus_access(&bus, 0x60, data, 4, false));
	cr_assert_eq(kbd.calls, 1);
	cr_assert_eq(kbd.offset, 0);
	cr_assert_eq(kbd.len, 4);
	cr_assert_eq(data[3], 0x11);
	cr_assert_eq(uart.calls, 2);
}

Test(bus, unassigned, .init = setup)
{
	uint8_t data[8];
	memset(data, 0, sizeof(data));
	cr_assert_not(bus_access(&bus, 0x400, data, 4, false), "just past uart");
	for (int i = 0; i < 4; i++)
		cr_assert_eq(data[i], 0xff, "unassigned reads are all ones");
	cr_assert_eq(data[4], 0, "only len bytes");
	cr_assert_not(bus_access(&bus, 0x3f7, data, 1, false), "just before uart");
	memset(data, 0x22, sizeof(data));
	cr_assert_not(bus_access(&bus, 0x61, data, 8, true));
	cr_assert_eq(data[0], 0x22, "unassigned writes are dropped, the buffer untouched");
	cr_assert_eq(uart.calls + kbd.calls, 0);
	struct bus empty = { .name = "mmio" };
	cr_assert_not(bus_access(&empty, 0, data, 8, false));
	cr_assert_eq(data[7], 0xff);
}
