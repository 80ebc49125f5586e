/*
 * The measuring side of tools/bench/net: plays a virtio-net driver against the real device model
 * in-process (tests/harness/virtio_driver.h: devices/virtio_net.c, the virtio-mmio transport, the event
 * loop, io_uring) on a real tap, and does the same packet work on the tap directly, in the same process.
 *
 *   --mode tx       the driver keeps the transmit queue full of frames (12-byte header + --size bytes of
 *                   UDP/IPv4 to --dst, which the host drops after IP input); counts completed frames
 *   --mode tx-direct  writev(header, frame) on the tap in a loop: the same kernel work without the device
 *   --mode rx       a sender thread blasts UDP datagrams at --dst through the tap; the driver keeps
 *                   receive buffers posted (mergeable 2 KiB buffers, or 64 KiB ones with --no-mrg) and
 *                   counts the packets the device delivers
 *   --mode rx-direct  the same sender; read() on the tap in a loop
 *   --mode ping     per-message latency: the driver sends one ICMP echo request (--size bytes on the wire)
 *                   from 10.0.2.2 to --dst (the host's address on the tap) through the TX queue, the host
 *                   kernel answers out of the tap, the device delivers the reply into a posted receive
 *                   buffer; --count round trips, one at a time, waiting in epoll (vd_pump)
 *   --mode ping-direct  the same request written to the tap fd, the reply read from it (blocking)
 *
 * Usage: net-harness --tap NAME --mode M [--size BYTES] [--runtime S] [--dst A.B.C.D] [--no-mrg] [--count N]
 * The tap must exist, be up, and route --dst (tools/bench/net sets that up in a namespace). Prints one JSON
 * object: packets, bytes, seconds, packets/s, MB/s, CPU seconds (user+sys, this process), and for rx modes
 * the datagrams the sender sent. The ping modes print round trips instead: count, lost, median, p99, mean,
 * min (microseconds). They need the host to know 10.0.2.2's MAC (02:00:00:00:00:02; a permanent neighbour).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "devices/net_hdr.h"
#include "tests/harness/virtio_driver.h"

#define QSIZE 256
#define RXQ 0
#define TXQ 1

struct opts {
	const char *tap, *mode, *dst;
	uint32_t size;
	double runtime;
	bool mrg;
	unsigned count;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "net-harness: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

/* A UDP/IPv4 frame of len bytes (>= 42) from 10.0.2.2 to dst, Ethernet to the tap's own address. */
static void make_frame(uint8_t *f, uint32_t len, const char *dst)
{
	memset(f, 0, len);
	memcpy(f, "\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x02\x08\x00", 14);
	uint8_t *ip = f + 14;
	uint16_t tot = (uint16_t)(len - 14);
	ip[0] = 0x45;
	ip[2] = (uint8_t)(tot >> 8);
	ip[3] = (uint8_t)tot;
	ip[8] = 64;
	ip[9] = 17;
	inet_pton(AF_INET, "10.0.2.2", ip + 12);
	inet_pton(AF_INET, dst, ip + 16);
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)(ip[i] << 8 | ip[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ip[10] = (uint8_t)(~sum >> 8);
	ip[11] = (uint8_t)~sum;
	uint8_t *udp = ip + 20;
	uint16_t ulen = (uint16_t)(tot - 20);
	udp[0] = 0x30, udp[1] = 0x39, udp[2] = 0x30, udp[3] = 0x3a;
	udp[4] = (uint8_t)(ulen >> 8);
	udp[5] = (uint8_t)ulen; /* checksum 0: none */
	for (uint32_t i = 42; i < len; i++)
		f[i] = (uint8_t)i;
}

static int open_tap(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("/dev/net/tun: %s", strerror(errno));
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	int hdr = NET_HDR_LEN;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0)
		die("tap set-up: %s", strerror(errno));
	return fd;
}

/* ---- the sender for the rx modes ---- */

struct sender {
	pthread_t thread;
	const char *dst;
	uint32_t payload;
	atomic_bool stop;
	uint64_t sent;
};

