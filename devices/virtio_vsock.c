/*
 * virtio-vsock (device id 19), one device for --vsock cid=N,uds=PATH, Firecracker's "hybrid vsock":
 * the guest's AF_VSOCK stream sockets meet host programs on Unix sockets.
 *   host -> guest: a program connects to PATH and writes "CONNECT <port>\n"; the guest gets a REQUEST
 *                  for that port from a fresh host port, and once it answers the program reads
 *                  "OK <host port>\n", then the bytes flow. A refusal (RST) closes the program's socket.
 *   guest -> host: a guest connection to host CID 2 port P becomes a connection to PATH_P.
 *
 * Connections, packets and credit live in devices/vsock_conn.c (pure, unit-tested and fuzzed). This file
 * does the I/O: every socket operation (accept, connect, recv, send, shutdown, cancel) goes through one
 * io_uring whose completion eventfd sits in the event loop; the virtqueues are served from the queue
 * notifications (tx: the guest's packets; rx: the guest posted buffers for our packets). All of it runs
 * with the transport lock held.
 */
#include "devices/vsock_conn.h"
#include "vmm/io_ring.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vm.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define VIRTIO_ID_VSOCK 19
#define VSOCK_QUEUE_MAX 256
#define VSOCK_URING_ENTRIES 512
#define VSOCK_URING_CQ_ENTRIES 4096
#define VSOCK_MAX_PENDING 64    /* accepted host sockets that have not sent their CONNECT line yet */
#define VSOCK_LINE_MAX 64       /* the CONNECT line, and whatever arrives with it */
#define VSOCK_PORT_SUFFIX 11    /* "_4294967295" */

enum { Q_RX = 0, Q_TX = 1, Q_EVENT = 2 };

enum op_kind { OP_ACCEPT = 1, OP_LINE, OP_RECV, OP_SEND, OP_CONNECT, OP_SHUT };

struct vs_sock;

struct vs_op {
	enum op_kind kind;
	bool busy;
	struct vs_sock *s;
};

/* One host-side Unix socket: accepted (host-initiated) or connecting to PATH_P (guest-initiated). */
struct vs_sock {
	struct vsock_dev *d;
	struct vs_sock *prev, *next;
	int fd;
	struct vsock_conn *c;   /* NULL while it is still sending its CONNECT line */
	struct vs_op line, recv, send, connect, shut;
	unsigned inflight;
	bool closing, cancelled, shut_wr_done;
	char buf[VSOCK_LINE_MAX];
	unsigned buf_len;
	struct iovec riov[2], siov[3];
	struct msghdr rmsg, smsg;
	struct sockaddr_un addr;
};

struct vsock_dev {
	struct vm *vm;
	struct virtio_mmio *t;
	struct virtio_dev_ops ops;
	uint64_t cid;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	bool path_created;
	dev_t path_dev;
	ino_t path_ino;
	struct io_ring io;
	unsigned inflight;      /* SQEs whose completion we still expect (cancels excluded) */
	unsigned queued;        /* SQEs not submitted yet */
	struct vs_op accept_op;
	bool accept_paused;     /* out of file descriptors: accept again once a socket closes */
	struct vs_sock socks;   /* list head */
	unsigned nr_pending;
	struct vsock_mux mux;
	struct virtq_chain chain;
};

static void put_le64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void vsock_config_read(void *dev, uint8_t *cfg)
{
	struct vsock_dev *d = dev;
	put_le64(cfg, d->cid);
}

static struct io_uring_sqe *get_sqe(struct vsock_dev *d)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&d->io.ring);
	if (!sqe) {
		io_uring_submit(&d->io.ring);
		d->queued = 0;
		sqe = io_uring_get_sqe(&d->io.ring);
	}
	if (sqe)
		d->queued++;
	else
		log_warn(&d->vm->log, "virtio-vsock: io_uring submission queue full");
	return sqe;
}

static void submit(struct vsock_dev *d)
{
	if (d->queued) {
		io_uring_submit(&d->io.ring);
		d->queued = 0;
	}
}

