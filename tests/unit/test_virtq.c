/* virtq: the split virtqueue, against rings built by hand in a fake guest RAM. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "tests/unit/unit.h"
#include "vmm/virtq.h"

UNIT_SUITE(virtq);

/* 1 MiB of RAM at 0; rings at fixed addresses, buffers from DATA up, indirect tables at IND. */
#define RAM (1 * MiB)
#define DESC 0x1000ull
#define AVAIL 0x2000ull
#define USED 0x3000ull
#define IND 0x8000ull
#define DATA 0x10000ull
#define QSIZE 8

static struct test_mem t;
static struct virtq vq;
static struct virtq_chain c;
static struct error err;
static uint16_t avail_idx; /* the fake driver's copy of avail->idx */

static void setup(void)
{
	test_mem_init(&t, RAM, 0, 4 * GiB);
	memset(t.buf, 0, RAM);
	memset(&vq, 0, sizeof(vq));
	avail_idx = 0;
	err.msg[0] = '\0';
}
static void teardown(void) { test_mem_fini(&t); }

static uint8_t *g(uint64_t gpa) { return guest_mem_ptr(&t.mem, gpa, 1); }

static void enable(uint16_t size, bool event_idx, bool indirect)
{
	cr_assert_eq(virtq_enable(&vq, &t.mem, size, DESC, AVAIL, USED, event_idx, indirect, &err), 0, "%s",
		     err.msg);
}

/* A descriptor in the table at gpa `table`. */
static void put_desc_at(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *p = g(table + 16ull * i);
	put64(p, addr);
	put32(p + 8, len);
	put16(p + 12, flags);
	put16(p + 14, next);
}
static void put_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	put_desc_at(DESC, i, addr, len, flags, next);
}

/* The driver's side of 2.7.13: ring entry, then idx. */
static void publish(uint16_t head)
{
	put16(g(AVAIL + 4 + 2 * (avail_idx & (vq.size - 1))), head);
	avail_idx++;
	put16(g(AVAIL + 2), avail_idx);
}
static void set_avail_idx(uint16_t v) { avail_idx = v; put16(g(AVAIL + 2), v); }

static uint16_t used_idx(void) { return get16(g(USED + 2)); }
static void set_used_event(uint16_t v) { put16(g(AVAIL + 4 + 2 * vq.size), v); }
static uint16_t avail_event(void) { return get16(g(USED + 4 + 8 * vq.size)); }

static void assert_iov(unsigned k, uint64_t gpa, uint32_t len)
{
	cr_assert_eq(c.iov[k].iov_base, t.buf + gpa, "iov[%u] base", k);
	cr_assert_eq(c.iov[k].iov_len, len, "iov[%u] len", k);
}

/* The queue refuses the next chain with a reason mentioning `needle`, and keeps refusing. */
static void assert_broken(const char *needle)
{
	uint16_t last = vq.last_avail_idx;
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_BROKEN);
	cr_assert(vq.broken);
	cr_assert(strstr(vq.why_broken, needle), "why_broken \"%s\" lacks \"%s\"", vq.why_broken, needle);
	cr_assert_eq(vq.last_avail_idx, last, "a refused chain is not consumed");
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_BROKEN, "stays broken");
}

/* Two readable buffers then one writable one, at DATA. */
static void simple_chain(void)
{
	put_desc(0, DATA, 16, VIRTQ_DESC_F_NEXT, 3);
	put_desc(3, DATA + 0x100, 0x200, VIRTQ_DESC_F_NEXT, 5);
	put_desc(5, DATA + 0x1000, 0x40, VIRTQ_DESC_F_WRITE, 0);
	publish(0);
}

/* ---- Good chains ---- */

Test(virtq, simple_chain, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	cr_assert(vq.ready);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_EMPTY);
	simple_chain();
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	cr_assert_eq(c.head, 0);
	cr_assert_eq(c.nr_out, 2);
	cr_assert_eq(c.nr_in, 1);
	cr_assert_eq(c.out_bytes, 16 + 0x200);
	cr_assert_eq(c.in_bytes, 0x40);
	assert_iov(0, DATA, 16);
	assert_iov(1, DATA + 0x100, 0x200);
	assert_iov(2, DATA + 0x1000, 0x40);
	cr_assert_eq(vq.last_avail_idx, 1);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_EMPTY);
	cr_assert_not(vq.broken);
}

