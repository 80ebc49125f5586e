/* vsock_conn: the virtio-vsock packet format, connection table, state machine and credit, with fake I/O. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>

#include "devices/vsock_conn.h"
#include "tests/unit/unit.h"

UNIT_SUITE(vsock);

#define GUEST 3
#define KiB 1024u

static struct log quiet = { .level = LOG_ERROR };
static struct vsock_mux m;

static void setup(void) { vsock_mux_init(&m, GUEST, &quiet); }

/* Closed connections are freed by the device once their socket is gone: the fake device does it now. */
static void drain_dirty(void)
{
	struct vsock_conn *c;
	while ((c = vsock_mux_next_dirty(&m)))
		if (c->state == VSOCK_CLOSED)
			vsock_mux_free_conn(&m, c);
}

static void teardown(void)
{
	vsock_mux_destroy(&m);
	cr_assert_eq(m.nr_conns, 0);
}

/* A packet from the guest (CID 3 -> host CID 2 unless changed), as one segment or split in two. */
static struct vsock_hdr ghdr(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	return (struct vsock_hdr){ .src_cid = GUEST, .dst_cid = VSOCK_HOST_CID, .src_port = src_port,
				   .dst_port = dst_port, .type = VSOCK_TYPE_STREAM, .op = op,
				   .buf_alloc = 256 * KiB };
}

static void guest_send_split(const struct vsock_hdr *h, const void *payload, size_t n, size_t split)
{
	uint8_t *buf = malloc(VSOCK_HDR_SIZE + n + 1);
	vsock_hdr_encode(h, buf);
	if (n)
		memcpy(buf + VSOCK_HDR_SIZE, payload, n);
	size_t total = VSOCK_HDR_SIZE + n;
	if (split > total)
		split = total;
	struct iovec iov[2] = { { buf, split }, { buf + split, total - split } };
	vsock_mux_guest_packet(&m, iov, 2);
	free(buf);
}

static void guest_send(const struct vsock_hdr *h, const void *payload, size_t n)
{
	guest_send_split(h, payload, n, VSOCK_HDR_SIZE + n);
}

static void guest_op(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	struct vsock_hdr h = ghdr(op, src_port, dst_port);
	guest_send(&h, NULL, 0);
}

/* The next packet for the guest into an rx buffer of `room` bytes; returns its total length. */
static uint8_t rxbuf[128 * 1024];
static size_t guest_recv(struct vsock_hdr *h, size_t room)
{
	struct iovec iov = { rxbuf, room };
	size_t n = vsock_mux_rx_packet(&m, &iov, 1);
	if (n >= VSOCK_HDR_SIZE)
		vsock_hdr_decode(rxbuf, h);
	return n;
}

static struct vsock_hdr expect_pkt(uint16_t op)
{
	struct vsock_hdr h;
	cr_assert(vsock_mux_rx_pending(&m), "no packet pending, expected op %u", op);
	size_t n = guest_recv(&h, 4096);
	cr_assert_geq(n, VSOCK_HDR_SIZE);
	cr_assert_eq(h.op, op, "op %u, expected %u", h.op, op);
	cr_assert_eq(n, VSOCK_HDR_SIZE + h.len);
	cr_assert_eq(h.dst_cid, GUEST);
	cr_assert_eq(h.type, VSOCK_TYPE_STREAM);
	return h;
}

/* The host side writes n bytes into the connection (as a recv into the space it offers). */
static size_t host_writes(struct vsock_conn *c, const void *data, size_t n)
{
	struct iovec iov[2];
	unsigned k = vsock_conn_recv_space(c, iov);
	size_t done = 0;
	for (unsigned i = 0; i < k && done < n; i++) {
		size_t take = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
		memcpy(iov[i].iov_base, (const uint8_t *)data + done, take);
		done += take;
	}
	if (done)
		vsock_conn_host_received(c, (ssize_t)done);
	return done;
}

/* Everything the connection wants to send to the host, flattened; marks it sent. */
static size_t host_reads(struct vsock_conn *c, uint8_t *out, size_t cap)
{
	struct iovec iov[3];
	unsigned k = vsock_conn_send_data(c, iov);
	size_t done = 0;
	for (unsigned i = 0; i < k && done < cap; i++) {
		size_t take = iov[i].iov_len < cap - done ? iov[i].iov_len : cap - done;
		memcpy(out + done, iov[i].iov_base, take);
		done += take;
	}
	if (done)
		vsock_conn_host_sent(c, (ssize_t)done);
	return done;
}

