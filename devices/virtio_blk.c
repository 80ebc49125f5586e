/*
 * virtio-blk (device id 2), one device per --disk, a queue per vCPU, all data I/O on io_uring.
 *
 * A queue notification (ioeventfd, in the event loop) pops every available chain, turns each into one
 * io_uring SQE (readv, writev, fdatasync, fallocate) and submits them in one batch. The ring's completion
 * eventfd brings the loop back: each CQE becomes a used-ring entry with its status, and each queue gets
 * at most one interrupt per batch. A host error fails that request only (VIRTIO_BLK_S_IOERR).
 */
#include "devices/virtio_blk.h"
#include "vmm/io_ring.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLK_QUEUE_MAX 128
#define BLK_SEG_MAX 126        /* data segments per request; +2 for header and status */
#define BLK_SECTOR 512ull
#define BLK_ID_BYTES 20
#define BLK_SUBMIT_BATCH 4

struct blk_disk;

struct blk_request {
	struct blk_disk *disk;
	struct blk_request *next_free;
	unsigned queue;
	uint32_t generation;    /* the queue's, when submitted: a stop or reset since then drops the result */
	uint32_t type;
	uint64_t expect;        /* bytes a read/write must move */
	uint32_t written;       /* bytes the device writes into the chain on success (data + status) */
	uint8_t *status;
	struct iovec *data;     /* points into chain.iov */
	unsigned nr_data;
	struct virtq_chain chain;
};

struct blk_disk {
	struct vm *vm;
	struct virtio_mmio *t;
	struct virtio_dev_ops ops;
	char path[256];
	char serial[BLK_ID_BYTES];
	int fd;
	bool readonly;
	bool direct;
	uint64_t capacity;      /* in 512-byte sectors */
	struct io_ring io;
	struct blk_request *reqs;
	struct blk_request *free_reqs;
	unsigned nr_reqs;
	bool starved[VIRTIO_MMIO_MAX_QUEUES]; /* a queue stopped popping for lack of request slots */
	unsigned inflight;      /* SQEs handed to io_uring and not reaped yet */
	uint64_t reads, writes, flushes, errors;
};

struct blk_devices {
	unsigned nr;
	struct blk_disk *disks[CONFIG_MAX_DISKS];
};

static void put_le16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put_le32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_le64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void blk_config_read(void *dev, uint8_t *cfg)
{
	struct blk_disk *d = dev;
	put_le64(cfg + VIRTIO_BLK_CFG_CAPACITY, d->capacity);
	put_le32(cfg + VIRTIO_BLK_CFG_SEG_MAX, BLK_SEG_MAX);
	put_le32(cfg + VIRTIO_BLK_CFG_BLK_SIZE, (uint32_t)BLK_SECTOR);
	put_le16(cfg + VIRTIO_BLK_CFG_NUM_QUEUES, (uint16_t)d->ops.nr_queues);
	put_le32(cfg + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, UINT32_MAX / BLK_SECTOR);
	put_le32(cfg + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 1);
	put_le32(cfg + VIRTIO_BLK_CFG_DISCARD_ALIGNMENT, 1);
	put_le32(cfg + VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS, UINT32_MAX / BLK_SECTOR);
	put_le32(cfg + VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG, 1);
	cfg[VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP] = 1;
}

static struct blk_request *req_get(struct blk_disk *d)
{
	struct blk_request *r = d->free_reqs;
	if (r)
		d->free_reqs = r->next_free;
	return r;
}

static void req_put(struct blk_disk *d, struct blk_request *r)
{
	r->next_free = d->free_reqs;
	d->free_reqs = r;
}

/* Completes a request on its queue (used entry with the status byte); the caller signals the batch. */
static void req_complete(struct blk_disk *d, struct blk_request *r, uint8_t status)
{
	if (status != VIRTIO_BLK_S_OK)
		d->errors++;
	*r->status = status;
	uint32_t written = status == VIRTIO_BLK_S_OK ? r->written : 1;
	virtq_push_used(&d->t->queues[r->queue].vq, r->chain.head, written);
}

/* The request's data: the chain's bytes after `skip` readable bytes (OUT) or before the last writable
 * byte (IN), as iovecs trimmed in place inside chain.iov. */
