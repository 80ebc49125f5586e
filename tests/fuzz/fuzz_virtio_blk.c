/*
 * libFuzzer target: virtio-blk (devices/virtio_blk.c on vmm/virtio_mmio.c and vmm/virtq.c) as a hostile
 * guest drives it, through the in-process driver of tests/harness/virtio_driver.h. Per input: a fresh
 * device on a 1 MiB image (created once per process on /dev/shm, or $TMPDIR), features negotiated as the
 * header says, guest RAM = the input's image (rings, descriptors, request headers, data: all arbitrary),
 * queues enabled at the header's addresses, notified, the event loop pumped a bounded number of times.
 *
 * Checked: no sanitizer report, FEATURES_OK kept exactly when the features are acceptable, and when the
 * input stays inside the rules the checker can follow ("clean": rings apart from each other and from
 * every device-writable buffer, no resets or register pokes) every available request is completed, with
 * used ids taken from the available ring, unless the device set DEVICE_NEEDS_RESET. After a reset with
 * I/O in flight, nothing lands in the new used ring.
 *
 * Input: a 32-byte header, then the RAM image (at gpa 0, up to 64 KiB; 16 KiB more RAM after it is the
 * checker's, for the rings after a reset).
 *   [0]  features: 1 EVENT_IDX, 2 INDIRECT_DESC, 4 FLUSH, 8 DISCARD, 16 WRITE_ZEROES, 32 MQ,
 *        64 also ask for bit [9] % 64, 128 leave out VERSION_1
 *   [1]  1 readonly, 2 O_DIRECT, 4 two queues, 8 reset with I/O in flight, 16 QueueReady 0/1 on queue 0,
 *        32 a second round of [16] % 8 more available entries, 64 register pokes [17..31], 128 DRIVER_OK
 *        only after the first notification
 *   [2]  log2 queue sizes: queue 0 low 3 bits, queue 1 bits 4..6
 *   [3..4] [5..6] [7..8]  queue 0 descriptor table / avail / used, in units of 16 / 2 / 4 bytes
 *   [10..11] [12..13]  queue 1 rings: offset of all three from queue 0's, in units of 16 bytes
 *   [14] turns of the loop in the first round (1 + bits 0..4); bit 7: do not wait for I/O (leave it in flight)
 *   [15] queues to notify (bit 0, bit 1; 0 means all)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness/virtio_driver.h"

#define HDR 32
#define IMAGE (64u << 10)
#define RAM_SIZE (IMAGE + (16u << 10))
#define DISK_BYTES (1u << 20)
#define MAX_INDIRECT 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char disk_path[256];

static void remove_disk(void)
{
	unlink(disk_path);
}

static void make_disk(void)
{
	if (disk_path[0])
		return;
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(disk_path, sizeof(disk_path), "%s/kvmbox-fuzz-vblk-XXXXXX", dir);
	int fd = mkstemp(disk_path);
	if (fd < 0) {
		perror(disk_path);
		abort();
	}
	static uint8_t buf[DISK_BYTES];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i / 512 * 7 + i);
	if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		abort();
	close(fd);
	atexit(remove_disk);
}

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_virtio_blk: broken promise: %s\n", what);
	abort();
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }

/* Guest-physical ranges [a, a+len). */
struct range {
	uint64_t a, len;
};

static bool overlap(struct range x, struct range y)
{
	return x.a < y.a + y.len && y.a < x.a + x.len;
}

struct queue_plan {
	bool ready;
	uint16_t size;
	uint64_t desc, avail, used;
	uint16_t pending;   /* avail->idx when notified */
	bool notified;
};

/* Reads a little-endian u16 of guest RAM (0 outside). */
static uint16_t ram16(struct vd *vd, uint64_t gpa)
{
	const uint8_t *p = vd_ptr(vd, gpa, 2);
	return p ? get16(p) : 0;
}

