/*
 * libFuzzer target: a split virtqueue as a hostile guest lays it out. The input is a 16-byte header
 * (queue size, features, ring addresses, indices) followed by the guest RAM image: 48 KiB at 0, a hole,
 * 16 KiB at 0x10000. The target enables the queue, pops chains until empty or broken, touches every
 * byte of every segment it got (ASan then catches any pointer outside RAM), checks virtq.h's promises,
 * returns the chains and asks about interrupts and notifications. Any report or abort is a bug.
 *
 * Header: [0] log2(size) % 9, or from 0xf0 a raw size 0..15; [1] flags: 1 EVENT_IDX, 2 INDIRECT_DESC, 4 write avail->idx from [13..14],
 * 8 keep unaligned ring addresses; [2..4] [5..7] [8..10] desc/avail/used gpa (24 bits each);
 * [11..12] starting last_avail_idx (and used_idx); [15] which pops are followed by an interrupt check.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtq.h"

#define LOW (48u << 10)
#define HIGH (16u << 10)
#define HIGH_BASE 0x10000u
#define RAM (LOW + HIGH)
#define HDR 16
#define MAX_POPS 64
#define TOUCH_BUDGET (1u << 20) /* bytes touched one by one per input; past it, first and last only */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what)
{
	fprintf(stderr, "fuzz_virtq: broken promise: %s\n", what);
	abort();
}

static uint32_t get24(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16; }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* What virtq.h promises about a popped chain, then every byte of it read (and written if writable). */
static void check_chain(const struct virtq *vq, const struct virtq_chain *c, const uint8_t *ram,
			uint64_t *budget)
{
	if (c->head >= vq->size)
		broken("head >= size");
	if (c->nr_out + c->nr_in > VIRTQ_CHAIN_MAX || c->nr_out + c->nr_in == 0)
		broken("segment count");
	uint64_t out = 0, in = 0;
	volatile uint8_t sink = 0;
	for (unsigned k = 0; k < c->nr_out + c->nr_in; k++) {
		uint8_t *p = c->iov[k].iov_base;
		size_t len = c->iov[k].iov_len;
		/* len 0 still points at a RAM byte. */
		if (p < ram || p >= ram + RAM || len > (size_t)(ram + RAM - p))
			broken("segment outside guest RAM");
		if ((uintptr_t)p < (uintptr_t)ram + LOW && len > (uintptr_t)ram + LOW - (uintptr_t)p)
			broken("segment spans the hole");
		bool writable = k >= c->nr_out;
		*(writable ? &in : &out) += len;
		if (len == 0)
			continue;
		if (*budget >= len) {
			*budget -= len;
			for (size_t i = 0; i < len; i++) {
				sink ^= p[i];
				if (writable)
					p[i] = (uint8_t)(i ^ k);
			}
		} else {
			sink ^= p[0] ^ p[len - 1];
			if (writable)
				p[0] = p[len - 1] = 0x5a;
		}
	}
	(void)sink;
	if (out != c->out_bytes || in != c->in_bytes)
		broken("byte counts");
	if (out > UINT32_MAX || in > UINT32_MAX)
		broken("more than 4 GiB");
	uint8_t buf[64];
	uint64_t off = out > 40 ? out - 40 : 0;
	if (virtq_chain_read(c, off, buf, sizeof(buf)) != (out - off < sizeof(buf) ? out - off : sizeof(buf)))
		broken("chain_read length");
	off = in > 20 ? in - 20 : 0;
	if (virtq_chain_write(c, off, buf, sizeof(buf)) != (in - off < sizeof(buf) ? in - off : sizeof(buf)))
		broken("chain_write length");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	static struct guest_mem mem;
	static struct virtq_chain chain;
	if (!ram) {
		ram = malloc(RAM); /* heap: ASan's redzones sit right past the last RAM byte */
		if (!ram)
			abort();
		guest_mem_init_from(&mem, ram, RAM, LOW, HIGH_BASE);
	}
	if (size < HDR)
		return 0;
	memset(ram, 0, RAM);
	memcpy(ram, data + HDR, size - HDR < RAM ? size - HDR : RAM);

	const uint8_t *h = data;
	uint16_t qsize = h[0] >= 0xf0 ? h[0] - 0xf0 : (uint16_t)(1u << (h[0] % 9));
	bool event_idx = h[1] & 1, indirect = h[1] & 2;
	uint64_t desc = get24(h + 2), avail = get24(h + 5), used = get24(h + 8);
	if (!(h[1] & 8)) {
		desc &= ~15ull;
		avail &= ~1ull;
		used &= ~3ull;
	}
	struct virtq vq;
	struct error err;
	err.msg[0] = '\0';
	if (virtq_enable(&vq, &mem, qsize, desc, avail, used, event_idx, indirect, &err)) {
		if (!err.msg[0] || vq.ready)
			broken("enable failed without a message, or left the queue ready");
		if (virtq_pop_chain(&vq, &chain) != VIRTQ_POP_EMPTY)
			broken("a queue that is not ready gave something");
		return 0;
	}
	vq.last_avail_idx = vq.used_idx = get16(h + 11);
	if (h[1] & 4)
		__atomic_store_n(&vq.avail[1], get16(h + 13), __ATOMIC_RELEASE);

	uint64_t budget = TOUCH_BUDGET;
	for (unsigned n = 0; n < MAX_POPS; n++) {
		uint16_t last = vq.last_avail_idx;
		enum virtq_pop r = virtq_pop_chain(&vq, &chain);
		if (r == VIRTQ_POP_EMPTY) {
			if (vq.broken || vq.last_avail_idx != last)
				broken("empty pop changed the queue");
			if (!virtq_prepare_wait(&vq))
				break;
			continue; /* "more arrived": only possible if the ring says so, pop again */
		}
		if (r == VIRTQ_POP_BROKEN) {
			if (!vq.broken || !vq.why_broken[0] || vq.last_avail_idx != last)
				broken("broken pop without the broken state or its reason, or consumed");
			if (virtq_pop_chain(&vq, &chain) != VIRTQ_POP_BROKEN)
				broken("a broken queue gave a chain");
			break;
		}
		if (r != VIRTQ_POP_CHAIN || vq.broken || vq.last_avail_idx != (uint16_t)(last + 1))
			broken("pop result");
		check_chain(&vq, &chain, ram, &budget);
		virtq_push_used(&vq, chain.head, (uint32_t)chain.in_bytes);
		if (h[15] & (1u << (n % 8)))
			(void)virtq_should_interrupt(&vq);
	}
	(void)virtq_should_interrupt(&vq);
	(void)virtq_prepare_wait(&vq);
	virtq_reset(&vq);
	return 0;
}