static void data_from_out(struct blk_request *r, uint64_t skip)
{
	struct virtq_chain *c = &r->chain;
	unsigned i = 0;
	while (i < c->nr_out && skip >= c->iov[i].iov_len)
		skip -= c->iov[i++].iov_len;
	r->data = &c->iov[i];
	r->nr_data = c->nr_out - i;
	if (r->nr_data) {
		r->data[0].iov_base = (uint8_t *)r->data[0].iov_base + skip;
		r->data[0].iov_len -= skip;
	}
}

static void data_from_in(struct blk_request *r)
{
	struct virtq_chain *c = &r->chain;
	r->data = &c->iov[c->nr_out];
	r->nr_data = c->nr_in;
	/* Drop the status byte (the last writable byte) and any empty segments at the end. */
	uint64_t drop = 1;
	while (r->nr_data && drop) {
		struct iovec *last = &r->data[r->nr_data - 1];
		uint64_t take = last->iov_len < drop ? last->iov_len : drop;
		last->iov_len -= take;
		drop -= take;
		if (last->iov_len == 0)
			r->nr_data--;
	}
}

static uint64_t iov_bytes(const struct iovec *iov, unsigned n)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < n; i++)
		sum += iov[i].iov_len;
	return sum;
}

/* Whether [sector, sector + bytes/512) lies inside the disk, without overflow. */
static bool in_range(const struct blk_disk *d, uint64_t sector, uint64_t bytes)
{
	uint64_t sectors = bytes / BLK_SECTOR;
	return sector <= d->capacity && sectors <= d->capacity - sector;
}

/* A free SQE: the ring holds as many entries as there are request slots, so submitting what is
 * queued always makes room. */
static struct io_uring_sqe *blk_get_sqe(struct blk_disk *d)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&d->io.ring);
	if (!sqe) {
		io_uring_submit(&d->io.ring);
		sqe = io_uring_get_sqe(&d->io.ring);
	}
	return sqe;
}

/* Parses one chain into an SQE, or completes it at once. Returns true when an SQE was queued. */
static bool blk_start(struct blk_disk *d, struct blk_request *r)
{
	struct virtq_chain *c = &r->chain;
	struct virtio_blk_req_header h;
	if (c->in_bytes < 1) {
		/* No status byte to report through: the driver broke the protocol. */
		virtio_mmio_needs_reset(d->t, "virtio-blk request without a status byte");
		return false;
	}
	uint64_t status_off = c->in_bytes - 1;
	/* Host pointer of the status byte: walk the writable segments to the last byte. */
	r->status = NULL;
	for (unsigned i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
		if (status_off < c->iov[i].iov_len) {
			r->status = (uint8_t *)c->iov[i].iov_base + status_off;
			break;
		}
		status_off -= c->iov[i].iov_len;
	}
	if (virtq_chain_read(c, 0, &h, sizeof(h)) != sizeof(h)) {
		req_complete(d, r, VIRTIO_BLK_S_IOERR);
		return false;
	}
	r->type = h.type;
	r->written = 1;
	struct io_uring_sqe *sqe;
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool out = h.type == VIRTIO_BLK_T_OUT;
		if (out)
			data_from_out(r, sizeof(h));
		else
			data_from_in(r);
		r->expect = iov_bytes(r->data, r->nr_data);
		if ((out && d->readonly) || r->expect % BLK_SECTOR || !in_range(d, h.sector, r->expect) ||
		    r->nr_data > BLK_SEG_MAX) {
			req_complete(d, r, VIRTIO_BLK_S_IOERR);
			return false;
		}
		if (r->expect == 0) {
			req_complete(d, r, VIRTIO_BLK_S_OK);
			return false;
		}
		if (!out)
			r->written = (uint32_t)r->expect + 1;
		sqe = blk_get_sqe(d);
		if (out)
			io_uring_prep_writev(sqe, d->fd, r->data, r->nr_data, h.sector * BLK_SECTOR);
		else
			io_uring_prep_readv(sqe, d->fd, r->data, r->nr_data, h.sector * BLK_SECTOR);
		break;
	}
	case VIRTIO_BLK_T_FLUSH:
		r->expect = 0;
		sqe = blk_get_sqe(d);
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	case VIRTIO_BLK_T_GET_ID: {
		data_from_in(r);
		uint64_t room = iov_bytes(r->data, r->nr_data);
		uint64_t n = room < BLK_ID_BYTES ? room : BLK_ID_BYTES;
		r->written = (uint32_t)virtq_chain_write(c, 0, d->serial, n) + 1;
		req_complete(d, r, VIRTIO_BLK_S_OK);
		return false;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		struct virtio_blk_discard_segment seg;
		if (c->out_bytes != sizeof(h) + sizeof(seg) ||
		    virtq_chain_read(c, sizeof(h), &seg, sizeof(seg)) != sizeof(seg)) {
			req_complete(d, r, VIRTIO_BLK_S_IOERR);
			return false;
		}
		/* Unknown flags, or UNMAP on a DISCARD, are not ours to guess at (5.2.6.2). */
		uint32_t allowed = h.type == VIRTIO_BLK_T_WRITE_ZEROES ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
		if (seg.flags & ~allowed) {
			req_complete(d, r, VIRTIO_BLK_S_UNSUPP);
			return false;
		}
		if (d->readonly || !in_range(d, seg.sector, (uint64_t)seg.num_sectors * BLK_SECTOR)) {
			req_complete(d, r, VIRTIO_BLK_S_IOERR);
			return false;
		}
		int mode = FALLOC_FL_KEEP_SIZE;
		if (h.type == VIRTIO_BLK_T_DISCARD || (seg.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			mode |= FALLOC_FL_PUNCH_HOLE;
		else
			mode |= FALLOC_FL_ZERO_RANGE;
		r->expect = 0;
		sqe = blk_get_sqe(d);
		io_uring_prep_fallocate(sqe, d->fd, mode, seg.sector * BLK_SECTOR,
					(uint64_t)seg.num_sectors * BLK_SECTOR);
		break;
	}
	default:
		req_complete(d, r, VIRTIO_BLK_S_UNSUPP);
		return false;
	}
	if (!sqe) { /* cannot happen with the ring sized to the request pool; fail the request, not the VM */
		req_complete(d, r, VIRTIO_BLK_S_IOERR);
		return false;
	}
	io_uring_sqe_set_data(sqe, r);
	return true;
}

