#include "devices/vsock_conn.h"
#include "vmm/iov.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CONN_OF(ptr, member) ((struct vsock_conn *)(void *)((char *)(ptr) - offsetof(struct vsock_conn, member)))

/* ---- little-endian fields (the monitor runs on x86) ---- */

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
	memcpy(&h->src_cid, raw + 0, 8);
	memcpy(&h->dst_cid, raw + 8, 8);
	memcpy(&h->src_port, raw + 16, 4);
	memcpy(&h->dst_port, raw + 20, 4);
	memcpy(&h->len, raw + 24, 4);
	memcpy(&h->type, raw + 28, 2);
	memcpy(&h->op, raw + 30, 2);
	memcpy(&h->flags, raw + 32, 4);
	memcpy(&h->buf_alloc, raw + 36, 4);
	memcpy(&h->fwd_cnt, raw + 40, 4);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE])
{
	memcpy(raw + 0, &h->src_cid, 8);
	memcpy(raw + 8, &h->dst_cid, 8);
	memcpy(raw + 16, &h->src_port, 4);
	memcpy(raw + 20, &h->dst_port, 4);
	memcpy(raw + 24, &h->len, 4);
	memcpy(raw + 28, &h->type, 2);
	memcpy(raw + 30, &h->op, 2);
	memcpy(raw + 32, &h->flags, 4);
	memcpy(raw + 36, &h->buf_alloc, 4);
	memcpy(raw + 40, &h->fwd_cnt, 4);
}

