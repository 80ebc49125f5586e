/* In-process virtio-mmio driver for the virtio-blk device model: see virtio_driver.h. */
#include "tests/harness/virtio_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The registered devices (DEVICE_REGISTER); weak so that a binary without any device still links. */
extern const struct device_desc *const __start_kvmbox_devices[] __attribute__((weak));
extern const struct device_desc *const __stop_kvmbox_devices[] __attribute__((weak));

const struct device_desc *vd_find_device(const char *name)
{
	for (const struct device_desc *const *d = __start_kvmbox_devices; d && d < __stop_kvmbox_devices; d++)
		if (*d && !strcmp((*d)->name, name))
			return *d;
	return NULL;
}

struct vd *vd_create(const char *disk_spec, const struct vd_opts *opts, struct error *err)
{
	return vd_create_device("virtio-blk", "--disk", disk_spec, opts, err);
}

struct vd *vd_create_device(const char *device, const char *option, const char *value, const struct vd_opts *opts,
			    struct error *err)
{
	struct vd_opts o = { .cpus = 1, .ram_bytes = 16ull << 20, .log_level = LOG_ERROR };
	if (opts) {
		if (opts->cpus)
			o.cpus = opts->cpus;
		if (opts->ram_bytes)
			o.ram_bytes = opts->ram_bytes;
		o.log_level = opts->log_level;
	}
	struct vd *vd = calloc(1, sizeof(*vd));
	if (!vd) {
		error_set(err, "out of memory");
		return NULL;
	}
	vd->irqfd = -1;
	for (unsigned q = 0; q < VD_MAX_QUEUES; q++)
		vd->ioeventfd[q] = -1;
	struct vm *vm = &vd->vm;
	log_init(&vm->log, o.log_level);
	pthread_mutex_init(&vm->exit_lock, NULL);
	vm->kvm_fd = vm->vm_fd = vm->exit_eventfd = -1;
	vm->loop.epoll_fd = -1;
	vm->pio.name = "port";
	vm->mmio.name = "mmio";
	vm->guest_is_linux = true;

	/* The device reads its option from the config, exactly as kvmbox-vmm parses it. */
	config_defaults(&vd->cfg);
	char *argv[] = { "vd", (char *)option, (char *)value, NULL };
	if (config_parse_args(&vd->cfg, 3, argv, err))
		goto fail;
	vd->cfg.cpus = o.cpus;
	vm->cfg = &vd->cfg;

	vd->ram_size = (o.ram_bytes + 4095) & ~4095ull;
	vd->ram = aligned_alloc(4096, vd->ram_size);
	if (!vd->ram) {
		error_set(err, "out of memory for %llu bytes of guest RAM", (unsigned long long)vd->ram_size);
		goto fail;
	}
	memset(vd->ram, 0, vd->ram_size);
	guest_mem_init_from(&vm->mem, vd->ram, vd->ram_size, vd->ram_size, 1ull << 40);
	vd->brk = 0x1000; /* page 0 stays unused */

	if (event_loop_init(&vm->loop, err))
		goto fail;
	vd->desc = vd_find_device(device);
	if (!vd->desc) {
		error_set(err, "no device named %s is linked in", device);
		goto fail;
	}
	if (vd->desc->create(vm, &vd->dev_state, err))
		goto fail;
	if (vd->irqfd < 0 || vd->nr_ioeventfds == 0) {
		error_set(err, "%s registered no irqfd or no queue ioeventfd", device);
		goto fail;
	}
	return vd;
fail:
	vd_destroy(vd);
	return NULL;
}

/*
 * The device's destroy does not wait for I/O that io_uring still runs (io_uring_queue_exit() returns while
 * io-wq workers may still be copying into guest RAM): wait until no open file description of the image
 * is left, i.e. until our own exclusive lock on it succeeds, before freeing RAM.
 */
static void wait_image_released(const char *spec)
{
	char path[512];
	snprintf(path, sizeof(path), "%s", spec);
	char *comma = strchr(path, ',');
	if (comma)
		*comma = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	uint64_t deadline = monotonic_ns() + 10000000000ull;
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK || monotonic_ns() > deadline) {
			fprintf(stderr, "vd_destroy: %s is still locked after the device was destroyed\n", path);
			break;
		}
		usleep(50);
	}
	close(fd);
}

