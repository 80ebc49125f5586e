/*
 * In-process virtio-mmio driver for the virtio-blk device model, without KVM (tests, fuzzers, benchmarks).
 *
 * The REAL device model runs unchanged: devices/virtio_blk.c on vmm/virtio_mmio.c, vmm/virtq.c, the
 * buses and the event loop. What needs KVM is replaced by tests/harness/vm_stubs.c: an ioeventfd is a
 * plain eventfd the driver writes (as KVM does when the guest writes QueueNotify), an irqfd is an eventfd
 * the driver reads to count interrupts, slots are 0xd0001000 + n * 0x1000 with interrupt 5 + n. Guest RAM
 * is one region at guest-physical 0 on an aligned heap buffer (ASan sees any access past it). Everything
 * runs on the caller's thread: vd_pump() runs the monitor's event loop once (queue notifications, io_uring
 * completions).
 *
 * Typical use:
 *	struct vd *vd = vd_create("disk.img,direct", NULL, &err);
 *	vd_start(vd, vd_device_features(vd), 1, 128);          // reset .. DRIVER_OK, rings in guest RAM
 *	uint64_t buf = vd_alloc(vd, 4096, 4096);
 *	struct vd_seg s = { buf, 4096 };
 *	vd_queue_req(vd, 0, VIRTIO_BLK_T_IN, 8, &s, 1, true, 0);
 *	vd_kick(vd, 0);                                         // notifies unless EVENT_IDX says not needed
 *	vd_wait_used(vd, 0, 1, 1000);                           // pumps the event loop
 *	struct vd_done d; vd_reap(vd, 0, &d, 1);                // d.status == VIRTIO_BLK_S_OK
 *	vd_destroy(vd);
 */
#ifndef KVMBOX_TESTS_HARNESS_VIRTIO_DRIVER_H
#define KVMBOX_TESTS_HARNESS_VIRTIO_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/config.h"
#include "vmm/vm.h"

/* virtio-mmio registers (virtio 1.x, 4.2.2) */
#define VD_REG_MAGIC 0x000
#define VD_REG_VERSION 0x004
#define VD_REG_DEVICE_ID 0x008
#define VD_REG_DEVICE_FEATURES 0x010
#define VD_REG_DEVICE_FEATURES_SEL 0x014
#define VD_REG_DRIVER_FEATURES 0x020
#define VD_REG_DRIVER_FEATURES_SEL 0x024
#define VD_REG_QUEUE_SEL 0x030
#define VD_REG_QUEUE_NUM_MAX 0x034
#define VD_REG_QUEUE_NUM 0x038
#define VD_REG_QUEUE_READY 0x044
#define VD_REG_QUEUE_NOTIFY 0x050
#define VD_REG_INTERRUPT_STATUS 0x060
#define VD_REG_INTERRUPT_ACK 0x064
#define VD_REG_STATUS 0x070
#define VD_REG_QUEUE_DESC_LOW 0x080
#define VD_REG_QUEUE_DESC_HIGH 0x084
#define VD_REG_QUEUE_AVAIL_LOW 0x090
#define VD_REG_QUEUE_AVAIL_HIGH 0x094
#define VD_REG_QUEUE_USED_LOW 0x0a0
#define VD_REG_QUEUE_USED_HIGH 0x0a4
#define VD_REG_CONFIG 0x100

#define VD_STATUS_ACKNOWLEDGE 1
#define VD_STATUS_DRIVER 2
#define VD_STATUS_DRIVER_OK 4
#define VD_STATUS_FEATURES_OK 8
#define VD_STATUS_NEEDS_RESET 64
#define VD_STATUS_FAILED 128

#define VD_F_INDIRECT_DESC 28
#define VD_F_EVENT_IDX 29
#define VD_F_VERSION_1 32

#define VD_DESC_F_NEXT 1
#define VD_DESC_F_WRITE 2
#define VD_DESC_F_INDIRECT 4

/* virtio-blk (5.2): the device's own protocol header */
#include "devices/virtio_blk.h"

#define VD_MAX_QUEUES 16
#define VD_MAX_SEGS 128           /* data segments per request the driver builds */
#define VD_QUEUE_MAX 1024         /* largest queue the driver sets up */
#define VD_SLOT_BASE 0xd0001000ull
#define VD_SLOT_IRQ0 5

struct vd_opts {
	unsigned cpus;            /* vm_config.cpus: the device makes one queue per vCPU (default 1) */
	uint64_t ram_bytes;       /* guest RAM at gpa 0 (default 16 MiB) */
	enum log_level log_level; /* default LOG_ERROR: the device's warnings stay quiet */
};

/* One data segment: guest-physical address and length. */
struct vd_seg {
	uint64_t gpa;
	uint32_t len;
};

/* One used entry as the driver read it. */
struct vd_done {
	uint16_t head;
	uint32_t len;             /* used.len: bytes the device says it wrote */
	uint8_t status;           /* the request's status byte (vd_queue_req requests only) */
	uint64_t user;            /* what vd_queue_req was given */
};

struct vd_inflight {
	unsigned n;               /* descriptors in the chain (0: head not in flight) */
	uint16_t descs[VD_MAX_SEGS + 2];
	uint64_t user;
};

/* The driver's view of one queue; rings and per-head headers/status bytes live in guest RAM. */
struct vd_queue {
	uint16_t size;            /* 0: not set up */
	uint64_t desc, avail, used;
	uint64_t hdrs;            /* 16-byte request header per head */
	uint64_t status;          /* status byte per head */
	uint16_t avail_idx;       /* the driver's avail->idx */
	uint16_t kicked_idx;      /* avail_idx at the last notification decision */
	uint16_t last_used;       /* next used entry to read */
	uint16_t nr_free;
	uint16_t free_stack[VD_QUEUE_MAX];
	struct vd_inflight *inflight; /* [size], indexed by head */
	uint64_t notifies;        /* ioeventfd writes */
};