/*
 * Whether a device-writable buffer named by any descriptor (direct or in an indirect table) overlaps one of
 * the protected ranges; the indirect tables themselves are added to them.
 */
static bool writable_overlaps(struct vd *vd, const struct queue_plan *qp, unsigned nq, bool indirect,
			      struct range *prot, unsigned nprot)
{
	struct range tables[1 + MAX_INDIRECT * 2];
	unsigned ntables = 0;
	for (unsigned q = 0; q < nq; q++) {
		if (!qp[q].ready)
			continue;
		for (unsigned i = 0; i < qp[q].size; i++) {
			const uint8_t *d = vd_ptr(vd, qp[q].desc + 16ull * i, 16);
			uint64_t addr;
			memcpy(&addr, d, 8);
			uint32_t len = get32(d + 8);
			uint16_t flags = get16(d + 12);
			if ((flags & VD_DESC_F_INDIRECT) && indirect) {
				if (ntables == sizeof(tables) / sizeof(tables[0]))
					return true; /* too many to follow: not clean */
				tables[ntables++] = (struct range){ addr, len };
			} else if ((flags & VD_DESC_F_WRITE)) {
				for (unsigned k = 0; k < nprot; k++)
					if (overlap((struct range){ addr, len ? len : 1 }, prot[k]))
						return true;
			}
		}
	}
	for (unsigned t = 0; t < ntables; t++) {
		/* The table is protected (a write into it would change a chain under the checker). */
		for (unsigned k = 0; k < nprot; k++)
			if (overlap(tables[t], prot[k]))
				return true;
		const uint8_t *tb = vd_ptr(vd, tables[t].a, tables[t].len);
		if (!tb)
			continue; /* the device refuses it */
		for (uint64_t i = 0; i + 16 <= tables[t].len; i += 16) {
			uint64_t addr;
			memcpy(&addr, tb + i, 8);
			uint32_t len = get32(tb + i + 8);
			uint16_t flags = get16(tb + i + 12);
			if (!(flags & VD_DESC_F_WRITE))
				continue;
			struct range w = { addr, len ? len : 1 };
			for (unsigned k = 0; k < nprot; k++)
				if (overlap(w, prot[k]))
					return true;
			for (unsigned u = 0; u < ntables; u++)
				if (overlap(w, tables[u]))
					return true;
		}
	}
	return false;
}

/* Whether a ready queue has available entries the device has not returned (as guest RAM says now). */
static bool outstanding(struct vd *vd, const struct queue_plan *qp, unsigned nq)
{
	if (vd_status(vd) & VD_STATUS_NEEDS_RESET)
		return false;
	for (unsigned q = 0; q < nq; q++)
		if (qp[q].ready && ram16(vd, qp[q].avail + 2) != ram16(vd, qp[q].used + 2))
			return true;
	return false;
}

/*
 * Runs the loop until nothing is ready (at most n turns without waiting). Some I/O completes in io_uring's
 * worker threads a little later: while requests look outstanding, wait up to 1 ms at a time, 5 times.
 */
static void pump(struct vd *vd, const struct queue_plan *qp, unsigned nq, unsigned n, unsigned max_waits)
{
	unsigned waits = 0;
	for (unsigned i = 0; i < n + 5; i++) {
		if (vd_pump(vd, 0) > 0)
			continue;
		if (waits >= max_waits || !outstanding(vd, qp, nq))
			break;
		waits++;
		if (vd_pump(vd, 1) < 0)
			break;
	}
}

