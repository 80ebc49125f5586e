#include "vmm/io_ring.h"

#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

void io_ring_clear(struct io_ring *r)
{
	memset(r, 0, sizeof(*r));
	r->eventfd = -1;
}

int io_ring_init(struct io_ring *r, struct event_loop *loop, unsigned entries, unsigned cq_entries,
		 event_fn on_completion, void *ctx, const char *who, struct error *err)
{
	io_ring_clear(r);
	struct io_uring_params p = { .flags = cq_entries ? IORING_SETUP_CQSIZE : 0, .cq_entries = cq_entries };
	int e = io_uring_queue_init_params(entries, &r->ring, &p);
	if (e < 0)
		return error_set(err, "%s: io_uring set-up failed: %s (is io_uring disabled by sysctl "
				 "kernel.io_uring_disabled?)", who, strerror(-e));
	r->ready = true;
	r->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->eventfd < 0 || io_uring_register_eventfd(&r->ring, r->eventfd) < 0)
		return error_set(err, "%s: cannot attach an eventfd to io_uring", who);
	if (event_loop_add(loop, r->eventfd, EPOLLIN, on_completion, ctx, err))
		return -1;
	r->loop = loop;
	return 0;
}

void io_ring_ack(struct io_ring *r)
{
	uint64_t n;
	ssize_t rd = read(r->eventfd, &n, sizeof(n));
	(void)rd;
}

void io_ring_wake(struct io_ring *r)
{
	uint64_t one = 1;
	ssize_t wr = write(r->eventfd, &one, sizeof(one));
	(void)wr;
}

void io_ring_exit(struct io_ring *r)
{
	if (r->loop)
		event_loop_remove(r->loop, r->eventfd);
	if (r->eventfd >= 0)
		close(r->eventfd);
	if (r->ready)
		io_uring_queue_exit(&r->ring);
	io_ring_clear(r);
}