struct vd {
	struct vm vm;             /* first: the KVM stubs find the struct vd from the struct vm */
	struct vm_config cfg;
	uint8_t *ram;
	uint64_t ram_size;
	uint64_t brk;             /* vd_alloc's next free gpa */
	const struct device_desc *desc;
	void *dev_state;
	/* Recorded by the stubs when the transport registers them. */
	uint64_t base;
	unsigned irq;
	int irqfd;
	int ioeventfd[VD_MAX_QUEUES];
	unsigned nr_ioeventfds;
	/* Driver state. */
	uint64_t features;        /* negotiated */
	unsigned nr_queues;
	struct vd_queue q[VD_MAX_QUEUES];
	uint64_t interrupts;      /* irqfd signals counted so far (vd_interrupts) */
};

/* The device registered under name (in the kvmbox_devices section), or NULL. */
const struct device_desc *vd_find_device(const char *name);

/* A VM with guest RAM, buses, an event loop, and a virtio-blk for disk_spec (PATH[,readonly][,serial=ID]
 * [,direct]). NULL with err set on failure. opts may be NULL. */
struct vd *vd_create(const char *disk_spec, const struct vd_opts *opts, struct error *err);
/* Any linked-in device, configured by one kvmbox-vmm option: ("virtio-net", "--net", "tap=tap0", ...). */
struct vd *vd_create_device(const char *device, const char *option, const char *value, const struct vd_opts *opts,
			    struct error *err);
void vd_destroy(struct vd *vd);

/* Guest RAM: host pointer (NULL outside RAM), bump allocation (never freed; aborts when RAM is full). */
void *vd_ptr(struct vd *vd, uint64_t gpa, uint64_t len);
uint64_t vd_alloc(struct vd *vd, uint64_t len, uint64_t align);

/* 32-bit register access through the MMIO bus, as a vCPU exit would do it; config space any width. */
uint32_t vd_read32(struct vd *vd, uint64_t off);
void vd_write32(struct vd *vd, uint64_t off, uint32_t v);
void vd_config_read(struct vd *vd, uint64_t off, void *buf, uint32_t len);
uint32_t vd_status(struct vd *vd);

/* Set-up, step by step (4.2.3.1) ... */
uint64_t vd_device_features(struct vd *vd);
/* Reset, ACKNOWLEDGE, DRIVER, write features, FEATURES_OK; 0 when the device kept FEATURES_OK, -1 if not. */
int vd_negotiate(struct vd *vd, uint64_t features);
/* Allocates fresh rings of size entries in guest RAM and enables queue q; -1 if QueueReady stays 0. */
int vd_setup_queue(struct vd *vd, unsigned q, uint16_t size);
/* The same with rings where the caller says (fuzzing): no headers, no free descriptors, so vd_queue_req
 * cannot be used on it; vd_put_desc/vd_publish/vd_notify can. */
int vd_setup_queue_at(struct vd *vd, unsigned q, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used);
void vd_driver_ok(struct vd *vd);
/* ... or all at once: negotiate, nr_queues queues of qsize (clamped to QueueNumMax), DRIVER_OK. */
int vd_start(struct vd *vd, uint64_t features, unsigned nr_queues, uint16_t qsize);
/* Writes status 0 and forgets the driver's queue state (the old rings stay where they were in RAM). */
void vd_reset(struct vd *vd);

/* A request chain: header (device-readable), data segments (device-writable when data_in), status byte.
 * Published in the avail ring at once; no notification. Returns the head, or -1 without free descriptors. */
int vd_queue_req(struct vd *vd, unsigned q, uint32_t type, uint64_t sector, const struct vd_seg *data,
		 unsigned nr_data, bool data_in, uint64_t user);
/* Raw ring access for malformed chains: a descriptor, an avail entry (publishes idx). */
void vd_put_desc(struct vd *vd, unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
void vd_publish(struct vd *vd, unsigned q, uint16_t head);

/* Notification: vd_notify always writes the queue's ioeventfd; vd_kick only when the device asked for it
 * (EVENT_IDX avail_event, or no VIRTQ_USED_F_NO_NOTIFY). vd_kick returns whether it notified. */
void vd_notify(struct vd *vd, unsigned q);
bool vd_kick(struct vd *vd, unsigned q);

/* Runs the event loop once (timeout_ms as epoll_wait); returns the number of events handled, -1 on error. */
int vd_pump(struct vd *vd, int timeout_ms);
/* Pumps until at least n used entries are waiting on queue q or timeout_ms passed; returns the number waiting. */
unsigned vd_wait_used(struct vd *vd, unsigned q, unsigned n, int timeout_ms);
/* Used entries the device has published and the driver has not read yet. */
unsigned vd_used_pending(struct vd *vd, unsigned q);
/* Reads up to max used entries, frees their descriptors; with EVENT_IDX sets used_event to ask for an
 * interrupt at the next entry. */
unsigned vd_reap(struct vd *vd, unsigned q, struct vd_done *out, unsigned max);

/* Interrupts signalled through the irqfd so far (reads and accumulates the counter). */
uint64_t vd_interrupts(struct vd *vd);
/* Reads InterruptStatus and acknowledges it; returns what was set. */
uint32_t vd_irq_ack(struct vd *vd);

#endif
