#include "vmm/virtio_mmio.h"
#include "vmm/arch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VERSION 2
#define VIRTIO_MMIO_VENDOR 0x424d564b /* "KVMB" */
#define VIRTIO_MMIO_SIZE 0x1000

enum {
	REG_MAGIC = 0x000, REG_VERSION = 0x004, REG_DEVICE_ID = 0x008, REG_VENDOR_ID = 0x00c,
	REG_DEVICE_FEATURES = 0x010, REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020, REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030, REG_QUEUE_NUM_MAX = 0x034, REG_QUEUE_NUM = 0x038, REG_QUEUE_READY = 0x044,
	REG_QUEUE_NOTIFY = 0x050, REG_INTERRUPT_STATUS = 0x060, REG_INTERRUPT_ACK = 0x064, REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080, REG_QUEUE_DESC_HIGH = 0x084, REG_QUEUE_AVAIL_LOW = 0x090,
	REG_QUEUE_AVAIL_HIGH = 0x094, REG_QUEUE_USED_LOW = 0x0a0, REG_QUEUE_USED_HIGH = 0x0a4,
	REG_CONFIG_GENERATION = 0x0fc, REG_CONFIG = 0x100,
};

#define VIRTIO_INT_USED 1
#define VIRTIO_INT_CONFIG 2

static uint64_t offered_features(const struct virtio_mmio *t)
{
	return t->ops->features | (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_RING_F_EVENT_IDX) |
	       (1ull << VIRTIO_RING_F_INDIRECT_DESC);
}

static struct virtio_mmio_queue *selected_queue(struct virtio_mmio *t)
{
	return t->queue_sel < t->ops->nr_queues ? &t->queues[t->queue_sel] : NULL;
}

static void raise_interrupt(struct virtio_mmio *t, uint32_t why)
{
	t->interrupt_status |= why;
	uint64_t one = 1;
	ssize_t r = write(t->irqfd, &one, sizeof(one));
	(void)r;
}

void virtio_mmio_needs_reset(struct virtio_mmio *t, const char *why)
{
	if (t->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	log_warn(&t->vm->log, "%s at 0x%llx: the driver broke the virtio rules (%s); the device needs a reset",
		 t->ops->name, (unsigned long long)t->base, why);
	t->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (t->status & VIRTIO_STATUS_DRIVER_OK)
		raise_interrupt(t, VIRTIO_INT_CONFIG);
}

bool virtio_mmio_driver_ok(const struct virtio_mmio *t)
{
	return (t->status & VIRTIO_STATUS_DRIVER_OK) && !(t->status & VIRTIO_STATUS_NEEDS_RESET);
}

bool virtio_mmio_pop(struct virtio_mmio *t, unsigned q, struct virtq_chain *chain)
{
	struct virtq *vq = &t->queues[q].vq;
	for (;;) {
		enum virtq_pop p = virtq_pop_chain(vq, chain);
		if (p == VIRTQ_POP_CHAIN)
			return true;
		if (p == VIRTQ_POP_BROKEN) {
			virtio_mmio_needs_reset(t, vq->why_broken);
			return false;
		}
		if (!virtq_prepare_wait(vq))
			return false;
	}
}

void virtio_mmio_signal_used(struct virtio_mmio *t, unsigned q)
{
	if (virtq_should_interrupt(&t->queues[q].vq))
		raise_interrupt(t, VIRTIO_INT_USED);
}

static void device_reset(struct virtio_mmio *t)
{
	t->status = 0;
	t->device_features_sel = t->driver_features_sel = 0;
	t->driver_features = 0;
	t->queue_sel = 0;
	t->interrupt_status = 0;
	t->reset_count++;
	for (unsigned q = 0; q < t->ops->nr_queues; q++) {
		struct virtio_mmio_queue *mq = &t->queues[q];
		mq->generation++;
		virtq_reset(&mq->vq);
		mq->num = 0;
		mq->desc = mq->avail = mq->used = 0;
	}
	if (t->ops->reset)
		t->ops->reset(t->dev);
}

static void write_status(struct virtio_mmio *t, uint32_t v)
{
	if (v == 0) {
		device_reset(t);
		return;
	}
	uint32_t keep = t->status & VIRTIO_STATUS_NEEDS_RESET;
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(t->status & VIRTIO_STATUS_FEATURES_OK)) {
		/* Accept the driver's features only if we offered every one and it speaks virtio 1. */
		uint64_t f = t->driver_features;
		if ((f & ~offered_features(t)) || !(f & (1ull << VIRTIO_F_VERSION_1))) {
			log_warn(&t->vm->log, "%s: the driver asked for features 0x%llx, offered 0x%llx: refused",
				 t->ops->name, (unsigned long long)f, (unsigned long long)offered_features(t));
			v &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
		}
	}
	bool now_ok = (v & VIRTIO_STATUS_DRIVER_OK) && !(t->status & VIRTIO_STATUS_DRIVER_OK);
	t->status = (v & ~(uint32_t)VIRTIO_STATUS_NEEDS_RESET) | keep;
	if (now_ok && t->ops->driver_ok)
		t->ops->driver_ok(t->dev, t);
}