Test(virtq, several_chains_in_order, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(6, DATA, 8, 0, 0);
	put_desc(2, DATA + 8, 8, VIRTQ_DESC_F_WRITE, 0);
	publish(6);
	publish(2);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN);
	cr_assert_eq(c.head, 6);
	cr_assert_eq(c.nr_out, 1);
	cr_assert_eq(c.nr_in, 0);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN);
	cr_assert_eq(c.head, 2);
	cr_assert_eq(c.nr_out, 0);
	cr_assert_eq(c.nr_in, 1);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_EMPTY);
}

Test(virtq, zero_length_descriptor, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, DATA, 0, VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, DATA + 4, 0, VIRTQ_DESC_F_WRITE, 0);
	publish(0);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	assert_iov(0, DATA, 0);
	assert_iov(1, DATA + 4, 0);
	cr_assert_eq(c.out_bytes + c.in_bytes, 0);
}

Test(virtq, chain_read_across_segments, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	simple_chain();
	for (unsigned i = 0; i < 16; i++)
		g(DATA)[i] = (uint8_t)i;
	for (unsigned i = 0; i < 0x200; i++)
		g(DATA + 0x100)[i] = (uint8_t)(16 + i);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN);
	uint8_t buf[0x300];
	cr_assert_eq(virtq_chain_read(&c, 10, buf, 20), 20);
	for (unsigned i = 0; i < 20; i++)
		cr_assert_eq(buf[i], (uint8_t)(10 + i), "byte %u", i);
	cr_assert_eq(virtq_chain_read(&c, 0, buf, sizeof(buf)), 16 + 0x200, "short at the end of the readable part");
	for (unsigned i = 0; i < 16 + 0x200; i++)
		cr_assert_eq(buf[i], (uint8_t)i, "byte %u", i);
	cr_assert_eq(virtq_chain_read(&c, 16 + 0x200, buf, 1), 0, "never reads the writable part");
	cr_assert_eq(virtq_chain_read(&c, UINT64_MAX, buf, 1), 0);
}

Test(virtq, chain_write_across_segments, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, DATA + 0x100, 3, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	put_desc(2, DATA + 0x200, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 4);
	put_desc(4, DATA + 0x300, 5, VIRTQ_DESC_F_WRITE, 0);
	publish(0);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN);
	cr_assert_eq(c.in_bytes, 8);
	const uint8_t src[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	cr_assert_eq(virtq_chain_write(&c, 1, src, sizeof(src)), 7, "short: 8 writable bytes from offset 1");
	cr_assert_eq(g(DATA)[0], 0, "the readable part is untouched");
	cr_assert_eq(g(DATA + 0x100)[0], 0);
	cr_assert_eq(g(DATA + 0x100)[1], 1);
	cr_assert_eq(g(DATA + 0x100)[2], 2);
	for (unsigned i = 0; i < 5; i++)
		cr_assert_eq(g(DATA + 0x300)[i], 3 + i, "byte %u", i);
	cr_assert_eq(g(DATA + 0x305)[0], 0, "nothing past the last segment");
	cr_assert_eq(virtq_chain_write(&c, 8, src, 1), 0);
}

