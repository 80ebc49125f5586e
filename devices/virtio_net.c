/*
 * virtio-net (device id 1), one device per --net, on a Linux tap; all packet I/O on io_uring.
 *
 * Queues: receive 0, transmit 1 (no multiqueue, no control queue). The tap is opened with
 * IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte vnet header, the layout of virtio_net_hdr_v1, so
 * a packet is one writev (TX) or one read (RX) with the header in front.
 *
 * TX: a notification pops every chain; each is checked (devices/net_hdr.c: header copied out of guest
 * memory, lengths, offloads the driver negotiated) and becomes one writev SQE of [our header copy,
 * the frame's guest segments]. A bad chain is dropped and counted, never fatal.
 *
 * RX: at most one read is outstanding, and only while the driver has posted a receive buffer: with
 * none, the tap is not read at all (the tap's own queue holds or drops packets) until the driver
 * notifies the receive queue. A chain large enough for any frame (no MRG_RXBUF, or a big buffer)
 * receives the packet directly; otherwise the packet goes into a bounce buffer and is spread over as
 * many chains as it needs, with num_buffers in the first header (MRG_RXBUF).
 *
 * After feature negotiation (the first queue notification after DRIVER_OK) the tap's offloads are set
 * to what the driver accepted (TUNSETOFFLOAD): the tap only hands us partial checksums and TSO frames
 * the guest can take. A reset cancels the outstanding read and drains every write before the driver
 * may reuse its memory.
 */
#include "devices/net_hdr.h"
#include "vmm/io_ring.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <liburing.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define VIRTIO_ID_NET 1
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_CONFIG_SIZE 8       /* mac[6], status */
#define NET_RING_ENTRIES (2 * NET_QUEUE_MAX)

/* io_uring user data: a TX request's address, or one of these. */
#define TAG_RX 1ull
#define TAG_CANCEL 2ull

struct net_tx_req {
	struct net_tx_req *next_free;
	uint32_t reset_count;   /* the transport's, when submitted: a reset since then drops the result */
	uint16_t head;
	uint64_t frame_len;
	unsigned nr_iov;
	struct virtio_net_hdr_v1 hdr;   /* our copy: the guest cannot change it under the tap */
	struct iovec iov[NET_TX_IOV_MAX];
};

enum rx_state {
	RX_IDLE,                /* no read outstanding */
	RX_READING,             /* one read outstanding, into rx_chain or the bounce buffer */
	RX_PLACING,             /* a packet in the bounce buffer waits for more receive chains */
};

struct net_dev {
	struct vm *vm;
	struct virtio_mmio *t;
	struct virtio_dev_ops ops;
	unsigned index;         /* eth0, eth1, ... in the guest */
	char spec[256];
	char ifname[IFNAMSIZ];
	bool created;           /* --net auto: our own non-persistent tap */
	uint8_t mac[6];
	int fd;
	struct io_ring io;
	unsigned inflight;      /* SQEs handed to io_uring and not reaped yet */
	/* TX */
	struct net_tx_req *reqs;
	struct net_tx_req *free_reqs;
	bool tx_starved;        /* popping stopped for lack of a request slot */
	struct virtq_chain tx_chain;
	/* RX */
	enum rx_state rx_state;
	bool rx_direct;
	bool rx_stopped;        /* a tap read failed: receiving stops until the driver resets the device */
	uint32_t rx_reset_count;
	struct virtq_chain rx_chain;    /* the packet's first (or only) chain */
	struct virtq_chain rx_scratch;  /* further chains while placing */
	uint8_t *bounce;
	struct net_rx_merge merge;
	/* Counters, logged at exit (debug). */
	uint64_t tx_packets, tx_bytes, tx_dropped, tx_errors;
	uint64_t rx_packets, rx_bytes, rx_dropped;
	uint64_t notifies[2], wakeups;
	bool tx_error_logged, tx_drop_logged;
};

struct net_devices {
	unsigned nr;
	struct net_dev *devs[CONFIG_MAX_NETS];
};

static bool has_feature(const struct net_dev *d, unsigned bit)
{
	return d->t->driver_features & (1ull << bit);
}

static void net_config_read(void *dev, uint8_t *cfg)
{
	struct net_dev *d = dev;
	uint16_t status = VIRTIO_NET_S_LINK_UP;
	memcpy(cfg, d->mac, 6);
	memcpy(cfg + 6, &status, 2);
}