/* A host-initiated connection to guest port 5000, accepted by the guest. */
static struct vsock_conn *open_host_conn(uint32_t guest_port)
{
	struct vsock_conn *c = vsock_mux_host_connect(&m, guest_port, NULL, 0);
	cr_assert_not_null(c);
	struct vsock_hdr h = expect_pkt(VSOCK_OP_REQUEST);
	cr_assert_eq(h.dst_port, guest_port);
	cr_assert_eq(h.src_port, c->local_port);
	struct vsock_hdr r = ghdr(VSOCK_OP_RESPONSE, guest_port, c->local_port);
	guest_send(&r, NULL, 0);
	cr_assert_eq(c->state, VSOCK_ESTABLISHED);
	uint8_t line[32];
	size_t n = host_reads(c, line, sizeof(line));
	char want[32];
	snprintf(want, sizeof(want), "OK %u\n", c->local_port);
	cr_assert_eq(n, strlen(want));
	cr_assert_arr_eq(line, want, n);
	return c;
}

/* A guest-initiated connection from guest port gport to host port hport, connected on the host. */
static struct vsock_conn *open_guest_conn(uint32_t gport, uint32_t hport)
{
	guest_op(VSOCK_OP_REQUEST, gport, hport);
	struct vsock_conn *c;
	while ((c = vsock_mux_next_dirty(&m)) && (c->local_port != hport || c->peer_port != gport ||
						  c->state == VSOCK_CLOSED))
		if (c->state == VSOCK_CLOSED)
			vsock_mux_free_conn(&m, c);
	cr_assert_not_null(c);
	cr_assert_eq(c->state, VSOCK_CONNECTING_HOST);
	cr_assert_eq(c->local_port, hport);
	cr_assert_eq(c->peer_port, gport);
	vsock_conn_host_connected(c, 0);
	struct vsock_hdr h = expect_pkt(VSOCK_OP_RESPONSE);
	cr_assert_eq(h.src_port, hport);
	cr_assert_eq(h.dst_port, gport);
	cr_assert_eq(h.src_cid, VSOCK_HOST_CID);
	cr_assert_eq(h.buf_alloc, VSOCK_BUF_ALLOC);
	return c;
}

Test(vsock, header_layout)
{
	struct vsock_hdr h = { 0x1122334455667788ull, 0x99aabbccddeeff00ull, 0x01020304, 0x05060708, 0x090a0b0c,
			       0x0d0e, 0x0f10, 0x11121314, 0x15161718, 0x191a1b1c };
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(&h, raw);
	cr_assert_eq(get64(raw), h.src_cid);
	cr_assert_eq(get64(raw + 8), h.dst_cid);
	cr_assert_eq(get32(raw + 16), h.src_port);
	cr_assert_eq(get32(raw + 20), h.dst_port);
	cr_assert_eq(get32(raw + 24), h.len);
	cr_assert_eq(get16(raw + 28), h.type);
	cr_assert_eq(get16(raw + 30), h.op);
	cr_assert_eq(get32(raw + 32), h.flags);
	cr_assert_eq(get32(raw + 36), h.buf_alloc);
	cr_assert_eq(get32(raw + 40), h.fwd_cnt);
	struct vsock_hdr b;
	vsock_hdr_decode(raw, &b);
	cr_assert(b.src_cid == h.src_cid && b.dst_cid == h.dst_cid && b.src_port == h.src_port &&
		  b.dst_port == h.dst_port && b.len == h.len && b.type == h.type && b.op == h.op &&
		  b.flags == h.flags && b.buf_alloc == h.buf_alloc && b.fwd_cnt == h.fwd_cnt);
}

Test(vsock, connect_line)
{
	uint32_t port = 0;
	const char *good[] = { "CONNECT 5000", "CONNECT 0", "CONNECT 4294967295", "CONNECT 52\r" };
	uint32_t want[] = { 5000, 0, 4294967295u, 52 };
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(vsock_parse_connect(good[i], strlen(good[i]), &port), 0, "%s", good[i]);
		cr_assert_eq(port, want[i]);
	}
	const char *bad[] = { "", "CONNECT", "CONNECT ", "CONNECT 4294967296", "CONNECT 99999999999",
			      "connect 5000", "CONNECT -1", "CONNECT 5000 ", "CONNECT  5000", "CONNECT 50a",
			      "CONNECT\t5000", "XCONNECT 5000", "CONNECT 5000\r\r" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(vsock_parse_connect(bad[i], strlen(bad[i]), &port), -1, "'%s' accepted", bad[i]);
}

