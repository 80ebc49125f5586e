/*
 * virtio-mmio transport, virtio 1.x only (register layout version 2). A device model fills in a
 * struct virtio_dev_ops and calls virtio_mmio_create(); the transport does feature negotiation, the
 * status state machine (including reset and DEVICE_NEEDS_RESET), config space and queue set-up, with
 * every guest value checked. Queue notifications arrive as ioeventfds in the event loop, interrupts
 * leave through an irqfd: the vCPU thread only ever touches registers.
 */
#ifndef KVMBOX_VIRTIO_MMIO_H
#define KVMBOX_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/virtq.h"
#include "vmm/vm.h"

#define VIRTIO_MMIO_MAX_QUEUES 16
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

struct virtio_mmio;

struct virtio_dev_ops {
	const char *name;       /* for messages: "virtio-blk" */
	uint32_t device_id;
	uint64_t features;      /* device-specific bits; the transport adds VERSION_1 and the ring bits */
	unsigned nr_queues;
	uint16_t queue_max;     /* largest queue size offered (power of two) */
	uint32_t config_size;
	/* Fills the device's config space (little-endian) into buf[0..config_size). */
	void (*config_read)(void *dev, uint8_t *buf);
	/* The driver set DRIVER_OK: t->driver_features are final (vCPU thread, transport lock held). */
	void (*driver_ok)(void *dev, struct virtio_mmio *t);
	/* Work on queue q: called from the event loop with the transport's lock held. */
	void (*queue_notify)(void *dev, struct virtio_mmio *t, unsigned q);
	/* The driver turned queue q off (QueueReady=0): its in-flight I/O must finish before the call
	 * returns (the driver may reuse the buffers) and must not reach the queue's next rings. */
	void (*queue_stop)(void *dev, struct virtio_mmio *t, unsigned q);
	/* The driver reset the device: as queue_stop, for every queue. */
	void (*reset)(void *dev);
};

struct virtio_mmio_queue {
	struct virtq vq;
	uint16_t num;
	uint64_t desc, avail, used;
	int ioeventfd;
	uint32_t generation;    /* bumped when the queue stops or the device resets: older I/O is dropped */
	struct virtio_mmio *t;
	unsigned index;
};

struct virtio_mmio {
	struct vm *vm;
	const struct virtio_dev_ops *ops;
	void *dev;
	uint64_t base;
	unsigned irq;
	int irqfd;
	pthread_mutex_t lock;
	uint32_t status;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint64_t driver_features;
	uint32_t queue_sel;
	uint32_t interrupt_status;
	uint32_t config_generation;
	uint32_t reset_count;   /* bumped on every device reset (per-queue stops bump queues[q].generation) */
	struct virtio_mmio_queue queues[VIRTIO_MMIO_MAX_QUEUES];
};

/* Allocates a slot, registers the MMIO range, the queue ioeventfds and the irqfd. */
int virtio_mmio_create(struct vm *vm, const struct virtio_dev_ops *ops, void *dev, struct virtio_mmio **out,
		       struct error *err);
void virtio_mmio_destroy(struct virtio_mmio *t);

/* Device side, with t->lock held: the next available chain of queue q. False when the queue is empty
 * (the driver's notifications re-armed first, so nothing is missed) or broken (DEVICE_NEEDS_RESET set). */
bool virtio_mmio_pop(struct virtio_mmio *t, unsigned q, struct virtq_chain *chain);
/* Device side, with t->lock held: signal used buffers (one interrupt per batch, if the driver wants it). */
void virtio_mmio_signal_used(struct virtio_mmio *t, unsigned q);
/* The queue (or device) is broken: set DEVICE_NEEDS_RESET and tell the driver. */
void virtio_mmio_needs_reset(struct virtio_mmio *t, const char *why);
bool virtio_mmio_driver_ok(const struct virtio_mmio *t);

#endif