static struct io_uring_sqe *net_get_sqe(struct net_dev *d)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&d->io.ring);
	if (!sqe) {
		io_uring_submit(&d->io.ring);
		sqe = io_uring_get_sqe(&d->io.ring);
	}
	return sqe;
}

/* The tap's offloads, once per negotiation (t->lock held). */
static void apply_offloads(struct net_dev *d)
{
	struct virtio_mmio *t = d->t;
	unsigned off = net_tun_offloads(t->driver_features);
	if (ioctl(d->fd, TUNSETOFFLOAD, (unsigned long)off) < 0) {
		/* Without offloads the tap hands us complete, checksummed frames: slower, still correct. */
		log_warn(&d->vm->log, "virtio-net %s: TUNSETOFFLOAD 0x%x failed: %s; receiving without offloads",
			 d->ifname, off, strerror(errno));
		if (ioctl(d->fd, TUNSETOFFLOAD, 0ul) < 0)
			log_warn(&d->vm->log, "virtio-net %s: TUNSETOFFLOAD 0 failed too: %s", d->ifname,
				 strerror(errno));
	}
	log_debug(&d->vm->log, "virtio-net %s: driver features 0x%llx, tap offloads 0x%x", d->ifname,
		  (unsigned long long)t->driver_features, off);
}

/* The driver's features are final: the tap's offloads follow them before the first packet. */
static void net_driver_ok(void *dev, struct virtio_mmio *t)
{
	(void)t;
	apply_offloads(dev);
}

/* ---- TX ---- */

static struct net_tx_req *req_get(struct net_dev *d)
{
	struct net_tx_req *r = d->free_reqs;
	if (r)
		d->free_reqs = r->next_free;
	return r;
}

static void req_put(struct net_dev *d, struct net_tx_req *r)
{
	r->next_free = d->free_reqs;
	d->free_reqs = r;
}

/* Pops and sends every available TX chain (t->lock held, event loop thread). */
static void tx_process(struct net_dev *d)
{
	struct virtio_mmio *t = d->t;
	struct virtq *vq = &t->queues[NET_TXQ].vq;
	unsigned queued = 0;
	bool completed_now = false;
	for (;;) {
		struct net_tx_req *r = req_get(d);
		if (!r) {
			d->tx_starved = true; /* resumed when a completion frees a slot */
			break;
		}
		if (!virtio_mmio_pop(t, NET_TXQ, &d->tx_chain)) {
			req_put(d, r);
			break;
		}
		enum net_tx_verdict v = net_tx_prepare(&d->tx_chain, t->driver_features, &r->hdr, r->iov, &r->nr_iov,
						      &r->frame_len);
		struct io_uring_sqe *sqe = v == NET_TX_OK ? net_get_sqe(d) : NULL;
		if (!sqe) {
			d->tx_dropped++;
			if (!d->tx_drop_logged) {
				d->tx_drop_logged = true;
				log_debug(&d->vm->log, "virtio-net %s: dropped a transmit chain of %llu bytes: %s (logged once)",
					  d->ifname, (unsigned long long)d->tx_chain.out_bytes,
					  v == NET_TX_OK ? "no io_uring entry" : net_tx_verdict_str(v));
			}
			virtq_push_used(vq, d->tx_chain.head, 0);
			completed_now = true;
			req_put(d, r);
			continue;
		}
		r->head = d->tx_chain.head;
		r->reset_count = t->reset_count;
		io_uring_prep_writev(sqe, d->fd, r->iov, r->nr_iov, 0);
		io_uring_sqe_set_data(sqe, r);
		d->inflight++;
		queued++;
	}
	if (queued)
		io_uring_submit(&d->io.ring);
	if (completed_now)
		virtio_mmio_signal_used(t, NET_TXQ);
}