Test(vsock, host_initiated_data_both_ways, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = vsock_mux_host_connect(&m, 5000, "early", 5);
	cr_assert_not_null(c);
	cr_assert_geq(c->local_port, VSOCK_HOST_PORT_MIN);
	/* Nothing goes to the host socket before the guest accepted. */
	struct iovec iov[3];
	cr_assert_eq(vsock_conn_send_data(c, iov), 0);
	cr_assert_eq(vsock_conn_recv_space(c, iov), 0);
	struct vsock_hdr h = expect_pkt(VSOCK_OP_REQUEST);
	cr_assert_eq(h.src_cid, VSOCK_HOST_CID);
	cr_assert_eq(h.buf_alloc, VSOCK_BUF_ALLOC);
	cr_assert_not(vsock_mux_rx_pending(&m));
	struct vsock_hdr r = ghdr(VSOCK_OP_RESPONSE, 5000, c->local_port);
	guest_send(&r, NULL, 0);
	/* The early bytes reach the guest, then the OK line and guest data reach the host. */
	h = expect_pkt(VSOCK_OP_RW);
	cr_assert_eq(h.len, 5);
	cr_assert_arr_eq(rxbuf + VSOCK_HDR_SIZE, "early", 5);
	struct vsock_hdr d = ghdr(VSOCK_OP_RW, 5000, c->local_port);
	d.len = 6;
	guest_send_split(&d, "hello!", 6, 20); /* header split across segments */
	uint8_t out[64];
	size_t n = host_reads(c, out, sizeof(out));
	char want[64];
	int wl = snprintf(want, sizeof(want), "OK %u\nhello!", c->local_port);
	cr_assert_eq(n, (size_t)wl);
	cr_assert_arr_eq(out, want, n);
	cr_assert_eq(c->fwd_cnt, 6, "the OK line is not guest data");
	cr_assert_eq(host_writes(c, "world", 5), 5);
	h = expect_pkt(VSOCK_OP_RW);
	cr_assert_eq(h.len, 5);
	cr_assert_eq(h.fwd_cnt, 6);
	cr_assert_arr_eq(rxbuf + VSOCK_HDR_SIZE, "world", 5);
	cr_assert_not(vsock_mux_rx_pending(&m));
}

Test(vsock, guest_refuses, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = vsock_mux_host_connect(&m, 7, NULL, 0);
	expect_pkt(VSOCK_OP_REQUEST);
	guest_op(VSOCK_OP_RST, 7, c->local_port);
	cr_assert_eq(c->state, VSOCK_CLOSED);
	cr_assert_not(vsock_mux_rx_pending(&m), "RST answered with RST");
	drain_dirty();
	cr_assert_eq(m.nr_conns, 0);
}

Test(vsock, host_ports_are_fresh, .init = setup, .fini = teardown)
{
	struct vsock_conn *a = vsock_mux_host_connect(&m, 5000, NULL, 0);
	struct vsock_conn *b = vsock_mux_host_connect(&m, 5000, NULL, 0);
	cr_assert_neq(a->local_port, b->local_port);
	/* The counter wraps back to 1024 and skips ports in use with the same guest port. */
	m.next_host_port = UINT32_MAX;
	struct vsock_conn *c = vsock_mux_host_connect(&m, 5000, NULL, 0);
	cr_assert_eq(c->local_port, UINT32_MAX);
	struct vsock_conn *d = vsock_mux_host_connect(&m, 5000, NULL, 0);
	cr_assert_neq(d->local_port, a->local_port);
	cr_assert_geq(d->local_port, VSOCK_HOST_PORT_MIN);
}

Test(vsock, guest_initiated_and_connect_failure, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = open_guest_conn(40000, 6000);
	struct vsock_hdr d = ghdr(VSOCK_OP_RW, 40000, 6000);
	d.len = 3;
	guest_send(&d, "abc", 3);
	uint8_t out[8];
	cr_assert_eq(host_reads(c, out, sizeof(out)), 3);
	cr_assert_arr_eq(out, "abc", 3);

	guest_op(VSOCK_OP_REQUEST, 40001, 6001);
	struct vsock_conn *f = vsock_mux_next_dirty(&m);
	while (f && f->state != VSOCK_CONNECTING_HOST)
		f = vsock_mux_next_dirty(&m);
	cr_assert_not_null(f);
	vsock_conn_host_connected(f, -ENOENT);
	struct vsock_hdr h = expect_pkt(VSOCK_OP_RST);
	cr_assert_eq(h.src_port, 6001);
	cr_assert_eq(h.dst_port, 40001);
	cr_assert_eq(h.src_cid, VSOCK_HOST_CID);
}

