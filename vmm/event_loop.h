/* The monitor's one event loop (epoll): console input, signals, the timeout, device completions. */
#ifndef KVMBOX_EVENT_LOOP_H
#define KVMBOX_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/error.h"

typedef void (*event_fn)(void *ctx, uint32_t events);

struct event_handler {
	int fd;
	event_fn fn;
	void *ctx;
};

#define EVENT_LOOP_MAX 128 /* every virtio queue has an ioeventfd here, plus each device's completions */

struct event_loop {
	int epoll_fd;
	struct event_handler handlers[EVENT_LOOP_MAX];
	bool stop;
};

int event_loop_init(struct event_loop *loop, struct error *err);
void event_loop_close(struct event_loop *loop);
int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *ctx,
		   struct error *err);
/* Changes the events watched on fd (0 pauses it without forgetting it). */
int event_loop_modify(struct event_loop *loop, int fd, uint32_t events);
void event_loop_remove(struct event_loop *loop, int fd);
/* Handles what is ready within timeout_ms (-1: wait), once; returns the number of events or -1. */
int event_loop_run_once(struct event_loop *loop, int timeout_ms, struct error *err);
/* Runs until a handler sets loop->stop. */
int event_loop_run(struct event_loop *loop, struct error *err);

#endif
