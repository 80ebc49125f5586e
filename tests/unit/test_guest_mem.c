/* guest_mem: the one checked guest-physical to host translation. */
#include <criterion/criterion.h>

#include "tests/unit/unit.h"

UNIT_SUITE(guest_mem);

/* 3 MiB at 0, a hole, 1 MiB at 4 GiB: small sizes keep every boundary easy to name. */
#define LOW (3 * MiB)
#define HIGH (1 * MiB)
#define HB (4 * GiB)

static struct test_mem t;
static void setup(void) { test_mem_init(&t, LOW, HIGH, HB); }
static void teardown(void) { test_mem_fini(&t); }

#define PTR(gpa, len) ((uint8_t *)guest_mem_ptr(&t.mem, (gpa), (len)))

Test(guest_mem, layout, .init = setup, .fini = teardown)
{
	cr_assert_eq(t.mem.nr_regions, 2);
	cr_assert_eq(t.mem.regions[0].gpa, 0);
	cr_assert_eq(t.mem.regions[0].size, LOW);
	cr_assert_eq(t.mem.regions[0].hva, t.buf);
	cr_assert_eq(t.mem.regions[1].gpa, HB);
	cr_assert_eq(t.mem.regions[1].size, HIGH);
	cr_assert_eq(t.mem.regions[1].hva, t.buf + LOW);
	cr_assert_eq(t.mem.size, LOW + HIGH);
	cr_assert_eq(t.mem.base, t.buf);
	cr_assert_not(t.mem.owned);
	cr_assert_eq(guest_mem_low_end(&t.mem), LOW);
}

Test(guest_mem, low_region_boundaries, .init = setup, .fini = teardown)
{
	cr_assert_eq(PTR(0, 1), t.buf);
	cr_assert_eq(PTR(0, LOW), t.buf, "the whole low region");
	cr_assert_null(PTR(0, LOW + 1));
	cr_assert_eq(PTR(LOW - 1, 1), t.buf + LOW - 1, "last byte");
	cr_assert_null(PTR(LOW - 1, 2), "straddles the end of low RAM");
	cr_assert_null(PTR(LOW, 1), "first byte of the hole");
	cr_assert_eq(PTR(0x1234, 0x100), t.buf + 0x1234);
}

Test(guest_mem, high_region_boundaries, .init = setup, .fini = teardown)
{
	cr_assert_eq(PTR(HB, 1), t.buf + LOW, "high RAM follows low RAM in the host mapping");
	cr_assert_eq(PTR(HB, HIGH), t.buf + LOW);
	cr_assert_null(PTR(HB, HIGH + 1));
	cr_assert_eq(PTR(HB + HIGH - 1, 1), t.buf + LOW + HIGH - 1, "last byte of RAM");
	cr_assert_null(PTR(HB + HIGH - 1, 2));
	cr_assert_null(PTR(HB + HIGH, 1));
	cr_assert_null(PTR(HB - 1, 1), "last byte of the hole");
	cr_assert_null(PTR(HB - 1, 2), "straddles the start of high RAM");
	cr_assert_eq(PTR(HB + 0x5000, 0x10), t.buf + LOW + 0x5000, "offset within the high region");
}

Test(guest_mem, hole_and_spanning, .init = setup, .fini = teardown)
{
	cr_assert_null(PTR(2 * GiB, 1));
	cr_assert_null(PTR(LOW - 0x10, HB - LOW + 0x20), "range covering the whole hole");
	cr_assert_null(PTR(0, HB + HIGH), "range covering both regions");
}

Test(guest_mem, zero_length_counts_as_one, .init = setup, .fini = teardown)
{
	cr_assert_eq(PTR(0, 0), t.buf);
	cr_assert_eq(PTR(LOW - 1, 0), t.buf + LOW - 1);
	cr_assert_null(PTR(LOW, 0));
	cr_assert_null(PTR(HB + HIGH, 0));
	cr_assert_null(PTR(UINT64_MAX, 0));
}