/* Pops and starts every available request of queue q (t->lock held, event loop thread). */
static void blk_queue_notify(void *dev, struct virtio_mmio *t, unsigned q)
{
	struct blk_disk *d = dev;
	unsigned queued = 0;
	bool completed_now = false;
	for (;;) {
		struct blk_request *r = req_get(d);
		if (!r) {
			d->starved[q] = true; /* resumed when a completion frees a slot */
			break;
		}
		if (!virtio_mmio_pop(t, q, &r->chain)) {
			req_put(d, r);
			break;
		}
		r->queue = q;
		r->generation = t->queues[q].generation;
		if (blk_start(d, r)) {
			queued++;
			d->inflight++;
			/* Submit in small groups: one big burst completes as a burst and the disk then idles
			 * while the guest refills (a convoy); groups keep its queue full. */
			if (queued == BLK_SUBMIT_BATCH) {
				io_uring_submit(&d->io.ring);
				queued = 0;
			}
		} else {
			completed_now = true;
			req_put(d, r);
			if (t->status & VIRTIO_STATUS_NEEDS_RESET)
				break;
		}
	}
	if (queued)
		io_uring_submit(&d->io.ring);
	if (completed_now)
		virtio_mmio_signal_used(t, q);
}

/* One completion: a used entry with its status, unless the queue stopped or reset since (then the
 * rings may be new ones and the result goes nowhere). */