int vsock_parse_connect(const char *line, size_t len, uint32_t *port)
{
	if (len && line[len - 1] == '\r')
		len--;
	if (len < 9 || len > 8 + 10 || memcmp(line, "CONNECT ", 8) != 0)
		return -1;
	uint64_t v = 0;
	for (size_t i = 8; i < len; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(line[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*port = (uint32_t)v;
	return 0;
}

/* ---- lists, iovecs, rings ---- */

static void list_init(struct vsock_link *h) { h->prev = h->next = h; }
static bool list_empty(const struct vsock_link *h) { return h->next == h; }

static void list_add_tail(struct vsock_link *h, struct vsock_link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static void list_del(struct vsock_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

static size_t iov_total(const struct iovec *iov, unsigned n)
{
	size_t sum = 0;
	for (unsigned i = 0; i < n; i++)
		sum += iov[i].iov_len;
	return sum;
}


static uint32_t ring_used(const struct vsock_ring *r) { return r->wr - r->rd; }
static uint32_t ring_free(const struct vsock_ring *r) { return r->size - ring_used(r); }

/* The ring bytes [pos, pos + len) as one or two segments. */
static unsigned ring_iov(const struct vsock_ring *r, uint32_t pos, uint32_t len, struct iovec iov[2])
{
	if (!len)
		return 0;
	uint32_t off = pos & (r->size - 1);
	uint32_t first = r->size - off < len ? r->size - off : len;
	iov[0] = (struct iovec){ r->buf + off, first };
	if (first == len)
		return 1;
	iov[1] = (struct iovec){ r->buf, len - first };
	return 2;
}

/* ---- the connection table ---- */

static unsigned bucket_of(uint32_t local, uint32_t peer)
{
	uint32_t h = local * 2654435761u ^ (peer + 0x9e3779b9u) * 40503u;
	return (h ^ (h >> 15)) % VSOCK_BUCKETS;
}

static struct vsock_conn *lookup(struct vsock_mux *m, uint32_t local, uint32_t peer)
{
	for (struct vsock_conn *c = m->buckets[bucket_of(local, peer)]; c; c = c->hnext)
		if (c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static void unhash(struct vsock_mux *m, struct vsock_conn *c)
{
	for (struct vsock_conn **p = &m->buckets[bucket_of(c->local_port, c->peer_port)]; *p; p = &(*p)->hnext) {
		if (*p == c) {
			*p = c->hnext;
			c->hnext = NULL;
			return;
		}
	}
}

void vsock_mux_init(struct vsock_mux *m, uint64_t guest_cid, const struct log *log)
{
	memset(m, 0, sizeof(*m));
	m->guest_cid = guest_cid;
	m->log = log;
	list_init(&m->all);
	list_init(&m->rx_list);
	list_init(&m->dirty_list);
	m->next_host_port = VSOCK_HOST_PORT_MIN;
}

static struct vsock_conn *conn_new(struct vsock_mux *m, uint32_t local, uint32_t peer, bool host_initiated)
{
	if (m->nr_conns >= VSOCK_MAX_CONNS)
		return NULL;
	struct vsock_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	/* Both buffers in one mapping: pages cost memory only once data passes through them. */
	void *mem = mmap(NULL, VSOCK_BUF_ALLOC + VSOCK_RX_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (mem == MAP_FAILED) {
		free(c);
		return NULL;
	}
	c->mux = m;
	c->local_port = local;
	c->peer_port = peer;
	c->host_initiated = host_initiated;
	c->tx = (struct vsock_ring){ .buf = mem, .size = VSOCK_BUF_ALLOC };
	c->rx_ring = (struct vsock_ring){ .buf = (uint8_t *)mem + VSOCK_BUF_ALLOC, .size = VSOCK_RX_BUF };
	list_init(&c->rx);
	list_init(&c->dirty);
	list_add_tail(&m->all, &c->all);
	unsigned b = bucket_of(local, peer);
	c->hnext = m->buckets[b];
	m->buckets[b] = c;
	m->nr_conns++;
	m->stats.conns_opened++;
	return c;
}

void vsock_mux_free_conn(struct vsock_mux *m, struct vsock_conn *c)
{
	if (c->state != VSOCK_CLOSED)
		unhash(m, c);
	list_del(&c->all);
	list_del(&c->rx);
	list_del(&c->dirty);
	munmap(c->tx.buf, VSOCK_BUF_ALLOC + VSOCK_RX_BUF);
	free(c);
	m->nr_conns--;
}

void vsock_mux_destroy(struct vsock_mux *m)
{
	while (!list_empty(&m->all))
		vsock_mux_free_conn(m, CONN_OF(m->all.next, all));
}

static void mark_dirty(struct vsock_conn *c)
{
	if (!c->in_dirty) {
		list_add_tail(&c->mux->dirty_list, &c->dirty);
		c->in_dirty = true;
	}
}

struct vsock_conn *vsock_mux_next_dirty(struct vsock_mux *m)
{
	if (list_empty(&m->dirty_list))
		return NULL;
	struct vsock_conn *c = CONN_OF(m->dirty_list.next, dirty);
	list_del(&c->dirty);
	c->in_dirty = false;
	return c;
}

/* ---- what a connection has for the guest ---- */

static uint32_t peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool data_waiting(const struct vsock_conn *c)
{
	return c->state == VSOCK_ESTABLISHED && !(c->guest_shutdown & VSOCK_SHUTDOWN_RCV) && ring_used(&c->rx_ring);
}

static bool eof_due(const struct vsock_conn *c)
{
	return c->state == VSOCK_ESTABLISHED && c->host_eof && !c->eof_sent && !ring_used(&c->rx_ring);
}

static bool rx_work(const struct vsock_conn *c)
{
	if (c->state == VSOCK_CLOSED)
		return false;
	return c->pending || (data_waiting(c) && peer_credit(c)) || eof_due(c);
}

/* After any change: the device looks at the host socket, and the connection queues for the guest. */
static void update(struct vsock_conn *c)
{
	if (c->state == VSOCK_CLOSED)
		return;
	mark_dirty(c);
	if (peer_credit(c))
		c->pending &= ~VSOCK_PEND_CREDIT_REQUEST; /* not needed any more */
	else if (data_waiting(c) && !c->credit_requested) {
		/* Out of credit with data to send: ask, in case the guest's update got lost or never comes. */
		c->pending |= VSOCK_PEND_CREDIT_REQUEST;
		c->credit_requested = true;
	}
	if (rx_work(c) && !c->in_rx) {
		list_add_tail(&c->mux->rx_list, &c->rx);
		c->in_rx = true;
	}
}

static void queue_rst(struct vsock_mux *m, uint64_t src_cid, uint32_t src_port, uint32_t dst_port)
{
	if (m->rst_len == VSOCK_RST_QUEUE) {
		m->stats.rst_dropped++;
		log_debug(m->log, "virtio-vsock: RST queue full, RST %u -> %u dropped", src_port, dst_port);
		return;
	}
	m->rst[(m->rst_head + m->rst_len++) % VSOCK_RST_QUEUE] = (struct vsock_rst){ src_port, dst_port, src_cid };
}

/* Takes the connection out of the table; rst: tell the guest. The device then closes the socket. */
static void close_conn(struct vsock_conn *c, bool rst)
{
	struct vsock_mux *m = c->mux;
	if (c->state == VSOCK_CLOSED)
		return;
	unhash(m, c);
	if (c->in_rx) {
		list_del(&c->rx);
		c->in_rx = false;
	}
	if (rst)
		queue_rst(m, VSOCK_HOST_CID, c->local_port, c->peer_port);
	c->state = VSOCK_CLOSED;
	c->pending = 0;
	mark_dirty(c);
}

void vsock_mux_reset(struct vsock_mux *m)
{
	for (struct vsock_link *l = m->all.next; l != &m->all; l = l->next) {
		struct vsock_conn *c = CONN_OF(l, all);
		/* A host program whose REQUEST the driver never saw keeps waiting for the next driver. */
		if (c->state == VSOCK_CONNECTING_GUEST && (c->pending & VSOCK_PEND_REQUEST)) {
			c->pending = VSOCK_PEND_REQUEST;
			continue;
		}
		close_conn(c, false);
	}
	m->rst_head = m->rst_len = 0;
}

/* ---- host side ---- */

struct vsock_conn *vsock_mux_host_connect(struct vsock_mux *m, uint32_t guest_port, const void *early, size_t n)
{
	uint32_t port = m->next_host_port;
	for (unsigned i = 0; i <= VSOCK_MAX_CONNS; i++) {
		port = m->next_host_port++;
		if (m->next_host_port < VSOCK_HOST_PORT_MIN)
			m->next_host_port = VSOCK_HOST_PORT_MIN;
		if (!lookup(m, port, guest_port))
			break;
	}
	struct vsock_conn *c = conn_new(m, port, guest_port, true);
	if (!c) {
		m->stats.conns_refused++;
		return NULL;
	}
	c->state = VSOCK_CONNECTING_GUEST;
	c->pending = VSOCK_PEND_REQUEST;
	if (n > VSOCK_RX_BUF)
		n = VSOCK_RX_BUF;
	if (n)
		memcpy(c->rx_ring.buf, early, n);
	c->rx_ring.wr = (uint32_t)n;
	update(c);
	return c;
}

unsigned vsock_conn_recv_space(const struct vsock_conn *c, struct iovec iov[2])
{
	if (c->state != VSOCK_ESTABLISHED || c->host_eof || (c->guest_shutdown & VSOCK_SHUTDOWN_RCV))
		return 0;
	return ring_iov(&c->rx_ring, c->rx_ring.wr, ring_free(&c->rx_ring), iov);
}

void vsock_conn_host_received(struct vsock_conn *c, ssize_t n)
{
	if (c->state != VSOCK_ESTABLISHED)
		return;
	if (n < 0) {
		log_debug(c->mux->log, "virtio-vsock: port %u <-> guest %u: host socket read failed (%zd)",
			  c->local_port, c->peer_port, n);
		close_conn(c, true);
		return;
	}
	if (n == 0) {
		c->host_eof = true;
	} else {
		uint32_t add = (size_t)n > ring_free(&c->rx_ring) ? ring_free(&c->rx_ring) : (uint32_t)n;
		c->rx_ring.wr += add;
		if (c->guest_shutdown & VSOCK_SHUTDOWN_RCV)
			c->rx_ring.rd = c->rx_ring.wr;
	}
	update(c);
}

unsigned vsock_conn_send_data(const struct vsock_conn *c, struct iovec iov[3])
{
	if (c->state != VSOCK_ESTABLISHED && c->state != VSOCK_CLOSING)
		return 0;
	unsigned n = 0;
	if (c->reply_off < c->reply_len)
		iov[n++] = (struct iovec){ (void *)(c->reply + c->reply_off), (size_t)(c->reply_len - c->reply_off) };
	return n + ring_iov(&c->tx, c->tx.rd, ring_used(&c->tx), iov + n);
}

static bool tx_drained(const struct vsock_conn *c)
{
	return c->reply_off == c->reply_len && !ring_used(&c->tx);
}

/* A guest that shut down both ways is told RST once everything it sent reached the host. */
static void maybe_finish(struct vsock_conn *c)
{
	if (c->state == VSOCK_CLOSING && tx_drained(c))
		close_conn(c, true);
}

void vsock_conn_host_sent(struct vsock_conn *c, ssize_t n)
{
	if (c->state != VSOCK_ESTABLISHED && c->state != VSOCK_CLOSING)
		return;
	if (n < 0) {
		log_debug(c->mux->log, "virtio-vsock: port %u <-> guest %u: host socket write failed (%zd)",
			  c->local_port, c->peer_port, n);
		close_conn(c, true);
		return;
	}
	size_t left = (size_t)n;
	size_t take = (size_t)(c->reply_len - c->reply_off);
	if (take > left)
		take = left;
	c->reply_off = (uint8_t)(c->reply_off + take);
	left -= take;
	if (left > ring_used(&c->tx))
		left = ring_used(&c->tx);
	c->tx.rd += (uint32_t)left;
	c->fwd_cnt += (uint32_t)left;
	c->mux->stats.bytes_to_host += left;
	if (c->state == VSOCK_ESTABLISHED && c->fwd_cnt - c->fwd_cnt_sent >= VSOCK_BUF_ALLOC / 4)
		c->pending |= VSOCK_PEND_CREDIT_UPDATE;
	maybe_finish(c);
	update(c);
}

bool vsock_conn_want_shut_wr(const struct vsock_conn *c)
{
	return c->state == VSOCK_ESTABLISHED && (c->guest_shutdown & VSOCK_SHUTDOWN_SEND) && tx_drained(c);
}

void vsock_conn_host_connected(struct vsock_conn *c, int res)
{
	if (c->state != VSOCK_CONNECTING_HOST)
		return;
	if (res < 0) {
		log_debug(c->mux->log, "virtio-vsock: guest port %u -> host port %u: connect failed (%d)", c->peer_port,
			  c->local_port, res);
		close_conn(c, true);
		return;
	}
	c->state = VSOCK_ESTABLISHED;
	c->pending |= VSOCK_PEND_RESPONSE;
	update(c);
}

/* ---- guest side ---- */

static void bad_packet(struct vsock_mux *m, const struct vsock_hdr *h, const char *why)
{
	m->stats.bad_packets++;
	log_debug(m->log, "virtio-vsock: bad packet from the guest (%s): op %u type %u %llu:%u -> %llu:%u len %u",
		  why, h->op, h->type, (unsigned long long)h->src_cid, h->src_port, (unsigned long long)h->dst_cid,
		  h->dst_port, h->len);
}

static void reply_rst(struct vsock_mux *m, const struct vsock_hdr *h)
{
	if (h->op != VSOCK_OP_RST)
		queue_rst(m, h->dst_cid, h->dst_port, h->src_port);
}

static void guest_request(struct vsock_mux *m, const struct vsock_hdr *h)
{
	struct vsock_conn *c = conn_new(m, h->dst_port, h->src_port, false);
	if (!c) {
		m->stats.conns_refused++;
		log_debug(m->log, "virtio-vsock: guest port %u -> host port %u refused: %u connections", h->src_port,
			  h->dst_port, m->nr_conns);
		reply_rst(m, h);
		return;
	}
	c->state = VSOCK_CONNECTING_HOST;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	update(c); /* the device connects to PATH_<port> */
}

void vsock_mux_guest_packet(struct vsock_mux *m, const struct iovec *iov, unsigned niov)
{
	size_t total = iov_total(iov, niov);
	uint8_t raw[VSOCK_HDR_SIZE];
	struct vsock_hdr h;
	if (total < VSOCK_HDR_SIZE) {
		m->stats.bad_packets++;
		log_debug(m->log, "virtio-vsock: tx buffer of %zu bytes holds no header: dropped", total);
		return;
	}
	iov_copy_out(iov, niov, 0, raw, sizeof(raw));
	vsock_hdr_decode(raw, &h);
	size_t payload = total - VSOCK_HDR_SIZE;
	if (h.src_cid != m->guest_cid) {
		bad_packet(m, &h, "source is not the guest's CID");
		return;
	}
	if (h.dst_cid != VSOCK_HOST_CID || h.type != VSOCK_TYPE_STREAM) {
		bad_packet(m, &h, h.type != VSOCK_TYPE_STREAM ? "not a stream" : "not for the host");
		reply_rst(m, &h);
		return;
	}
	struct vsock_conn *c = lookup(m, h.dst_port, h.src_port);
	if (h.op == VSOCK_OP_RW && (h.len > payload || h.len > VSOCK_MAX_PKT)) {
		bad_packet(m, &h, "payload length");
		if (c)
			close_conn(c, true);
		else
			reply_rst(m, &h);
		return;
	}
	if (!c) {
		if (h.op == VSOCK_OP_REQUEST)
			guest_request(m, &h);
		else if (h.op != VSOCK_OP_RST) {
			log_debug(m->log, "virtio-vsock: op %u for no connection (host port %u, guest port %u): RST", h.op,
				  h.dst_port, h.src_port);
			reply_rst(m, &h);
		}
		return;
	}
	if (h.fwd_cnt != c->peer_fwd_cnt || h.buf_alloc != c->peer_buf_alloc)
		c->credit_requested = false;
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case VSOCK_OP_RST:
		close_conn(c, false);
		return;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		if (c->state != VSOCK_CLOSING)
			c->pending |= VSOCK_PEND_CREDIT_UPDATE;
		break;
	case VSOCK_OP_RESPONSE:
		if (c->state != VSOCK_CONNECTING_GUEST) {
			bad_packet(m, &h, "RESPONSE on an open connection");
			close_conn(c, true);
			return;
		}
		c->state = VSOCK_ESTABLISHED;
		c->reply_len = (uint8_t)snprintf(c->reply, sizeof(c->reply), "OK %u\n", c->local_port);
		c->reply_off = 0;
		break;
	case VSOCK_OP_RW:
		if (c->state != VSOCK_ESTABLISHED || (c->guest_shutdown & VSOCK_SHUTDOWN_SEND)) {
			bad_packet(m, &h, "data on a connection not open for it");
			close_conn(c, true);
			return;
		}
		if (h.len > ring_free(&c->tx)) {
			/* The guest ignored our credit: we would have to buffer without bound. */
			m->stats.credit_violations++;
			bad_packet(m, &h, "more data than the credit allows");
			close_conn(c, true);
			return;
		}
		if (h.len) {
			struct iovec seg[2];
			unsigned ns = ring_iov(&c->tx, c->tx.wr, h.len, seg);
			size_t off = VSOCK_HDR_SIZE;
			for (unsigned i = 0; i < ns; i++)
				off += iov_copy_out(iov, niov, off, seg[i].iov_base, seg[i].iov_len);
			c->tx.wr += h.len;
		}
		break;
	case VSOCK_OP_SHUTDOWN:
		if (c->state != VSOCK_ESTABLISHED && c->state != VSOCK_CLOSING) {
			bad_packet(m, &h, "SHUTDOWN before the connection is open");
			close_conn(c, true);
			return;
		}
		c->guest_shutdown |= h.flags & VSOCK_SHUTDOWN_BOTH;
		if (c->guest_shutdown & VSOCK_SHUTDOWN_RCV)
			c->rx_ring.rd = c->rx_ring.wr; /* nobody will read it */
		if (c->guest_shutdown == VSOCK_SHUTDOWN_BOTH) {
			c->state = VSOCK_CLOSING;
			c->pending = 0;
		}
		break;
	default: /* REQUEST on an open connection, unknown ops */
		bad_packet(m, &h, "unexpected op");
		close_conn(c, true);
		return;
	}
	maybe_finish(c);
	update(c);
}

bool vsock_mux_rx_pending(struct vsock_mux *m)
{
	if (m->rst_len)
		return true;
	while (!list_empty(&m->rx_list)) {
		struct vsock_conn *c = CONN_OF(m->rx_list.next, rx);
		if (rx_work(c))
			return true;
		list_del(&c->rx);
		c->in_rx = false;
	}
	return false;
}

/* Builds c's next packet into the rx buffer; returns the bytes written, 0 if it has nothing. */
static size_t conn_rx_packet(struct vsock_conn *c, const struct iovec *iov, unsigned niov, size_t room)
{
	struct vsock_mux *m = c->mux;
	struct vsock_hdr h = {
		.src_cid = VSOCK_HOST_CID, .dst_cid = m->guest_cid, .src_port = c->local_port,
		.dst_port = c->peer_port, .type = VSOCK_TYPE_STREAM, .buf_alloc = VSOCK_BUF_ALLOC,
		.fwd_cnt = c->fwd_cnt,
	};
	if (c->pending & VSOCK_PEND_REQUEST) {
		h.op = VSOCK_OP_REQUEST;
		c->pending &= ~VSOCK_PEND_REQUEST;
	} else if (c->pending & VSOCK_PEND_RESPONSE) {
		h.op = VSOCK_OP_RESPONSE;
		c->pending &= ~VSOCK_PEND_RESPONSE;
	} else if (data_waiting(c) && peer_credit(c) && room > VSOCK_HDR_SIZE) {
		uint32_t n = ring_used(&c->rx_ring);
		if (n > peer_credit(c))
			n = peer_credit(c);
		if (n > room - VSOCK_HDR_SIZE)
			n = (uint32_t)(room - VSOCK_HDR_SIZE);
		if (n > VSOCK_MAX_PKT)
			n = VSOCK_MAX_PKT;
		struct iovec seg[2];
		unsigned ns = ring_iov(&c->rx_ring, c->rx_ring.rd, n, seg);
		size_t off = VSOCK_HDR_SIZE;
		for (unsigned i = 0; i < ns; i++)
			off += iov_copy_in(iov, niov, off, seg[i].iov_base, seg[i].iov_len);
		c->rx_ring.rd += n;
		c->rx_cnt += n;
		m->stats.bytes_to_guest += n;
		h.op = VSOCK_OP_RW;
		h.len = n;
	} else if (eof_due(c)) {
		h.op = VSOCK_OP_SHUTDOWN;
		h.flags = VSOCK_SHUTDOWN_SEND;
		c->eof_sent = true;
	} else if (c->pending & VSOCK_PEND_CREDIT_REQUEST) {
		h.op = VSOCK_OP_CREDIT_REQUEST;
		c->pending &= ~VSOCK_PEND_CREDIT_REQUEST;
	} else if (c->pending & VSOCK_PEND_CREDIT_UPDATE) {
		h.op = VSOCK_OP_CREDIT_UPDATE;
	} else {
		return 0;
	}
	/* Every header carries our credit: no separate update needed for now. */
	c->pending &= ~VSOCK_PEND_CREDIT_UPDATE;
	c->fwd_cnt_sent = c->fwd_cnt;
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(&h, raw);
	iov_copy_in(iov, niov, 0, raw, sizeof(raw));
	return VSOCK_HDR_SIZE + h.len;
}

size_t vsock_mux_rx_packet(struct vsock_mux *m, const struct iovec *iov, unsigned niov)
{
	size_t room = iov_total(iov, niov);
	if (room < VSOCK_HDR_SIZE)
		return 0;
	if (m->rst_len) {
		struct vsock_rst r = m->rst[m->rst_head];
		m->rst_head = (m->rst_head + 1) % VSOCK_RST_QUEUE;
		m->rst_len--;
		struct vsock_hdr h = {
			.src_cid = r.src_cid, .dst_cid = m->guest_cid, .src_port = r.src_port, .dst_port = r.dst_port,
			.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST,
		};
		uint8_t raw[VSOCK_HDR_SIZE];
		vsock_hdr_encode(&h, raw);
		iov_copy_in(iov, niov, 0, raw, sizeof(raw));
		m->stats.rst_sent++;
		return VSOCK_HDR_SIZE;
	}
	/* Each connection gets one look: one that only has data cannot use a header-only buffer. */
	for (unsigned tries = m->nr_conns; tries && !list_empty(&m->rx_list); tries--) {
		struct vsock_conn *c = CONN_OF(m->rx_list.next, rx);
		list_del(&c->rx);
		c->in_rx = false;
		size_t n = conn_rx_packet(c, iov, niov, room);
		if (n)
			update(c); /* room in its host buffer; back at the tail if it has more */
		else if (rx_work(c)) {
			list_add_tail(&m->rx_list, &c->rx);
			c->in_rx = true;
		}
		if (n)
			return n;
	}
	return 0;
}