/* Starts op (on its socket, or the listener when op->s is NULL): the SQE to fill, or NULL if none was free. */
static struct io_uring_sqe *op_start(struct vsock_dev *d, struct vs_op *op)
{
	struct io_uring_sqe *sqe = get_sqe(d);
	if (!sqe)
		return NULL;
	io_uring_sqe_set_data(sqe, op);
	op->busy = true;
	d->inflight++;
	if (op->s)
		op->s->inflight++;
	return sqe;
}

static void arm_accept(struct vsock_dev *d)
{
	if (d->accept_op.busy || d->listen_fd < 0)
		return;
	struct io_uring_sqe *sqe = op_start(d, &d->accept_op);
	if (sqe)
		io_uring_prep_accept(sqe, d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
}

static struct vs_sock *sock_new(struct vsock_dev *d, int fd)
{
	struct vs_sock *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->d = d;
	s->fd = fd;
	struct vs_op *ops[] = { &s->line, &s->recv, &s->send, &s->connect, &s->shut };
	enum op_kind kinds[] = { OP_LINE, OP_RECV, OP_SEND, OP_CONNECT, OP_SHUT };
	for (unsigned i = 0; i < 5; i++)
		*ops[i] = (struct vs_op){ .kind = kinds[i], .s = s };
	s->next = d->socks.next;
	s->prev = &d->socks;
	d->socks.next->prev = s;
	d->socks.next = s;
	return s;
}

/* Frees a closing socket once nothing of it is in flight, with its connection. */
static void sock_maybe_free(struct vs_sock *s)
{
	struct vsock_dev *d = s->d;
	if (!s->closing || s->inflight)
		return;
	if (s->fd >= 0)
		close(s->fd);
	if (s->c)
		vsock_mux_free_conn(&d->mux, s->c);
	s->prev->next = s->next;
	s->next->prev = s->prev;
	free(s);
	if (d->accept_paused) {
		d->accept_paused = false;
		arm_accept(d);
	}
}

static void sock_close(struct vs_sock *s)
{
	struct vsock_dev *d = s->d;
	if (!s->closing) {
		s->closing = true;
		if (!s->c)
			d->nr_pending--;
	}
	if (s->inflight && !s->cancelled) {
		struct io_uring_sqe *sqe = get_sqe(d);
		if (sqe) {
			io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data(sqe, NULL);
			s->cancelled = true;
		} else {
			shutdown(s->fd, SHUT_RDWR); /* completes what is pending all the same */
		}
	}
	sock_maybe_free(s);
}

static void line_recv(struct vs_sock *s)
{
	struct io_uring_sqe *sqe = op_start(s->d, &s->line);
	if (sqe)
		io_uring_prep_recv(sqe, s->fd, s->buf + s->buf_len, VSOCK_LINE_MAX - s->buf_len, 0);
	else
		sock_close(s);
}

/* A guest connection to host port c->local_port: connect to PATH_<port>. */
static void start_connect(struct vsock_dev *d, struct vsock_conn *c)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		vsock_conn_host_connected(c, -errno);
		return;
	}
	struct vs_sock *s = sock_new(d, fd);
	if (!s) {
		close(fd);
		vsock_conn_host_connected(c, -ENOMEM);
		return;
	}
	s->c = c;
	c->host = s;
	s->addr.sun_family = AF_UNIX;
	int len = snprintf(s->addr.sun_path, sizeof(s->addr.sun_path), "%s_%u", d->path, c->local_port);
	if (len < 0 || (size_t)len >= sizeof(s->addr.sun_path)) { /* cannot happen: the path length is checked */
		vsock_conn_host_connected(c, -ENAMETOOLONG);
		return;
	}
	struct io_uring_sqe *sqe = op_start(d, &s->connect);
	if (!sqe) {
		vsock_conn_host_connected(c, -EAGAIN);
		return;
	}
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&s->addr, sizeof(s->addr));
}