static void poke(struct vd *vd, const uint8_t *p)
{
	static const uint16_t regs[] = {
		VD_REG_QUEUE_SEL, VD_REG_QUEUE_NUM, VD_REG_QUEUE_READY, VD_REG_QUEUE_NOTIFY, VD_REG_INTERRUPT_ACK,
		VD_REG_STATUS, VD_REG_QUEUE_DESC_LOW, VD_REG_QUEUE_AVAIL_LOW, VD_REG_QUEUE_USED_LOW,
		VD_REG_QUEUE_DESC_HIGH, VD_REG_DRIVER_FEATURES, VD_REG_DRIVER_FEATURES_SEL,
		VD_REG_DEVICE_FEATURES_SEL,
	};
	unsigned nregs = sizeof(regs) / sizeof(regs[0]);
	uint32_t v = get32(p + 1);
	if (p[0] % (nregs + 2) < nregs) {
		vd_write32(vd, regs[p[0] % (nregs + 2)], v);
	} else if (p[0] % (nregs + 2) == nregs) {
		uint8_t buf[8];
		vd_config_read(vd, v & 0xfff, buf, 1u << (p[0] >> 6 & 3));
	} else {
		/* An odd-sized or unaligned register access (the transport ignores or zero-fills it). */
		uint8_t buf[8];
		memcpy(buf, &v, 4);
		bus_access(&vd->vm.mmio, vd->base + (v >> 20 & 0xff), buf, 1u << (p[0] >> 6 & 3), p[0] & 0x20);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	make_disk();
	uint8_t h[HDR] = { 0 };
	memcpy(h, data, size < HDR ? size : HDR);
	const uint8_t *image = data + (size < HDR ? size : HDR);
	size_t image_len = size > HDR ? size - HDR : 0;
	if (image_len > IMAGE)
		image_len = IMAGE;

	char spec[320];
	snprintf(spec, sizeof(spec), "%s%s%s", disk_path, h[1] & 1 ? ",readonly" : "", h[1] & 2 ? ",direct" : "");
	struct vd_opts opts = { .cpus = h[1] & 4 ? 2 : 1, .ram_bytes = RAM_SIZE, .log_level = LOG_ERROR };
	struct error err;
	struct vd *vd = vd_create(spec, &opts, &err);
	if (!vd) {
		fprintf(stderr, "fuzz_virtio_blk: cannot create the device: %s\n", err.msg);
		abort();
	}

	/* Features. */
	uint64_t offered = vd_device_features(vd);
	static const unsigned bits[] = { VD_F_EVENT_IDX, VD_F_INDIRECT_DESC, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD,
					 VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_F_MQ };
	uint64_t want = (1ull << VD_F_VERSION_1) | (offered & ((1ull << VIRTIO_BLK_F_SEG_MAX) |
		(1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_RO)));
	for (unsigned i = 0; i < 6; i++)
		if (h[0] & (1u << i))
			want |= offered & (1ull << bits[i]);
	if (h[0] & 64)
		want |= 1ull << (h[9] % 64);
	if (h[0] & 128)
		want &= ~(1ull << VD_F_VERSION_1);
	bool acceptable = !(want & ~offered) && (want & (1ull << VD_F_VERSION_1));
	int rc = vd_negotiate(vd, want);
	if ((rc == 0) != acceptable)
		fail(acceptable ? "acceptable features refused" : "unacceptable features accepted (FEATURES_OK kept)");
	if (rc) {
		vd_destroy(vd);
		return 0;
	}
	bool event_idx = want & (1ull << VD_F_EVENT_IDX);
	bool indirect = want & (1ull << VD_F_INDIRECT_DESC);

	/* Guest RAM and queues. */
	memcpy(vd_ptr(vd, 0, IMAGE), image, image_len);
	unsigned nq = h[1] & 4 ? 2 : 1;
	struct queue_plan qp[2] = { 0 };
	qp[0].size = (uint16_t)(1u << (h[2] & 7));
	qp[0].desc = (get16(h + 3) % (RAM_SIZE / 16 + 256)) * 16ull;
	qp[0].avail = (get16(h + 5) % (RAM_SIZE / 2 + 2048)) * 2ull;
	qp[0].used = (get16(h + 7) % (RAM_SIZE / 4 + 1024)) * 4ull;
	qp[1].size = (uint16_t)(1u << (h[2] >> 4 & 7));
	uint64_t off1 = (get16(h + 10) % (RAM_SIZE / 16)) * 16ull, off1b = (get16(h + 12) % (RAM_SIZE / 16)) * 16ull;
	qp[1].desc = (qp[0].desc + off1) % RAM_SIZE;
	qp[1].avail = (qp[0].avail + off1b) % RAM_SIZE;
	qp[1].used = (qp[0].used + off1 + off1b) % RAM_SIZE;
	for (unsigned q = 0; q < nq; q++) {
		qp[q].ready = vd_setup_queue_at(vd, q, qp[q].size, qp[q].desc, qp[q].avail, qp[q].used) == 0;
		/* The driver zeroes used->idx (the device counts from 0 and never reads it). */
		uint8_t *used_idx = qp[q].ready ? vd_ptr(vd, qp[q].used + 2, 2) : NULL;
		if (used_idx)
			memset(used_idx, 0, 2);
	}
	bool late_driver_ok = h[1] & 128;
	if (!late_driver_ok)
		vd_driver_ok(vd);

	/* Can the checker follow this input? */
	bool clean = !(h[1] & (8 | 16 | 32 | 64 | 128)) && !(vd_status(vd) & VD_STATUS_NEEDS_RESET);
	struct range prot[2 * 3 + 1];
	unsigned nprot = 0;
	for (unsigned q = 0; q < nq; q++) {
		if (!qp[q].ready)
			continue;
		prot[nprot++] = (struct range){ qp[q].desc, 16ull * qp[q].size };
		prot[nprot++] = (struct range){ qp[q].avail, 6 + 2ull * qp[q].size };
		prot[nprot++] = (struct range){ qp[q].used, 6 + 8ull * qp[q].size };
	}
	/* layout_ok: rings apart, and no device-writable buffer over a ring, a table or the checker's own area
	 * (the rings after a reset), so that what the device writes cannot change what the checker reads. */
	bool layout_ok = true;
	for (unsigned i = 0; i < nprot; i++)
		for (unsigned j = i + 1; j < nprot; j++)
			if (overlap(prot[i], prot[j]))
				layout_ok = false;
	prot[nprot++] = (struct range){ IMAGE, RAM_SIZE - IMAGE };
	if (writable_overlaps(vd, qp, nq, indirect, prot, nprot))
		layout_ok = false;
	clean = clean && layout_ok;

	/* Notify, pump. */
	unsigned notify_mask = h[15] & 3 ? h[15] & 3 : 3;
	for (unsigned q = 0; q < nq; q++) {
		if (!qp[q].ready || !(notify_mask & (1u << q)))
			continue;
		qp[q].pending = ram16(vd, qp[q].avail + 2);
		qp[q].notified = true;
		if (h[1] & 64 && h[31] & 1)
			vd_write32(vd, VD_REG_QUEUE_NOTIFY, q); /* through the register, as without ioeventfd */
		else
			vd_notify(vd, q);
	}
	pump(vd, qp, nq, 1 + h[14] % 32, h[14] & 128 ? 0 : 5);

	if (late_driver_ok) {
		vd_driver_ok(vd);
		for (unsigned q = 0; q < nq; q++)
			if (qp[q].notified)
				vd_notify(vd, q);
		pump(vd, qp, nq, 32, 5);
	}
	if (h[1] & 16) {
		vd_write32(vd, VD_REG_QUEUE_SEL, 0);
		vd_write32(vd, VD_REG_QUEUE_READY, 0);
		vd_write32(vd, VD_REG_QUEUE_READY, 1);
		vd_notify(vd, 0);
		pump(vd, qp, nq, 32, 5);
	}
	if (h[1] & 32) {
		/* More entries: whatever the ring holds past avail->idx. */
		for (unsigned q = 0; q < nq; q++) {
			uint8_t *idx = qp[q].ready ? vd_ptr(vd, qp[q].avail + 2, 2) : NULL;
			if (!idx)
				continue;
			uint16_t v = (uint16_t)(get16(idx) + h[16] % 8);
			memcpy(idx, &v, 2);
			vd_notify(vd, q);
		}
		pump(vd, qp, nq, 32, 5);
	}
	if (h[1] & 64) {
		for (unsigned i = 0; i < 3; i++)
			poke(vd, h + 17 + 5 * i);
		pump(vd, qp, nq, 32, 5);
	}
	if (h[1] & 8) {
		/* Reset with I/O possibly in flight, then queue 0 again on zeroed rings in the checker's area. */
		vd_reset(vd);
		uint16_t n = 16;
		uint64_t d = IMAGE, a = IMAGE + 0x1000, u = IMAGE + 0x2000;
		memset(vd_ptr(vd, IMAGE, RAM_SIZE - IMAGE), 0, RAM_SIZE - IMAGE);
		if (vd_negotiate(vd, want) || vd_setup_queue_at(vd, 0, n, d, a, u))
			fail("set-up after a reset failed");
		vd_driver_ok(vd);
		vd_notify(vd, 0);
		/* Wait for the old I/O: its completions must go nowhere. */
		for (unsigned i = 0; i < 200 && vd_pump(vd, 1) > 0; i++)
			;
		if (layout_ok && !(h[1] & 64)) { /* pokes may have moved the rings: not followed */
			const uint8_t *used = vd_ptr(vd, u, 6 + 8ull * n);
			for (unsigned i = 0; i < 6 + 8u * n; i++)
				if (used[i] && !(event_idx && i >= 4 + 8u * n))
					fail("a request from before the reset completed in the new used ring");
		}
	}

	if (clean) {
		/* Every notified queue completes every available request, unless the device gave up. */
		uint64_t deadline = monotonic_ns() + 5000000000ull;
		for (;;) {
			if (vd_status(vd) & VD_STATUS_NEEDS_RESET)
				break;
			bool done = true;
			for (unsigned q = 0; q < nq; q++)
				if (qp[q].notified && ram16(vd, qp[q].used + 2) != qp[q].pending)
					done = false;
			if (done)
				break;
			if (monotonic_ns() > deadline) {
				for (unsigned q = 0; q < nq; q++)
					fprintf(stderr, "queue %u: size %u, avail idx %u, used idx %u\n", q, qp[q].size,
						qp[q].pending, ram16(vd, qp[q].used + 2));
				fail("available requests were neither completed nor was NEEDS_RESET set");
			}
			vd_pump(vd, 10);
		}
		if (!(vd_status(vd) & VD_STATUS_NEEDS_RESET)) {
			for (unsigned q = 0; q < nq; q++) {
				if (!qp[q].notified)
					continue;
				if (qp[q].pending > qp[q].size)
					fail("more available entries than the queue holds, and no NEEDS_RESET");
				for (unsigned i = 0; i < qp[q].pending; i++) {
					uint16_t id = ram16(vd, qp[q].used + 4 + 8ull * i);
					bool found = false;
					for (unsigned k = 0; k < qp[q].pending && !found; k++)
						found = ram16(vd, qp[q].avail + 4 + 2ull * k) == id;
					if (!found)
						fail("a used id that was never available");
				}
			}
		}
	}
	if (getenv("FUZZ_VIRTIO_BLK_VERBOSE")) {
		fprintf(stderr, "status 0x%x, clean %d, layout_ok %d", vd_status(vd), clean, layout_ok);
		for (unsigned q = 0; q < nq; q++)
			fprintf(stderr, "; queue %u: ready %d, avail idx %u, used idx %u, first status %u", q,
				qp[q].ready, qp[q].pending, qp[q].ready ? ram16(vd, qp[q].used + 2) : 0,
				ram16(vd, 0xe00) & 0xff);
		fprintf(stderr, "\n");
	}
	vd_destroy(vd);
	return 0;
}