static bool tx_complete(struct net_dev *d, struct net_tx_req *r, int res)
{
	struct virtio_mmio *t = d->t;
	bool pushed = false;
	if (r->reset_count == t->reset_count && virtio_mmio_driver_ok(t)) {
		if (res < 0) {
			/* EIO: the tap is down; EINVAL: the tap refused the header. The guest's packet is lost,
			 * as on a wire. */
			d->tx_errors++;
			if (!d->tx_error_logged) {
				d->tx_error_logged = true;
				log_debug(&d->vm->log, "virtio-net %s: writing a packet to the tap failed: %s%s (logged once)",
					  d->ifname, strerror(-res),
					  res == -EIO ? " (is the tap up? ip link set ... up)" : "");
			}
		} else {
			d->tx_packets++;
			d->tx_bytes += r->frame_len;
		}
		virtq_push_used(&t->queues[NET_TXQ].vq, r->head, 0);
		pushed = true;
	}
	req_put(d, r);
	return pushed;
}

/* ---- RX ---- */

static void rx_drop_chain(struct net_dev *d, uint16_t head)
{
	/* Length 0: the driver counts a short packet and reposts the buffer. */
	virtq_push_used(&d->t->queues[NET_RXQ].vq, head, 0);
	d->rx_dropped++;
}

/* Spreads the packet in the bounce buffer over further chains until it is placed, or the driver has
 * no more buffers (then it waits for the next notification). */
static void rx_place(struct net_dev *d)
{
	struct virtio_mmio *t = d->t;
	struct virtq *vq = &t->queues[NET_RXQ].vq;
	struct net_rx_merge *m = &d->merge;
	while (!net_rx_done(m)) {
		/* Empty: still RX_PLACING, the driver's next notification resumes here (or it broke the queue). */
		if (!virtio_mmio_pop(t, NET_RXQ, &d->rx_scratch))
			return;
		if (!net_rx_chain_ok(&d->rx_scratch)) {
			virtio_mmio_needs_reset(t, "virtio-net receive buffer with device-readable segments or "
						   "smaller than the 12-byte header");
			return;
		}
		if (net_rx_place(m, &d->rx_scratch) < 0) {
			/* Would need more chains than the queue holds: drop the packet, give every chain back. */
			for (unsigned i = 0; i < m->nr_bufs; i++)
				virtq_push_used(vq, m->heads[i], 0);
			d->rx_dropped++;
			d->rx_state = RX_IDLE;
			virtio_mmio_signal_used(t, NET_RXQ);
			return;
		}
	}
	/* The header last, now that num_buffers is known; it fits in the first chain (net_rx_chain_ok). */
	struct virtio_net_hdr_v1 hdr;
	memcpy(&hdr, d->bounce, NET_HDR_LEN);
	hdr.num_buffers = m->nr_bufs;
	virtq_chain_write(&d->rx_chain, 0, &hdr, NET_HDR_LEN);
	for (unsigned i = 0; i < m->nr_bufs; i++)
		virtq_push_used(vq, m->heads[i], m->lens[i]);
	d->rx_packets++;
	d->rx_bytes += m->len - NET_HDR_LEN;
	d->rx_state = RX_IDLE;
	virtio_mmio_signal_used(t, NET_RXQ);
}

/* Arms the next read if the driver has a receive buffer (t->lock held). */
static void rx_start(struct net_dev *d)
{
	struct virtio_mmio *t = d->t;
	struct virtq *vq = &t->queues[NET_RXQ].vq;
	if (d->rx_stopped || !virtio_mmio_driver_ok(t) || !vq->ready || vq->broken)
		return;
	if (d->rx_state == RX_PLACING)
		rx_place(d);
	if (d->rx_state != RX_IDLE)
		return;
	/* No buffer: leave the tap alone until the driver posts one (or it broke the queue). */
	if (!virtio_mmio_pop(t, NET_RXQ, &d->rx_chain))
		return;
	if (!net_rx_chain_ok(&d->rx_chain)) {
		virtio_mmio_needs_reset(t, "virtio-net receive buffer with device-readable segments or smaller "
					   "than the 12-byte header");
		return;
	}
	struct io_uring_sqe *sqe = net_get_sqe(d);
	if (!sqe) { /* cannot happen: the ring has room for every TX slot and the read */
		rx_drop_chain(d, d->rx_chain.head);
		virtio_mmio_signal_used(t, NET_RXQ);
		return;
	}
	d->rx_direct = !has_feature(d, VIRTIO_NET_F_MRG_RXBUF) || d->rx_chain.in_bytes >= NET_MAX_PACKET;
	if (d->rx_direct)
		io_uring_prep_readv(sqe, d->fd, &d->rx_chain.iov[d->rx_chain.nr_out], d->rx_chain.nr_in, 0);
	else
		io_uring_prep_read(sqe, d->fd, d->bounce, NET_MAX_PACKET, 0);
	io_uring_sqe_set_data64(sqe, TAG_RX);
	d->rx_state = RX_READING;
	d->rx_reset_count = t->reset_count;
	d->inflight++;
	io_uring_submit(&d->io.ring);
}