Test(virtq, indirect_chain, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc_at(IND, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	put_desc_at(IND, 2, DATA + 0x100, 32, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc_at(IND, 1, DATA + 0x200, 1, VIRTQ_DESC_F_WRITE, 0);
	/* WRITE on the descriptor that points at the table is ignored. */
	put_desc(4, IND, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	publish(4);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	cr_assert_eq(c.head, 4);
	cr_assert_eq(c.nr_out, 1);
	cr_assert_eq(c.nr_in, 2);
	cr_assert_eq(c.out_bytes, 16);
	cr_assert_eq(c.in_bytes, 33);
	assert_iov(0, DATA, 16);
	assert_iov(1, DATA + 0x100, 32);
	assert_iov(2, DATA + 0x200, 1);
}

Test(virtq, indirect_after_direct_and_unaligned_table, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc(0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, IND + 4, 16, VIRTQ_DESC_F_INDIRECT, 0); /* the spec sets no alignment for a table */
	put_desc_at(IND + 4, 0, DATA + 0x40, 8, VIRTQ_DESC_F_WRITE, 0);
	publish(0);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	cr_assert_eq(c.nr_out, 1);
	cr_assert_eq(c.nr_in, 1);
	assert_iov(0, DATA, 8);
	assert_iov(1, DATA + 0x40, 8);
}

Test(virtq, longest_chain_accepted, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	for (unsigned i = 0; i < VIRTQ_CHAIN_MAX; i++)
		put_desc_at(IND, i, DATA + i, 1, i + 1 < VIRTQ_CHAIN_MAX ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	put_desc(0, IND, VIRTQ_CHAIN_MAX * 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	cr_assert_eq(c.nr_out, VIRTQ_CHAIN_MAX);
	cr_assert_eq(c.out_bytes, VIRTQ_CHAIN_MAX);
}

Test(virtq, chain_using_every_descriptor, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	for (unsigned i = 0; i < QSIZE; i++)
		put_desc(i, DATA + i, 1, i + 1 < QSIZE ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)((i + 3) % QSIZE));
	/* 0 → 3 → 6 → 1 → 4 → 7 → 2 → 5: all eight, no loop. */
	put_desc(5, DATA + 5, 1, 0, 0);
	put_desc(7, DATA + 7, 1, VIRTQ_DESC_F_NEXT, 2);
	put_desc(2, DATA + 2, 1, VIRTQ_DESC_F_NEXT, 5);
	publish(0);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	cr_assert_eq(c.nr_out, QSIZE);
	assert_iov(QSIZE - 1, DATA + 5, 1);
}

Test(virtq, index_wraparound, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	vq.last_avail_idx = 65534;
	vq.used_idx = 65535;
	set_avail_idx(65534);
	put16(g(USED + 2), 65535);
	for (unsigned i = 0; i < 3; i++) {
		put_desc(i, DATA + i, 1, VIRTQ_DESC_F_WRITE, 0);
		publish((uint16_t)i);
	}
	cr_assert_eq(avail_idx, 1);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
		cr_assert_eq(c.head, i);
		virtq_push_used(&vq, c.head, 1);
	}
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_EMPTY);
	cr_assert_eq(vq.last_avail_idx, 1);
	cr_assert_eq(used_idx(), 2);
	/* used_idx 65535, 0, 1 → ring slots 7, 0, 1. */
	cr_assert_eq(get32(g(USED + 4 + 8 * 7)), 0);
	cr_assert_eq(get32(g(USED + 4 + 8 * 0)), 1);
	cr_assert_eq(get32(g(USED + 4 + 8 * 1)), 2);
}

Test(virtq, not_ready_is_empty, .init = setup, .fini = teardown)
{
	virtq_reset(&vq);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_EMPTY);
	virtq_push_used(&vq, 0, 0);
	cr_assert_not(virtq_should_interrupt(&vq));
	cr_assert_not(virtq_prepare_wait(&vq));
}

/* ---- Used ring, interrupts, notifications ---- */

Test(virtq, push_used, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	virtq_push_used(&vq, 5, 0x1234);
	cr_assert_eq(used_idx(), 1);
	cr_assert_eq(vq.used_idx, 1);
	cr_assert_eq(get32(g(USED + 4)), 5);
	cr_assert_eq(get32(g(USED + 8)), 0x1234);
	virtq_push_used(&vq, 7, 0);
	cr_assert_eq(used_idx(), 2);
	cr_assert_eq(get32(g(USED + 12)), 7);
	cr_assert_eq(get32(g(USED + 16)), 0);
}

Test(virtq, no_interrupt_flag, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	virtq_push_used(&vq, 0, 0);
	cr_assert(virtq_should_interrupt(&vq));
	put16(g(AVAIL), VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtq_push_used(&vq, 0, 0);
	cr_assert_not(virtq_should_interrupt(&vq));
	put16(g(AVAIL), 0);
	cr_assert(virtq_should_interrupt(&vq));
}

Test(virtq, event_idx_suppression_and_rearm, .init = setup, .fini = teardown)
{
	enable(QSIZE, true, false);
	put16(g(AVAIL), VIRTQ_AVAIL_F_NO_INTERRUPT); /* ignored with EVENT_IDX */
	set_used_event(0);
	virtq_push_used(&vq, 0, 0);
	cr_assert(virtq_should_interrupt(&vq), "first time: always");
	/* The driver wants an interrupt once used_idx passes 3 (i.e. when entry 3 is used). */
	set_used_event(3);
	virtq_push_used(&vq, 1, 0); /* used_idx 2 */
	cr_assert_not(virtq_should_interrupt(&vq), "used_event not crossed");
	cr_assert_not(virtq_should_interrupt(&vq), "nothing new");
	virtq_push_used(&vq, 2, 0); /* 3 */
	cr_assert_not(virtq_should_interrupt(&vq));
	virtq_push_used(&vq, 3, 0); /* 4: entry 3 used */
	cr_assert(virtq_should_interrupt(&vq), "crossed");
	virtq_push_used(&vq, 4, 0);
	cr_assert_not(virtq_should_interrupt(&vq), "not re-armed");
	set_used_event(4); /* re-armed, and already passed in the batch (4, 5] */
	virtq_push_used(&vq, 5, 0);
	cr_assert_not(virtq_should_interrupt(&vq), "only the batch since the last check counts");
	set_used_event(7);
	virtq_push_used(&vq, 6, 0);
	virtq_push_used(&vq, 7, 0);
	virtq_push_used(&vq, 0, 0); /* used_idx 6 → 9 in one batch, crossing 7 */
	cr_assert(virtq_should_interrupt(&vq));
}

Test(virtq, event_idx_first_time_always, .init = setup, .fini = teardown)
{
	enable(QSIZE, true, false);
	set_used_event(100); /* far ahead: would suppress, but nothing was signalled yet */
	virtq_push_used(&vq, 0, 0);
	cr_assert(virtq_should_interrupt(&vq));
	virtq_push_used(&vq, 0, 0);
	cr_assert_not(virtq_should_interrupt(&vq));
	/* A reset forgets what was signalled. */
	enable(QSIZE, true, false);
	virtq_push_used(&vq, 0, 0);
	cr_assert(virtq_should_interrupt(&vq));
}

Test(virtq, event_idx_wraparound, .init = setup, .fini = teardown)
{
	enable(QSIZE, true, false);
	vq.used_idx = 65533;
	cr_assert(virtq_should_interrupt(&vq));
	set_used_event(65535);
	virtq_push_used(&vq, 0, 0); /* 65534 */
	cr_assert_not(virtq_should_interrupt(&vq));
	virtq_push_used(&vq, 0, 0); /* 65535 */
	virtq_push_used(&vq, 0, 0); /* 0: entry 65535 used */
	cr_assert(virtq_should_interrupt(&vq));
	cr_assert_eq(used_idx(), 0);
}

Test(virtq, prepare_wait_event_idx, .init = setup, .fini = teardown)
{
	enable(QSIZE, true, false);
	cr_assert_not(virtq_prepare_wait(&vq));
	cr_assert_eq(avail_event(), 0);
	put_desc(0, DATA, 4, 0, 0);
	publish(0);
	publish(0);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN);
	/* One entry still pending: a late entry the caller must not sleep on. */
	cr_assert(virtq_prepare_wait(&vq));
	cr_assert_eq(avail_event(), 1);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN);
	cr_assert_not(virtq_prepare_wait(&vq));
	cr_assert_eq(avail_event(), 2, "the driver notifies when it adds entry 2");
}