static void *sender_fn(void *arg)
{
	struct sender *s = arg;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9) };
	inet_pton(AF_INET, s->dst, &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("sender socket: %s", strerror(errno));
	static uint8_t buf[65536];
	struct mmsghdr msgs[32];
	struct iovec iov[32];
	for (int i = 0; i < 32; i++) {
		iov[i] = (struct iovec){ buf, s->payload };
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	while (!atomic_load(&s->stop)) {
		int n = sendmmsg(fd, msgs, 32, 0);
		if (n > 0)
			s->sent += (uint64_t)n;
	}
	close(fd);
	return NULL;
}

static void sender_start(struct sender *s, const struct opts *o)
{
	s->dst = o->dst;
	s->payload = o->size > 42 ? o->size - 42 : 1; /* frame = 14 + 20 + 8 + payload */
	atomic_store(&s->stop, false);
	s->sent = 0;
	pthread_create(&s->thread, NULL, sender_fn, s);
}

static void sender_stop(struct sender *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
}

/* ---- direct ---- */

static void run_direct(const struct opts *o, bool tx, uint64_t *pkts, uint64_t *bytes, double *secs, uint64_t *sent)
{
	int fd = open_tap(o->tap);
	static uint8_t buf[NET_MAX_PACKET];
	struct sender s;
	double t0 = now(), end = t0 + o->runtime;
	if (tx) {
		struct virtio_net_hdr_v1 h = { 0 };
		make_frame(buf, o->size, o->dst);
		struct iovec iov[2] = { { &h, NET_HDR_LEN }, { buf, o->size } };
		while (now() < end)
			for (int i = 0; i < 64; i++)
				if (writev(fd, iov, 2) > 0) {
					(*pkts)++;
					*bytes += o->size;
				}
	} else {
		sender_start(&s, o);
		t0 = now();
		end = t0 + o->runtime;
		fcntl(fd, F_SETFL, O_NONBLOCK);
		while (now() < end) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n > (ssize_t)NET_HDR_LEN) {
				(*pkts)++;
				*bytes += (uint64_t)n - NET_HDR_LEN;
			} else if (n < 0 && errno == EAGAIN) {
				struct timespec ts = { 0, 20000 };
				nanosleep(&ts, NULL);
			}
		}
		sender_stop(&s);
		*sent = s.sent;
	}
	*secs = now() - t0;
	close(fd);
}

/* ---- the device ---- */

static struct vd *net_vd_create(const char *tap, struct error *err)
{
	char spec[64];
	snprintf(spec, sizeof(spec), "tap=%s", tap);
	struct vd_opts o = { .cpus = 1, .ram_bytes = 64ull << 20, .log_level = LOG_ERROR };
	return vd_create_device("virtio-net", "--net", spec, &o, err);
}