static void rx_complete(struct net_dev *d, int res)
{
	struct virtio_mmio *t = d->t;
	struct virtq *vq = &t->queues[NET_RXQ].vq;
	d->rx_state = RX_IDLE;
	if (d->rx_reset_count != t->reset_count || !virtio_mmio_driver_ok(t) || res == -ECANCELED)
		return;
	if (res < 0) {
		if (res == -EAGAIN || res == -EINTR) {
			/* Nothing read after all: the chain goes back as an empty packet; the read is re-armed. */
			virtq_push_used(vq, d->rx_chain.head, 0);
		} else {
			log_warn(&d->vm->log, "virtio-net %s: reading from the tap failed: %s%s; the guest receives "
				 "nothing more on eth%u until its driver resets the device", d->ifname, strerror(-res),
				 res == -EBADFD ? " (the tap was deleted)" : "", d->index);
			d->rx_stopped = true;
			rx_drop_chain(d, d->rx_chain.head);
		}
		virtio_mmio_signal_used(t, NET_RXQ);
		return;
	}
	uint32_t n = (uint32_t)res;
	struct virtio_net_hdr_v1 hdr;
	if (d->rx_direct) {
		/* A frame larger than the chain was cut short by the tap: drop it. */
		if (n < NET_HDR_LEN + NET_ETH_HLEN || n > d->rx_chain.in_bytes ||
		    net_chain_read_in(&d->rx_chain, 0, &hdr, NET_HDR_LEN) != NET_HDR_LEN ||
		    !net_rx_fix_hdr(&hdr, t->driver_features, 1)) {
			rx_drop_chain(d, d->rx_chain.head);
		} else {
			virtq_chain_write(&d->rx_chain, 0, &hdr, NET_HDR_LEN);
			virtq_push_used(vq, d->rx_chain.head, n);
			d->rx_packets++;
			d->rx_bytes += n - NET_HDR_LEN;
		}
		virtio_mmio_signal_used(t, NET_RXQ);
		return;
	}
	memcpy(&hdr, d->bounce, NET_HDR_LEN);
	if (n < NET_HDR_LEN + NET_ETH_HLEN || n > NET_MAX_PACKET || !net_rx_fix_hdr(&hdr, t->driver_features, 0)) {
		rx_drop_chain(d, d->rx_chain.head);
		virtio_mmio_signal_used(t, NET_RXQ);
		return;
	}
	memcpy(d->bounce, &hdr, NET_HDR_LEN);
	net_rx_merge_start(&d->merge, d->bounce, n, vq->size);
	if (net_rx_place(&d->merge, &d->rx_chain) < 0) {
		rx_drop_chain(d, d->rx_chain.head);
		virtio_mmio_signal_used(t, NET_RXQ);
		return;
	}
	d->rx_state = RX_PLACING;
	rx_place(d);
}

/* ---- Event loop side ---- */

/* Handles every completion; then resumes TX if it starved and re-arms RX (t->lock held). */
static void process_completions(struct net_dev *d)
{
	struct virtio_mmio *t = d->t;
	bool tx_used = false;
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&d->io.ring, &cqe) == 0) {
		uint64_t tag = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&d->io.ring, cqe);
		d->inflight--;
		if (tag == TAG_RX)
			rx_complete(d, res);
		else if (tag != TAG_CANCEL)
			tx_used |= tx_complete(d, (struct net_tx_req *)(uintptr_t)tag, res);
	}
	if (tx_used)
		virtio_mmio_signal_used(t, NET_TXQ);
	struct virtq *txq = &t->queues[NET_TXQ].vq;
	if (d->tx_starved && d->free_reqs) {
		d->tx_starved = false;
		if (virtio_mmio_driver_ok(t) && txq->ready && !txq->broken)
			tx_process(d);
	}
	if (d->rx_state == RX_IDLE)
		rx_start(d);
}

/* Completions until none is left: a tap read or write usually completes inside io_uring_submit (the
 * data is there), so handling it here saves a trip through the eventfd and epoll per packet. Bounded, so
 * one busy device cannot starve the rest of the event loop: past the budget, the eventfd brings us back. */
