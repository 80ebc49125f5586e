/* One virtual machine: its KVM handles, memory, buses, devices, vCPUs and how it ended. */
#ifndef KVMBOX_VM_H
#define KVMBOX_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/config.h"
#include "vmm/error.h"
#include "vmm/event_loop.h"
#include "vmm/guest_mem.h"
#include "vmm/log.h"

/* Exit codes of the monitor process (docs/kvmbox-vmm.md). */
enum vm_exit_code {
	VM_EXIT_OK = 0,
	VM_EXIT_BAD_INPUT = 1,
	VM_EXIT_HOST = 2,
	VM_EXIT_TRIPLE_FAULT = 3,
	VM_EXIT_KVM_ERROR = 4,
	VM_EXIT_TIMEOUT = 5,
	VM_EXIT_PANIC = 6,
};

enum kvm_backend { KVM_BACKEND_HARDWARE, KVM_BACKEND_PVM };

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
};

/*
 * A device registers itself with DEVICE_REGISTER(desc) in its own file; the monitor creates every
 * registered device at start-up, so adding a device edits no central list.
 */
struct device_desc {
	const char *name;
	/* Creates the device's state and registers its bus ranges; *state is passed to destroy. */
	int (*create)(struct vm *vm, void **state, struct error *err);
	void (*destroy)(void *state);
};

#define DEVICE_REGISTER(desc)                                                                          \
	static const struct device_desc *const device_register_##desc                                \
		__attribute__((used, section("kvmbox_devices"))) = &desc

struct device_instance {
	const struct device_desc *desc;
	void *state;
};

#define VM_MAX_DEVICES 32

struct vm {
	struct log log;
	const struct vm_config *cfg;
	enum kvm_backend backend;
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	struct guest_mem mem;
	struct bus pio;
	struct bus mmio;
	struct event_loop loop;
	struct vcpu *vcpus;
	unsigned nr_vcpus;
	struct device_instance devices[VM_MAX_DEVICES];
	int nr_devices;
	char *cmdline;          /* the command line the guest gets */
	char *cmdline_extra;    /* what devices add to it (x86: virtio_mmio.device=...) */
	unsigned nr_mmio_slots; /* virtio-mmio slots handed out so far */
	bool guest_is_linux;    /* decides the default command line */
	/* Where the boot vCPU starts, decided by the arch loader (mode is the arch's entry protocol). */
	struct {
		int mode;
		uint64_t ip;
		uint64_t arg;
	} boot;

	/* How the VM ended: the first vm_request_exit() wins; the event loop then stops everything. */
	pthread_mutex_t exit_lock;
	bool exiting;
	int exit_code;
	char exit_reason[256];
	int exit_eventfd;
	pthread_t memslot_thread;   /* registers guest RAM while the rest is set up */
	bool memslot_thread_started;
	struct error memslot_error;
	atomic_bool guest_panicked; /* the console printed a kernel panic */
	atomic_bool boot_marker_seen;
};

/* 0, or -VM_EXIT_BAD_INPUT for the user's input, or -1 for a host/KVM failure; err says which. */
int vm_create(struct vm *vm, const struct vm_config *cfg, struct error *err);
int vm_run(struct vm *vm, struct error *err); /* returns the exit code */
void vm_destroy(struct vm *vm);

/* Ends the VM (from any thread); only the first call's code and reason count. */
void vm_request_exit(struct vm *vm, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool vm_is_exiting(struct vm *vm);

/* Sets the level of a guest interrupt line (IOAPIC pin / PIC IRQ). */
void vm_irq_line(struct vm *vm, unsigned irq, int level);

/* Appends " text" to the command line devices contribute (before the user's --cmdline). */
int vm_cmdline_append(struct vm *vm, struct error *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* An eventfd KVM signals when the guest writes len bytes of value datamatch at MMIO addr. */
int vm_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, uint64_t datamatch, int *fd, struct error *err);
/* An eventfd that raises guest interrupt gsi (edge) when written. */
int vm_irqfd(struct vm *vm, unsigned gsi, int *fd, struct error *err);

/* Opens /dev/kvm and identifies the backend; used by vm_create and --probe. */
int kvm_open(int *kvm_fd, enum kvm_backend *backend, struct error *err);
const char *kvm_backend_name(enum kvm_backend b);

#endif
