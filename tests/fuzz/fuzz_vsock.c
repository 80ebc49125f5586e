/*
 * libFuzzer target: the virtio-vsock connection layer (devices/vsock_conn.c) driven by a hostile guest
 * and erratic host sockets through fake I/O. The input is a list of commands (first byte % 8):
 *   0 a guest packet: 1 byte mode; mode & 0x80: 44 raw header bytes; otherwise op, port choice, type,
 *     cids, flags, buf_alloc choice, fwd_cnt (4), len (2) as fields; then payload length (2, the bytes
 *     are a fixed pattern) and where to split the packet in two segments (1)
 *   1 a host program CONNECTs: guest port choice (1), early bytes (1); a choice >= 250 reads the
 *     CONNECT line itself from the input (length byte, then the bytes) and parses it
 *   2 the guest posts an rx buffer: size (2), segments (1)
 *   3 host data arrives on connection k (1): bytes (2), 0 = end-of-file, 0xffff = an error
 *   4 the host socket of connection k (1) took bytes (2) of what was offered, 0xffff = an error
 *   5 the connect of connection k (1) finished: byte & 1 = failed
 *   6 the device looks at its dirty connections (closed ones are freed)
 *   7 the driver resets the device
 * After every command the target checks what vsock_conn.h promises (bounded buffers and queues, packets
 * that fit the buffer and the credit). Any report or abort is a bug.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/vsock_conn.h"

#define GUEST 3
#define MAX_CMDS 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
	const uint8_t *p;
	size_t left;
};

static uint8_t u8(struct input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}
static uint16_t u16(struct input *in) { return (uint16_t)(u8(in) | u8(in) << 8); }
static uint32_t u32(struct input *in) { return (uint32_t)u16(in) | (uint32_t)u16(in) << 16; }

static void broken(const char *what)
{
	fprintf(stderr, "fuzz_vsock: broken promise: %s\n", what);
	abort();
}

static struct vsock_conn *nth_conn(struct vsock_mux *m, unsigned k)
{
	unsigned n = 0;
	for (struct vsock_link *l = m->all.next; l != &m->all; l = l->next)
		n++;
	if (!n)
		return NULL;
	k %= n;
	for (struct vsock_link *l = m->all.next; l != &m->all; l = l->next)
		if (!k--)
			return (struct vsock_conn *)(void *)((char *)l - offsetof(struct vsock_conn, all));
	return NULL;
}

static size_t iov_sum(const struct iovec *iov, unsigned n)
{
	size_t s = 0;
	for (unsigned i = 0; i < n; i++)
		s += iov[i].iov_len;
	return s;
}

static void check(struct vsock_mux *m)
{
	if (m->nr_conns > VSOCK_MAX_CONNS)
		broken("too many connections");
	if (m->rst_len > VSOCK_RST_QUEUE)
		broken("RST queue overflow");
	unsigned n = 0;
	for (struct vsock_link *l = m->all.next; l != &m->all; l = l->next) {
		struct vsock_conn *c = (struct vsock_conn *)(void *)((char *)l - offsetof(struct vsock_conn, all));
		n++;
		if (c->tx.wr - c->tx.rd > c->tx.size || c->rx_ring.wr - c->rx_ring.rd > c->rx_ring.size)
			broken("ring overfilled");
		if (c->reply_off > c->reply_len || c->reply_len > sizeof(c->reply))
			broken("reply bounds");
		struct iovec iov[3];
		unsigned k = vsock_conn_recv_space(c, iov);
		if (iov_sum(iov, k) > c->rx_ring.size - (c->rx_ring.wr - c->rx_ring.rd))
			broken("recv space beyond the free ring");
		k = vsock_conn_send_data(c, iov);
		if (iov_sum(iov, k) > (size_t)(c->reply_len - c->reply_off) + (c->tx.wr - c->tx.rd))
			broken("send data beyond what is queued");
		if (vsock_conn_want_shut_wr(c) && k)
			broken("shut down the host's write side with data still to send");
	}
	if (n != m->nr_conns)
		broken("connection count");
}

static void guest_packet(struct vsock_mux *m, struct input *in)
{
	static uint8_t pkt[VSOCK_HDR_SIZE + 70000];
	uint8_t mode = u8(in);
	struct vsock_hdr h = { .src_cid = GUEST, .dst_cid = VSOCK_HOST_CID, .type = VSOCK_TYPE_STREAM };
	if (mode & 0x80) {
		uint8_t raw[VSOCK_HDR_SIZE];
		for (unsigned i = 0; i < sizeof(raw); i++)
			raw[i] = u8(in);
		vsock_hdr_decode(raw, &h);
	} else {
		h.op = u8(in) % 9;
		uint8_t sel = u8(in);
		struct vsock_conn *c = sel < 160 ? nth_conn(m, sel) : NULL;
		if (c) {
			h.src_port = c->peer_port;
			h.dst_port = c->local_port;
		} else {
			h.src_port = 40000 + (sel & 3);
			h.dst_port = 6000 + ((sel >> 2) & 3);
		}
		uint8_t t = u8(in);
		if (t >= 240)
			h.type = t & 3;
		if (t == 239)
			h.src_cid = 1ull << 32 | GUEST;
		if (t == 238)
			h.dst_cid = 7;
		h.flags = u8(in);
		if (h.flags < 128)
			h.flags &= 3;
		static const uint32_t allocs[] = { 256 * 1024, 0, 1, 4096, 65536, UINT32_MAX, 100, 262144 * 2 };
		h.buf_alloc = allocs[u8(in) % 8];
		h.fwd_cnt = u32(in);
		h.len = u16(in);
	}
	size_t payload = u16(in);
	if (payload > sizeof(pkt) - VSOCK_HDR_SIZE)
		payload = sizeof(pkt) - VSOCK_HDR_SIZE;
	if (mode & 0x40)
		h.len = (uint32_t)payload; /* consistent length */
	vsock_hdr_encode(&h, pkt);
	for (size_t i = 0; i < payload; i++)
		pkt[VSOCK_HDR_SIZE + i] = (uint8_t)(i * 13 + 5);
	size_t total = VSOCK_HDR_SIZE + payload;
	if (mode & 0x20)
		total = u8(in) % VSOCK_HDR_SIZE; /* shorter than a header */
	size_t split = (size_t)u8(in) * total / 255;
	/* Exactly sized heap copies, so ASan sees a read past either segment. */
	uint8_t *a = malloc(split ? split : 1), *b = malloc(total - split ? total - split : 1);
	memcpy(a, pkt, split);
	memcpy(b, pkt + split, total - split);
	struct iovec iov[2] = { { a, split }, { b, total - split } };
	vsock_mux_guest_packet(m, iov, 2);
	free(a);
	free(b);
}

