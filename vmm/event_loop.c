#include "vmm/event_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int event_loop_init(struct event_loop *loop, struct error *err)
{
	memset(loop, 0, sizeof(*loop));
	for (int i = 0; i < EVENT_LOOP_MAX; i++)
		loop->handlers[i].fd = -1;
	loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epoll_fd < 0)
		return error_set(err, "epoll_create1 failed: %s", strerror(errno));
	return 0;
}

void event_loop_close(struct event_loop *loop)
{
	if (loop->epoll_fd >= 0)
		close(loop->epoll_fd);
	loop->epoll_fd = -1;
}

int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *ctx,
		   struct error *err)
{
	for (int i = 0; i < EVENT_LOOP_MAX; i++) {
		struct event_handler *h = &loop->handlers[i];
		if (h->fd != -1)
			continue;
		struct epoll_event ev = { .events = events, .data.ptr = h };
		if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return error_set(err, "cannot watch fd %d in the event loop: %s", fd, strerror(errno));
		*h = (struct event_handler){ fd, fn, ctx };
		return 0;
	}
	return error_set(err, "the event loop is full (%d handlers)", EVENT_LOOP_MAX);
}

int event_loop_modify(struct event_loop *loop, int fd, uint32_t events)
{
	for (int i = 0; i < EVENT_LOOP_MAX; i++) {
		struct event_handler *h = &loop->handlers[i];
		if (h->fd == fd) {
			struct epoll_event ev = { .events = events, .data.ptr = h };
			return epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, fd, &ev);
		}
	}
	return -1;
}

void event_loop_remove(struct event_loop *loop, int fd)
{
	for (int i = 0; i < EVENT_LOOP_MAX; i++) {
		if (loop->handlers[i].fd == fd) {
			epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
			loop->handlers[i].fd = -1;
		}
	}
}

int event_loop_run_once(struct event_loop *loop, int timeout_ms, struct error *err)
{
	struct epoll_event evs[16];
	int n = epoll_wait(loop->epoll_fd, evs, 16, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return error_set(err, "epoll_wait failed: %s", strerror(errno));
	}
	for (int i = 0; i < n && !loop->stop; i++) {
		struct event_handler *h = evs[i].data.ptr;
		if (h->fd != -1)
			h->fn(h->ctx, evs[i].events);
	}
	return n;
}

int event_loop_run(struct event_loop *loop, struct error *err)
{
	while (!loop->stop)
		if (event_loop_run_once(loop, -1, err) < 0)
			return -1;
	return 0;
}