Test(virtq, prepare_wait_without_event_idx, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put16(g(USED + 4 + 8 * QSIZE), 0xabcd); /* beyond the used ring without EVENT_IDX */
	cr_assert_not(virtq_prepare_wait(&vq));
	put_desc(0, DATA, 4, 0, 0);
	publish(0);
	cr_assert(virtq_prepare_wait(&vq));
	cr_assert_eq(avail_event(), 0xabcd, "no avail_event written");
}

/* ---- Malformed chains: each breaks the queue for good ---- */

Test(virtq, broken_avail_idx_too_far, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, DATA, 4, 0, 0);
	set_avail_idx(QSIZE); /* exactly size ahead: fine */
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN);
	set_avail_idx(1 + QSIZE + 1); /* size + 1 ahead of last_avail_idx 1 */
	assert_broken("ahead");
}

Test(virtq, broken_head_out_of_range, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	publish(QSIZE);
	assert_broken("head 8");
}

Test(virtq, broken_next_out_of_range, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, QSIZE);
	publish(0);
	assert_broken("next 8");
}

Test(virtq, broken_loop, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, DATA, 4, VIRTQ_DESC_F_NEXT, 2);
	put_desc(2, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	publish(0);
	assert_broken("loops");
}

Test(virtq, broken_self_loop, .init = setup, .fini = teardown)
{
	enable(1, false, false);
	put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 0);
	publish(0);
	assert_broken("loops");
}

