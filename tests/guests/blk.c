/* blk: a minimal virtio 1.x driver over virtio-mmio (register layout 2) that drives the first
 * virtio-blk device (slot 0 at 0xd0001000) from inside the guest and checks what the spec and
 * docs/kvmbox-vmm.md promise: probing, feature negotiation (and its refusal), queue set-up, reads and
 * writes with several segments and odd framing, FLUSH, GET_ID, out-of-range / unsupported / odd-length
 * requests, interrupt suppression (NO_INTERRUPT, EVENT_IDX), indirect tables, DISCARD/WRITE_ZEROES,
 * the read-only disk, a second queue (MQ, with --cpus 2), and malformed rings and queue set-ups that
 * must set DEVICE_NEEDS_RESET without the device touching guest memory, each followed by a reset and a
 * working read. Polling only (IF stays 0); every wait is bounded by the CMOS RTC plus an iteration cap.
 *
 * Command line words: `seed=N` (the pattern's seed, default 1); `blk-strict` adds checks the monitor
 * is known to fail (virtio 1.4 5.2.6.2: DISCARD with the unmap flag, unknown flags -> UNSUPP).
 *
 * Console lines besides PASS/FAIL/DONE: `GUEST blk.elf`, `SEED <n>`, `FEATURES 0x<hex>`,
 * `CAPACITY <sectors>`, `CONFIG seg_max=<n> blk_size=<n> num_queues=<n>`, `RO <0|1>`, `SERIAL <id>`,
 * `LAST fnv=<8 hex>` (FNV-1a of the last sector, read after the failed writes beyond the end).
 *
 * The pattern: 128 little-endian u32 words per sector, x = seed ^ (sector * 0x9e3779b9) (mod 2^32),
 * then each word x = x * 1664525 + 1013904223 (mod 2^32). What a writable disk holds afterwards:
 * the pattern in sectors 8-16 (8-15 in one write, 16 through odd framing), zeroes in 24-27 (WRITE_ZEROES),
 * zeroes or the old data in 28-29 (DISCARD), everything else unchanged. A read-only disk must hold the
 * pattern in sectors 8-15 beforehand (the host writes it) and stays unchanged. */
#include "lib.h"

#define BP 0x7000ULL
#define MMIO 0xd0001000ULL

enum {
	REG_MAGIC = 0x000, REG_VERSION = 0x004, REG_DEVICE_ID = 0x008,
	REG_DEVICE_FEATURES = 0x010, REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020, REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030, REG_QUEUE_NUM_MAX = 0x034, REG_QUEUE_NUM = 0x038, REG_QUEUE_READY = 0x044,
	REG_QUEUE_NOTIFY = 0x050, REG_INTERRUPT_STATUS = 0x060, REG_INTERRUPT_ACK = 0x064, REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080, REG_QUEUE_DESC_HIGH = 0x084, REG_QUEUE_AVAIL_LOW = 0x090,
	REG_QUEUE_AVAIL_HIGH = 0x094, REG_QUEUE_USED_LOW = 0x0a0, REG_QUEUE_USED_HIGH = 0x0a4,
	REG_CONFIG_GENERATION = 0x0fc, REG_CONFIG = 0x100,
};

#define ST_ACK 1u
#define ST_DRIVER 2u
#define ST_DRIVER_OK 4u
#define ST_FEATURES_OK 8u
#define ST_NEEDS_RESET 64u

#define F_SEG_MAX (1ULL << 2)
#define F_RO (1ULL << 5)
#define F_BLK_SIZE (1ULL << 6)
#define F_FLUSH (1ULL << 9)
#define F_MQ (1ULL << 12)
#define F_DISCARD (1ULL << 13)
#define F_WRITE_ZEROES (1ULL << 14)
#define F_INDIRECT (1ULL << 28)
#define F_EVENT_IDX (1ULL << 29)
#define F_VERSION_1 (1ULL << 32)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define WZ_UNMAP 1
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4

#define QSIZE 8
#define NQ 2		 /* queues the guest drives (the second one only with MQ and num_queues >= 2) */
#define SECTOR 512u
#define PAT_SECTOR 8
#define PAT_SECTORS 8
#define FRAME_SECTOR (PAT_SECTOR + PAT_SECTORS) /* written through odd framing */
#define ZERO_SECTOR 24 /* WRITE_ZEROES 24-25, with UNMAP 26-27; DISCARD 28-29; strict: 30, 31 */
#define BAD_GPA 0x7fffffff0000ULL /* far outside guest RAM */
#define WAIT_SECONDS 5

struct vdesc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct vring {
	struct vdesc desc[QSIZE];
	struct {
		u16 flags, idx, ring[QSIZE], used_event;
	} avail __attribute__((aligned(16)));
	struct {
		u16 flags, idx;
		struct {
			u32 id, len;
		} ring[QSIZE];
		u16 avail_event;
	} used __attribute__((aligned(16)));
	u16 next_avail, seen_used;
} __attribute__((aligned(4096)));

static struct vring rings[NQ];
static struct {
	u32 type, reserved;
	u64 sector;
} hdr __attribute__((aligned(16)));
static u8 status_byte[16] __attribute__((aligned(16)));
static u8 wbuf[PAT_SECTORS * SECTOR] __attribute__((aligned(4096)));
static u8 rbuf[PAT_SECTORS * SECTOR] __attribute__((aligned(4096)));
static u8 ebuf[(PAT_SECTORS + 1) * SECTOR] __attribute__((aligned(4096)));
static u8 fbuf[2 * SECTOR] __attribute__((aligned(16)));
static struct vdesc itab[4], itab2[2];

static u32 seed = 1;
static u64 dev_features, capacity, drv_features;
static u32 num_queues, nq_used = 1, qmax;
static int readonly, strict;

static u32 r32(u32 off) { return rd32(MMIO + off); }
static void w32(u32 off, u32 v) { wr32(MMIO + off, v); }
static u64 gpa(const volatile void *p) { return (u64)(uptr)p; }

struct seg {
	u64 addr;
	u32 len;
	u16 flags;
};