static void blk_reap(struct blk_disk *d, struct io_uring_cqe *cqe, bool *touched)
{
	struct virtio_mmio *t = d->t;
	struct blk_request *r = io_uring_cqe_get_data(cqe);
	d->inflight--;
	if (r->generation == t->queues[r->queue].generation && virtio_mmio_driver_ok(t)) {
		bool ok = cqe->res >= 0 && (uint64_t)cqe->res == r->expect;
		if (!ok)
			log_debug(&d->vm->log, "virtio-blk %s: request type %u failed: %s", d->path, r->type,
				  cqe->res < 0 ? strerror(-cqe->res) : "short transfer");
		if (r->type == VIRTIO_BLK_T_IN)
			d->reads++;
		else if (r->type == VIRTIO_BLK_T_OUT)
			d->writes++;
		else if (r->type == VIRTIO_BLK_T_FLUSH)
			d->flushes++;
		req_complete(d, r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
		touched[r->queue] = true;
	}
	req_put(d, r);
}

static void blk_signal(struct blk_disk *d, const bool *touched)
{
	for (unsigned q = 0; q < d->ops.nr_queues; q++)
		if (touched[q])
			virtio_mmio_signal_used(d->t, q);
}

static void blk_on_completion(void *ctx, uint32_t events)
{
	struct blk_disk *d = ctx;
	struct virtio_mmio *t = d->t;
	(void)events;
	io_ring_ack(&d->io);
	pthread_mutex_lock(&t->lock);
	bool touched[VIRTIO_MMIO_MAX_QUEUES] = { false };
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&d->io.ring, head, cqe) {
		blk_reap(d, cqe, touched);
		seen++;
	}
	io_uring_cq_advance(&d->io.ring, seen);
	blk_signal(d, touched);
	for (unsigned q = 0; q < d->ops.nr_queues; q++) {
		if (d->starved[q] && d->free_reqs) {
			d->starved[q] = false;
			if (virtio_mmio_driver_ok(t) && t->queues[q].vq.ready && !t->queues[q].vq.broken)
				blk_queue_notify(d, t, q);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

/* Waits for every request in flight (io_uring_queue_exit does not: its workers may still be writing
 * guest memory) and completes them; those of a stopped queue or a reset device are dropped. Called
 * with the transport lock held, so the event loop is not inside the ring meanwhile. */
static void blk_drain(struct blk_disk *d)
{
	bool touched[VIRTIO_MMIO_MAX_QUEUES] = { false };
	while (d->inflight) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&d->io.ring, &cqe) < 0)
			break;
		blk_reap(d, cqe, touched);
		io_uring_cqe_seen(&d->io.ring, cqe);
	}
	blk_signal(d, touched);
}

static void blk_queue_stop(void *dev, struct virtio_mmio *t, unsigned q)
{
	struct blk_disk *d = dev;
	(void)t;
	blk_drain(d);
	d->starved[q] = false;
}

static void blk_reset(void *dev)
{
	struct blk_disk *d = dev;
	blk_drain(d);
	for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		d->starved[q] = false;
}