Test(virtq, broken_buffer_outside_ram, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, RAM - 4, 4, VIRTQ_DESC_F_NEXT, 1); /* last 4 bytes: fine */
	put_desc(1, RAM - 4, 5, 0, 0);                 /* one byte past the end */
	publish(0);
	assert_broken("not in guest RAM");
}

Test(virtq, broken_buffer_address_wraps, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, UINT64_MAX - 1, 0x10, 0, 0);
	publish(0);
	assert_broken("not in guest RAM");
}

Test(virtq, broken_zero_length_outside_ram, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, RAM, 0, 0, 0);
	publish(0);
	assert_broken("not in guest RAM");
}

Test(virtq, broken_readable_after_writable, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc(1, DATA, 4, 0, 0);
	publish(0);
	assert_broken("readable after");
}

Test(virtq, broken_readable_after_writable_in_indirect, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc(0, DATA, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc_at(IND, 0, DATA, 4, 0, 0);
	publish(0);
	assert_broken("readable after");
}

Test(virtq, broken_too_many_segments, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	for (unsigned i = 0; i <= VIRTQ_CHAIN_MAX; i++)
		put_desc_at(IND, i, DATA, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	put_desc_at(IND, VIRTQ_CHAIN_MAX, DATA, 1, 0, 0);
	put_desc(0, IND, (VIRTQ_CHAIN_MAX + 1) * 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	assert_broken("more than 256 buffers");
}

Test(virtq, broken_too_many_segments_direct, .init = setup, .fini = teardown)
{
	cr_assert_eq(virtq_enable(&vq, &t.mem, 512, DESC, IND, IND + 0x1000, false, false, &err), 0, "%s", err.msg);
	for (unsigned i = 0; i < 512; i++)
		put_desc(i, DATA, 1, i + 1 < 512 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	put16(g(IND + 4), 0);
	put16(g(IND + 2), 1);
	assert_broken("more than 256 buffers");
}

Test(virtq, broken_indirect_not_negotiated, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, false);
	put_desc_at(IND, 0, DATA, 4, 0, 0);
	put_desc(0, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	assert_broken("without VIRTIO_RING_F_INDIRECT_DESC");
}

Test(virtq, broken_indirect_with_next, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc_at(IND, 0, DATA, 4, 0, 0);
	put_desc(0, IND, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, DATA, 4, 0, 0);
	publish(0);
	assert_broken("INDIRECT together with NEXT");
}

Test(virtq, broken_indirect_len_zero, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc(0, IND, 0, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	assert_broken("multiple of 16");
}

Test(virtq, broken_indirect_len_not_multiple, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc_at(IND, 0, DATA, 4, 0, 0);
	put_desc(0, IND, 24, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	assert_broken("multiple of 16");
}

Test(virtq, broken_indirect_table_outside_ram, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc(0, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	assert_broken("indirect table at 0xffff0");
}

Test(virtq, broken_nested_indirect, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc_at(IND, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc_at(IND, 1, IND + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc_at(IND + 0x100, 0, DATA, 4, 0, 0);
	put_desc(0, IND, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	assert_broken("nested");
}

Test(virtq, broken_indirect_next_out_of_range, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	/* next 2 is < queue size but not < the table's 2 entries. */
	put_desc_at(IND, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 2);
	put_desc_at(IND, 1, DATA, 4, 0, 0);
	put_desc_at(IND, 2, DATA, 4, 0, 0);
	put_desc(0, IND, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	assert_broken("table length 2");
}

Test(virtq, broken_indirect_loop, .init = setup, .fini = teardown)
{
	enable(QSIZE, false, true);
	put_desc_at(IND, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc_at(IND, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 0);
	put_desc(0, IND, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	assert_broken("loops");
}

/* A chain of more than 4 GiB readable bytes: needs more than 4 GiB of RAM, mapped but never touched. */
Test(virtq, broken_byte_count_over_4g)
{
	struct guest_mem big;
	cr_assert_eq(guest_mem_alloc(&big, 4 * GiB + 2 * MiB, 8 * GiB, 8 * GiB, false, &err), 0, "%s", err.msg);
	cr_assert_eq(virtq_enable(&vq, &big, QSIZE, DESC, AVAIL, USED, false, false, &err), 0, "%s", err.msg);
	uint8_t *d = big.base + DESC;
	put64(d, 0);
	put32(d + 8, UINT32_MAX);
	put16(d + 12, VIRTQ_DESC_F_NEXT);
	put16(d + 14, 1);
	put64(d + 16, DATA);
	put32(d + 24, 1);
	put16(d + 28, 0);
	put16(big.base + AVAIL + 4, 0);
	put16(big.base + AVAIL + 2, 1);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_BROKEN);
	cr_assert(strstr(vq.why_broken, "4 GiB"), "%s", vq.why_broken);
	/* One byte less is fine. */
	put32(d + 24, 0);
	virtq_reset(&vq);
	cr_assert_eq(virtq_enable(&vq, &big, QSIZE, DESC, AVAIL, USED, false, false, &err), 0, "%s", err.msg);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	cr_assert_eq(c.out_bytes, UINT32_MAX);
	guest_mem_free(&big);
}

Test(virtq, broken_stays_broken_until_reset, .init = setup, .fini = teardown)
{
	enable(QSIZE, true, false);
	publish(QSIZE); /* bad head */
	simple_chain(); /* then a good one */
	assert_broken("head");
	/* Repair the bad entry: still broken, and the device leaves the rings alone. */
	put16(g(AVAIL + 4), 0);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_BROKEN);
	virtq_push_used(&vq, 0, 1);
	cr_assert_eq(used_idx(), 0);
	cr_assert_not(virtq_should_interrupt(&vq));
	cr_assert_not(virtq_prepare_wait(&vq));
	/* The driver resets and sets the queue up again. */
	virtq_reset(&vq);
	cr_assert_not(vq.broken);
	cr_assert_not(vq.ready);
	cr_assert_eq(vq.why_broken[0], '\0');
	enable(QSIZE, true, false);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	cr_assert_eq(c.head, 0);
}

/* ---- virtq_enable ---- */

Test(virtq, enable_bad_sizes, .init = setup, .fini = teardown)
{
	const uint16_t bad[] = { 0, 3, 6, 100, 32767, 32769, 49152, 65535 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = '\0';
		cr_assert_eq(virtq_enable(&vq, &t.mem, bad[i], DESC, AVAIL, USED, false, false, &err), -1,
			     "size %u", bad[i]);
		cr_assert(strstr(err.msg, "power of two"), "%s", err.msg);
		cr_assert_not(vq.ready);
	}
	const uint16_t good[] = { 1, 2, 4, 256 };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(virtq_enable(&vq, &t.mem, good[i], DESC, IND, IND + 0x1000, true, false, &err), 0,
			     "size %u: %s", good[i], err.msg);
}

Test(virtq, enable_max_size, .init = setup, .fini = teardown)
{
	/* 512 KiB of descriptors, 64 KiB + 6 of avail ring, 256 KiB + 6 of used ring. */
	cr_assert_eq(virtq_enable(&vq, &t.mem, 32768, 0, 0x80000, 0x98000, true, true, &err), 0, "%s", err.msg);
	cr_assert_eq(vq.size, 32768);
	cr_assert_eq(virtq_enable(&vq, &t.mem, 32768, 0, 0x80000, RAM - 0x40000, true, true, &err), -1);
	cr_assert(strstr(err.msg, "used ring"), "%s", err.msg);
}

Test(virtq, enable_misaligned, .init = setup, .fini = teardown)
{
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC + 8, AVAIL, USED, false, false, &err), -1);
	cr_assert(strstr(err.msg, "descriptor table at 0x1008 is not 16-byte aligned"), "%s", err.msg);
	cr_assert_not(vq.ready);
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC, AVAIL + 1, USED, false, false, &err), -1);
	cr_assert(strstr(err.msg, "available ring at 0x2001 is not 2-byte aligned"), "%s", err.msg);
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC, AVAIL, USED + 2, false, false, &err), -1);
	cr_assert(strstr(err.msg, "used ring at 0x3002 is not 4-byte aligned"), "%s", err.msg);
	cr_assert_not(vq.ready);
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC + 16, AVAIL + 2, USED + 4, false, false, &err), 0,
		     "%s", err.msg);
}

Test(virtq, enable_rings_outside_ram, .init = setup, .fini = teardown)
{
	/* Each ring ends exactly at the end of RAM: fine; one byte further: refused. */
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, RAM - 16 * QSIZE, AVAIL, USED, false, false, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, RAM - 16 * QSIZE + 16, AVAIL, USED, false, false, &err), -1);
	cr_assert(strstr(err.msg, "descriptor table at 0xfff90 (128 bytes for 8 entries)"), "%s", err.msg);
	cr_assert_not(vq.ready);

	uint64_t avail_end = RAM - (4 + 2 * QSIZE);
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC, avail_end, USED, false, false, &err), 0, "%s", err.msg);
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC, avail_end, USED, true, false, &err), -1,
		     "used_event lies past the end");
	cr_assert(strstr(err.msg, "available ring"), "%s", err.msg);

	uint64_t used_end = RAM - (4 + 8 * QSIZE) - 4; /* 4-aligned, 4 bytes to spare */
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC, AVAIL, used_end, true, false, &err), 0, "%s", err.msg);
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC, AVAIL, used_end + 4, false, false, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC, AVAIL, used_end + 4, true, false, &err), -1,
		     "avail_event lies past the end");
	cr_assert(strstr(err.msg, "used ring"), "%s", err.msg);

	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, UINT64_MAX - 15, AVAIL, USED, false, false, &err), -1,
		     "address wraps");
	cr_assert_eq(virtq_enable(&vq, &t.mem, QSIZE, DESC, AVAIL, 2 * GiB, false, false, &err), -1);
	cr_assert_not(vq.ready);
}