static void run_device(const struct opts *o, bool tx, uint64_t *pkts, uint64_t *bytes, double *secs, uint64_t *sent)
{
	struct error err;
	struct vd *vd = net_vd_create(o->tap, &err);
	if (!vd)
		die("device: %s", err.msg);
	uint64_t f = vd_device_features(vd);
	if (!o->mrg)
		f &= ~(1ull << VIRTIO_NET_F_MRG_RXBUF);
	if (vd_start(vd, f, 2, QSIZE))
		die("device set-up failed%s", "");
	uint32_t bufsz = tx ? NET_HDR_LEN + o->size : o->mrg ? 2048 : NET_MAX_PACKET;
	uint64_t bufs = vd_alloc(vd, (uint64_t)bufsz * QSIZE, 4096);
	unsigned q = tx ? TXQ : RXQ;
	for (unsigned i = 0; i < QSIZE; i++) {
		uint64_t gpa = bufs + (uint64_t)i * bufsz;
		if (tx) {
			memset(vd_ptr(vd, gpa, NET_HDR_LEN), 0, NET_HDR_LEN);
			make_frame(vd_ptr(vd, gpa + NET_HDR_LEN, o->size), o->size, o->dst);
		}
		vd_put_desc(vd, q, (uint16_t)i, gpa, bufsz, tx ? 0 : VD_DESC_F_WRITE, 0);
	}
	struct sender s;
	if (!tx)
		sender_start(&s, o);
	for (unsigned i = 0; i < QSIZE; i++)
		vd_publish(vd, q, (uint16_t)i);
	vd_kick(vd, q);
	static struct vd_done done[QSIZE];
	double t0 = now(), end = t0 + o->runtime;
	while (now() < end) {
		vd_pump(vd, 10);
		unsigned n = vd_reap(vd, q, done, QSIZE);
		for (unsigned i = 0; i < n; i++) {
			if (tx) {
				(*pkts)++;
				*bytes += o->size;
				continue;
			}
			/* A merged packet's first buffer carries num_buffers; the others only bytes. */
			struct virtio_net_hdr_v1 h;
			memcpy(&h, vd_ptr(vd, bufs + (uint64_t)done[i].head * bufsz, NET_HDR_LEN), NET_HDR_LEN);
			if (done[i].len > NET_HDR_LEN)
				(*pkts)++;
			*bytes += done[i].len > NET_HDR_LEN ? done[i].len - NET_HDR_LEN : 0;
			for (unsigned k = 1; k < h.num_buffers && i + 1 < n; k++)
				*bytes += done[++i].len;
		}
		for (unsigned i = 0; i < n; i++)
			vd_publish(vd, q, done[i].head);
		if (n)
			vd_kick(vd, q);
	}
	*secs = now() - t0;
	if (!tx) {
		sender_stop(&s);
		*sent = s.sent;
	}
	vd_destroy(vd);
}

/* ---- ping: per-message round trips ---- */

#define PING_ID 0x4b56
#define PING_TIMEOUT_S 1.0