/* ---- command line ---- */

static void parse_seed(void)
{
	u64 cl = rd32(BP + 0x228) | ((u64)rd32(BP + 0xc8) << 32);
	if (cl == 0 || cl >= 0x100000000ULL)
		return;
	const char *s = (const char *)(uptr)cl;
	usize len = strnlen_bounded(s, 2048);
	for (usize i = 0; i + 5 <= len; i++) {
		if ((i == 0 || s[i - 1] == ' ') && memcmp(s + i, "seed=", 5) == 0) {
			u32 v = 0;
			for (usize j = i + 5; j < len && s[j] >= '0' && s[j] <= '9'; j++)
				v = v * 10 + (u32)(s[j] - '0');
			seed = v;
		}
	}
	strict = has_word(s, "blk-strict");
}

/* ---- pattern ---- */

static void fill_pattern(u8 *buf, u64 first, u32 nsec)
{
	for (u32 s = 0; s < nsec; s++) {
		u32 x = seed ^ ((u32)(first + s) * 0x9e3779b9u);
		u32 *w = (u32 *)(void *)(buf + s * SECTOR);
		for (u32 i = 0; i < SECTOR / 4; i++) {
			x = x * 1664525u + 1013904223u;
			w[i] = x;
		}
	}
}

/* ---- transport ---- */

static int wait_status(u32 bit)
{
	struct rtc_bound b;
	rtc_bound_start(&b, WAIT_SECONDS, 20000000u);
	while (!(r32(REG_STATUS) & bit))
		if (rtc_bound_over(&b))
			return 0;
	return 1;
}

static u64 read_device_features(void)
{
	w32(REG_DEVICE_FEATURES_SEL, 0);
	u64 lo = r32(REG_DEVICE_FEATURES);
	w32(REG_DEVICE_FEATURES_SEL, 1);
	u64 hi = r32(REG_DEVICE_FEATURES);
	return lo | (hi << 32);
}

static void write_driver_features(u64 f)
{
	w32(REG_DRIVER_FEATURES_SEL, 0);
	w32(REG_DRIVER_FEATURES, (u32)f);
	w32(REG_DRIVER_FEATURES_SEL, 1);
	w32(REG_DRIVER_FEATURES, (u32)(f >> 32));
}

/* Status = 0 and check that it stuck (and that the queues are off). */
static int dev_reset(const char *name)
{
	w32(REG_STATUS, 0);
	u32 st = r32(REG_STATUS);
	if (st != 0) {
		fail(name, "Status reads 0x%x after writing 0 (reset)", st);
		return -1;
	}
	for (u32 q = 0; q < nq_used; q++) {
		w32(REG_QUEUE_SEL, q);
		if (r32(REG_QUEUE_READY) != 0) {
			fail(name, "queue %u still ready after a reset", q);
			return -1;
		}
	}
	return 0;
}

