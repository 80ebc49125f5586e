/* MP tables (Intel MultiProcessor Specification 1.4): floating pointer, configuration table, entries. */
#include <criterion/criterion.h>

#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "tests/unit/unit.h"

UNIT_SUITE(mptable);

static struct test_mem t;
static struct error err;
static void setup(void) { test_mem_init(&t, 2 * MiB, 0, TEST_HIGH_BASE); }
static void teardown(void) { test_mem_fini(&t); }

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;
	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

#define IOAPIC_PINS 24
#define IO_INTS (IOAPIC_PINS - 1) /* sources 0..23 without the cascade (2) */
static size_t table_len(unsigned cpus) { return 44 + 20 * cpus + 8 + 8 + (IO_INTS + 2) * 8; }

/* Checks everything for nr_cpus CPUs at gpa; returns the table. */
static const uint8_t *check_tables(uint64_t gpa, unsigned cpus)
{
	cr_assert_eq(mptable_write(&t.mem, gpa, cpus, &err), 0, "%s", err.msg);
	const uint8_t *fp = t.buf + gpa;
	cr_assert_eq(memcmp(fp, "_MP_", 4), 0, "floating pointer signature");
	cr_assert_eq(get32(fp + 4), gpa + 16, "physptr: the table follows the pointer");
	cr_assert_eq(fp[8], 1, "length in 16-byte units");
	cr_assert_eq(fp[9], 4, "spec 1.4");
	cr_assert_eq(sum(fp, 16), 0, "floating pointer checksum");
	for (int i = 11; i < 16; i++)
		cr_assert_eq(fp[i], 0, "feature byte %d: 0 means a configuration table is present", i - 11);

	const uint8_t *tb = t.buf + get32(fp + 4);
	cr_assert_eq(memcmp(tb, "PCMP", 4), 0, "table signature");
	uint16_t len = get16(tb + 4);
	cr_assert_eq(len, table_len(cpus), "table length for %u cpus", cpus);
	cr_assert_eq(tb[6], 4, "spec");
	cr_assert_eq(sum(tb, len), 0, "table checksum");
	cr_assert_eq(memcmp(tb + 8, "KVMBOX  ", 8), 0, "OEM id");
	cr_assert_eq(get16(tb + 34), cpus + 2 + IO_INTS + 2, "entry count");
	cr_assert_eq(get32(tb + 36), X86_LAPIC_ADDR, "LAPIC address");
	if ((uint64_t)(tb - t.buf) + len < t.size)
		cr_assert_eq(tb[len], TEST_FILL, "nothing written past the table");
	cr_assert_eq(fp[-1], TEST_FILL, "nothing written before the pointer");

	const uint8_t *p = tb + 44;
	for (unsigned i = 0; i < cpus; i++, p += 20) {
		cr_assert_eq(p[0], 0, "processor entry type");
		cr_assert_eq(p[1], i, "APIC id");
		cr_assert_eq(p[3], i == 0 ? 3 : 1, "cpu %u flags: enabled, BSP only for cpu 0", i);
	}
	cr_assert_eq(p[0], 1, "bus entry");
	cr_assert_eq(memcmp(p + 2, "ISA   ", 6), 0);
	p += 8;
	cr_assert_eq(p[0], 2, "IOAPIC entry");
	cr_assert_eq(p[1], (uint8_t)cpus, "IOAPIC id after the LAPIC ids");
	cr_assert_eq(p[3] & 1, 1, "IOAPIC enabled");
	cr_assert_eq(get32(p + 4), X86_IOAPIC_ADDR);
	p += 8;
	bool seen[IOAPIC_PINS] = { false };
	for (int i = 0; i < IO_INTS; i++, p += 8) {
		cr_assert_eq(p[0], 3, "I/O interrupt entry");
		cr_assert_eq(p[1], 0, "INT");
		cr_assert_eq(p[4], 0, "source bus: ISA");
		uint8_t irq = p[5];
		cr_assert_lt(irq, IOAPIC_PINS);
		cr_assert_neq(irq, 2, "no entry for the cascade");
		cr_assert_not(seen[irq], "IRQ %u twice", irq);
		seen[irq] = true;
		cr_assert_eq(p[6], (uint8_t)cpus, "to the IOAPIC");
		cr_assert_eq(p[7], irq == 0 ? 2 : irq, "IRQ %u to pin %u", irq, p[7]);
	}
	cr_assert_eq(p[0], 4, "LINT0");
	cr_assert_eq(p[1], 3, "ExtINT");
	cr_assert_eq(p[7], 0);
	p += 8;
	cr_assert_eq(p[0], 4, "LINT1");
	cr_assert_eq(p[1], 1, "NMI");
	cr_assert_eq(p[7], 1);
	p += 8;
	cr_assert_eq(p, tb + len);
	return tb;
}

Test(mptable, one_cpu, .init = setup, .fini = teardown) { check_tables(X86_MPTABLE_ADDR, 1); }
Test(mptable, four_cpus, .init = setup, .fini = teardown) { check_tables(X86_MPTABLE_ADDR, 4); }
Test(mptable, max_cpus, .init = setup, .fini = teardown) { check_tables(X86_MPTABLE_ADDR, 255); }

Test(mptable, does_not_fit, .init = setup, .fini = teardown)
{
	uint64_t need = 16 + table_len(2);
	cr_assert_eq(mptable_write(&t.mem, 2 * MiB - need + 1, 2, &err), -1);
	cr_assert(strstr(err.msg, "does not fit"), "%s", err.msg);
	cr_assert_eq(t.buf[2 * MiB - need + 1], TEST_FILL, "nothing written");
	check_tables(2 * MiB - need, 2);
	cr_assert_eq(mptable_write(&t.mem, UINT64_MAX - 4, 1, &err), -1);
}
