/*
 * The split virtqueue (virtio 1.x, section 2.7), one implementation for every device.
 *
 * Everything here is written by the guest and trusted in nothing: each descriptor is copied once and
 * checked (address and length through guest_mem_ptr, index < queue size, no loops, no more descriptors
 * than the queue holds, device-readable before device-writable, indirect tables only when negotiated and
 * never nested). A structural error marks the queue broken: the transport then sets DEVICE_NEEDS_RESET
 * and the device stops touching the queue until the driver resets it. Nothing is read or written
 * outside guest RAM, whatever the guest does.
 *
 * A queue is used from one thread at a time (the event loop); the transport's register writes that set
 * it up take the device's lock.
 */
#ifndef KVMBOX_VIRTQ_H
#define KVMBOX_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/error.h"
#include "vmm/guest_mem.h"

#define VIRTQ_MAX_SIZE 32768u   /* the spec's limit for a split queue */
#define VIRTQ_CHAIN_MAX 256u    /* longest chain accepted: more than any device offers (virtio-blk seg_max 126 + 2) */

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Feature bits the queue implements (the device offers them through the transport). */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One available chain, translated: device-readable segments first, then device-writable ones. */
struct virtq_chain {
	uint16_t head;          /* what virtq_push_used() gives back */
	unsigned nr_out;        /* device-readable segments: iov[0 .. nr_out) */
	unsigned nr_in;         /* device-writable segments: iov[nr_out .. nr_out + nr_in) */
	uint64_t out_bytes;
	uint64_t in_bytes;
	struct iovec iov[VIRTQ_CHAIN_MAX];
};

struct virtq {
	const struct guest_mem *mem;
	uint16_t size;
	bool event_idx;         /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;          /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	bool ready;
	bool broken;            /* the driver broke the queue's rules: needs a reset */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* Host views of the three rings, checked once by virtq_enable(). */
	volatile struct virtq_desc *desc;
	volatile uint16_t *avail;   /* flags, idx, ring[size], used_event */
	volatile uint16_t *used;    /* flags, idx, then {u32 id, u32 len}[size], avail_event */
	uint16_t last_avail_idx;    /* next available entry the device will take */
	uint16_t used_idx;          /* the device's copy of used->idx */
	uint16_t signalled_used;    /* used_idx when the driver was last interrupted */
	bool signalled_used_valid;
	char why_broken[160];
};

/* Checks the ring addresses (alignment, size, inside RAM) and makes the queue live. Idempotent state
 * (indices) starts at zero. Returns -1 with a message when the driver's addresses are bad. */
int virtq_enable(struct virtq *vq, const struct guest_mem *mem, uint16_t size, uint64_t desc_gpa,
		 uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect, struct error *err);

/* Back to the reset state (not ready, indices zero). */
void virtq_reset(struct virtq *vq);

enum virtq_pop {
	VIRTQ_POP_EMPTY = 0,    /* nothing available */
	VIRTQ_POP_CHAIN = 1,    /* *chain holds the next request */
	VIRTQ_POP_BROKEN = -1,  /* malformed: vq->broken is set, vq->why_broken says why */
};

/* Takes the next available chain. */
enum virtq_pop virtq_pop_chain(struct virtq *vq, struct virtq_chain *chain);

/* Returns a chain to the driver with the number of bytes the device wrote into it. */
void virtq_push_used(struct virtq *vq, uint16_t head, uint32_t written);

/* After a batch of virtq_push_used(): whether the driver wants an interrupt now (EVENT_IDX's
 * used_event, or the NO_INTERRUPT flag without it). Updates the bookkeeping: call once per batch. */
bool virtq_should_interrupt(struct virtq *vq);

/* Before going idle: asks the driver to notify again (EVENT_IDX: avail_event = last_avail_idx) and
 * returns true if more chains became available meanwhile (then keep popping). */
bool virtq_prepare_wait(struct virtq *vq);

/* Copies between a chain's segments and a flat buffer: from the readable part at offset, into the
 * writable part at offset. Return the number of bytes copied (short at the end of the segments). */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t offset, void *dst, uint64_t len);
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t offset, const void *src, uint64_t len);

#endif