Test(vsock, credit_limits_what_the_guest_gets, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = open_host_conn(5000);
	static uint8_t data[100 * 1024];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 31);
	/* The guest has 1000 bytes of buffer. */
	struct vsock_hdr u = ghdr(VSOCK_OP_CREDIT_UPDATE, 5000, c->local_port);
	u.buf_alloc = 1000;
	guest_send(&u, NULL, 0);
	cr_assert_eq(host_writes(c, data, sizeof(data)), sizeof(data));
	size_t got = 0;
	struct vsock_hdr h;
	while (vsock_mux_rx_pending(&m)) {
		guest_recv(&h, 4096);
		if (h.op != VSOCK_OP_RW)
			break;
		cr_assert_arr_eq(rxbuf + VSOCK_HDR_SIZE, data + got, h.len);
		got += h.len;
	}
	cr_assert_eq(got, 1000);
	cr_assert_eq(h.op, VSOCK_OP_CREDIT_REQUEST, "out of credit: ask once");
	cr_assert_not(vsock_mux_rx_pending(&m));
	/* The same credit again: no new request. */
	guest_send(&u, NULL, 0);
	cr_assert_not(vsock_mux_rx_pending(&m));
	/* The guest read 600 bytes. */
	u.fwd_cnt = 600;
	guest_send(&u, NULL, 0);
	size_t n = guest_recv(&h, 4096);
	cr_assert_eq(h.op, VSOCK_OP_RW);
	cr_assert_eq(h.len, 600);
	cr_assert_eq(n, VSOCK_HDR_SIZE + 600);
	cr_assert_arr_eq(rxbuf + VSOCK_HDR_SIZE, data + 1000, 600);
	/* A small rx buffer limits the packet too. */
	u.buf_alloc = 256 * KiB;
	guest_send(&u, NULL, 0);
	n = guest_recv(&h, VSOCK_HDR_SIZE + 10);
	cr_assert_eq(h.len, 10);
	/* A header-only buffer cannot carry data. */
	cr_assert_eq(guest_recv(&h, VSOCK_HDR_SIZE), 0);
	cr_assert_eq(guest_recv(&h, VSOCK_HDR_SIZE - 1), 0);
	cr_assert(vsock_mux_rx_pending(&m));
}

Test(vsock, host_reading_stops_when_the_guest_does, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = open_host_conn(5000);
	static uint8_t data[64 * 1024];
	size_t total = 0, n;
	while ((n = host_writes(c, data, sizeof(data))) > 0)
		total += n;
	cr_assert_eq(total, VSOCK_RX_BUF, "bounded by the host->guest buffer");
	struct iovec iov[2];
	cr_assert_eq(vsock_conn_recv_space(c, iov), 0);
	/* The guest takes 4000 bytes: room for exactly that much more. */
	struct vsock_hdr h;
	guest_recv(&h, VSOCK_HDR_SIZE + 4000);
	cr_assert_eq(h.len, 4000);
	unsigned k = vsock_conn_recv_space(c, iov);
	cr_assert_eq(iov[0].iov_len + (k > 1 ? iov[1].iov_len : 0), 4000);
}

Test(vsock, guest_must_respect_our_credit, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = open_guest_conn(40000, 6000);
	static uint8_t data[VSOCK_MAX_PKT];
	struct vsock_hdr d = ghdr(VSOCK_OP_RW, 40000, 6000);
	d.len = VSOCK_MAX_PKT;
	for (unsigned i = 0; i < VSOCK_BUF_ALLOC / VSOCK_MAX_PKT; i++)
		guest_send(&d, data, sizeof(data));
	cr_assert_eq(c->state, VSOCK_ESTABLISHED, "exactly buf_alloc is fine");
	d.len = 1;
	guest_send(&d, data, 1);
	cr_assert_eq(c->state, VSOCK_CLOSED, "one byte over the credit resets");
	struct vsock_hdr h = expect_pkt(VSOCK_OP_RST);
	cr_assert_eq(h.dst_port, 40000);
	cr_assert_eq(m.stats.credit_violations, 1);
}