/* Starts whatever host I/O connection c needs now. */
static void pump(struct vsock_dev *d, struct vsock_conn *c)
{
	struct vs_sock *s = c->host;
	if (c->state == VSOCK_CLOSED) {
		if (s)
			sock_close(s);
		else
			vsock_mux_free_conn(&d->mux, c);
		return;
	}
	if (c->state == VSOCK_CONNECTING_HOST) {
		if (!s)
			start_connect(d, c);
		return;
	}
	if (!s || s->closing)
		return;
	if (!s->recv.busy) {
		unsigned n = vsock_conn_recv_space(c, s->riov);
		if (n) {
			struct io_uring_sqe *sqe = op_start(d, &s->recv);
			if (sqe) {
				s->rmsg = (struct msghdr){ .msg_iov = s->riov, .msg_iovlen = n };
				io_uring_prep_recvmsg(sqe, s->fd, &s->rmsg, 0);
			}
		}
	}
	if (!s->send.busy) {
		unsigned n = vsock_conn_send_data(c, s->siov);
		if (n) {
			struct io_uring_sqe *sqe = op_start(d, &s->send);
			if (sqe) {
				s->smsg = (struct msghdr){ .msg_iov = s->siov, .msg_iovlen = n };
				io_uring_prep_sendmsg(sqe, s->fd, &s->smsg, MSG_NOSIGNAL);
			}
		} else if (!s->shut_wr_done && !s->shut.busy && vsock_conn_want_shut_wr(c)) {
			struct io_uring_sqe *sqe = op_start(d, &s->shut);
			if (sqe) {
				io_uring_prep_shutdown(sqe, s->fd, SHUT_WR);
				s->shut_wr_done = true;
			}
		}
	}
}

static void pump_all(struct vsock_dev *d)
{
	struct vsock_conn *c;
	while ((c = vsock_mux_next_dirty(&d->mux)))
		pump(d, c);
}

/* Fills the guest's rx buffers with what the connections have for it. */
static void deliver_rx(struct vsock_dev *d)
{
	struct virtio_mmio *t = d->t;
	struct virtq *vq = &t->queues[Q_RX].vq;
	if (!virtio_mmio_driver_ok(t) || !vq->ready || vq->broken)
		return;
	bool pushed = false;
	while (vsock_mux_rx_pending(&d->mux)) {
		if (!virtio_mmio_pop(t, Q_RX, &d->chain))
			break; /* the guest notifies when it posts buffers; the packets wait */
		size_t n = vsock_mux_rx_packet(&d->mux, &d->chain.iov[d->chain.nr_out], d->chain.nr_in);
		virtq_push_used(vq, d->chain.head, (uint32_t)n);
		pushed = true;
	}
	if (pushed)
		virtio_mmio_signal_used(t, Q_RX);
}

/* After anything happened: host I/O for every connection that changed, packets to the guest. */
static void run(struct vsock_dev *d)
{
	for (int i = 0; i < 8; i++) {
		pump_all(d);
		deliver_rx(d);
		if (d->mux.dirty_list.next == &d->mux.dirty_list)
			break;
	}
	submit(d);
}

