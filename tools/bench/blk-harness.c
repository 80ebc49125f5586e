/*
 * The guest side of tools/bench/blk: plays a virtio-blk driver against the real device model in-process
 * (tests/harness/virtio_driver.h: devices/virtio_blk.c, the virtio-mmio transport, the event loop, io_uring)
 * and keeps --qd requests in flight for --runtime seconds, like fio's io_uring engine would on the host.
 *
 * Loop: queue qd requests, kick; then wait in the monitor's event loop (epoll), reap the used entries,
 * queue as many new ones and kick (EVENT_IDX decides whether a notification is needed). One thread runs
 * both the driver and the device, so the figures are the device model's cost plus a minimal driver.
 *
 * Usage: blk-harness --file PATH [--direct] [--rw randread|randwrite|read|write] [--bs BYTES] [--qd N]
 *                    [--runtime SECONDS] [--size BYTES] [--nop] [--driver-thread]
 * --driver-thread runs the device's event loop on a second thread, as the monitor does (event loop thread +
 * vCPU thread); the driver then sleeps on the irqfd between completions, like a guest waiting for interrupts.
 * --nop sends zero-length reads (completed by the device without I/O): the per-request cost of the
 * transport, the virtqueue and the event loop alone. Prints one JSON object.
 */
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "tests/harness/virtio_driver.h"

#define QSIZE 128

struct opts {
	const char *file;
	bool direct, nop, driver_thread;
	bool write, random;
	uint32_t bs;
	unsigned qd;
	double runtime;
	uint64_t size;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* --driver-thread: the device's event loop on its own thread, as in the monitor (the driver thread then
 * plays the vCPU: it notifies through the ioeventfd and sleeps on the irqfd). */
struct device_thread {
	struct vd *vd;
	pthread_t thread;
	bool stop;
};

static void *device_thread_fn(void *arg)
{
	struct device_thread *dt = arg;
	while (!__atomic_load_n(&dt->stop, __ATOMIC_ACQUIRE))
		vd_pump(dt->vd, 50);
	return NULL;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: blk-harness --file PATH [--direct] [--rw randread|randwrite|read|write] [--bs BYTES]\n"
			"                   [--qd N] [--runtime SECONDS] [--size BYTES] [--nop] [--driver-thread]\n");
	exit(2);
}

static void parse(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "file", required_argument, NULL, 'f' }, { "direct", no_argument, NULL, 'd' },
		{ "rw", required_argument, NULL, 'w' },   { "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'q' },   { "runtime", required_argument, NULL, 'r' },
		{ "size", required_argument, NULL, 's' }, { "nop", no_argument, NULL, 'n' },
		{ "driver-thread", no_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct opts){ .bs = 4096, .qd = 1, .runtime = 5, .random = true };
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': o->file = optarg; break;
		case 'd': o->direct = true; break;
		case 'n': o->nop = true; break;
		case 't': o->driver_thread = true; break;
		case 'b': o->bs = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'q': o->qd = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': o->runtime = strtod(optarg, NULL); break;
		case 's': o->size = strtoull(optarg, NULL, 0); break;
		case 'w':
			o->write = !strcmp(optarg, "randwrite") || !strcmp(optarg, "write");
			o->random = !strncmp(optarg, "rand", 4);
			if (strcmp(optarg, "randread") && strcmp(optarg, "randwrite") && strcmp(optarg, "read") &&
			    strcmp(optarg, "write"))
				usage();
			break;
		default: usage();
		}
	}
	/* 3 descriptors per request (header, data, status) in a queue of 128. */
	if (!o->file || o->bs == 0 || o->bs % 512 || o->qd == 0 || o->qd > QSIZE / 3 || o->runtime <= 0)
		usage();
}