Test(virtq, two_regions, .init = setup, .fini = teardown)
{
	struct test_mem t2;
	test_mem_init(&t2, 2 * MiB, 1 * MiB, 4 * GiB);
	memset(t2.buf, 0, t2.size);
	const uint64_t hb = 4 * GiB;
	/* A descriptor table straddling the end of low RAM is refused. */
	cr_assert_eq(virtq_enable(&vq, &t2.mem, QSIZE, 2 * MiB - 64, hb, hb + 0x1000, false, false, &err), -1);
	cr_assert(strstr(err.msg, "descriptor table"), "%s", err.msg);
	/* Rings in high RAM, buffers in both regions, then one in the hole. */
	cr_assert_eq(virtq_enable(&vq, &t2.mem, QSIZE, hb, hb + 0x1000, hb + 0x2000, false, false, &err), 0, "%s",
		     err.msg);
	uint8_t *d = guest_mem_ptr(&t2.mem, hb, 16 * QSIZE);
	uint8_t *a = guest_mem_ptr(&t2.mem, hb + 0x1000, 8);
	put64(d, 0x1000);
	put32(d + 8, 8);
	put16(d + 12, VIRTQ_DESC_F_NEXT);
	put16(d + 14, 1);
	put64(d + 16, hb + 0x10000);
	put32(d + 24, 16);
	put16(d + 28, VIRTQ_DESC_F_WRITE);
	put64(d + 32, 2 * MiB - 8);
	put32(d + 40, 16); /* low RAM's last 8 bytes and 8 bytes of hole */
	put16(a + 4, 0);
	put16(a + 6, 2);
	put16(a + 2, 2);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_CHAIN, "%s", vq.why_broken);
	cr_assert_eq(c.iov[0].iov_base, t2.buf + 0x1000);
	cr_assert_eq(c.iov[1].iov_base, t2.buf + 2 * MiB + 0x10000);
	cr_assert_eq(virtq_pop_chain(&vq, &c), VIRTQ_POP_BROKEN);
	cr_assert(strstr(vq.why_broken, "0x1ffff8"), "%s", vq.why_broken);
	test_mem_fini(&t2);
}