Test(vsock, credit_update_after_forwarding, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = open_guest_conn(40000, 6000);
	static uint8_t data[VSOCK_MAX_PKT], out[VSOCK_BUF_ALLOC];
	struct vsock_hdr d = ghdr(VSOCK_OP_RW, 40000, 6000);
	d.len = VSOCK_MAX_PKT;
	for (unsigned i = 0; i < 4; i++)
		guest_send(&d, data, sizeof(data));
	cr_assert_not(vsock_mux_rx_pending(&m));
	cr_assert_eq(host_reads(c, out, sizeof(out)), 4 * VSOCK_MAX_PKT);
	struct vsock_hdr h = expect_pkt(VSOCK_OP_CREDIT_UPDATE);
	cr_assert_eq(h.fwd_cnt, 4 * VSOCK_MAX_PKT);
	cr_assert_eq(h.buf_alloc, VSOCK_BUF_ALLOC);
	/* And when asked. */
	guest_op(VSOCK_OP_CREDIT_REQUEST, 40000, 6000);
	h = expect_pkt(VSOCK_OP_CREDIT_UPDATE);
	cr_assert_eq(h.fwd_cnt, 4 * VSOCK_MAX_PKT);
}

Test(vsock, bad_packets, .init = setup, .fini = teardown)
{
	struct vsock_hdr h;
	/* Too short for a header: dropped. */
	uint8_t tiny[VSOCK_HDR_SIZE - 1] = { 0 };
	struct iovec iov = { tiny, sizeof(tiny) };
	vsock_mux_guest_packet(&m, &iov, 1);
	cr_assert_not(vsock_mux_rx_pending(&m));
	/* Not from the guest's CID: dropped. */
	h = ghdr(VSOCK_OP_REQUEST, 1, 2);
	h.src_cid = 7;
	guest_send(&h, NULL, 0);
	cr_assert_not(vsock_mux_rx_pending(&m));
	cr_assert_eq(m.nr_conns, 0);
	/* Not for the host, or not a stream: RST. */
	h = ghdr(VSOCK_OP_REQUEST, 1, 2);
	h.dst_cid = 5;
	guest_send(&h, NULL, 0);
	struct vsock_hdr r = expect_pkt(VSOCK_OP_RST);
	cr_assert_eq(r.src_cid, 5);
	h = ghdr(VSOCK_OP_REQUEST, 1, 2);
	h.type = 2;
	guest_send(&h, NULL, 0);
	expect_pkt(VSOCK_OP_RST);
	/* Anything but a REQUEST or RST for no connection: RST. */
	guest_op(VSOCK_OP_RW, 1, 2);
	expect_pkt(VSOCK_OP_RST);
	guest_op(VSOCK_OP_RST, 1, 2);
	cr_assert_not(vsock_mux_rx_pending(&m));
	cr_assert_eq(m.nr_conns, 0);
	/* On a connection: a length beyond the payload, an unknown op, a second REQUEST: RST and gone. */
	uint16_t ops[] = { VSOCK_OP_RW, 99, VSOCK_OP_REQUEST, VSOCK_OP_RESPONSE };
	for (unsigned i = 0; i < 4; i++) {
		struct vsock_conn *c = open_guest_conn(100 + i, 6000);
		h = ghdr(ops[i], 100 + i, 6000);
		h.len = ops[i] == VSOCK_OP_RW ? 10 : 0;
		guest_send(&h, "12345", ops[i] == VSOCK_OP_RW ? 5 : 0);
		cr_assert_eq(c->state, VSOCK_CLOSED, "op %u", ops[i]);
		r = expect_pkt(VSOCK_OP_RST);
		cr_assert_eq(r.dst_port, 100 + i);
		drain_dirty();
	}
	/* RW larger than a packet may be. */
	struct vsock_conn *c = open_guest_conn(200, 6000);
	static uint8_t big[VSOCK_MAX_PKT + 1];
	h = ghdr(VSOCK_OP_RW, 200, 6000);
	h.len = sizeof(big);
	guest_send(&h, big, sizeof(big));
	cr_assert_eq(c->state, VSOCK_CLOSED);
	expect_pkt(VSOCK_OP_RST);
	drain_dirty();
	cr_assert_eq(m.nr_conns, 0);
}