int main(int argc, char **argv)
{
	struct opts o;
	parse(&o, argc, argv);
	struct stat st;
	if (stat(o.file, &st) < 0) {
		perror(o.file);
		return 1;
	}
	if (o.size == 0 || o.size > (uint64_t)st.st_size)
		o.size = (uint64_t)st.st_size;
	uint64_t blocks = o.size / o.bs;
	if (blocks == 0) {
		fprintf(stderr, "blk-harness: %s is smaller than one block\n", o.file);
		return 1;
	}

	char spec[600];
	snprintf(spec, sizeof(spec), "%s%s", o.file, o.direct ? ",direct" : "");
	struct vd_opts vo = { .cpus = 1, .ram_bytes = (uint64_t)o.qd * o.bs + (4ull << 20), .log_level = LOG_ERROR };
	struct error err;
	struct vd *vd = vd_create(spec, &vo, &err);
	if (!vd) {
		fprintf(stderr, "blk-harness: %s\n", err.msg);
		return 1;
	}
	uint64_t features = (1ull << VD_F_VERSION_1) | (1ull << VD_F_EVENT_IDX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
			    (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH);
	if (vd_start(vd, features, 1, QSIZE)) {
		fprintf(stderr, "blk-harness: device set-up failed (status 0x%x)\n", vd_status(vd));
		return 1;
	}
	uint64_t buffers = vd_alloc(vd, (uint64_t)o.qd * o.bs, 4096);
	uint8_t *host = vd_ptr(vd, buffers, (uint64_t)o.qd * o.bs);
	for (uint64_t i = 0; i < (uint64_t)o.qd * o.bs; i += 8) {
		uint64_t v = rng();
		memcpy(host + i, &v, 8);
	}

	uint64_t next_seq = 0;
	struct vd_done done[QSIZE];
	uint64_t ios = 0, errors = 0, pumps = 0;
	unsigned inflight = 0;
	/* Slot i always uses buffer i. */
#define SUBMIT(slot)                                                                                           \
	do {                                                                                                   \
		uint64_t blk = o.random ? rng() % blocks : next_seq++ % blocks;                                   \
		struct vd_seg s = { buffers + (uint64_t)(slot) * o.bs, o.bs };                                    \
		if (vd_queue_req(vd, 0, o.write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, blk * (o.bs / 512), &s,     \
				 o.nop ? 0 : 1, !o.write || o.nop, (slot)) < 0)                                  \
			abort();                                                                               \
		inflight++;                                                                                    \
	} while (0)

	struct device_thread dt = { .vd = vd };
	if (o.driver_thread && pthread_create(&dt.thread, NULL, device_thread_fn, &dt)) {
		fprintf(stderr, "blk-harness: cannot start the device thread\n");
		return 1;
	}
	double cpu0 = cpu_seconds();
	uint64_t t0 = monotonic_ns(), end = t0 + (uint64_t)(o.runtime * 1e9);
	/* Start like fio does (iodepth_batch_submit=1): one request per notification. */
	for (unsigned i = 0; i < o.qd; i++) {
		SUBMIT(i);
		vd_kick(vd, 0);
		while (!o.driver_thread && vd_pump(vd, 0) > 0)
			;
	}
	bool running = true;
	uint64_t now = t0;
	while (inflight) {
		if (!vd_used_pending(vd, 0)) {
			pumps++;
			if (o.driver_thread) {
				/* Like a guest: sleep until the interrupt (EVENT_IDX: used_event asks for the next one). */
				struct pollfd pfd = { .fd = vd->irqfd, .events = POLLIN };
				__atomic_thread_fence(__ATOMIC_SEQ_CST);
				if (!vd_used_pending(vd, 0) && poll(&pfd, 1, 1000) < 0)
					return 1;
				vd_interrupts(vd);
			} else if (vd_pump(vd, 1000) < 0) {
				return 1;
			}
		}
		unsigned n = vd_reap(vd, 0, done, QSIZE);
		if (!n)
			continue;
		now = monotonic_ns();
		running = running && now < end;
		for (unsigned i = 0; i < n; i++) {
			inflight--;
			ios++; /* the last ones complete after --runtime: counted, and the time runs to them */
			if (done[i].status != VIRTIO_BLK_S_OK)
				errors++;
			if (running)
				SUBMIT(done[i].user);
		}
		if (running)
			vd_kick(vd, 0);
	}
	if (o.driver_thread) {
		__atomic_store_n(&dt.stop, true, __ATOMIC_RELEASE);
		pthread_join(dt.thread, NULL);
	}
	double seconds = (double)(now - t0) / 1e9;
	double cpu = cpu_seconds() - cpu0;
	uint64_t interrupts = vd_interrupts(vd);
	uint64_t notifies = vd->q[0].notifies;
	vd_destroy(vd);
	if (errors) {
		fprintf(stderr, "blk-harness: %llu requests failed\n", (unsigned long long)errors);
		return 1;
	}
	double iops = (double)ios / seconds;
	printf("{\"ios\": %llu, \"seconds\": %.3f, \"iops\": %.1f, \"mb_per_s\": %.2f, \"cpu_seconds\": %.3f, "
	       "\"cpu_us_per_io\": %.3f, \"notifies_per_io\": %.3f, \"interrupts_per_io\": %.3f, "
	       "\"pumps_per_io\": %.3f}\n",
	       (unsigned long long)ios, seconds, iops, iops * o.bs / 1e6, cpu, ios ? cpu * 1e6 / (double)ios : 0,
	       ios ? (double)notifies / (double)ios : 0, ios ? (double)interrupts / (double)ios : 0,
	       ios ? (double)pumps / (double)ios : 0);
	return 0;
}