static void run_completions(struct net_dev *d)
{
	for (unsigned i = 0; i < 64; i++) {
		if (!io_uring_cq_ready(&d->io.ring))
			return;
		process_completions(d);
	}
	if (!io_uring_cq_ready(&d->io.ring))
		return;
	io_ring_wake(&d->io);
}

static void net_on_completion(void *ctx, uint32_t events)
{
	struct net_dev *d = ctx;
	(void)events;
	io_ring_ack(&d->io);
	pthread_mutex_lock(&d->t->lock);
	d->wakeups++;
	run_completions(d);
	pthread_mutex_unlock(&d->t->lock);
}

static void net_queue_notify(void *dev, struct virtio_mmio *t, unsigned q)
{
	struct net_dev *d = dev;
	(void)t;
	d->notifies[q & 1]++;
	if (q == NET_RXQ)
		rx_start(d);
	else if (q == NET_TXQ)
		tx_process(d);
	run_completions(d);
}

/* Waits for everything in flight, cancelling the outstanding read (it may never complete on its own). */
static void drain(struct net_dev *d, bool cancel_all)
{
	if (d->inflight && (cancel_all || d->rx_state == RX_READING)) {
		struct io_uring_sqe *sqe = net_get_sqe(d);
		if (sqe) {
			if (cancel_all)
				io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			else
				io_uring_prep_cancel64(sqe, TAG_RX, 0);
			io_uring_sqe_set_data64(sqe, TAG_CANCEL);
			d->inflight++;
		}
	}
	io_uring_submit(&d->io.ring);
	while (d->inflight) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { .tv_sec = 5 };
		int e = io_uring_wait_cqe_timeout(&d->io.ring, &cqe, &ts);
		if (e < 0) {
			log_warn(&d->vm->log, "virtio-net %s: %u tap operation(s) still in flight after 5 s (%s); "
				 "going on without them", d->ifname, d->inflight, strerror(-e));
			break;
		}
		uint64_t tag = io_uring_cqe_get_data64(cqe);
		io_uring_cqe_seen(&d->io.ring, cqe);
		d->inflight--;
		if (tag != TAG_RX && tag != TAG_CANCEL)
			req_put(d, (struct net_tx_req *)(uintptr_t)tag);
	}
}

/* The driver reset the device (vCPU thread, transport lock held, so the event loop is not inside the
 * ring): cancel the read, wait for the writes, forget every chain. */
static void net_reset(void *dev)
{
	struct net_dev *d = dev;
	drain(d, false);
	d->rx_state = RX_IDLE;
	d->rx_stopped = false;
	d->tx_starved = false;
}

/* ---- Set-up ---- */