Test(guest_mem, overflow, .init = setup, .fini = teardown)
{
	cr_assert_null(PTR(UINT64_MAX - 1, 4), "gpa + len wraps");
	cr_assert_null(PTR(UINT64_MAX, 1));
	cr_assert_null(PTR(UINT64_MAX, UINT64_MAX));
	cr_assert_null(PTR(0x10, UINT64_MAX), "len alone wraps");
	cr_assert_null(PTR(0x10, UINT64_MAX - 0x8), "gpa + len wraps to inside low RAM");
	cr_assert_null(PTR(HB + 0x10, UINT64_MAX - 0x8));
	cr_assert_null(PTR(HB + 0x10, (UINT64_MAX - HB) + 1), "wraps to 0x10");
}

Test(guest_mem, single_region)
{
	struct test_mem s;
	test_mem_init(&s, 2 * MiB, 0, HB);
	cr_assert_eq(s.mem.nr_regions, 1);
	cr_assert_eq(s.mem.regions[0].size, 2 * MiB);
	cr_assert_null(guest_mem_ptr(&s.mem, HB, 1), "no high region");
	cr_assert_eq(guest_mem_ptr(&s.mem, 2 * MiB - 1, 1), s.buf + 2 * MiB - 1);
	cr_assert_null(guest_mem_ptr(&s.mem, 2 * MiB, 1));
	cr_assert_eq(guest_mem_low_end(&s.mem), 2 * MiB);
	test_mem_fini(&s);
	/* Size below the low limit: one region of that size. */
	test_mem_init(&s, 2 * MiB, 0, HB);
	guest_mem_init_from(&s.mem, s.buf, 2 * MiB, 3 * MiB, HB);
	cr_assert_eq(s.mem.nr_regions, 1);
	cr_assert_eq(s.mem.regions[0].size, 2 * MiB);
	cr_assert_null(guest_mem_ptr(&s.mem, 2 * MiB, 1));
	test_mem_fini(&s);
}

Test(guest_mem, read_write, .init = setup, .fini = teardown)
{
	uint8_t in[16], out[16];
	for (int i = 0; i < 16; i++)
		in[i] = (uint8_t)(i * 13);
	cr_assert_eq(guest_mem_write(&t.mem, HB + 8, in, sizeof(in)), 0);
	cr_assert_eq(memcmp(t.buf + LOW + 8, in, sizeof(in)), 0);
	cr_assert_eq(guest_mem_read(&t.mem, HB + 8, out, sizeof(out)), 0);
	cr_assert_eq(memcmp(out, in, sizeof(in)), 0);
	memset(out, 0x11, sizeof(out));
	cr_assert_eq(guest_mem_read(&t.mem, LOW - 8, out, sizeof(out)), -1, "across the end of low RAM");
	cr_assert_eq(out[0], 0x11, "a refused read leaves dst alone");
	cr_assert_eq(guest_mem_write(&t.mem, LOW - 8, in, sizeof(in)), -1);
	cr_assert_eq(t.buf[LOW - 8], TEST_FILL, "a refused write writes nothing");
	cr_assert_eq(guest_mem_write(&t.mem, UINT64_MAX - 4, in, sizeof(in)), -1);
}

Test(guest_mem, alloc_and_free)
{
	struct guest_mem m;
	struct error err;
	cr_assert_eq(guest_mem_alloc(&m, 6 * MiB, 4 * MiB, HB, false, &err), 0, "%s", err.msg);
	cr_assert(m.owned);
	cr_assert_eq(m.nr_regions, 2);
	cr_assert_eq(m.regions[1].gpa, HB);
	cr_assert_eq(m.regions[1].size, 2 * MiB);
	uint8_t *p = guest_mem_ptr(&m, HB + 2 * MiB - 1, 1);
	cr_assert_not_null(p);
	*p = 7; /* writable */
	cr_assert_eq(*(uint8_t *)guest_mem_ptr(&m, 0, 1), 0, "anonymous memory starts zeroed");
	guest_mem_free(&m);
	cr_assert_null(m.base);
	cr_assert_eq(m.nr_regions, 0);
	cr_assert_null(guest_mem_ptr(&m, 0, 1), "nothing after free");
}

Test(guest_mem, free_of_borrowed_memory_does_not_unmap, .init = setup, .fini = teardown)
{
	struct guest_mem m;
	guest_mem_init_from(&m, t.buf, t.size, LOW, HB);
	guest_mem_free(&m);
	t.buf[0] = 1; /* still ours (ASan would flag a munmap of heap memory) */
	cr_assert_eq(t.buf[0], 1);
}
