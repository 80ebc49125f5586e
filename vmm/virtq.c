/*
 * Split virtqueue (virtio 1.x, 2.7). The guest owns the rings and may rewrite them at any moment from
 * another vCPU, so every guest word is read once into a local and only the local is checked and used.
 */
#include "vmm/virtq.h"
#include "vmm/iov.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Ring extents in bytes (2.7: avail and used carry one extra u16 with EVENT_IDX). */
static uint64_t desc_bytes(uint16_t size) { return 16ull * size; }
static uint64_t avail_bytes(uint16_t size, bool ev) { return 4 + 2ull * size + (ev ? 2 : 0); }
static uint64_t used_bytes(uint16_t size, bool ev) { return 4 + 8ull * size + (ev ? 2 : 0); }

void virtq_reset(struct virtq *vq)
{
	memset(vq, 0, sizeof(*vq));
}

static int check_ring(const struct guest_mem *mem, const char *what, uint64_t gpa, uint64_t align,
		      uint64_t len, uint16_t size, volatile void **host, struct error *err)
{
	if (gpa & (align - 1))
		return error_set(err, "virtqueue %s at 0x%llx is not %llu-byte aligned", what,
				 (unsigned long long)gpa, (unsigned long long)align);
	void *p = guest_mem_ptr(mem, gpa, len);
	if (!p)
		return error_set(err, "virtqueue %s at 0x%llx (%llu bytes for %u entries) is not inside guest RAM",
				 what, (unsigned long long)gpa, (unsigned long long)len, size);
	*host = p;
	return 0;
}

int virtq_enable(struct virtq *vq, const struct guest_mem *mem, uint16_t size, uint64_t desc_gpa,
		 uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect, struct error *err)
{
	virtq_reset(vq);
	if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)))
		return error_set(err, "virtqueue size %u is not a power of two between 1 and %u", size,
				 VIRTQ_MAX_SIZE);
	/* size <= 32768 keeps every length below 2^19: only gpa + len can wrap, and guest_mem_ptr checks that. */
	volatile void *d, *a, *u;
	if (check_ring(mem, "descriptor table", desc_gpa, 16, desc_bytes(size), size, &d, err) ||
	    check_ring(mem, "available ring", avail_gpa, 2, avail_bytes(size, event_idx), size, &a, err) ||
	    check_ring(mem, "used ring", used_gpa, 4, used_bytes(size, event_idx), size, &u, err))
		return -1;
	vq->mem = mem;
	vq->size = size;
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	vq->desc_gpa = desc_gpa;
	vq->avail_gpa = avail_gpa;
	vq->used_gpa = used_gpa;
	vq->desc = d;
	vq->avail = a;
	vq->used = u;
	vq->ready = true;
	return 0;
}