/* tap=NAME[,mac=MAC] | auto[,mac=MAC] */
static int parse_net_option(struct net_dev *d, const char *spec, struct error *err)
{
	char buf[256];
	if (!*spec || strlen(spec) >= sizeof(buf))
		return error_input(err, "--net '%s': give tap=NAME[,mac=MAC] or auto[,mac=MAC]", spec);
	snprintf(d->spec, sizeof(d->spec), "%s", spec);
	snprintf(buf, sizeof(buf), "%s", spec);
	char *save = NULL;
	char *first = strtok_r(buf, ",", &save);
	bool mac_given = false;
	if (first && !strcmp(first, "auto")) {
		d->created = true;
	} else if (first && !strncmp(first, "tap=", 4)) {
		const char *name = first + 4;
		if (!*name)
			return error_input(err, "--net %s: the tap name is missing: give tap=NAME (an existing tap, "
					   "e.g. from `ip tuntap add mode tap name NAME`) or auto", spec);
		if (strlen(name) >= IFNAMSIZ)
			return error_input(err, "--net %s: tap name '%s' is longer than %d characters", spec, name,
					   IFNAMSIZ - 1);
		for (const char *c = name; *c; c++)
			if (*c == '/' || *c == '%' || *c == ':' || *c <= ' ' || *c == 0x7f)
				return error_input(err, "--net %s: tap name '%s' contains '%c', which an interface name "
						   "cannot hold", spec, name, *c);
		snprintf(d->ifname, sizeof(d->ifname), "%s", name);
	} else {
		return error_input(err, "--net %s: start with tap=NAME (an existing tap) or auto (a new tap that "
				   "goes away with the VM)", spec);
	}
	for (char *o = strtok_r(NULL, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		if (!strncmp(o, "mac=", 4)) {
			if (!net_parse_mac(o + 4, d->mac))
				return error_input(err, "--net %s: '%s' is not a unicast MAC address: give six hex bytes "
						   "like 02:00:00:00:00:01 (first byte even; 02 marks a local address)",
						   spec, o + 4);
			mac_given = true;
		} else {
			return error_input(err, "--net %s: unknown option '%s' (mac=MAC)", spec, o);
		}
	}
	if (!mac_given) {
		if (getrandom(d->mac, sizeof(d->mac), 0) != (ssize_t)sizeof(d->mac))
			return error_set(err, "--net %s: getrandom failed: %s", spec, strerror(errno));
		d->mac[0] = (uint8_t)((d->mac[0] & 0xfe) | 0x02); /* unicast, locally administered */
	}
	return 0;
}

static int open_tap(struct net_dev *d, struct error *err)
{
	d->fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (d->fd < 0)
		return error_set(err, "--net %s: cannot open /dev/net/tun: %s (is the tun module loaded? "
				 "modprobe tun)", d->spec, strerror(errno));
	if (!d->created && if_nametoindex(d->ifname) == 0)
		/* TUNSETIFF would create it, and it would vanish with us: not what tap=NAME asks for. */
		return error_input(err, "--net %s: there is no network interface '%s': create it first "
				   "(ip tuntap add mode tap name %s), or use --net auto", d->spec, d->ifname, d->ifname);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", d->created ? "kvmbox%d" : d->ifname);
	if (ioctl(d->fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		if (d->created)
			return error_set(err, "--net auto: cannot create a tap: %s%s", strerror(e),
					 e == EPERM ? " (creating a tap needs CAP_NET_ADMIN: run as root, or create one "
						      "with `ip tuntap add mode tap name NAME user USER` and use tap=NAME)" : "");
		if (e == EBUSY)
			return error_input(err, "--net %s: tap %s is in use by another process (a single-queue tap "
					   "has one reader): stop it, or give this VM its own tap", d->spec, d->ifname);
		if (e == EINVAL)
			return error_input(err, "--net %s: %s is not a single-queue tap device (a tun device, a "
					   "multi_queue tap or another kind of interface): create one with "
					   "`ip tuntap add mode tap name NAME`", d->spec, d->ifname);
		if (e == EPERM)
			return error_input(err, "--net %s: no permission to attach to tap %s: it belongs to another "
					   "user or group; run as root or recreate it with `ip tuntap add mode tap name %s "
					   "user USER`", d->spec, d->ifname, d->ifname);
		return error_set(err, "--net %s: TUNSETIFF on %s failed: %s", d->spec, d->ifname, strerror(e));
	}
	snprintf(d->ifname, sizeof(d->ifname), "%s", ifr.ifr_name);
	int hdr_len = NET_HDR_LEN;
	if (ioctl(d->fd, TUNSETVNETHDRSZ, &hdr_len) < 0)
		return error_set(err, "--net %s: TUNSETVNETHDRSZ %d on %s failed: %s", d->spec, hdr_len, d->ifname,
				 strerror(errno));
	/* No offloads until the driver says what it takes (a reused tap may have some left over). */
	if (ioctl(d->fd, TUNSETOFFLOAD, 0ul) < 0)
		return error_set(err, "--net %s: TUNSETOFFLOAD on %s failed: %s", d->spec, d->ifname, strerror(errno));
	return 0;
}

/* Whether the interface is up (for a warning only). */
static bool tap_is_up(const char *ifname)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return true;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	bool up = ioctl(s, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags & IFF_UP);
	close(s);
	return up;
}

static int net_create_one(struct vm *vm, struct net_dev *d, const char *spec, unsigned index, struct error *err)
{
	d->vm = vm;
	d->index = index;
	d->fd = -1;
	io_ring_clear(&d->io);
	if (parse_net_option(d, spec, err) || open_tap(d, err))
		return -1;
	d->reqs = calloc(NET_QUEUE_MAX, sizeof(*d->reqs));
	d->bounce = malloc(NET_MAX_PACKET);
	if (!d->reqs || !d->bounce)
		return error_set(err, "out of memory for virtio-net %s", d->ifname);
	for (unsigned i = 0; i < NET_QUEUE_MAX; i++)
		req_put(d, &d->reqs[i]);
	char who[300];
	snprintf(who, sizeof(who), "--net %s", d->spec);
	if (io_ring_init(&d->io, &vm->loop, NET_RING_ENTRIES, 0, net_on_completion, d, who, err))
		return -1;
	d->ops = (struct virtio_dev_ops){
		.name = "virtio-net",
		.device_id = VIRTIO_ID_NET,
		.features = (1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_GUEST_CSUM) |
			    (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_GUEST_TSO4) |
			    (1ull << VIRTIO_NET_F_GUEST_TSO6) | (1ull << VIRTIO_NET_F_HOST_TSO4) |
			    (1ull << VIRTIO_NET_F_HOST_TSO6) | (1ull << VIRTIO_NET_F_MRG_RXBUF) |
			    (1ull << VIRTIO_NET_F_STATUS),
		.nr_queues = 2,
		.queue_max = NET_QUEUE_MAX,
		.config_size = NET_CONFIG_SIZE,
		.config_read = net_config_read,
		.driver_ok = net_driver_ok,
		.queue_notify = net_queue_notify,
		.reset = net_reset,
	};
	if (virtio_mmio_create(vm, &d->ops, d, &d->t, err))
		return -1;
	char mac[18];
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", d->mac[0], d->mac[1], d->mac[2], d->mac[3],
		 d->mac[4], d->mac[5]);
	if (d->created)
		log_info(&vm->log, "virtio-net: eth%u on tap %s (created; it goes away when the monitor exits), "
			 "MAC %s", index, d->ifname, mac);
	else
		log_info(&vm->log, "virtio-net: eth%u on tap %s, MAC %s", index, d->ifname, mac);
	if (!d->created && !tap_is_up(d->ifname))
		log_warn(&vm->log, "virtio-net: tap %s is down: the guest's packets are dropped until "
			 "`ip link set %s up`", d->ifname, d->ifname);
	return 0;
}