static void rx_buffer(struct vsock_mux *m, struct input *in)
{
	size_t room = u16(in);
	unsigned segs = u8(in) % 4 + 1;
	uint8_t *buf = malloc(room ? room : 1);
	struct iovec iov[4];
	size_t off = 0;
	for (unsigned i = 0; i < segs; i++) {
		size_t len = i == segs - 1 ? room - off : (room - off) / 2;
		iov[i] = (struct iovec){ buf + off, len };
		off += len;
	}
	bool pending = vsock_mux_rx_pending(m);
	size_t n = vsock_mux_rx_packet(m, iov, segs);
	if (n > room)
		broken("packet larger than the buffer");
	if (n && !pending)
		broken("a packet although none was pending");
	if (n) {
		if (n < VSOCK_HDR_SIZE)
			broken("packet shorter than a header");
		struct vsock_hdr h;
		vsock_hdr_decode(buf, &h); /* iov[0] may be short: decode from the flat buffer */
		if (h.dst_cid != GUEST || h.type != VSOCK_TYPE_STREAM)
			broken("packet header");
		if (VSOCK_HDR_SIZE + (size_t)h.len != n)
			broken("packet length");
		if (h.op == VSOCK_OP_RW && (h.len == 0 || h.len > VSOCK_MAX_PKT))
			broken("RW length");
		if (h.op != VSOCK_OP_RW && h.len)
			broken("control packet with payload");
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct log quiet = { .level = LOG_ERROR };
	static struct vsock_mux m;
	struct input in = { data, size };
	vsock_mux_init(&m, GUEST, &quiet);
	for (unsigned cmd = 0; in.left && cmd < MAX_CMDS; cmd++) {
		switch (u8(&in) % 8) {
		case 0:
			guest_packet(&m, &in);
			break;
		case 1: {
			uint8_t sel = u8(&in);
			uint8_t early[64];
			size_t n = u8(&in) % sizeof(early);
			memset(early, 'e', n);
			uint32_t port = sel < 200 ? 5000 + sel % 4 : sel;
			if (sel >= 250) {
				char line[64];
				size_t len = u8(&in) % sizeof(line);
				for (size_t i = 0; i < len; i++)
					line[i] = (char)u8(&in);
				char *exact = malloc(len ? len : 1); /* ASan sees a read past the line */
				memcpy(exact, line, len);
				int rc = vsock_parse_connect(exact, len, &port);
				free(exact);
				if (rc)
					break;
			}
			struct vsock_conn *c = vsock_mux_host_connect(&m, port, early, n);
			if (!c && m.nr_conns < VSOCK_MAX_CONNS)
				broken("host connect refused below the limit");
			break;
		}
		case 2:
			rx_buffer(&m, &in);
			break;
		case 3: {
			struct vsock_conn *c = nth_conn(&m, u8(&in));
			uint16_t n = u16(&in);
			if (!c || c->state == VSOCK_CLOSED)
				break;
			if (n == 0xffff) {
				vsock_conn_host_received(c, -ECONNRESET);
				break;
			}
			struct iovec iov[2];
			unsigned k = vsock_conn_recv_space(c, iov);
			size_t space = iov_sum(iov, k), got = n < space ? n : space;
			if (n && !got)
				break; /* the device reads only into space it was given */
			for (unsigned i = 0, done = 0; i < k && done < got; i++) {
				size_t take = iov[i].iov_len < got - done ? iov[i].iov_len : got - done;
				memset(iov[i].iov_base, 'h', take);
				done += (unsigned)take;
			}
			vsock_conn_host_received(c, (ssize_t)got);
			break;
		}
		case 4: {
			struct vsock_conn *c = nth_conn(&m, u8(&in));
			uint16_t n = u16(&in);
			if (!c || c->state == VSOCK_CLOSED)
				break;
			if (n == 0xffff) {
				vsock_conn_host_sent(c, -EPIPE);
				break;
			}
			struct iovec iov[3];
			unsigned k = vsock_conn_send_data(c, iov);
			size_t avail = iov_sum(iov, k);
			volatile uint8_t sink = 0;
			for (unsigned i = 0; i < k; i++) /* every byte offered is readable */
				for (size_t j = 0; j < iov[i].iov_len; j += 997)
					sink ^= ((uint8_t *)iov[i].iov_base)[j];
			(void)sink;
			if (k)
				vsock_conn_host_sent(c, (ssize_t)(n < avail ? n : avail));
			break;
		}
		case 5: {
			struct vsock_conn *c = nth_conn(&m, u8(&in));
			uint8_t r = u8(&in);
			if (c && c->state == VSOCK_CONNECTING_HOST)
				vsock_conn_host_connected(c, r & 1 ? -ENOENT : 0);
			break;
		}
		case 6: {
			struct vsock_conn *c;
			while ((c = vsock_mux_next_dirty(&m)))
				if (c->state == VSOCK_CLOSED)
					vsock_mux_free_conn(&m, c);
			break;
		}
		case 7:
			vsock_mux_reset(&m);
			break;
		}
		check(&m);
	}
	vsock_mux_destroy(&m);
	if (m.nr_conns)
		broken("connections left after destroy");
	return 0;
}
