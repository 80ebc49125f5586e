/*
 * vsock-harness: the virtio-vsock device model (devices/virtio_vsock.c with devices/vsock_conn.c, on the
 * virtio-mmio transport, virtqueues, buses, event loop and io_uring, unchanged) with an in-process driver
 * in place of the guest kernel: no KVM, no guest, no vCPU. It plays the guest end of tools/bench/vsock:
 * guest ports 5000 (echo), 5001 (sink: answers the 8-byte byte count after end-of-file) and 5002 (source:
 * sends the number of bytes the host's first 8 bytes ask for), exactly like `vsock-bench serve vsock`, so
 * that the same host client (`vsock-bench client hybrid:UDS ...`) measures it.
 *
 *   vsock-harness --uds PATH [--rx-buf BYTES] [--cid N]
 *	prints "LISTENING" once the device listens on PATH and serves until standard input ends; each line
 *	read there, and the end, print one JSON line of counters: packets each way, queue notifications,
 *	interrupts, event-loop rounds, and the process's CPU time in ns (CLOCK_PROCESS_CPUTIME_ID).
 *
 * The driver does what Linux's virtio-vsock driver does, minus the copying to and from user space: rx
 * buffers of one descriptor holding the header and --rx-buf payload bytes (Linux: 4096), as many as the
 * queue holds; tx packets of one descriptor, header and at most 64 KiB; buf_alloc 256 KiB and a credit
 * update once less than 64 KiB of it is left (virtio_transport_stream_do_dequeue); EVENT_IDX. Everything
 * runs on one thread: the driver handles what the device published, then runs the device's event loop once
 * (tests/harness/virtio_driver.h), so its CPU time is the device model's plus this small driver's.
 */
#include "tests/harness/virtio_driver.h"
#include "devices/vsock_conn.h"

#include <errno.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define Q_RX 0
#define Q_TX 1
#define Q_EVENT 2
#define QSIZE 256
#define TX_SLOTS 128
#define BUF_ALLOC (256u * 1024)
#define MAX_PKT (64u * 1024)
#define MAX_CONNS 16
#define PORT_ECHO 5000
#define PORT_SINK 5001
#define PORT_SOURCE 5002

struct conn {
	bool used;
	uint32_t gport, hport;     /* guest (our) port, host port */
	bool response_due, credit_due, count_due, shut_due, shut_sent;
	uint32_t fwd_cnt, fwd_sent;            /* what we consumed, what the device was last told */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	uint64_t rx_bytes;                     /* sink: bytes received */
	bool want_known;
	uint8_t want_raw[8];
	unsigned want_have;
	uint64_t want, sent;                   /* source */
	uint8_t *echo;                         /* echo: BUF_ALLOC ring of bytes to send back */
	uint32_t echo_rd, echo_wr;
	bool peer_eof;
};

static struct vd *vd;
static uint64_t cid = 3;
static uint32_t rx_payload = 4096;
static uint64_t rx_gpa[QSIZE];
static uint64_t tx_gpa[TX_SLOTS];
static uint16_t tx_free[TX_SLOTS];
static unsigned nr_tx_free;
static struct conn conns[MAX_CONNS];
static uint8_t pattern[MAX_PKT];
static bool quit;
static struct {
	uint64_t rx_pkts, tx_pkts, pumps;
} st;

static struct vd *create(const char *uds, struct error *err)
{
	char spec[256];
	snprintf(spec, sizeof(spec), "cid=%llu,uds=%s", (unsigned long long)cid, uds);
	struct vd_opts o = { .cpus = 1, .ram_bytes = 64ull << 20, .log_level = LOG_ERROR };
	struct vd *v = vd_create_device("virtio-vsock", "--vsock", spec, &o, err);
	if (v && v->nr_ioeventfds < 3) {
		error_set(err, "virtio-vsock registered too few queue ioeventfds");
		vd_destroy(v);
		return NULL;
	}
	return v;
}

static struct conn *find(uint32_t gport, uint32_t hport)
{
	for (unsigned i = 0; i < MAX_CONNS; i++)
		if (conns[i].used && conns[i].gport == gport && conns[i].hport == hport)
			return &conns[i];
	return NULL;
}