static void process_tx(struct vsock_dev *d, struct virtio_mmio *t)
{
	struct virtq *vq = &t->queues[Q_TX].vq;
	bool pushed = false;
	while (virtio_mmio_pop(t, Q_TX, &d->chain)) {
		vsock_mux_guest_packet(&d->mux, d->chain.iov, d->chain.nr_out);
		virtq_push_used(vq, d->chain.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_mmio_signal_used(t, Q_TX);
}

static void vsock_queue_notify(void *dev, struct virtio_mmio *t, unsigned q)
{
	struct vsock_dev *d = dev;
	if (q == Q_TX)
		process_tx(d, t);
	/* rx: the guest posted buffers (delivered below); event: we never send events. */
	run(d);
}

/* The CONNECT line (and anything after it) from a host program arrived. */
static void on_line(struct vsock_dev *d, struct vs_sock *s, int res)
{
	if (res <= 0) {
		log_debug(&d->vm->log, "virtio-vsock: host socket closed before its CONNECT line");
		sock_close(s);
		return;
	}
	s->buf_len += (unsigned)res;
	char *nl = memchr(s->buf, '\n', s->buf_len);
	if (!nl) {
		if (s->buf_len == VSOCK_LINE_MAX) {
			log_debug(&d->vm->log, "virtio-vsock: no CONNECT line in the first %d bytes: closed", VSOCK_LINE_MAX);
			sock_close(s);
		} else {
			line_recv(s);
		}
		return;
	}
	size_t len = (size_t)(nl - s->buf);
	uint32_t port;
	if (vsock_parse_connect(s->buf, len, &port)) {
		log_debug(&d->vm->log, "virtio-vsock: bad line from a host program (want \"CONNECT <port>\"): closed");
		sock_close(s);
		return;
	}
	struct vsock_conn *c = vsock_mux_host_connect(&d->mux, port, nl + 1, s->buf_len - len - 1);
	if (!c) {
		log_debug(&d->vm->log, "virtio-vsock: CONNECT %u refused: %u connections", port, d->mux.nr_conns);
		sock_close(s);
		return;
	}
	d->nr_pending--;
	s->c = c;
	c->host = s;
}

static void on_accept(struct vsock_dev *d, int res)
{
	if (res >= 0) {
		struct vs_sock *s = NULL;
		if (d->nr_pending >= VSOCK_MAX_PENDING || d->mux.nr_conns + d->nr_pending >= VSOCK_MAX_CONNS)
			log_debug(&d->vm->log, "virtio-vsock: too many host connections, one closed");
		else
			s = sock_new(d, res);
		if (!s) {
			close(res);
		} else {
			d->nr_pending++;
			line_recv(s);
		}
	} else if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
		log_warn(&d->vm->log, "virtio-vsock: accept on %s failed: %s; retrying once a connection closes",
			 d->path, strerror(-res));
		d->accept_paused = true;
		return;
	} else if (res == -ECANCELED || res == -EBADF || res == -EINVAL) {
		return;
	} else {
		log_debug(&d->vm->log, "virtio-vsock: accept on %s failed: %s", d->path, strerror(-res));
	}
	arm_accept(d);
}

static void handle_cqe(struct vsock_dev *d, struct vs_op *op, int res)
{
	op->busy = false;
	d->inflight--;
	if (op->kind == OP_ACCEPT) {
		on_accept(d, res);
		return;
	}
	struct vs_sock *s = op->s;
	s->inflight--;
	if (s->closing) {
		sock_maybe_free(s);
		return;
	}
	switch (op->kind) {
	case OP_LINE:
		on_line(d, s, res);
		break;
	case OP_RECV:
		vsock_conn_host_received(s->c, res);
		break;
	case OP_SEND:
		vsock_conn_host_sent(s->c, res);
		break;
	case OP_CONNECT:
		vsock_conn_host_connected(s->c, res < 0 ? res : 0);
		break;
	case OP_SHUT:
		if (res < 0)
			log_debug(&d->vm->log, "virtio-vsock: shutdown of a host socket failed: %s", strerror(-res));
		break;
	case OP_ACCEPT:
		break;
	}
}

static void on_completion(void *ctx, uint32_t events)
{
	struct vsock_dev *d = ctx;
	(void)events;
	io_ring_ack(&d->io);
	pthread_mutex_lock(&d->t->lock);
	for (;;) {
		if (!io_uring_cq_ready(&d->io.ring) && io_uring_cq_has_overflow(&d->io.ring))
			io_uring_get_events(&d->io.ring); /* completions the kernel kept aside */
		if (!io_uring_cq_ready(&d->io.ring))
			break;
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&d->io.ring, head, cqe) {
			struct vs_op *op = io_uring_cqe_get_data(cqe);
			seen++;
			if (op)
				handle_cqe(d, op, cqe->res);
		}
		io_uring_cq_advance(&d->io.ring, seen);
		run(d);
	}
	run(d); /* also what a reset left to do */
	pthread_mutex_unlock(&d->t->lock);
}