/* Reset, ACKNOWLEDGE|DRIVER, features, FEATURES_OK. */
static int negotiate(const char *name, u64 features)
{
	if (dev_reset(name))
		return -1;
	w32(REG_STATUS, ST_ACK);
	w32(REG_STATUS, ST_ACK | ST_DRIVER);
	write_driver_features(features);
	w32(REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	u32 st = r32(REG_STATUS);
	if (!(st & ST_FEATURES_OK)) {
		fail(name, "FEATURES_OK did not stick for features 0x%llx (Status 0x%x)", features, st);
		return -1;
	}
	return 0;
}

static void program_queue(u32 q, u32 num, u64 desc, u64 avail, u64 used)
{
	w32(REG_QUEUE_SEL, q);
	w32(REG_QUEUE_NUM, num);
	w32(REG_QUEUE_DESC_LOW, (u32)desc);
	w32(REG_QUEUE_DESC_HIGH, (u32)(desc >> 32));
	w32(REG_QUEUE_AVAIL_LOW, (u32)avail);
	w32(REG_QUEUE_AVAIL_HIGH, (u32)(avail >> 32));
	w32(REG_QUEUE_USED_LOW, (u32)used);
	w32(REG_QUEUE_USED_HIGH, (u32)(used >> 32));
}

static int setup_queue(const char *name, u32 q)
{
	struct vring *r = &rings[q];
	memset(r, 0, sizeof(*r));
	barrier();
	w32(REG_QUEUE_SEL, q);
	if (r32(REG_QUEUE_READY) != 0) {
		fail(name, "queue %u is ready before set-up", q);
		return -1;
	}
	u32 max = r32(REG_QUEUE_NUM_MAX);
	if (max < QSIZE) {
		fail(name, "queue %u: QueueNumMax %u < %u", q, max, QSIZE);
		return -1;
	}
	program_queue(q, QSIZE, gpa(r->desc), gpa(&r->avail), gpa(&r->used));
	w32(REG_QUEUE_READY, 1);
	if (r32(REG_QUEUE_READY) != 1) {
		fail(name, "queue %u: QueueReady does not read 1 (Status 0x%x)", q, r32(REG_STATUS));
		return -1;
	}
	return 0;
}

/* The full driver initialisation (3.1.1) with the given features. */
static int dev_init_f(const char *name, u64 features)
{
	if (negotiate(name, features))
		return -1;
	for (u32 q = 0; q < nq_used; q++)
		if (setup_queue(name, q))
			return -1;
	w32(REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	u32 st = r32(REG_STATUS);
	if (st != (ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK)) {
		fail(name, "Status reads 0x%x after DRIVER_OK", st);
		return -1;
	}
	return 0;
}

static int dev_init(const char *name) { return dev_init_f(name, drv_features); }

/* Posts segs[0..n) as one chain (descriptors 0..n-1, head 0) on queue q. */
static void post(u32 q, const struct seg *s, u32 n)
{
	struct vring *r = &rings[q];
	for (u32 i = 0; i < n; i++) {
		r->desc[i].addr = s[i].addr;
		r->desc[i].len = s[i].len;
		r->desc[i].flags = (u16)(s[i].flags | (i + 1 < n ? D_NEXT : 0));
		r->desc[i].next = (u16)(i + 1);
	}
	r->avail.ring[r->next_avail % QSIZE] = 0;
	barrier();
	r->next_avail++;
	*(volatile u16 *)&r->avail.idx = r->next_avail;
	barrier();
}

static void notify(u32 q) { w32(REG_QUEUE_NOTIFY, q); }

/* Waits for the next used entry of queue q: 0 with *len set, -1 on time-out, -2 on a bad entry. */
static int wait_used(u32 q, u32 *len)
{
	struct vring *r = &rings[q];
	struct rtc_bound b;
	rtc_bound_start(&b, WAIT_SECONDS, 20000000u);
	while (*(volatile u16 *)&r->used.idx == r->seen_used) {
		if (rtc_bound_over(&b))
			return -1;
		cpu_pause();
	}
	barrier();
	u32 id = *(volatile u32 *)&r->used.ring[r->seen_used % QSIZE].id;
	*len = *(volatile u32 *)&r->used.ring[r->seen_used % QSIZE].len;
	r->seen_used++;
	if (*(volatile u16 *)&r->used.idx != r->seen_used)
		return -2;
	return id == 0 ? 0 : -2;
}

/* Submits a chain and waits: the status byte (0..255), or -1 (time-out) / -2 (bad used entry). */
static int submit(u32 q, const struct seg *s, u32 n, u32 *used_len)
{
	status_byte[0] = 0xaa;
	post(q, s, n);
	notify(q);
	int e = wait_used(q, used_len);
	if (e)
		return e;
	return *(volatile u8 *)status_byte;
}

/* header [+ data] + status. */
static int blk_req(u32 q, u32 type, u64 sector, void *buf, u32 len, u32 *used_len)
{
	struct seg s[3];
	u32 n = 0;
	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = sector;
	s[n++] = (struct seg){gpa(&hdr), sizeof(hdr), 0};
	if (len)
		s[n++] = (struct seg){gpa(buf), len, (u16)(type == T_OUT ? 0 : D_WRITE)};
	s[n++] = (struct seg){gpa(status_byte), 1, D_WRITE};
	return submit(q, s, n, used_len);
}

static const char *status_name(int st)
{
	switch (st) {
	case S_OK: return "OK";
	case S_IOERR: return "IOERR";
	case S_UNSUPP: return "UNSUPP";
	case -1: return "no completion (timed out)";
	case -2: return "bad used-ring entry";
	default: return "unknown status byte";
	}
}

/* One request that must end with status `want` (and used.len `want_len` unless ~0u). */
static int expect_req(const char *name, u32 q, u32 type, u64 sector, void *buf, u32 len, int want, u32 want_len)
{
	u32 ul = 0;
	int st = blk_req(q, type, sector, buf, len, &ul);
	if (st != want) {
		fail(name, "type %u sector %llu len %u: status %d (%s), want %d (%s)", type, sector, len, st,
		     status_name(st), want, status_name(want));
		return -1;
	}
	if (want_len != ~0u && ul != want_len) {
		fail(name, "type %u sector %llu len %u: used.len %u, want %u", type, sector, len, ul, want_len);
		return -1;
	}
	return 0;
}

/* ---- checks ---- */

static int check_probe(void)
{
	u32 magic = r32(REG_MAGIC), ver = r32(REG_VERSION), id = r32(REG_DEVICE_ID);
	if (magic != 0x74726976 || ver != 2 || id != 2) {
		fail("probe", "magic 0x%x version %u device id %u at 0x%llx, want 0x74726976 2 2", magic, ver, id,
		     MMIO);
		return -1;
	}
	pass("probe");
	return 0;
}

static void check_config(void)
{
	u32 bad = n_fail;
	dev_features = read_device_features();
	kprintf("FEATURES 0x%llx\n", dev_features);
	u32 seg_max = 0, blk_size = 0, gen, tries = 0;
	do {
		gen = r32(REG_CONFIG_GENERATION);
		capacity = r32(REG_CONFIG + 0) | ((u64)r32(REG_CONFIG + 4) << 32);
		seg_max = r32(REG_CONFIG + 12);
		blk_size = r32(REG_CONFIG + 20);
		num_queues = r32(REG_CONFIG + 32) >> 16;
	} while (gen != r32(REG_CONFIG_GENERATION) && ++tries < 100);
	kprintf("CAPACITY %llu\n", capacity);
	kprintf("CONFIG seg_max=%u blk_size=%u num_queues=%u\n", seg_max, blk_size, num_queues);
	u64 need = F_VERSION_1 | F_FLUSH | F_SEG_MAX | F_BLK_SIZE;
	if ((dev_features & need) != need)
		fail("features", "0x%llx lacks some of VERSION_1|FLUSH|SEG_MAX|BLK_SIZE (0x%llx)", dev_features, need);
	if (capacity == 0)
		fail("features", "capacity 0");
	if (num_queues == 0)
		fail("features", "num_queues 0");
	if (n_fail == bad)
		pass("features");
	readonly = (dev_features & F_RO) != 0;
	kprintf("RO %u\n", readonly);
	drv_features = F_VERSION_1 | F_FLUSH | F_SEG_MAX | F_BLK_SIZE |
		       (dev_features & (F_RO | F_DISCARD | F_WRITE_ZEROES));
	if ((dev_features & F_MQ) && num_queues >= 2) {
		drv_features |= F_MQ;
		nq_used = NQ;
	}
	w32(REG_QUEUE_SEL, 0);
	qmax = r32(REG_QUEUE_NUM_MAX);

	/* Registers: feature word 2 is empty, a queue beyond num_queues does not exist (QueueNumMax 0). */
	bad = n_fail;
	w32(REG_DEVICE_FEATURES_SEL, 2);
	if (r32(REG_DEVICE_FEATURES) != 0)
		fail("registers", "DeviceFeatures word 2 = 0x%x, want 0", r32(REG_DEVICE_FEATURES));
	if (qmax < QSIZE || (qmax & (qmax - 1)))
		fail("registers", "QueueNumMax %u: not a power of two >= %u", qmax, QSIZE);
	w32(REG_QUEUE_SEL, num_queues);
	if (r32(REG_QUEUE_NUM_MAX) != 0)
		fail("registers", "queue %u (beyond num_queues): QueueNumMax %u, want 0", num_queues,
		     r32(REG_QUEUE_NUM_MAX));
	if (r32(REG_QUEUE_READY) != 0)
		fail("registers", "queue %u (beyond num_queues): QueueReady reads 1", num_queues);
	w32(REG_QUEUE_SEL, 0);
	if (n_fail == bad)
		pass("registers");
}

static void check_negotiation(void)
{
	u32 bad = n_fail;
	/* A feature the device did not offer: FEATURES_OK must not stick. */
	u64 extra = 1ULL << 40;
	if (dev_features & extra) {
		fail("negotiate-refused", "the device offers bit 40 (0x%llx)", dev_features);
	} else if (dev_reset("negotiate-refused") == 0) {
		w32(REG_STATUS, ST_ACK);
		w32(REG_STATUS, ST_ACK | ST_DRIVER);
		write_driver_features(F_VERSION_1 | extra);
		w32(REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
		u32 st = r32(REG_STATUS);
		if (st & ST_FEATURES_OK)
			fail("negotiate-refused", "FEATURES_OK accepted with unoffered bit 40 (Status 0x%x)", st);
		dev_reset("negotiate-refused");
	}
	if (n_fail == bad)
		pass("negotiate-refused");

	/* Without VERSION_1 (a legacy driver): refused too. */
	bad = n_fail;
	if (dev_reset("negotiate-legacy") == 0) {
		w32(REG_STATUS, ST_ACK | ST_DRIVER);
		write_driver_features(F_FLUSH);
		w32(REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
		u32 st = r32(REG_STATUS);
		if (st & ST_FEATURES_OK)
			fail("negotiate-legacy", "FEATURES_OK accepted without VERSION_1 (Status 0x%x)", st);
		dev_reset("negotiate-legacy");
	}
	if (n_fail == bad)
		pass("negotiate-legacy");

	/* The real thing: must stick. */
	bad = n_fail;
	if (negotiate("negotiate", drv_features) == 0) {
		/* Driver features are frozen once FEATURES_OK is set: this write must change nothing. */
		write_driver_features(drv_features | extra);
		w32(REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
		if (!(r32(REG_STATUS) & ST_FEATURES_OK))
			fail("negotiate", "FEATURES_OK lost after rewriting the features");
	}
	if (n_fail == bad)
		pass("negotiate");
}

static int check_setup(void)
{
	if (dev_init("setup"))
		return -1;
	pass("setup");
	return 0;
}

static void check_io(void)
{
	u32 bad, ul;
	int st;
	fill_pattern(ebuf, PAT_SECTOR, PAT_SECTORS + 1);

	/* Write the pattern in two segments (writable disk), then FLUSH. */
	bad = n_fail;
	if (!readonly) {
		memcpy(wbuf, ebuf, sizeof(wbuf));
		struct seg s[4];
		hdr.type = T_OUT;
		hdr.reserved = 0;
		hdr.sector = PAT_SECTOR;
		s[0] = (struct seg){gpa(&hdr), sizeof(hdr), 0};
		s[1] = (struct seg){gpa(wbuf), 3 * SECTOR, 0};
		s[2] = (struct seg){gpa(wbuf) + 3 * SECTOR, (PAT_SECTORS - 3) * SECTOR, 0};
		s[3] = (struct seg){gpa(status_byte), 1, D_WRITE};
		st = submit(0, s, 4, &ul);
		if (st != S_OK)
			fail("write", "status %d (%s)", st, status_name(st));
		else if (ul != 1)
			fail("write", "used.len %u, want 1", ul);
		else
			pass("write");
	} else {
		/* Read-only: a write fails, and the data stays what the host put there. */
		memset(wbuf, 0x5a, sizeof(wbuf));
		if (expect_req("write-ro", 0, T_OUT, PAT_SECTOR, wbuf, SECTOR, S_IOERR, ~0u) == 0)
			pass("write-ro");
	}
	if (expect_req("flush", 0, T_FLUSH, 0, NULL, 0, S_OK, 1) == 0)
		pass("flush");

	/* Read it back in three segments of different sizes into another buffer. */
	bad = n_fail;
	memset(rbuf, 0xee, sizeof(rbuf));
	{
		struct seg s[5];
		hdr.type = T_IN;
		hdr.reserved = 0;
		hdr.sector = PAT_SECTOR;
		s[0] = (struct seg){gpa(&hdr), sizeof(hdr), 0};
		s[1] = (struct seg){gpa(rbuf), SECTOR, D_WRITE};
		s[2] = (struct seg){gpa(rbuf) + SECTOR, 4 * SECTOR, D_WRITE};
		s[3] = (struct seg){gpa(rbuf) + 5 * SECTOR, 3 * SECTOR, D_WRITE};
		s[4] = (struct seg){gpa(status_byte), 1, D_WRITE};
		st = submit(0, s, 5, &ul);
		if (st != S_OK)
			fail("read", "status %d (%s)", st, status_name(st));
		else if (ul != sizeof(rbuf) + 1)
			fail("read", "used.len %u, want %u", ul, (u32)sizeof(rbuf) + 1);
		else if (memcmp(rbuf, ebuf, sizeof(rbuf)) != 0) {
			u32 i = 0;
			while (rbuf[i] == ebuf[i])
				i++;
			fail("read", "data differs from the pattern at byte %u (sector %u): 0x%x, want 0x%x", i,
			     PAT_SECTOR + i / SECTOR, rbuf[i], ebuf[i]);
		}
	}
	if (n_fail == bad)
		pass("read");

	/* Interrupt status: the device raised a used-buffer interrupt (we never set NO_INTERRUPT). */
	bad = n_fail;
	u32 isr = r32(REG_INTERRUPT_STATUS);
	if (!(isr & 1))
		fail("interrupt-status", "InterruptStatus 0x%x after completions, want bit 0", isr);
	w32(REG_INTERRUPT_ACK, isr);
	isr = r32(REG_INTERRUPT_STATUS);
	if (isr != 0)
		fail("interrupt-status", "InterruptStatus 0x%x after the ACK", isr);
	if (n_fail == bad)
		pass("interrupt-status");

	/* GET_ID. */
	bad = n_fail;
	{
		static u8 id[24];
		memset(id, 0, sizeof(id));
		if (expect_req("get-id", 0, T_GET_ID, 0, id, 20, S_OK, 21) == 0) {
			char s[21];
			memcpy(s, id, 20);
			s[20] = 0;
			kprintf("SERIAL %s\n", s);
			/* A buffer shorter than 20 bytes gets the serial's first bytes. */
			memset(id, 0xee, sizeof(id));
			if (expect_req("get-id", 0, T_GET_ID, 0, id, 8, S_OK, 9) == 0 &&
			    (memcmp(id, s, 8) != 0 || id[8] != 0xee))
				fail("get-id", "an 8-byte buffer got other bytes than the serial's first 8");
		}
	}
	if (n_fail == bad)
		pass("get-id");

	/* The last sector reads; one past it and a read straddling the end fail. */
	bad = n_fail;
	memset(rbuf, 0xee, sizeof(rbuf));
	if (expect_req("last-sector", 0, T_IN, capacity - 1, rbuf, SECTOR, S_OK, SECTOR + 1) == 0)
		kprintf("LAST fnv=%08x\n", fnv1a(rbuf, SECTOR));
	if (n_fail == bad)
		pass("last-sector");
	bad = n_fail;
	expect_req("beyond-end", 0, T_IN, capacity, rbuf, SECTOR, S_IOERR, ~0u);
	expect_req("beyond-end", 0, T_IN, capacity - 1, rbuf, 2 * SECTOR, S_IOERR, ~0u);
	expect_req("beyond-end", 0, T_IN, ~0ULL, rbuf, SECTOR, S_IOERR, ~0u);
	if (!readonly) /* must not touch the last sector: the host checks the file */
		expect_req("beyond-end", 0, T_OUT, capacity - 1, wbuf, 2 * SECTOR, S_IOERR, ~0u);
	if (n_fail == bad)
		pass("beyond-end");

	bad = n_fail;
	expect_req("unsupported", 0, 99, 0, NULL, 0, S_UNSUPP, 1);
	if (n_fail == bad)
		pass("unsupported");

	bad = n_fail;
	expect_req("odd-length", 0, T_IN, 0, rbuf, 100, S_IOERR, ~0u);
	if (!readonly)
		expect_req("odd-length", 0, T_OUT, 20, wbuf, SECTOR + 100, S_IOERR, ~0u);
	if (n_fail == bad)
		pass("odd-length");

	/* A second queue (MQ), when there is one: the notify value selects it. */
	if (nq_used > 1) {
		bad = n_fail;
		memset(rbuf, 0xee, sizeof(rbuf));
		if (expect_req("queue1", 1, T_IN, PAT_SECTOR + 2, rbuf, 2 * SECTOR, S_OK, 2 * SECTOR + 1) == 0 &&
		    memcmp(rbuf, ebuf + 2 * SECTOR, 2 * SECTOR) != 0)
			fail("queue1", "data differs from the pattern");
		if (n_fail == bad)
			pass("queue1");
	}
}

/* Message framing is free (2.6.4): header and data in one readable descriptor, the header split over
 * two, data and status byte in one writable descriptor. */
static void check_framing(void)
{
	u32 bad = n_fail, ul;
	int st;
	struct seg sg[3];
	if (!readonly) {
		/* Write FRAME_SECTOR: [header | data] then [status]. */
		u32 *h = (u32 *)(void *)fbuf;
		h[0] = T_OUT;
		h[1] = 0;
		*(u64 *)(void *)(fbuf + 8) = FRAME_SECTOR;
		memcpy(fbuf + 16, ebuf + PAT_SECTORS * SECTOR, SECTOR);
		sg[0] = (struct seg){gpa(fbuf), 16 + SECTOR, 0};
		sg[1] = (struct seg){gpa(status_byte), 1, D_WRITE};
		st = submit(0, sg, 2, &ul);
		if (st != S_OK)
			fail("framing", "write with header+data in one descriptor: status %d (%s)", st, status_name(st));
	}
	/* Read a pattern sector: header as 4 + 12 bytes, then [data | status] in one descriptor. */
	u64 sector = readonly ? PAT_SECTOR + 3 : FRAME_SECTOR;
	hdr.type = T_IN;
	hdr.reserved = 0;
	hdr.sector = sector;
	memset(fbuf, 0xee, sizeof(fbuf));
	sg[0] = (struct seg){gpa(&hdr), 4, 0};
	sg[1] = (struct seg){gpa(&hdr) + 4, 12, 0};
	sg[2] = (struct seg){gpa(fbuf), SECTOR + 1, D_WRITE};
	post(0, sg, 3);
	notify(0);
	int e = wait_used(0, &ul);
	if (e)
		fail("framing", "read with data+status in one descriptor: %s", status_name(e));
	else if (fbuf[SECTOR] != S_OK)
		fail("framing", "read with data+status in one descriptor: status 0x%x", fbuf[SECTOR]);
	else if (ul != SECTOR + 1)
		fail("framing", "read with data+status in one descriptor: used.len %u, want %u", ul, SECTOR + 1);
	else if (memcmp(fbuf, ebuf + (sector - PAT_SECTOR) * SECTOR, SECTOR) != 0)
		fail("framing", "sector %llu read back differs from the pattern", sector);
	if (n_fail == bad)
		pass("framing");
}

/* Interrupt suppression: VIRTQ_AVAIL_F_NO_INTERRUPT without EVENT_IDX, used_event with it (and the
 * device's avail_event). InterruptStatus bit 0 tells whether the device raised a used-buffer
 * interrupt (IF=0: nothing is delivered). */
static int read_isr_after(const char *name, u32 q)
{
	w32(REG_INTERRUPT_ACK, r32(REG_INTERRUPT_STATUS));
	memset(rbuf, 0xee, SECTOR);
	if (expect_req(name, q, T_IN, PAT_SECTOR, rbuf, SECTOR, S_OK, SECTOR + 1))
		return -1;
	return (int)r32(REG_INTERRUPT_STATUS);
}

static void check_interrupts(void)
{
	u32 bad = n_fail;
	int isr;
	struct vring *r = &rings[0];
	*(volatile u16 *)&r->avail.flags = 1;
	isr = read_isr_after("no-interrupt-flag", 0);
	if (isr >= 0 && (isr & 1))
		fail("no-interrupt-flag", "InterruptStatus 0x%x: interrupted despite VIRTQ_AVAIL_F_NO_INTERRUPT", isr);
	*(volatile u16 *)&r->avail.flags = 0;
	isr = read_isr_after("no-interrupt-flag", 0);
	if (isr >= 0 && !(isr & 1))
		fail("no-interrupt-flag", "InterruptStatus 0x%x: no interrupt once the flag is clear", isr);
	if (n_fail == bad)
		pass("no-interrupt-flag");

	if (!(dev_features & F_EVENT_IDX))
		return;
	bad = n_fail;
	if (dev_init_f("event-idx", drv_features | F_EVENT_IDX) == 0) {
		/* The first completion may interrupt whatever used_event says. */
		*(volatile u16 *)&r->avail.used_event = 0;
		isr = read_isr_after("event-idx", 0);
		/* used_event far ahead: no interrupt for the next entry. */
		*(volatile u16 *)&r->avail.used_event = (u16)(r->seen_used + 4);
		isr = read_isr_after("event-idx", 0);
		if (isr >= 0 && (isr & 1))
			fail("event-idx", "InterruptStatus 0x%x: interrupted before used_event", isr);
		u16 ae = *(volatile u16 *)&r->used.avail_event;
		if (ae != r->next_avail)
			fail("event-idx", "avail_event %u, want %u (the next entry the device will take)", ae,
			     r->next_avail);
		/* used_event = the index of the next entry: that one must interrupt (MUST, 2.7.10). */
		*(volatile u16 *)&r->avail.used_event = r->seen_used;
		isr = read_isr_after("event-idx", 0);
		if (isr >= 0 && !(isr & 1))
			fail("event-idx", "InterruptStatus 0x%x: no interrupt when used.idx passed used_event", isr);
	}
	if (n_fail == bad)
		pass("event-idx");
}

/* A read through an indirect table (VIRTIO_RING_F_INDIRECT_DESC). */
static void check_indirect(void)
{
	if (!(dev_features & F_INDIRECT))
		return;
	u32 bad = n_fail, ul;
	if (dev_init_f("indirect", drv_features | F_INDIRECT) == 0) {
		hdr.type = T_IN;
		hdr.reserved = 0;
		hdr.sector = PAT_SECTOR + 4;
		memset(rbuf, 0xee, 2 * SECTOR);
		itab[0] = (struct vdesc){gpa(&hdr), 16, D_NEXT, 1};
		itab[1] = (struct vdesc){gpa(rbuf), SECTOR, D_NEXT | D_WRITE, 2};
		itab[2] = (struct vdesc){gpa(rbuf) + SECTOR, SECTOR, D_NEXT | D_WRITE, 3};
		itab[3] = (struct vdesc){gpa(status_byte), 1, D_WRITE, 0};
		struct seg sg[1] = {{gpa(itab), sizeof(itab), D_INDIRECT}};
		int st = submit(0, sg, 1, &ul);
		if (st != S_OK)
			fail("indirect", "status %d (%s)", st, status_name(st));
		else if (ul != 2 * SECTOR + 1)
			fail("indirect", "used.len %u, want %u", ul, 2 * SECTOR + 1);
		else if (memcmp(rbuf, ebuf + 4 * SECTOR, 2 * SECTOR) != 0)
			fail("indirect", "data differs from the pattern");
	}
	if (n_fail == bad)
		pass("indirect");
}

/* DISCARD / WRITE_ZEROES: one segment {sector, num_sectors, flags} after the header. */
static int dwz_req(u32 type, u64 sector, u32 num, u32 flags)
{
	static struct {
		u64 sector;
		u32 num, flags;
	} seg __attribute__((aligned(16)));
	struct seg sg[3];
	u32 ul;
	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = 0;
	seg.sector = sector;
	seg.num = num;
	seg.flags = flags;
	sg[0] = (struct seg){gpa(&hdr), sizeof(hdr), 0};
	sg[1] = (struct seg){gpa(&seg), sizeof(seg), 0};
	sg[2] = (struct seg){gpa(status_byte), 1, D_WRITE};
	return submit(0, sg, 3, &ul);
}

static int expect_dwz(const char *name, u32 type, u64 sector, u32 num, u32 flags, int want)
{
	int st = dwz_req(type, sector, num, flags);
	if (st == want)
		return 0;
	fail(name, "type %u sector %llu num %u flags 0x%x: status %d (%s), want %s", type, sector, num, flags, st,
	     status_name(st), status_name(want));
	return -1;
}

static void expect_zeroes(const char *name, u64 sector, u32 nsec)
{
	memset(rbuf, 0xee, nsec * SECTOR);
	if (expect_req(name, 0, T_IN, sector, rbuf, nsec * SECTOR, S_OK, nsec * SECTOR + 1))
		return;
	for (u32 i = 0; i < nsec * SECTOR; i++)
		if (rbuf[i]) {
			fail(name, "sector %llu byte %u = 0x%x after the command, want 0", sector + i / SECTOR,
			     i % SECTOR, rbuf[i]);
			return;
		}
}

static void check_discard(void)
{
	u32 bad = n_fail;
	if (readonly) {
		/* Not offered on a read-only disk: whatever the status, nothing may change (the host checks). */
		int st = dwz_req(T_DISCARD, ZERO_SECTOR, 2, 0);
		if (st == S_OK || st < 0)
			fail("discard-ro", "DISCARD on a read-only disk: status %d (%s)", st, status_name(st));
		st = dwz_req(T_WRITE_ZEROES, ZERO_SECTOR, 2, 0);
		if (st == S_OK || st < 0)
			fail("discard-ro", "WRITE_ZEROES on a read-only disk: status %d (%s)", st, status_name(st));
		if (n_fail == bad)
			pass("discard-ro");
		return;
	}
	if ((dev_features & (F_DISCARD | F_WRITE_ZEROES)) != (F_DISCARD | F_WRITE_ZEROES)) {
		fail("discard", "DISCARD / WRITE_ZEROES not offered (features 0x%llx)", dev_features);
		return;
	}
	if (expect_dwz("write-zeroes", T_WRITE_ZEROES, ZERO_SECTOR, 2, 0, S_OK) == 0)
		expect_zeroes("write-zeroes", ZERO_SECTOR, 2);
	if (expect_dwz("write-zeroes", T_WRITE_ZEROES, ZERO_SECTOR + 2, 2, WZ_UNMAP, S_OK) == 0)
		expect_zeroes("write-zeroes", ZERO_SECTOR + 2, 2);
	expect_dwz("write-zeroes", T_WRITE_ZEROES, capacity - 1, 2, 0, S_IOERR);
	if (n_fail == bad)
		pass("write-zeroes");
	bad = n_fail;
	expect_dwz("discard", T_DISCARD, ZERO_SECTOR + 4, 2, 0, S_OK);
	expect_dwz("discard", T_DISCARD, capacity, 1, 0, S_IOERR);
	if (n_fail == bad)
		pass("discard");
	if (!strict)
		return;
	/* 5.2.6.2: UNSUPP for DISCARD with the unmap flag, and for any unknown flag; nothing changes. */
	bad = n_fail;
	expect_dwz("discard-flags", T_DISCARD, ZERO_SECTOR + 6, 1, WZ_UNMAP, S_UNSUPP);
	expect_dwz("discard-flags", T_WRITE_ZEROES, ZERO_SECTOR + 7, 1, 0x80, S_UNSUPP);
	if (n_fail == bad)
		pass("discard-flags");
}

/* After a NEEDS_RESET: reset, set up again, and one read of a pattern sector must work. */
static void recover(const char *name)
{
	u32 bad = n_fail;
	if (dev_init(name) == 0) {
		for (u32 q = 0; q < nq_used; q++) {
			memset(rbuf, 0xee, SECTOR);
			if (expect_req(name, q, T_IN, PAT_SECTOR + 1, rbuf, SECTOR, S_OK, SECTOR + 1) == 0 &&
			    memcmp(rbuf, ebuf + SECTOR, SECTOR) != 0)
				fail(name, "queue %u: read data differs from the pattern", q);
		}
	}
	if (n_fail == bad)
		pass(name);
}

/* Posts a malformed chain (descriptors d[0..n), avail entry `head`, avail.idx moved by `jump`); the
 * device must set NEEDS_RESET, complete nothing and write nothing. */
static void bad_chain_ex(const char *name, const struct vdesc *d, u32 n, u16 head, u16 jump)
{
	u32 bad = n_fail;
	struct vring *r = &rings[0];
	w32(REG_INTERRUPT_ACK, r32(REG_INTERRUPT_STATUS));
	memset(rbuf, 0xee, SECTOR);
	status_byte[0] = 0xaa;
	hdr.type = T_IN;
	hdr.reserved = 0;
	hdr.sector = PAT_SECTOR;
	for (u32 i = 0; i < n; i++)
		r->desc[i] = d[i];
	u16 used_before = *(volatile u16 *)&r->used.idx;
	r->avail.ring[r->next_avail % QSIZE] = head;
	barrier();
	r->next_avail = (u16)(r->next_avail + jump);
	*(volatile u16 *)&r->avail.idx = r->next_avail;
	barrier();
	notify(0);
	if (!wait_status(ST_NEEDS_RESET)) {
		fail(name, "no DEVICE_NEEDS_RESET within %u s (Status 0x%x)", WAIT_SECONDS, r32(REG_STATUS));
	} else {
		u16 used_now = *(volatile u16 *)&r->used.idx;
		if (used_now != used_before)
			fail(name, "the device completed the chain (used.idx %u -> %u)", used_before, used_now);
		if (status_byte[0] != 0xaa)
			fail(name, "the device wrote the status byte (0x%x)", status_byte[0]);
		for (u32 i = 0; i < SECTOR; i++)
			if (rbuf[i] != 0xee) {
				fail(name, "the device wrote the data buffer (byte %u = 0x%x)", i, rbuf[i]);
				break;
			}
		u32 st = r32(REG_STATUS);
		if ((st & ~ST_NEEDS_RESET) != (ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK))
			fail(name, "Status 0x%x: the driver's bits changed", st);
		if (!(r32(REG_INTERRUPT_STATUS) & 2))
			fail(name, "InterruptStatus 0x%x: no configuration-change interrupt for NEEDS_RESET",
			     r32(REG_INTERRUPT_STATUS));
	}
	if (n_fail == bad)
		pass(name);
}

static void bad_chain(const char *name, const struct vdesc *d, u32 n) { bad_chain_ex(name, d, n, 0, 1); }

static void check_malformed(void)
{
	struct vdesc d[3];
	u64 h = gpa(&hdr), s = gpa(status_byte), b = gpa(rbuf);

	/* (a) A data buffer outside guest RAM. */
	d[0] = (struct vdesc){h, 16, D_NEXT, 1};
	d[1] = (struct vdesc){BAD_GPA, SECTOR, D_NEXT | D_WRITE, 2};
	d[2] = (struct vdesc){s, 1, D_WRITE, 0};
	bad_chain("bad-addr", d, 3);
	recover("recover-bad-addr");

	/* (b) A chain that loops: 0 -> 1 -> 2 -> 1 ... */
	d[0] = (struct vdesc){h, 16, D_NEXT, 1};
	d[1] = (struct vdesc){b, SECTOR, D_NEXT | D_WRITE, 2};
	d[2] = (struct vdesc){s, 1, D_NEXT | D_WRITE, 1};
	bad_chain("loop", d, 3);
	recover("recover-loop");

	/* (c) A next index beyond the queue size. */
	d[0] = (struct vdesc){h, 16, D_NEXT, 1};
	d[1] = (struct vdesc){b, SECTOR, D_NEXT | D_WRITE, QSIZE + 3};
	bad_chain("next-range", d, 2);
	recover("recover-next-range");

	/* (d) No status byte: every descriptor device-readable. */
	d[0] = (struct vdesc){h, 16, D_NEXT, 1};
	d[1] = (struct vdesc){b, SECTOR, 0, 0};
	bad_chain("no-status", d, 2);
	recover("recover-no-status");

	/* (e) The available index runs more than the queue size ahead; (f) a head >= the queue size. */
	d[0] = (struct vdesc){h, 16, D_NEXT, 1};
	d[1] = (struct vdesc){b, SECTOR, D_NEXT | D_WRITE, 2};
	d[2] = (struct vdesc){s, 1, D_WRITE, 0};
	bad_chain_ex("avail-ahead", d, 3, 0, QSIZE + 1);
	recover("recover-avail-ahead");
	bad_chain_ex("bad-head", d, 3, QSIZE + 1, 1);
	recover("recover-bad-head");

	/* (g) INDIRECT without VIRTIO_RING_F_INDIRECT_DESC negotiated. */
	itab[0] = (struct vdesc){h, 16, D_NEXT, 1};
	itab[1] = (struct vdesc){b, SECTOR, D_NEXT | D_WRITE, 2};
	itab[2] = (struct vdesc){s, 1, D_WRITE, 0};
	d[0] = (struct vdesc){gpa(itab), 3 * sizeof(struct vdesc), D_INDIRECT, 0};
	bad_chain("indirect-unnegotiated", d, 1);
	recover("recover-indirect-unnegotiated");

	/* (h) With INDIRECT negotiated: a table inside a table, INDIRECT|NEXT, a length not a multiple
	 * of 16, a table outside RAM. */
	if (dev_features & F_INDIRECT) {
		static const struct {
			const char *name, *recover;
		} ind[] = {
			{"indirect-nested", "recover-indirect-nested"},
			{"indirect-next", "recover-indirect-next"},
			{"indirect-len", "recover-indirect-len"},
			{"indirect-outside", "recover-indirect-outside"},
		};
		for (u32 i = 0; i < sizeof(ind) / sizeof(ind[0]); i++) {
			if (dev_init_f(ind[i].name, drv_features | F_INDIRECT))
				continue;
			itab2[0] = (struct vdesc){gpa(itab), 3 * sizeof(struct vdesc), D_INDIRECT, 0};
			d[0] = (struct vdesc){gpa(itab2), sizeof(struct vdesc), D_INDIRECT, 0};
			if (i == 1)
				d[0] = (struct vdesc){gpa(itab), 3 * sizeof(struct vdesc), D_INDIRECT | D_NEXT, 1};
			else if (i == 2)
				d[0] = (struct vdesc){gpa(itab), 3 * sizeof(struct vdesc) - 4, D_INDIRECT, 0};
			else if (i == 3)
				d[0] = (struct vdesc){BAD_GPA, 3 * sizeof(struct vdesc), D_INDIRECT, 0};
			d[1] = (struct vdesc){s, 1, D_WRITE, 0};
			bad_chain(ind[i].name, d, i == 1 ? 2 : 1);
			recover(ind[i].recover);
		}
	}

	/* (e) Queue set-ups the device must refuse with NEEDS_RESET at QueueReady. */
	static const struct {
		const char *name, *recover;
		u32 num;
		int before_features_ok, bad_ring;
	} qs[] = {
		{"queue-too-big", "recover-queue-too-big", 0, 0, 0}, /* num = QueueNumMax * 2 */
		{"queue-npot", "recover-queue-npot", QSIZE + 4, 0, 0},
		{"queue-ring-outside", "recover-queue-ring-outside", QSIZE, 0, 1},
		{"queue-before-features", "recover-queue-before-features", QSIZE, 1, 0},
	};
	for (u32 i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		u32 bad = n_fail;
		const char *name = qs[i].name;
		int ok;
		if (qs[i].before_features_ok) {
			ok = dev_reset(name) == 0;
			w32(REG_STATUS, ST_ACK | ST_DRIVER);
			write_driver_features(drv_features);
		} else {
			ok = negotiate(name, drv_features) == 0;
		}
		if (ok) {
			struct vring *r = &rings[0];
			u32 num = qs[i].num ? qs[i].num : qmax * 2;
			program_queue(0, num, qs[i].bad_ring ? BAD_GPA : gpa(r->desc), gpa(&r->avail), gpa(&r->used));
			w32(REG_QUEUE_READY, 1);
			if (!wait_status(ST_NEEDS_RESET))
				fail(name, "QueueNum %u: no DEVICE_NEEDS_RESET (Status 0x%x)", num, r32(REG_STATUS));
			if (r32(REG_QUEUE_READY) != 0)
				fail(name, "QueueNum %u: QueueReady reads 1", num);
		}
		if (n_fail == bad)
			pass(name);
		recover(qs[i].recover);
	}
}

void ap_main(u32 ticket);
void ap_main(u32 ticket) { (void)ticket; }

void main64(void);
void main64(void)
{
	kprintf("GUEST blk.elf\n");
	parse_seed();
	kprintf("SEED %u\n", seed);
	if (check_probe() == 0) {
		check_config();
		check_negotiation();
		if (check_setup() == 0) {
			check_io();
			check_framing();
			check_interrupts();
			check_indirect();
			if (dev_init("reinit") == 0)
				check_discard();
			if (dev_init("reinit") == 0)
			check_malformed();
		}
		dev_reset("final-reset");
	}
	done_and_reset();
}