Test(vsock, rst_queue_is_bounded, .init = setup, .fini = teardown)
{
	for (unsigned i = 0; i < 1000; i++)
		guest_op(VSOCK_OP_RW, i, 2);
	cr_assert_eq(m.rst_len, VSOCK_RST_QUEUE);
	cr_assert_eq(m.stats.rst_dropped, 1000 - VSOCK_RST_QUEUE);
	unsigned n = 0;
	struct vsock_hdr h;
	while (vsock_mux_rx_pending(&m)) {
		guest_recv(&h, 4096);
		cr_assert_eq(h.op, VSOCK_OP_RST);
		cr_assert_eq(h.dst_port, n, "in order");
		n++;
	}
	cr_assert_eq(n, VSOCK_RST_QUEUE);
}

Test(vsock, connection_limit, .init = setup, .fini = teardown)
{
	for (unsigned i = 0; i < VSOCK_MAX_CONNS + 10; i++)
		guest_op(VSOCK_OP_REQUEST, 1000 + i, 6000);
	cr_assert_eq(m.nr_conns, VSOCK_MAX_CONNS);
	cr_assert_eq(m.stats.conns_refused, 10);
	cr_assert_eq(m.rst_len, 10);
	cr_assert_null(vsock_mux_host_connect(&m, 1, NULL, 0));
}

Test(vsock, shutdown_and_close, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = open_guest_conn(40000, 6000);
	uint8_t out[16];
	/* The guest shuts its sending side with data still queued: shut the host's write side after it. */
	struct vsock_hdr d = ghdr(VSOCK_OP_RW, 40000, 6000);
	d.len = 4;
	guest_send(&d, "last", 4);
	struct vsock_hdr s = ghdr(VSOCK_OP_SHUTDOWN, 40000, 6000);
	s.flags = VSOCK_SHUTDOWN_SEND;
	guest_send(&s, NULL, 0);
	cr_assert_not(vsock_conn_want_shut_wr(c));
	cr_assert_eq(host_reads(c, out, sizeof(out)), 4);
	cr_assert(vsock_conn_want_shut_wr(c));
	/* More data after SHUTDOWN SEND breaks the protocol. */
	struct vsock_conn *c2 = open_guest_conn(40001, 6000);
	guest_send(&s, NULL, 0); /* wrong ports: c's SHUTDOWN again, harmless */
	s.src_port = 40001;
	guest_send(&s, NULL, 0);
	d.src_port = 40001;
	guest_send(&d, "more", 4);
	cr_assert_eq(c2->state, VSOCK_CLOSED);
	expect_pkt(VSOCK_OP_RST);
	drain_dirty();
	/* The host side ends: the guest hears SHUTDOWN SEND after the data. */
	host_writes(c, "tail", 4);
	vsock_conn_host_received(c, 0);
	struct vsock_hdr h = expect_pkt(VSOCK_OP_RW);
	cr_assert_eq(h.len, 4);
	h = expect_pkt(VSOCK_OP_SHUTDOWN);
	cr_assert_eq(h.flags, VSOCK_SHUTDOWN_SEND);
	cr_assert_not(vsock_mux_rx_pending(&m));
	struct iovec iov[2];
	cr_assert_eq(vsock_conn_recv_space(c, iov), 0, "no reading after end-of-file");
	/* The guest closes: RST, connection gone. */
	s.src_port = 40000;
	s.flags = VSOCK_SHUTDOWN_BOTH;
	guest_send(&s, NULL, 0);
	cr_assert_eq(c->state, VSOCK_CLOSED);
	expect_pkt(VSOCK_OP_RST);
	drain_dirty();
	cr_assert_eq(m.nr_conns, 0);
}

Test(vsock, close_flushes_to_the_host_first, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = open_host_conn(5000);
	struct vsock_hdr d = ghdr(VSOCK_OP_RW, 5000, c->local_port);
	d.len = 5;
	guest_send(&d, "bye!!", 5);
	host_writes(c, "unread", 6);
	struct vsock_hdr s = ghdr(VSOCK_OP_SHUTDOWN, 5000, c->local_port);
	s.flags = VSOCK_SHUTDOWN_BOTH;
	guest_send(&s, NULL, 0);
	cr_assert_eq(c->state, VSOCK_CLOSING);
	cr_assert_not(vsock_mux_rx_pending(&m), "nothing more for a guest that shut down receiving");
	struct iovec iov[2];
	cr_assert_eq(vsock_conn_recv_space(c, iov), 0);
	uint8_t out[8];
	cr_assert_eq(host_reads(c, out, 2), 2); /* a short send */
	cr_assert_eq(c->state, VSOCK_CLOSING);
	cr_assert_eq(host_reads(c, out, 8), 3);
	cr_assert_eq(c->state, VSOCK_CLOSED);
	struct vsock_hdr h = expect_pkt(VSOCK_OP_RST);
	cr_assert_eq(h.src_port, c->local_port);
}