/* The driver reset the device (vCPU thread, transport lock held): every connection the driver knew of
 * ends without a word to it. The event loop then closes their sockets (only the event loop thread
 * touches the io_uring: its completions run as task work of the submitting thread). */
static void vsock_reset(void *dev)
{
	struct vsock_dev *d = dev;
	vsock_mux_reset(&d->mux);
	io_ring_wake(&d->io);
}

/* cid=N,uds=PATH */
static int parse_vsock_option(struct vsock_dev *d, const char *spec, struct error *err)
{
	char buf[512];
	if (!*spec || strlen(spec) >= sizeof(buf))
		return error_input(err, "--vsock '%s': give cid=N,uds=PATH", spec);
	snprintf(buf, sizeof(buf), "%s", spec);
	bool have_cid = false;
	char *save = NULL;
	for (char *o = strtok_r(buf, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		if (!strncmp(o, "cid=", 4)) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(o + 4, &end, 10);
			if (errno || *end || o[4] < '0' || o[4] > '9' || v < 3 || v >= UINT32_MAX)
				return error_input(err, "--vsock: cid '%s' must be a number from 3 to %u (0-2 are "
						   "reserved, -1 means any)", o + 4, UINT32_MAX - 1);
			d->cid = v;
			have_cid = true;
		} else if (!strncmp(o, "uds=", 4)) {
			size_t len = strlen(o + 4);
			if (len == 0 || len + VSOCK_PORT_SUFFIX >= sizeof(d->path))
				return error_input(err, "--vsock: uds path '%s' must be 1 to %zu bytes (PATH_<port> must "
						   "fit a Unix socket address)", o + 4,
						   sizeof(d->path) - VSOCK_PORT_SUFFIX - 1);
			memcpy(d->path, o + 4, len + 1);
		} else {
			return error_input(err, "--vsock: unknown option '%s' (cid=N, uds=PATH)", o);
		}
	}
	if (!have_cid || !d->path[0])
		return error_input(err, "--vsock '%s': both cid=N and uds=PATH are needed", spec);
	return 0;
}

/* Listens on PATH: a stale socket file (nobody accepting) is replaced, a live one or any other file
 * is left alone and refused. */