static void conn_free(struct conn *c)
{
	free(c->echo);
	memset(c, 0, sizeof(*c));
}

/* One packet on the tx queue (published, not kicked); false when no slot is free. */
static bool tx_packet(uint32_t gport, uint32_t hport, uint16_t op, uint32_t flags, const void *data, uint32_t len,
		      struct conn *c)
{
	if (!nr_tx_free)
		return false;
	uint16_t slot = tx_free[--nr_tx_free];
	uint8_t *p = vd_ptr(vd, tx_gpa[slot], VSOCK_HDR_SIZE + len);
	struct vsock_hdr h = {
		.src_cid = cid, .dst_cid = VSOCK_HOST_CID, .src_port = gport, .dst_port = hport, .len = len,
		.type = VSOCK_TYPE_STREAM, .op = op, .flags = flags, .buf_alloc = BUF_ALLOC,
		.fwd_cnt = c ? c->fwd_cnt : 0,
	};
	vsock_hdr_encode(&h, p);
	if (len)
		memcpy(p + VSOCK_HDR_SIZE, data, len);
	if (c) {
		c->fwd_sent = c->fwd_cnt;
		c->credit_due = false;
		c->tx_cnt += len;
	}
	vd_put_desc(vd, Q_TX, slot, tx_gpa[slot], VSOCK_HDR_SIZE + len, 0, 0);
	vd_publish(vd, Q_TX, slot);
	st.tx_pkts++;
	return true;
}

static uint32_t credit(const struct conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static void consumed(struct conn *c, uint32_t n)
{
	c->fwd_cnt += n;
	if (BUF_ALLOC - (c->fwd_cnt - c->fwd_sent) < MAX_PKT)
		c->credit_due = true;
}

static void on_packet(const uint8_t *p, uint32_t len)
{
	if (len < VSOCK_HDR_SIZE)
		return;
	struct vsock_hdr h;
	vsock_hdr_decode(p, &h);
	const uint8_t *data = p + VSOCK_HDR_SIZE;
	if (h.len > len - VSOCK_HDR_SIZE)
		h.len = len - VSOCK_HDR_SIZE;
	struct conn *c = find(h.dst_port, h.src_port);
	if (h.op == VSOCK_OP_REQUEST) {
		if (c || (h.dst_port != PORT_ECHO && h.dst_port != PORT_SINK && h.dst_port != PORT_SOURCE)) {
			tx_packet(h.dst_port, h.src_port, VSOCK_OP_RST, 0, NULL, 0, NULL);
			return;
		}
		for (unsigned i = 0; i < MAX_CONNS && !c; i++)
			if (!conns[i].used)
				c = &conns[i];
		if (!c) {
			tx_packet(h.dst_port, h.src_port, VSOCK_OP_RST, 0, NULL, 0, NULL);
			return;
		}
		*c = (struct conn){ .used = true, .gport = h.dst_port, .hport = h.src_port, .response_due = true };
		if (c->gport == PORT_ECHO && !(c->echo = malloc(BUF_ALLOC)))
			abort();
	}
	if (!c)
		return;
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case VSOCK_OP_RW:
		if (c->gport == PORT_ECHO) {
			for (uint32_t i = 0; i < h.len; i++) /* at most BUF_ALLOC pending: the device keeps to our credit */
				c->echo[(c->echo_wr + i) % BUF_ALLOC] = data[i];
			c->echo_wr += h.len;
		} else if (c->gport == PORT_SOURCE) {
			for (uint32_t i = 0; i < h.len && c->want_have < 8; i++)
				c->want_raw[c->want_have++] = data[i];
			if (c->want_have == 8 && !c->want_known) {
				memcpy(&c->want, c->want_raw, 8);
				c->want_known = true;
			}
			consumed(c, h.len);
		} else {
			c->rx_bytes += h.len;
			consumed(c, h.len);
		}
		break;
	case VSOCK_OP_SHUTDOWN:
		if (h.flags & VSOCK_SHUTDOWN_SEND) {
			c->peer_eof = true;
			if (c->gport == PORT_SINK)
				c->count_due = true;
			else if (c->gport == PORT_ECHO)
				c->shut_due = true; /* once everything is echoed */
		}
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		c->credit_due = true;
		break;
	case VSOCK_OP_RST:
		conn_free(c);
		break;
	default:
		break;
	}
}