static void queue_ready(struct virtio_mmio *t, struct virtio_mmio_queue *mq, uint32_t v)
{
	if (!v) {
		if (!mq->vq.ready)
			return;
		mq->generation++;
		virtq_reset(&mq->vq);
		if (t->ops->queue_stop)
			t->ops->queue_stop(t->dev, t, mq->index);
		return;
	}
	if (mq->vq.ready)
		return;
	if (!(t->status & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_mmio_needs_reset(t, "queue enabled before FEATURES_OK");
		return;
	}
	struct error err;
	if (mq->num == 0 || mq->num > t->ops->queue_max) {
		virtio_mmio_needs_reset(t, "queue size out of range");
		return;
	}
	bool event_idx = t->driver_features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	bool indirect = t->driver_features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
	if (virtq_enable(&mq->vq, &t->vm->mem, mq->num, mq->desc, mq->avail, mq->used, event_idx, indirect, &err))
		virtio_mmio_needs_reset(t, err.msg);
}

static void set_low(uint64_t *v, uint32_t lo)
{
	*v = (*v & 0xffffffff00000000ull) | lo;
}

static void set_high(uint64_t *v, uint32_t hi)
{
	*v = (*v & 0xffffffffull) | ((uint64_t)hi << 32);
}

static void reg_write(struct virtio_mmio *t, uint64_t reg, uint32_t v)
{
	struct virtio_mmio_queue *mq = selected_queue(t);
	/* Queue layout registers only change while the queue is off. */
	bool queue_writable = mq && !mq->vq.ready;
	switch (reg) {
	case REG_DEVICE_FEATURES_SEL: t->device_features_sel = v; break;
	case REG_DRIVER_FEATURES_SEL: t->driver_features_sel = v; break;
	case REG_DRIVER_FEATURES:
		if (t->status & VIRTIO_STATUS_FEATURES_OK)
			break;
		if (t->driver_features_sel == 0)
			set_low(&t->driver_features, v);
		else if (t->driver_features_sel == 1)
			set_high(&t->driver_features, v);
		break;
	case REG_QUEUE_SEL: t->queue_sel = v; break;
	case REG_QUEUE_NUM: if (queue_writable) mq->num = (uint16_t)(v > 0xffff ? 0 : v); break;
	case REG_QUEUE_READY: if (mq) queue_ready(t, mq, v); break;
	case REG_QUEUE_NOTIFY:
		/* Normally swallowed by the ioeventfd; a value without one is a driver bug. */
		if (v < t->ops->nr_queues) {
			uint64_t one = 1;
			ssize_t r = write(t->queues[v].ioeventfd, &one, sizeof(one));
			(void)r;
		}
		break;
	case REG_INTERRUPT_ACK: t->interrupt_status &= ~v; break;
	case REG_STATUS: write_status(t, v); break;
	case REG_QUEUE_DESC_LOW: if (queue_writable) set_low(&mq->desc, v); break;
	case REG_QUEUE_DESC_HIGH: if (queue_writable) set_high(&mq->desc, v); break;
	case REG_QUEUE_AVAIL_LOW: if (queue_writable) set_low(&mq->avail, v); break;
	case REG_QUEUE_AVAIL_HIGH: if (queue_writable) set_high(&mq->avail, v); break;
	case REG_QUEUE_USED_LOW: if (queue_writable) set_low(&mq->used, v); break;
	case REG_QUEUE_USED_HIGH: if (queue_writable) set_high(&mq->used, v); break;
	default: break; /* read-only or unknown: ignored */
	}
}

static uint32_t reg_read(struct virtio_mmio *t, uint64_t reg)
{
	struct virtio_mmio_queue *mq = selected_queue(t);
	uint64_t f = offered_features(t);
	switch (reg) {
	case REG_MAGIC: return VIRTIO_MMIO_MAGIC;
	case REG_VERSION: return VIRTIO_MMIO_VERSION;
	case REG_DEVICE_ID: return t->ops->device_id;
	case REG_VENDOR_ID: return VIRTIO_MMIO_VENDOR;
	case REG_DEVICE_FEATURES:
		return t->device_features_sel == 0 ? (uint32_t)f : t->device_features_sel == 1 ? (uint32_t)(f >> 32) : 0;
	case REG_QUEUE_NUM_MAX: return mq ? t->ops->queue_max : 0;
	case REG_QUEUE_READY: return mq && mq->vq.ready;
	case REG_INTERRUPT_STATUS: return t->interrupt_status;
	case REG_STATUS: return t->status;
	case REG_CONFIG_GENERATION: return t->config_generation;
	default: return 0;
	}
}

static void virtio_mmio_access(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_mmio *t = dev;
	pthread_mutex_lock(&t->lock);
	if (offset >= REG_CONFIG) {
		/* Device config: any width, any offset inside it; writes are not supported by our devices. */
		uint8_t cfg[256] = { 0 };
		uint64_t off = offset - REG_CONFIG;
		if (!is_write) {
			if (t->ops->config_read && t->ops->config_size <= sizeof(cfg))
				t->ops->config_read(t->dev, cfg);
			for (uint32_t i = 0; i < len; i++)
				data[i] = off + i < t->ops->config_size ? cfg[off + i] : 0;
		}
	} else if (len == 4 && (offset & 3) == 0) {
		uint32_t v;
		if (is_write) {
			memcpy(&v, data, 4);
			reg_write(t, offset, v);
		} else {
			v = reg_read(t, offset);
			memcpy(data, &v, 4);
		}
	} else if (!is_write) {
		memset(data, 0, len); /* the spec allows only 32-bit register access */
	}
	pthread_mutex_unlock(&t->lock);
}

static void on_queue_notify(void *ctx, uint32_t events)
{
	struct virtio_mmio_queue *mq = ctx;
	struct virtio_mmio *t = mq->t;
	(void)events;
	uint64_t n;
	ssize_t r = read(mq->ioeventfd, &n, sizeof(n));
	(void)r;
	pthread_mutex_lock(&t->lock);
	if (virtio_mmio_driver_ok(t) && mq->vq.ready && !mq->vq.broken)
		t->ops->queue_notify(t->dev, t, mq->index);
	pthread_mutex_unlock(&t->lock);
}

int virtio_mmio_create(struct vm *vm, const struct virtio_dev_ops *ops, void *dev, struct virtio_mmio **out,
		       struct error *err)
{
	if (ops->nr_queues == 0 || ops->nr_queues > VIRTIO_MMIO_MAX_QUEUES)
		return error_set(err, "%s: %u queues (1..%d supported)", ops->name, ops->nr_queues,
				 VIRTIO_MMIO_MAX_QUEUES);
	struct virtio_mmio *t = calloc(1, sizeof(*t));
	if (!t)
		return error_set(err, "out of memory");
	*out = t;
	t->vm = vm;
	t->ops = ops;
	t->dev = dev;
	t->irqfd = -1;
	pthread_mutex_init(&t->lock, NULL);
	for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		t->queues[q].ioeventfd = -1;
		t->queues[q].t = t;
		t->queues[q].index = q;
	}
	if (arch_virtio_mmio_slot(vm, &t->base, &t->irq, err) ||
	    bus_register(&vm->mmio, t->base, VIRTIO_MMIO_SIZE, virtio_mmio_access, t, ops->name, err) ||
	    vm_irqfd(vm, t->irq, &t->irqfd, err))
		return -1;
	for (unsigned q = 0; q < ops->nr_queues; q++) {
		struct virtio_mmio_queue *mq = &t->queues[q];
		if (vm_ioeventfd(vm, t->base + REG_QUEUE_NOTIFY, 4, q, &mq->ioeventfd, err) ||
		    event_loop_add(&vm->loop, mq->ioeventfd, EPOLLIN, on_queue_notify, mq, err))
			return -1;
	}
	log_debug(&vm->log, "%s at 0x%llx, interrupt %u, %u queue(s)", ops->name, (unsigned long long)t->base,
		  t->irq, ops->nr_queues);
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	if (!t)
		return;
	for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		if (t->queues[q].ioeventfd >= 0) {
			event_loop_remove(&t->vm->loop, t->queues[q].ioeventfd);
			close(t->queues[q].ioeventfd);
		}
	}
	if (t->irqfd >= 0)
		close(t->irqfd);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