static uint16_t csum16(const uint8_t *p, uint32_t len)
{
	uint32_t sum = 0;
	for (uint32_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The tap's own MAC address: the requests go to it, as a guest's would after ARP. */
static void tap_mac(const char *name, uint8_t mac[6])
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
		die("SIOCGIFHWADDR: %s", strerror(errno));
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	close(s);
}

/* An ICMP echo request of len bytes (>= 42) from 10.0.2.2 (02:00:00:00:00:02) to dst at mac. */
static void make_ping(uint8_t *f, uint32_t len, const char *dst, const uint8_t mac[6])
{
	make_frame(f, len, dst);
	memcpy(f, mac, 6);
	uint8_t *ip = f + 14;
	ip[9] = 1;
	ip[10] = ip[11] = 0;
	uint16_t c = csum16(ip, 20);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	uint8_t *icmp = ip + 20;
	icmp[0] = 8; /* echo request */
	icmp[1] = 0;
	icmp[4] = PING_ID >> 8;
	icmp[5] = PING_ID & 0xff;
}

/* Sets the sequence number and the ICMP checksum. */
static void ping_seq(uint8_t *f, uint32_t len, uint16_t seq)
{
	uint8_t *icmp = f + 34;
	icmp[2] = icmp[3] = 0;
	icmp[6] = (uint8_t)(seq >> 8);
	icmp[7] = (uint8_t)seq;
	uint16_t c = csum16(icmp, len - 34);
	icmp[2] = (uint8_t)(c >> 8);
	icmp[3] = (uint8_t)c;
}

/* Whether the frame p (after the virtio header) is our echo reply number seq. */
static bool is_reply(const uint8_t *p, size_t n, uint16_t seq)
{
	return n >= 42 && p[12] == 0x08 && p[13] == 0x00 && p[23] == 1 && p[34] == 0 && p[38] == (PING_ID >> 8) &&
	       p[39] == (PING_ID & 0xff) && p[40] == (uint8_t)(seq >> 8) && p[41] == (uint8_t)seq;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void ping_direct(const struct opts *o, double *rtt, unsigned *got, unsigned *lost)
{
	int fd = open_tap(o->tap);
	uint8_t mac[6];
	tap_mac(o->tap, mac);
	static uint8_t frame[NET_MAX_PACKET], buf[NET_MAX_PACKET];
	make_ping(frame, o->size, o->dst, mac);
	struct virtio_net_hdr_v1 h = { 0 };
	struct iovec iov[2] = { { &h, NET_HDR_LEN }, { frame, o->size } };
	for (unsigned i = 0; i < o->count; i++) {
		uint16_t seq = (uint16_t)i;
		ping_seq(frame, o->size, seq);
		double t0 = now(), end = t0 + PING_TIMEOUT_S;
		if (writev(fd, iov, 2) < 0)
			die("tap write: %s", strerror(errno));
		bool ok = false;
		while (!ok && now() < end) {
			struct pollfd pfd = { fd, POLLIN, 0 };
			if (poll(&pfd, 1, 100) <= 0)
				continue;
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n > (ssize_t)NET_HDR_LEN && is_reply(buf + NET_HDR_LEN, (size_t)n - NET_HDR_LEN, seq)) {
				rtt[(*got)++] = (now() - t0) * 1e6;
				ok = true;
			}
		}
		if (!ok)
			(*lost)++;
	}
	close(fd);
}

static void ping_device(const struct opts *o, double *rtt, unsigned *got, unsigned *lost)
{
	struct error err;
	struct vd *vd = net_vd_create(o->tap, &err);
	if (!vd)
		die("device: %s", err.msg);
	uint64_t f = vd_device_features(vd);
	if (!o->mrg)
		f &= ~(1ull << VIRTIO_NET_F_MRG_RXBUF);
	if (vd_start(vd, f, 2, QSIZE))
		die("device set-up failed%s", "");
	uint8_t mac[6];
	tap_mac(o->tap, mac);
	uint32_t rxsz = o->mrg ? 2048 : NET_MAX_PACKET;
	unsigned nrx = 64;
	uint64_t rxbufs = vd_alloc(vd, (uint64_t)rxsz * nrx, 4096);
	uint64_t txbuf = vd_alloc(vd, NET_HDR_LEN + o->size, 4096);
	for (unsigned i = 0; i < nrx; i++) {
		vd_put_desc(vd, RXQ, (uint16_t)i, rxbufs + (uint64_t)i * rxsz, rxsz, VD_DESC_F_WRITE, 0);
		vd_publish(vd, RXQ, (uint16_t)i);
	}
	vd_kick(vd, RXQ);
	memset(vd_ptr(vd, txbuf, NET_HDR_LEN), 0, NET_HDR_LEN);
	uint8_t *frame = vd_ptr(vd, txbuf + NET_HDR_LEN, o->size);
	make_ping(frame, o->size, o->dst, mac);
	vd_put_desc(vd, TXQ, 0, txbuf, NET_HDR_LEN + o->size, 0, 0);
	static struct vd_done done[QSIZE];
	for (unsigned i = 0; i < o->count; i++) {
		uint16_t seq = (uint16_t)i;
		ping_seq(frame, o->size, seq);
		double t0 = now(), end = t0 + PING_TIMEOUT_S;
		vd_publish(vd, TXQ, 0);
		vd_kick(vd, TXQ);
		bool ok = false, txdone = false;
		while ((!ok || !txdone) && now() < end) {
			if (!txdone && vd_reap(vd, TXQ, done, 1))
				txdone = true;
			unsigned n = vd_reap(vd, RXQ, done, QSIZE);
			for (unsigned k = 0; k < n; k++) {
				const uint8_t *p = vd_ptr(vd, rxbufs + (uint64_t)done[k].head * rxsz, rxsz);
				if (!ok && done[k].len > NET_HDR_LEN &&
				    is_reply(p + NET_HDR_LEN, done[k].len - NET_HDR_LEN, seq)) {
					rtt[(*got)++] = (now() - t0) * 1e6;
					ok = true;
				}
			}
			for (unsigned k = 0; k < n; k++)
				vd_publish(vd, RXQ, done[k].head);
			if (n)
				vd_kick(vd, RXQ);
			if (!ok || !txdone)
				vd_pump(vd, 100);
		}
		if (!ok)
			(*lost)++;
		if (!txdone)
			die("a transmit did not complete in %s", "1 s");
	}
	vd_destroy(vd);
}

static int run_ping(const struct opts *o)
{
	double *rtt = calloc(o->count ? o->count : 1, sizeof(double));
	unsigned got = 0, lost = 0;
	double cpu0 = cpu_seconds(), t0 = now();
	if (strstr(o->mode, "direct"))
		ping_direct(o, rtt, &got, &lost);
	else
		ping_device(o, rtt, &got, &lost);
	double secs = now() - t0, cpu = cpu_seconds() - cpu0;
	if (!got)
		die("no echo replies came back (%s)", o->mode);
	qsort(rtt, got, sizeof(double), cmp_double);
	double sum = 0;
	for (unsigned i = 0; i < got; i++)
		sum += rtt[i];
	unsigned p99 = (unsigned)((got - 1) * 0.99 + 0.5);
	double median = got % 2 ? rtt[got / 2] : (rtt[got / 2 - 1] + rtt[got / 2]) / 2;
	printf("{\"mode\": \"%s\", \"size\": %u, \"mrg\": %s, \"count\": %u, \"lost\": %u, \"median_us\": %.2f, "
	       "\"p99_us\": %.2f, \"mean_us\": %.2f, \"min_us\": %.2f, \"max_us\": %.2f, \"seconds\": %.3f, "
	       "\"cpu_s\": %.3f}\n",
	       o->mode, o->size, o->mrg ? "true" : "false", got, lost, median, rtt[p99], sum / got, rtt[0],
	       rtt[got - 1], secs, cpu);
	free(rtt);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .size = 1514, .runtime = 3, .dst = "10.0.2.99", .mrg = true, .count = 2000 };
	static const struct option lo[] = {
		{ "tap", 1, 0, 't' }, { "mode", 1, 0, 'm' }, { "size", 1, 0, 's' }, { "runtime", 1, 0, 'r' },
		{ "dst", 1, 0, 'd' }, { "no-mrg", 0, 0, 'n' }, { "count", 1, 0, 'c' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 't': o.tap = optarg; break;
		case 'm': o.mode = optarg; break;
		case 's': o.size = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'r': o.runtime = strtod(optarg, NULL); break;
		case 'd': o.dst = optarg; break;
		case 'n': o.mrg = false; break;
		case 'c': o.count = (uint32_t)strtoul(optarg, NULL, 0); break;
		default: return 2;
		}
	}
	if (!o.tap || !o.mode || o.size < 60 || o.size > 65000)
		die("usage: net-harness --tap NAME --mode tx|tx-direct|rx|rx-direct|ping|ping-direct "
		    "[--size 60..65000] [--runtime S] [--dst IP] [--no-mrg] [--count N]%s", "");
	if (!strncmp(o.mode, "ping", 4))
		return run_ping(&o);
	bool tx = !strncmp(o.mode, "tx", 2), direct = strstr(o.mode, "direct") != NULL;
	uint64_t pkts = 0, bytes = 0, sent = 0;
	double secs = 0, cpu0 = cpu_seconds();
	if (direct)
		run_direct(&o, tx, &pkts, &bytes, &secs, &sent);
	else
		run_device(&o, tx, &pkts, &bytes, &secs, &sent);
	double cpu = cpu_seconds() - cpu0;
	printf("{\"mode\": \"%s\", \"size\": %u, \"mrg\": %s, \"packets\": %llu, \"bytes\": %llu, \"seconds\": %.3f, "
	       "\"pps\": %.0f, \"MBps\": %.1f, \"cpu_s\": %.3f, \"sent\": %llu}\n",
	       o.mode, o.size, o.mrg ? "true" : "false", (unsigned long long)pkts, (unsigned long long)bytes, secs,
	       pkts / secs, bytes / secs / 1e6, cpu, (unsigned long long)sent);
	return 0;
}