/* Reaps the rx queue, hands the packets over and gives the buffers back; returns the packets. */
static unsigned do_rx(void)
{
	struct vd_done d[QSIZE];
	unsigned n = vd_reap(vd, Q_RX, d, QSIZE);
	for (unsigned i = 0; i < n; i++) {
		uint16_t b = d[i].head;
		if (b >= QSIZE)
			continue;
		uint32_t len = d[i].len > VSOCK_HDR_SIZE + rx_payload ? VSOCK_HDR_SIZE + rx_payload : d[i].len;
		on_packet(vd_ptr(vd, rx_gpa[b], VSOCK_HDR_SIZE + rx_payload), len);
		vd_publish(vd, Q_RX, b);
	}
	if (n) {
		st.rx_pkts += n;
		vd_kick(vd, Q_RX);
	}
	return n;
}

static unsigned do_tx(void)
{
	struct vd_done d[QSIZE];
	unsigned n = vd_reap(vd, Q_TX, d, QSIZE);
	for (unsigned i = 0; i < n; i++)
		if (d[i].head < TX_SLOTS)
			tx_free[nr_tx_free++] = d[i].head;
	unsigned sent = 0;
	for (unsigned k = 0; k < MAX_CONNS && nr_tx_free; k++) {
		struct conn *c = &conns[k];
		if (!c->used)
			continue;
		if (c->response_due && tx_packet(c->gport, c->hport, VSOCK_OP_RESPONSE, 0, NULL, 0, c)) {
			c->response_due = false;
			sent++;
		}
		if (c->response_due)
			continue;
		if (c->gport == PORT_SOURCE && c->want_known) {
			while (c->sent < c->want && credit(c) && nr_tx_free) {
				uint64_t n64 = c->want - c->sent;
				uint32_t len = n64 < MAX_PKT ? (uint32_t)n64 : MAX_PKT;
				if (len > credit(c))
					len = credit(c);
				tx_packet(c->gport, c->hport, VSOCK_OP_RW, 0, pattern, len, c);
				c->sent += len;
				sent++;
			}
			if (c->sent == c->want && !c->shut_sent)
				c->shut_due = true;
		}
		if (c->gport == PORT_ECHO) {
			while (c->echo_wr != c->echo_rd && credit(c) && nr_tx_free) {
				uint32_t off = c->echo_rd % BUF_ALLOC, len = c->echo_wr - c->echo_rd;
				if (len > BUF_ALLOC - off)
					len = BUF_ALLOC - off;
				if (len > MAX_PKT)
					len = MAX_PKT;
				if (len > credit(c))
					len = credit(c);
				c->echo_rd += len;
				consumed(c, len); /* read by the echo, like a guest program's read() */
				tx_packet(c->gport, c->hport, VSOCK_OP_RW, 0, c->echo + off, len, c);
				sent++;
			}
			if (c->echo_wr != c->echo_rd)
				continue; /* shut down only once everything went back */
		}
		if (c->count_due && credit(c) >= 8 && tx_packet(c->gport, c->hport, VSOCK_OP_RW, 0, &c->rx_bytes, 8, c)) {
			c->count_due = false;
			c->shut_due = true;
			sent++;
		}
		if (c->shut_due && !c->count_due && !c->shut_sent &&
		    tx_packet(c->gport, c->hport, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH, NULL, 0, c)) {
			c->shut_due = false;
			c->shut_sent = true; /* the device answers with RST once it forwarded everything */
			sent++;
		}
		if (c->credit_due && !c->shut_sent && tx_packet(c->gport, c->hport, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0, c))
			sent++;
	}
	if (sent)
		vd_kick(vd, Q_TX);
	return n + sent;
}