/* PATH[,readonly][,serial=ID][,direct] */
static int parse_disk_option(struct blk_disk *d, const char *spec, unsigned index, struct error *err)
{
	char buf[512];
	if (strlen(spec) >= sizeof(buf) || !*spec)
		return error_input(err, "--disk '%s': give PATH[,readonly][,serial=ID][,direct]", spec);
	snprintf(buf, sizeof(buf), "%s", spec);
	char *save = NULL;
	char *path = strtok_r(buf, ",", &save);
	if (!path || strlen(path) >= sizeof(d->path))
		return error_input(err, "--disk '%s': the path is missing or too long", spec);
	snprintf(d->path, sizeof(d->path), "%s", path);
	snprintf(d->serial, sizeof(d->serial), "kvmbox-disk%u", index);
	for (char *o = strtok_r(NULL, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		if (!strcmp(o, "readonly") || !strcmp(o, "ro"))
			d->readonly = true;
		else if (!strcmp(o, "direct"))
			d->direct = true;
		else if (!strncmp(o, "serial=", 7)) {
			if (strlen(o + 7) > BLK_ID_BYTES)
				return error_input(err, "--disk %s: serial '%s' is longer than %d bytes", d->path,
						   o + 7, BLK_ID_BYTES);
			memset(d->serial, 0, sizeof(d->serial));
			memcpy(d->serial, o + 7, strlen(o + 7));
		} else
			return error_input(err, "--disk %s: unknown option '%s' (readonly, serial=ID, direct)",
					   d->path, o);
	}
	return 0;
}

static int open_disk(struct blk_disk *d, struct error *err)
{
	int flags = (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (d->direct ? O_DIRECT : 0);
	d->fd = open(d->path, flags);
	if (d->fd < 0)
		return error_input(err, "--disk %s: cannot open %s: %s", d->path,
				   d->readonly ? "for reading" : "for reading and writing", strerror(errno));
	/* Two VMs writing one image corrupt it: take the image's lock (shared when read-only). */
	if (flock(d->fd, (d->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0)
		return error_input(err, "--disk %s: the image is in use by another process (%s); stop it or "
				   "use ,readonly on both", d->path, strerror(errno));
	struct stat st;
	if (fstat(d->fd, &st) < 0)
		return error_set(err, "--disk %s: stat failed: %s", d->path, strerror(errno));
	uint64_t bytes;
	if (S_ISREG(st.st_mode)) {
		bytes = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(d->fd, BLKGETSIZE64, &bytes) < 0)
			return error_set(err, "--disk %s: cannot read the device size: %s", d->path, strerror(errno));
	} else {
		return error_input(err, "--disk %s: not a regular file or block device", d->path);
	}
	d->capacity = bytes / BLK_SECTOR;
	if (d->capacity == 0)
		return error_input(err, "--disk %s: the image is empty (less than 512 bytes)", d->path);
	return 0;
}

static int blk_create_one(struct vm *vm, struct blk_disk *d, const char *spec, unsigned index, struct error *err)
{
	d->vm = vm;
	d->fd = -1;
	io_ring_clear(&d->io);
	if (parse_disk_option(d, spec, index, err) || open_disk(d, err))
		return -1;
	unsigned nr_queues = vm->cfg->cpus < VIRTIO_MMIO_MAX_QUEUES ? vm->cfg->cpus : VIRTIO_MMIO_MAX_QUEUES;
	d->nr_reqs = nr_queues * BLK_QUEUE_MAX;
	d->reqs = calloc(d->nr_reqs, sizeof(*d->reqs));
	if (!d->reqs)
		return error_set(err, "out of memory for %u virtio-blk requests", d->nr_reqs);
	for (unsigned i = 0; i < d->nr_reqs; i++) {
		d->reqs[i].disk = d;
		req_put(d, &d->reqs[i]);
	}
	char who[300];
	snprintf(who, sizeof(who), "--disk %s", d->path);
	if (io_ring_init(&d->io, &vm->loop, d->nr_reqs, 0, blk_on_completion, d, who, err))
		return -1;
	d->ops = (struct virtio_dev_ops){
		.name = "virtio-blk",
		.device_id = VIRTIO_ID_BLOCK,
		.features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
			    (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_MQ) |
			    (d->readonly ? (1ull << VIRTIO_BLK_F_RO)
					 : (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES)),
		.nr_queues = nr_queues,
		.queue_max = BLK_QUEUE_MAX,
		.config_size = VIRTIO_BLK_CFG_SIZE,
		.config_read = blk_config_read,
		.queue_notify = blk_queue_notify,
		.queue_stop = blk_queue_stop,
		.reset = blk_reset,
	};
	if (virtio_mmio_create(vm, &d->ops, d, &d->t, err))
		return -1;
	log_debug(&vm->log, "virtio-blk: %s, %llu MiB%s%s, serial %.20s, %u queue(s)", d->path,
		  (unsigned long long)(d->capacity * BLK_SECTOR >> 20), d->readonly ? ", read-only" : "",
		  d->direct ? ", O_DIRECT" : "", d->serial, nr_queues);
	return 0;
}

static void blk_destroy_one(struct blk_disk *d)
{
	if (d->t && d->io.ready) {
		pthread_mutex_lock(&d->t->lock);
		blk_drain(d);
		pthread_mutex_unlock(&d->t->lock);
	}
	if (d->t)
		virtio_mmio_destroy(d->t);
	io_ring_exit(&d->io);
	if (d->fd >= 0) {
		/* What the guest wrote reaches the disk even if it never flushed. */
		if (!d->readonly)
			fdatasync(d->fd);
		close(d->fd);
	}
	if (d->reads + d->writes + d->flushes)
		log_debug(&d->vm->log, "virtio-blk %s: %llu reads, %llu writes, %llu flushes, %llu errors", d->path,
			  (unsigned long long)d->reads, (unsigned long long)d->writes,
			  (unsigned long long)d->flushes, (unsigned long long)d->errors);
	free(d->reqs);
	free(d);
}

static void blk_destroy(void *state)
{
	struct blk_devices *all = state;
	for (unsigned i = 0; i < all->nr; i++)
		blk_destroy_one(all->disks[i]);
	free(all);
}

static int blk_create(struct vm *vm, void **state, struct error *err)
{
	if (vm->cfg->nr_disks == 0)
		return 0;
	struct blk_devices *all = calloc(1, sizeof(*all));
	if (!all)
		return error_set(err, "out of memory");
	*state = all;
	for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
		struct blk_disk *d = calloc(1, sizeof(*d));
		if (!d)
			return error_set(err, "out of memory");
		all->disks[all->nr++] = d;
		if (blk_create_one(vm, d, vm->cfg->disks[i], i, err))
			return -1;
	}
	return 0;
}

static const struct device_desc virtio_blk = {
	.name = "virtio-blk",
	.create = blk_create,
	.destroy = blk_destroy,
};
DEVICE_REGISTER(virtio_blk);