static enum virtq_pop broken(struct virtq *vq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static enum virtq_pop broken(struct virtq *vq, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(vq->why_broken, sizeof(vq->why_broken), fmt, ap);
	va_end(ap);
	vq->broken = true;
	return VIRTQ_POP_BROKEN;
}

/*
 * One descriptor, read once. memcpy rather than a typed load because an indirect table need not be
 * aligned (the spec sets no alignment for it); the compiler barrier then forbids the compiler to
 * replace the local copy by a second read of guest memory later on (a double fetch).
 */
static struct virtq_desc read_desc(const volatile void *table, uint32_t i)
{
	struct virtq_desc d;
	memcpy(&d, (const uint8_t *)(uintptr_t)table + 16ull * i, sizeof(d));
	__asm__ __volatile__("" ::: "memory");
	return d;
}

enum virtq_pop virtq_pop_chain(struct virtq *vq, struct virtq_chain *chain)
{
	if (vq->broken)
		return VIRTQ_POP_BROKEN;
	if (!vq->ready)
		return VIRTQ_POP_EMPTY;
	/* Acquire: the ring entries and descriptors the driver wrote before publishing idx are visible. */
	uint16_t avail_idx = __atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE);
	uint16_t pending = (uint16_t)(avail_idx - vq->last_avail_idx);
	if (pending == 0)
		return VIRTQ_POP_EMPTY;
	if (pending > vq->size)
		return broken(vq, "available index %u is %u entries ahead of %u, more than the queue size %u",
			      avail_idx, pending, vq->last_avail_idx, vq->size);
	uint16_t head = vq->avail[2 + (vq->last_avail_idx & (vq->size - 1))];
	if (head >= vq->size)
		return broken(vq, "available ring entry %u: head %u >= queue size %u", vq->last_avail_idx, head,
			      vq->size);

	const volatile void *table = vq->desc;
	uint32_t table_len = vq->size, seen = 0, i = head;
	bool in_indirect = false;
	unsigned nseg = 0, nr_in = 0;
	uint64_t out_bytes = 0, in_bytes = 0;
	const char *where = "descriptor";
	for (;;) {
		struct virtq_desc d = read_desc(table, i);
		if (++seen > table_len)
			return broken(vq, "chain from head %u loops (more than %u descriptors)", head, table_len);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->indirect)
				return broken(vq, "descriptor %u: INDIRECT without VIRTIO_RING_F_INDIRECT_DESC", i);
			if (in_indirect)
				return broken(vq, "indirect descriptor %u inside an indirect table (nested)", i);
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return broken(vq, "descriptor %u: INDIRECT together with NEXT", i);
			if (d.len == 0 || d.len % sizeof(struct virtq_desc))
				return broken(vq, "descriptor %u: indirect table length %u is not a non-zero multiple of 16",
					      i, d.len);
			table = guest_mem_ptr(vq->mem, d.addr, d.len);
			if (!table)
				return broken(vq, "descriptor %u: indirect table at 0x%llx (%u bytes) is not in guest RAM",
					      i, (unsigned long long)d.addr, d.len);
			/* The WRITE flag of the descriptor that points at the table means nothing (2.7.5.3.2). */
			table_len = d.len / sizeof(struct virtq_desc);
			in_indirect = true;
			where = "indirect descriptor";
			seen = 0;
			i = 0;
			continue;
		}
		/* len 0 is allowed; guest_mem_ptr then still wants addr itself in RAM, so iov_base is valid. */
		void *p = guest_mem_ptr(vq->mem, d.addr, d.len);
		if (!p)
			return broken(vq, "%s %u: buffer at 0x%llx (%u bytes) is not in guest RAM", where, i,
				      (unsigned long long)d.addr, d.len);
		bool writable = d.flags & VIRTQ_DESC_F_WRITE;
		if (!writable && nr_in)
			return broken(vq, "%s %u: device-readable after a device-writable descriptor", where, i);
		if (nseg == VIRTQ_CHAIN_MAX)
			return broken(vq, "chain from head %u has more than %u buffers", head, VIRTQ_CHAIN_MAX);
		chain->iov[nseg].iov_base = p;
		chain->iov[nseg].iov_len = d.len;
		nseg++;
		/* A device reports what it wrote in a u32 (used.len): a chain must stay below 4 GiB each way. */
		if (writable) {
			nr_in++;
			in_bytes += d.len;
		} else {
			out_bytes += d.len;
		}
		if (in_bytes > UINT32_MAX || out_bytes > UINT32_MAX)
			return broken(vq, "chain from head %u holds more than 4 GiB of %s buffers", head,
				      writable ? "writable" : "readable");
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= table_len)
			return broken(vq, "%s %u: next %u >= %s %u", where, i, d.next,
				      in_indirect ? "table length" : "queue size", table_len);
		i = d.next;
	}
	chain->head = head;
	chain->nr_out = nseg - nr_in;
	chain->nr_in = nr_in;
	chain->out_bytes = out_bytes;
	chain->in_bytes = in_bytes;
	vq->last_avail_idx++;
	return VIRTQ_POP_CHAIN;
}

void virtq_push_used(struct virtq *vq, uint16_t head, uint32_t written)
{
	/* A broken queue is left alone until the driver resets it. */
	if (!vq->ready || vq->broken)
		return;
	volatile uint32_t *elem = (volatile uint32_t *)(vq->used + 2) + 2 * (vq->used_idx & (vq->size - 1));
	elem[0] = head;
	elem[1] = written;
	vq->used_idx++;
	/* Release: the element is visible before the index that publishes it. */
	__atomic_store_n(&vq->used[1], vq->used_idx, __ATOMIC_RELEASE);
}

/* 2.7.10: interrupt when used_idx moved past used_event since the last interrupt (old, new]. */
static bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_interrupt(struct virtq *vq)
{
	if (!vq->ready || vq->broken)
		return false;
	/* Full fence: our used->idx store must be visible before we read the driver's suppression word,
	 * or both sides can miss each other (the driver re-arms while we read its old value). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(vq->avail[0] & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t old = vq->signalled_used;
	bool valid = vq->signalled_used_valid;
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;
	uint16_t used_event = vq->avail[2 + vq->size];
	return need_event(used_event, vq->used_idx, old);
}

bool virtq_prepare_wait(struct virtq *vq)
{
	if (!vq->ready || vq->broken)
		return false;
	if (vq->event_idx) {
		/* avail_event lives at used->ring[size], i.e. right after size 8-byte elements. */
		vq->used[2 + 4 * (uint32_t)vq->size] = vq->last_avail_idx;
		/* Full fence: the store must be visible before we re-read avail->idx, or an entry added in
		 * between would be neither seen now nor notified later. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	return __atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE) != vq->last_avail_idx;
}

/* Copies between the flat buffer and segments [first, first + n) from a logical offset. */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t offset, void *dst, uint64_t len)
{
	return iov_copy_out(c->iov, c->nr_out, offset, dst, len);
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t offset, const void *src, uint64_t len)
{
	return iov_copy_in(c->iov + c->nr_out, c->nr_in, offset, src, len);
}
