/*
 * An io_uring whose completions wake the event loop: every device that does I/O (virtio-blk, -net,
 * -vsock) owns one. The ring's eventfd is watched by the loop, which then calls the device's
 * completion handler; the handler reaps CQEs itself.
 */
#ifndef KVMBOX_IO_RING_H
#define KVMBOX_IO_RING_H

#include <liburing.h>
#include <stdbool.h>

#include "vmm/error.h"
#include "vmm/event_loop.h"

struct io_ring {
	struct io_uring ring;
	bool ready;
	int eventfd;
	struct event_loop *loop;
};

/* The state before io_ring_init: io_ring_exit on it does nothing. */
void io_ring_clear(struct io_ring *r);

/* A ring of `entries` SQEs (cq_entries CQEs, 0 for the default of twice that) whose completions call
 * on_completion(ctx) from the event loop. who names the device in messages ("--disk img.raw"). */
int io_ring_init(struct io_ring *r, struct event_loop *loop, unsigned entries, unsigned cq_entries,
		 event_fn on_completion, void *ctx, const char *who, struct error *err);

/* In the completion handler: consume the wake-up. */
void io_ring_ack(struct io_ring *r);

/* Run the completion handler again on the next loop turn (work is left over). */
void io_ring_wake(struct io_ring *r);

/* Stops watching and frees the ring. It does not wait for I/O in flight: drain before. */
void io_ring_exit(struct io_ring *r);

#endif