static void print_stats(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	printf("{\"rx_packets\": %llu, \"tx_packets\": %llu, \"rx_notifies\": %llu, \"tx_notifies\": %llu, "
	       "\"interrupts\": %llu, \"pumps\": %llu, \"cpu_ns\": %llu}\n",
	       (unsigned long long)st.rx_pkts, (unsigned long long)st.tx_pkts, (unsigned long long)vd->q[Q_RX].notifies,
	       (unsigned long long)vd->q[Q_TX].notifies, (unsigned long long)vd_interrupts(vd),
	       (unsigned long long)st.pumps, (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
	fflush(stdout);
}

/* Standard input: any line prints the counters (one JSON line); end-of-file ends the harness. */
static void on_stdin(void *ctx, uint32_t events)
{
	char b[256];
	(void)ctx;
	(void)events;
	ssize_t r = read(0, b, sizeof(b));
	if (r <= 0)
		quit = true;
	else if (memchr(b, '\n', (size_t)r))
		print_stats();
}

int main(int argc, char **argv)
{
	const char *uds = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--uds") && i + 1 < argc)
			uds = argv[++i];
		else if (!strcmp(argv[i], "--rx-buf") && i + 1 < argc)
			rx_payload = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--cid") && i + 1 < argc)
			cid = strtoull(argv[++i], NULL, 0);
		else
			uds = NULL, i = argc;
	}
	if (!uds || rx_payload < 64 || rx_payload > MAX_PKT) {
		fprintf(stderr, "usage: vsock-harness --uds PATH [--rx-buf 64..65536 (default 4096)] [--cid N]\n");
		return 2;
	}
	for (unsigned i = 0; i < MAX_PKT; i++)
		pattern[i] = (uint8_t)(i * 7 + (i >> 8));
	struct error err;
	vd = create(uds, &err);
	if (!vd) {
		fprintf(stderr, "vsock-harness: %s\n", err.msg);
		return 1;
	}
	uint64_t feat = (1ull << VD_F_VERSION_1) | (1ull << VD_F_EVENT_IDX);
	if ((vd_device_features(vd) & feat) != feat || vd_negotiate(vd, feat) || vd_setup_queue(vd, Q_RX, QSIZE) ||
	    vd_setup_queue(vd, Q_TX, QSIZE) || vd_setup_queue(vd, Q_EVENT, QSIZE)) {
		fprintf(stderr, "vsock-harness: device set-up failed\n");
		return 1;
	}
	for (unsigned b = 0; b < QSIZE; b++) {
		rx_gpa[b] = vd_alloc(vd, VSOCK_HDR_SIZE + rx_payload, 64);
		vd_put_desc(vd, Q_RX, (uint16_t)b, rx_gpa[b], VSOCK_HDR_SIZE + rx_payload, VD_DESC_F_WRITE, 0);
		vd_publish(vd, Q_RX, (uint16_t)b);
	}
	for (unsigned s = 0; s < TX_SLOTS; s++) {
		tx_gpa[s] = vd_alloc(vd, VSOCK_HDR_SIZE + MAX_PKT, 64);
		tx_free[nr_tx_free++] = (uint16_t)(TX_SLOTS - 1 - s);
	}
	vd_driver_ok(vd);
	if (!(vd_status(vd) & VD_STATUS_DRIVER_OK)) {
		fprintf(stderr, "vsock-harness: DRIVER_OK refused\n");
		return 1;
	}
	vd_kick(vd, Q_RX);
	if (event_loop_add(&vd->vm.loop, 0, EPOLLIN, on_stdin, NULL, &err)) {
		fprintf(stderr, "vsock-harness: %s\n", err.msg);
		return 1;
	}
	printf("LISTENING\n");
	fflush(stdout);
	while (!quit) {
		unsigned work = do_rx();
		work += do_tx();
		st.pumps++;
		if (vd_pump(vd, work ? 0 : 100) < 0)
			break;
	}
	event_loop_remove(&vd->vm.loop, 0);
	print_stats();
	vd_destroy(vd);
	return 0;
}