Test(vsock, host_errors_reset, .init = setup, .fini = teardown)
{
	struct vsock_conn *a = open_host_conn(5000);
	vsock_conn_host_received(a, -ECONNRESET);
	cr_assert_eq(a->state, VSOCK_CLOSED);
	expect_pkt(VSOCK_OP_RST);
	/* Events for a closed connection change nothing. */
	vsock_conn_host_received(a, 5);
	vsock_conn_host_sent(a, 1);
	vsock_conn_host_connected(a, 0);
	cr_assert_not(vsock_mux_rx_pending(&m));
	drain_dirty();
	struct vsock_conn *b = open_guest_conn(40000, 6000);
	struct vsock_hdr d = ghdr(VSOCK_OP_RW, 40000, 6000);
	d.len = 1;
	guest_send(&d, "x", 1);
	vsock_conn_host_sent(b, -EPIPE);
	cr_assert_eq(b->state, VSOCK_CLOSED);
	expect_pkt(VSOCK_OP_RST);
	vsock_conn_host_sent(b, 1);
	cr_assert_not(vsock_mux_rx_pending(&m));
	drain_dirty();
	cr_assert_eq(m.nr_conns, 0);
}

Test(vsock, reset_closes_everything_quietly, .init = setup, .fini = teardown)
{
	open_host_conn(5000);
	open_guest_conn(40000, 6000);
	vsock_mux_host_connect(&m, 5001, NULL, 0);
	guest_op(VSOCK_OP_RW, 1, 2); /* an RST queued */
	vsock_mux_reset(&m);
	unsigned closed = 0;
	struct vsock_conn *c;
	while ((c = vsock_mux_next_dirty(&m))) {
		if (c->state != VSOCK_CLOSED)
			continue;
		vsock_mux_free_conn(&m, c);
		closed++;
	}
	cr_assert_eq(closed, 2);
	cr_assert_eq(m.nr_conns, 1, "the undelivered REQUEST waits for the next driver");
	struct vsock_hdr h = expect_pkt(VSOCK_OP_REQUEST); /* no RST: the queue went with the driver */
	cr_assert_eq(h.dst_port, 5001);
	cr_assert_not(vsock_mux_rx_pending(&m));
	/* The same ports work again afterwards. */
	open_guest_conn(40000, 6000);
}

Test(vsock, round_robin_between_connections, .init = setup, .fini = teardown)
{
	struct vsock_conn *a = open_host_conn(5000);
	struct vsock_conn *b = open_host_conn(5001);
	static uint8_t data[32 * 1024];
	host_writes(a, data, sizeof(data));
	host_writes(b, data, sizeof(data));
	struct vsock_hdr h1, h2, h3;
	guest_recv(&h1, 4096);
	guest_recv(&h2, 4096);
	guest_recv(&h3, 4096);
	cr_assert_neq(h1.dst_port, h2.dst_port);
	cr_assert_eq(h1.dst_port, h3.dst_port);
}

Test(vsock, rx_into_scattered_buffer, .init = setup, .fini = teardown)
{
	struct vsock_conn *c = open_host_conn(5000);
	uint8_t data[300];
	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	host_writes(c, data, sizeof(data));
	uint8_t a[10], b[50], d[1000];
	struct iovec iov[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { d, sizeof(d) } };
	size_t n = vsock_mux_rx_packet(&m, iov, 3);
	cr_assert_eq(n, VSOCK_HDR_SIZE + 300);
	uint8_t flat[VSOCK_HDR_SIZE + 300];
	memcpy(flat, a, 10);
	memcpy(flat + 10, b, 50);
	memcpy(flat + 60, d, sizeof(flat) - 60);
	struct vsock_hdr h;
	vsock_hdr_decode(flat, &h);
	cr_assert_eq(h.op, VSOCK_OP_RW);
	cr_assert_eq(h.len, 300);
	cr_assert_arr_eq(flat + VSOCK_HDR_SIZE, data, 300);
}