static void net_destroy_one(struct net_dev *d)
{
	if (d->t)
		virtio_mmio_destroy(d->t);
	if (d->io.ready)
		drain(d, true);
	io_ring_exit(&d->io);
	if (d->fd >= 0)
		close(d->fd);
	if (d->tx_packets + d->rx_packets + d->tx_dropped + d->rx_dropped + d->tx_errors)
		log_debug(&d->vm->log, "virtio-net %s: TX %llu packets %llu bytes (%llu dropped, %llu failed), "
			  "RX %llu packets %llu bytes (%llu dropped); notifications TX %llu RX %llu, completion wake-ups %llu",
			  d->ifname, (unsigned long long)d->tx_packets,
			  (unsigned long long)d->tx_bytes, (unsigned long long)d->tx_dropped,
			  (unsigned long long)d->tx_errors, (unsigned long long)d->rx_packets,
			  (unsigned long long)d->rx_bytes, (unsigned long long)d->rx_dropped,
			  (unsigned long long)d->notifies[NET_TXQ], (unsigned long long)d->notifies[NET_RXQ],
			  (unsigned long long)d->wakeups);
	free(d->reqs);
	free(d->bounce);
	free(d);
}

static void net_destroy(void *state)
{
	struct net_devices *all = state;
	for (unsigned i = 0; i < all->nr; i++)
		net_destroy_one(all->devs[i]);
	free(all);
}

static int net_create(struct vm *vm, void **state, struct error *err)
{
	if (vm->cfg->nr_nets == 0)
		return 0;
	struct net_devices *all = calloc(1, sizeof(*all));
	if (!all)
		return error_set(err, "out of memory");
	*state = all;
	for (unsigned i = 0; i < vm->cfg->nr_nets && i < CONFIG_MAX_NETS; i++) {
		struct net_dev *d = calloc(1, sizeof(*d));
		if (!d)
			return error_set(err, "out of memory");
		all->devs[all->nr++] = d;
		if (net_create_one(vm, d, vm->cfg->nets[i], i, err))
			return -1;
	}
	return 0;
}

static const struct device_desc virtio_net = {
	.name = "virtio-net",
	.create = net_create,
	.destroy = net_destroy,
};
DEVICE_REGISTER(virtio_net);