void vd_destroy(struct vd *vd)
{
	if (!vd)
		return;
	if (vd->desc && vd->dev_state) {
		vd->desc->destroy(vd->dev_state);
		if (vd->cfg.nr_disks)
			wait_image_released(vd->cfg.disks[0]);
	}
	event_loop_close(&vd->vm.loop);
	for (unsigned q = 0; q < VD_MAX_QUEUES; q++)
		free(vd->q[q].inflight);
	config_free(&vd->cfg);
	free(vd->vm.cmdline_extra);
	guest_mem_free(&vd->vm.mem);
	free(vd->ram);
	pthread_mutex_destroy(&vd->vm.exit_lock);
	free(vd);
}

void *vd_ptr(struct vd *vd, uint64_t gpa, uint64_t len)
{
	return guest_mem_ptr(&vd->vm.mem, gpa, len);
}

uint64_t vd_alloc(struct vd *vd, uint64_t len, uint64_t align)
{
	if (align == 0)
		align = 1;
	uint64_t gpa = (vd->brk + align - 1) & ~(align - 1);
	if (gpa > vd->ram_size || len > vd->ram_size - gpa) {
		fprintf(stderr, "vd_alloc: %llu bytes do not fit in guest RAM (%llu bytes, %llu used)\n",
			(unsigned long long)len, (unsigned long long)vd->ram_size, (unsigned long long)vd->brk);
		abort();
	}
	memset(vd->ram + gpa, 0, len);
	vd->brk = gpa + len;
	return gpa;
}

uint32_t vd_read32(struct vd *vd, uint64_t off)
{
	uint8_t b[4] = { 0 };
	bus_access(&vd->vm.mmio, vd->base + off, b, 4, false);
	uint32_t v;
	memcpy(&v, b, 4);
	return v;
}

void vd_write32(struct vd *vd, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	memcpy(b, &v, 4);
	bus_access(&vd->vm.mmio, vd->base + off, b, 4, true);
}

void vd_config_read(struct vd *vd, uint64_t off, void *buf, uint32_t len)
{
	uint8_t *p = buf;
	while (len) {
		uint32_t n = len >= 4 ? 4 : len;
		bus_access(&vd->vm.mmio, vd->base + VD_REG_CONFIG + off, p, n, false);
		p += n;
		off += n;
		len -= n;
	}
}

uint32_t vd_status(struct vd *vd)
{
	return vd_read32(vd, VD_REG_STATUS);
}

uint64_t vd_device_features(struct vd *vd)
{
	vd_write32(vd, VD_REG_DEVICE_FEATURES_SEL, 0);
	uint64_t lo = vd_read32(vd, VD_REG_DEVICE_FEATURES);
	vd_write32(vd, VD_REG_DEVICE_FEATURES_SEL, 1);
	uint64_t hi = vd_read32(vd, VD_REG_DEVICE_FEATURES);
	return lo | hi << 32;
}

static void forget_queues(struct vd *vd)
{
	for (unsigned q = 0; q < VD_MAX_QUEUES; q++) {
		free(vd->q[q].inflight);
		memset(&vd->q[q], 0, sizeof(vd->q[q]));
	}
	vd->nr_queues = 0;
}

void vd_reset(struct vd *vd)
{
	vd_write32(vd, VD_REG_STATUS, 0);
	forget_queues(vd);
	vd->features = 0;
}

int vd_negotiate(struct vd *vd, uint64_t features)
{
	vd_reset(vd);
	uint32_t s = VD_STATUS_ACKNOWLEDGE;
	vd_write32(vd, VD_REG_STATUS, s);
	s |= VD_STATUS_DRIVER;
	vd_write32(vd, VD_REG_STATUS, s);
	vd_write32(vd, VD_REG_DRIVER_FEATURES_SEL, 0);
	vd_write32(vd, VD_REG_DRIVER_FEATURES, (uint32_t)features);
	vd_write32(vd, VD_REG_DRIVER_FEATURES_SEL, 1);
	vd_write32(vd, VD_REG_DRIVER_FEATURES, (uint32_t)(features >> 32));
	s |= VD_STATUS_FEATURES_OK;
	vd_write32(vd, VD_REG_STATUS, s);
	if (!(vd_status(vd) & VD_STATUS_FEATURES_OK))
		return -1;
	vd->features = features;
	return 0;
}