static int listen_on_path(struct vsock_dev *d, struct error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, d->path, strlen(d->path) + 1);
	struct stat st;
	if (lstat(d->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return error_input(err, "--vsock: %s exists and is not a socket; remove it or choose another "
					   "uds path", d->path);
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0)
			return error_set(err, "--vsock: socket() failed: %s", strerror(errno));
		int rc = connect(probe, (struct sockaddr *)&addr, sizeof(addr));
		int e = errno;
		close(probe);
		if (rc == 0)
			return error_input(err, "--vsock: %s is in use by another process (it accepts connections); "
					   "stop it or choose another uds path", d->path);
		if (e != ECONNREFUSED)
			return error_input(err, "--vsock: %s exists and cannot be checked: %s", d->path, strerror(e));
		if (unlink(d->path) < 0)
			return error_input(err, "--vsock: cannot remove the stale socket %s: %s", d->path,
					   strerror(errno));
		log_debug(&d->vm->log, "virtio-vsock: removed the stale socket %s", d->path);
	}
	d->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (d->listen_fd < 0)
		return error_set(err, "--vsock: socket() failed: %s", strerror(errno));
	if (bind(d->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return error_input(err, "--vsock: cannot create the socket %s: %s", d->path, strerror(errno));
	d->path_created = true;
	if (stat(d->path, &st) == 0) {
		d->path_dev = st.st_dev;
		d->path_ino = st.st_ino;
	}
	if (listen(d->listen_fd, 128) < 0)
		return error_set(err, "--vsock: listen on %s failed: %s", d->path, strerror(errno));
	return 0;
}

static void vsock_destroy(void *state)
{
	struct vsock_dev *d = state;
	if (d->t)
		virtio_mmio_destroy(d->t);
	if (d->io.ready) {
		/* Cancel what is in flight and wait for it: recvs still point into the buffers freed below. */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&d->io.ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			io_uring_sqe_set_data(sqe, NULL);
		}
		io_uring_submit(&d->io.ring);
		while (d->inflight) {
			struct io_uring_cqe *cqe;
			struct __kernel_timespec ts = { .tv_sec = 1 };
			if (io_uring_wait_cqe_timeout(&d->io.ring, &cqe, &ts) < 0)
				break;
			if (io_uring_cqe_get_data(cqe))
				d->inflight--;
			io_uring_cqe_seen(&d->io.ring, cqe);
		}
	}
	io_ring_exit(&d->io);
	if (d->socks.next) {
		while (d->socks.next != &d->socks) {
			struct vs_sock *s = d->socks.next;
			d->socks.next = s->next;
			if (s->fd >= 0)
				close(s->fd);
			free(s);
		}
	}
	struct vsock_stats *st = &d->mux.stats;
	if (st->conns_opened)
		log_debug(&d->vm->log, "virtio-vsock: %llu connections (%llu refused), %llu bytes to the guest, %llu "
			  "to the host, %llu RSTs sent (%llu dropped), %llu bad packets, %llu credit violations",
			  (unsigned long long)st->conns_opened, (unsigned long long)st->conns_refused,
			  (unsigned long long)st->bytes_to_guest, (unsigned long long)st->bytes_to_host,
			  (unsigned long long)st->rst_sent, (unsigned long long)st->rst_dropped,
			  (unsigned long long)st->bad_packets, (unsigned long long)st->credit_violations);
	vsock_mux_destroy(&d->mux);
	if (d->listen_fd >= 0)
		close(d->listen_fd);
	if (d->path_created) {
		/* Only our own socket file: another monitor may have replaced it since. */
		struct stat st2;
		if (lstat(d->path, &st2) == 0 && st2.st_dev == d->path_dev && st2.st_ino == d->path_ino)
			unlink(d->path);
	}
	free(d);
}

static int vsock_create(struct vm *vm, void **state, struct error *err)
{
	if (!vm->cfg->vsock)
		return 0;
	struct vsock_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return error_set(err, "out of memory");
	*state = d;
	d->vm = vm;
	d->listen_fd = -1;
	io_ring_clear(&d->io);
	d->socks.next = d->socks.prev = &d->socks;
	d->accept_op.kind = OP_ACCEPT;
	vsock_mux_init(&d->mux, 0, &vm->log);
	if (parse_vsock_option(d, vm->cfg->vsock, err))
		return -1;
	d->mux.guest_cid = d->cid;
	if (listen_on_path(d, err))
		return -1;
	/* Room for every completion that can be outstanding (a few per socket) without overflowing. */
	if (io_ring_init(&d->io, &vm->loop, VSOCK_URING_ENTRIES, VSOCK_URING_CQ_ENTRIES, on_completion, d,
			 "--vsock", err))
		return -1;
	d->ops = (struct virtio_dev_ops){
		.name = "virtio-vsock",
		.device_id = VIRTIO_ID_VSOCK,
		.features = 0, /* stream sockets only: no feature bit needed (SEQPACKET is bit 1) */
		.nr_queues = 3,
		.queue_max = VSOCK_QUEUE_MAX,
		.config_size = 8,
		.config_read = vsock_config_read,
		.queue_notify = vsock_queue_notify,
		.reset = vsock_reset,
	};
	if (virtio_mmio_create(vm, &d->ops, d, &d->t, err))
		return -1;
	arm_accept(d);
	submit(d);
	log_debug(&vm->log, "virtio-vsock: guest CID %llu, host side on %s", (unsigned long long)d->cid, d->path);
	return 0;
}

static const struct device_desc virtio_vsock = {
	.name = "virtio-vsock",
	.create = vsock_create,
	.destroy = vsock_destroy,
};
DEVICE_REGISTER(virtio_vsock);