int vd_setup_queue_at(struct vd *vd, unsigned q, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	if (q >= VD_MAX_QUEUES || size == 0 || size > VD_QUEUE_MAX)
		return -1;
	struct vd_queue *vq = &vd->q[q];
	free(vq->inflight);
	memset(vq, 0, sizeof(*vq));
	vq->inflight = calloc(size, sizeof(*vq->inflight));
	if (!vq->inflight)
		return -1;
	vq->size = size;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vd_write32(vd, VD_REG_QUEUE_SEL, q);
	vd_write32(vd, VD_REG_QUEUE_NUM, size);
	vd_write32(vd, VD_REG_QUEUE_DESC_LOW, (uint32_t)desc);
	vd_write32(vd, VD_REG_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	vd_write32(vd, VD_REG_QUEUE_AVAIL_LOW, (uint32_t)avail);
	vd_write32(vd, VD_REG_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	vd_write32(vd, VD_REG_QUEUE_USED_LOW, (uint32_t)used);
	vd_write32(vd, VD_REG_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
	vd_write32(vd, VD_REG_QUEUE_READY, 1);
	if (vd_read32(vd, VD_REG_QUEUE_READY) != 1)
		return -1;
	if (q >= vd->nr_queues)
		vd->nr_queues = q + 1;
	return 0;
}

int vd_setup_queue(struct vd *vd, unsigned q, uint16_t size)
{
	if (q >= VD_MAX_QUEUES || size == 0 || size > VD_QUEUE_MAX)
		return -1;
	vd_write32(vd, VD_REG_QUEUE_SEL, q);
	if (size > vd_read32(vd, VD_REG_QUEUE_NUM_MAX))
		return -1;
	uint64_t desc = vd_alloc(vd, 16ull * size, 4096);
	uint64_t avail = vd_alloc(vd, 6 + 2ull * size, 4096);
	uint64_t used = vd_alloc(vd, 6 + 8ull * size, 4096);
	uint64_t hdrs = vd_alloc(vd, 16ull * size, 4096);
	uint64_t status = vd_alloc(vd, size, 64);
	if (vd_setup_queue_at(vd, q, size, desc, avail, used))
		return -1;
	struct vd_queue *vq = &vd->q[q];
	vq->hdrs = hdrs;
	vq->status = status;
	for (unsigned i = 0; i < size; i++)
		vq->free_stack[vq->nr_free++] = (uint16_t)(size - 1 - i);
	return 0;
}

void vd_driver_ok(struct vd *vd)
{
	vd_write32(vd, VD_REG_STATUS, vd_status(vd) | VD_STATUS_DRIVER_OK);
}

int vd_start(struct vd *vd, uint64_t features, unsigned nr_queues, uint16_t qsize)
{
	if (vd_negotiate(vd, features))
		return -1;
	for (unsigned q = 0; q < nr_queues; q++) {
		vd_write32(vd, VD_REG_QUEUE_SEL, q);
		uint32_t max = vd_read32(vd, VD_REG_QUEUE_NUM_MAX);
		if (vd_setup_queue(vd, q, qsize < max ? qsize : (uint16_t)max))
			return -1;
	}
	vd_driver_ok(vd);
	return (vd_status(vd) & VD_STATUS_DRIVER_OK) ? 0 : -1;
}

/* Ring words, little-endian on x86 like everything here. */
static volatile uint16_t *ring16(struct vd *vd, uint64_t gpa)
{
	return (volatile uint16_t *)vd_ptr(vd, gpa, 2);
}

void vd_put_desc(struct vd *vd, unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vd_queue *vq = &vd->q[q];
	uint8_t *p = vd_ptr(vd, vq->desc + 16ull * (i % vq->size), 16);
	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

void vd_publish(struct vd *vd, unsigned q, uint16_t head)
{
	struct vd_queue *vq = &vd->q[q];
	*ring16(vd, vq->avail + 4 + 2ull * (vq->avail_idx & (vq->size - 1))) = head;
	vq->avail_idx++;
	/* Release: the descriptors and the ring entry are visible before the index (2.7.13). */
	__atomic_store_n(ring16(vd, vq->avail + 2), vq->avail_idx, __ATOMIC_RELEASE);
}

int vd_queue_req(struct vd *vd, unsigned q, uint32_t type, uint64_t sector, const struct vd_seg *data,
		 unsigned nr_data, bool data_in, uint64_t user)
{
	struct vd_queue *vq = &vd->q[q];
	unsigned n = nr_data + 2;
	if (nr_data > VD_MAX_SEGS || vq->nr_free < n)
		return -1;
	uint16_t d[VD_MAX_SEGS + 2];
	for (unsigned i = 0; i < n; i++)
		d[i] = vq->free_stack[--vq->nr_free];
	uint16_t head = d[0];
	uint8_t *hdr = vd_ptr(vd, vq->hdrs + 16ull * head, 16);
	uint32_t zero = 0;
	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &zero, 4);
	memcpy(hdr + 8, &sector, 8);
	*(uint8_t *)vd_ptr(vd, vq->status + head, 1) = 0xff; /* the device must overwrite it */
	vd_put_desc(vd, q, d[0], vq->hdrs + 16ull * head, 16, VD_DESC_F_NEXT, d[1]);
	for (unsigned i = 0; i < nr_data; i++)
		vd_put_desc(vd, q, d[1 + i], data[i].gpa, data[i].len,
			    VD_DESC_F_NEXT | (data_in ? VD_DESC_F_WRITE : 0), d[2 + i]);
	vd_put_desc(vd, q, d[n - 1], vq->status + head, 1, VD_DESC_F_WRITE, 0);
	struct vd_inflight *f = &vq->inflight[head];
	f->n = n;
	memcpy(f->descs, d, n * sizeof(d[0]));
	f->user = user;
	vd_publish(vd, q, head);
	return head;
}

void vd_notify(struct vd *vd, unsigned q)
{
	uint64_t one = 1;
	if (write(vd->ioeventfd[q], &one, sizeof(one)) != sizeof(one))
		abort();
	vd->q[q].notifies++;
}

bool vd_kick(struct vd *vd, unsigned q)
{
	struct vd_queue *vq = &vd->q[q];
	uint16_t old = vq->kicked_idx, new = vq->avail_idx;
	vq->kicked_idx = new;
	/* Full fence: avail->idx is visible before we read the device's suppression word. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	bool need;
	if (vd->features & (1ull << VD_F_EVENT_IDX)) {
		uint16_t event = *ring16(vd, vq->used + 4 + 8ull * vq->size); /* avail_event */
		need = (uint16_t)(new - event - 1) < (uint16_t)(new - old);
	} else {
		need = !(*ring16(vd, vq->used) & 1); /* VIRTQ_USED_F_NO_NOTIFY */
	}
	if (need)
		vd_notify(vd, q);
	return need;
}

int vd_pump(struct vd *vd, int timeout_ms)
{
	struct error err;
	int n = event_loop_run_once(&vd->vm.loop, timeout_ms, &err);
	if (n < 0)
		fprintf(stderr, "vd_pump: %s\n", err.msg);
	return n;
}

unsigned vd_used_pending(struct vd *vd, unsigned q)
{
	struct vd_queue *vq = &vd->q[q];
	if (!vq->size)
		return 0;
	uint16_t idx = __atomic_load_n(ring16(vd, vq->used + 2), __ATOMIC_ACQUIRE);
	return (uint16_t)(idx - vq->last_used);
}

unsigned vd_wait_used(struct vd *vd, unsigned q, unsigned n, int timeout_ms)
{
	uint64_t deadline = monotonic_ns() + (uint64_t)timeout_ms * 1000000ull;
	unsigned have;
	while ((have = vd_used_pending(vd, q)) < n) {
		uint64_t now = monotonic_ns();
		if (now >= deadline)
			break;
		int left = (int)((deadline - now + 999999) / 1000000);
		if (vd_pump(vd, left) < 0)
			break;
	}
	return have;
}

unsigned vd_reap(struct vd *vd, unsigned q, struct vd_done *out, unsigned max)
{
	struct vd_queue *vq = &vd->q[q];
	unsigned pending = vd_used_pending(vd, q), got = 0;
	for (; got < pending && got < max; got++) {
		const uint8_t *e = vd_ptr(vd, vq->used + 4 + 8ull * (vq->last_used & (vq->size - 1)), 8);
		uint32_t id, len;
		memcpy(&id, e, 4);
		memcpy(&len, e + 4, 4);
		struct vd_done *o = &out[got];
		o->head = (uint16_t)id;
		o->len = len;
		o->status = 0xff;
		o->user = 0;
		if (id < vq->size && vq->inflight[id].n) {
			struct vd_inflight *f = &vq->inflight[id];
			o->status = *(uint8_t *)vd_ptr(vd, vq->status + id, 1);
			o->user = f->user;
			for (unsigned i = 0; i < f->n; i++)
				vq->free_stack[vq->nr_free++] = f->descs[i];
			f->n = 0;
		}
		vq->last_used++;
	}
	if (vd->features & (1ull << VD_F_EVENT_IDX)) /* used_event: interrupt me at the next entry */
		__atomic_store_n(ring16(vd, vq->avail + 4 + 2ull * vq->size), vq->last_used, __ATOMIC_RELEASE);
	return got;
}

uint64_t vd_interrupts(struct vd *vd)
{
	uint64_t n;
	if (read(vd->irqfd, &n, sizeof(n)) == sizeof(n))
		vd->interrupts += n;
	return vd->interrupts;
}

uint32_t vd_irq_ack(struct vd *vd)
{
	uint32_t v = vd_read32(vd, VD_REG_INTERRUPT_STATUS);
	if (v)
		vd_write32(vd, VD_REG_INTERRUPT_ACK, v);
	return v;
}
