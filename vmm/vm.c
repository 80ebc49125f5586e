#include "vmm/vm.h"
#include "vmm/arch.h"
#include "vmm/vcpu.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* The registered devices, in link order (DEVICE_REGISTER places a pointer in this section). */
extern const struct device_desc *const __start_kvmbox_devices[];
extern const struct device_desc *const __stop_kvmbox_devices[];

const char *kvm_backend_name(enum kvm_backend b)
{
	return b == KVM_BACKEND_PVM ? "PVM (kvm_pvm: KVM's API without VMX/SVM)" : "hardware KVM";
}

int kvm_open(int *kvm_fd, enum kvm_backend *backend, struct error *err)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return error_set(err, "/dev/kvm does not exist: load the kvm module (modprobe kvm_intel "
					 "or kvm_amd) or run on a host with virtualization enabled");
		return error_set(err, "cannot open /dev/kvm: %s; run as root or add your user to the "
				 "'kvm' group", strerror(errno));
	}
	int version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		close(fd);
		return error_set(err, "/dev/kvm speaks KVM API version %d, kvmbox needs %d", version,
				 KVM_API_VERSION);
	}
	/* The PVM host's differences are applied only there (docs/architecture.md). */
	*backend = access("/sys/module/kvm_pvm", F_OK) == 0 ? KVM_BACKEND_PVM : KVM_BACKEND_HARDWARE;
	*kvm_fd = fd;
	return 0;
}

void vm_request_exit(struct vm *vm, int code, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->exit_lock);
	if (!vm->exiting) {
		vm->exiting = true;
		vm->exit_code = code;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
		va_end(ap);
		uint64_t one = 1;
		ssize_t r = write(vm->exit_eventfd, &one, sizeof(one));
		(void)r;
	}
	pthread_mutex_unlock(&vm->exit_lock);
}

bool vm_is_exiting(struct vm *vm)
{
	pthread_mutex_lock(&vm->exit_lock);
	bool e = vm->exiting;
	pthread_mutex_unlock(&vm->exit_lock);
	return e;
}

void vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		log_warn(&vm->log, "KVM_IRQ_LINE %u=%d failed: %s", irq, level, strerror(errno));
}

int vm_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, uint64_t datamatch, int *fd, struct error *err)
{
	*fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*fd < 0)
		return error_set(err, "eventfd failed: %s", strerror(errno));
	struct kvm_ioeventfd io = { .datamatch = datamatch, .addr = addr, .len = len, .fd = *fd,
				    .flags = KVM_IOEVENTFD_FLAG_DATAMATCH };
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
		int e = errno;
		close(*fd);
		*fd = -1;
		return error_set(err, "KVM_IOEVENTFD at 0x%llx failed: %s", (unsigned long long)addr, strerror(e));
	}
	return 0;
}

int vm_irqfd(struct vm *vm, unsigned gsi, int *fd, struct error *err)
{
	*fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*fd < 0)
		return error_set(err, "eventfd failed: %s", strerror(errno));
	struct kvm_irqfd irqfd = { .fd = (uint32_t)*fd, .gsi = gsi };
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		int e = errno;
		close(*fd);
		*fd = -1;
		return error_set(err, "KVM_IRQFD for interrupt %u failed: %s", gsi, strerror(e));
	}
	return 0;
}

static int create_devices(struct vm *vm, struct error *err)
{
	for (const struct device_desc *const *d = __start_kvmbox_devices; d < __stop_kvmbox_devices; d++) {
		if (vm->nr_devices == VM_MAX_DEVICES)
			return error_set(err, "too many devices (%d)", VM_MAX_DEVICES);
		void *state = NULL;
		int rc = (*d)->create(vm, &state, err);
		if (state) /* destroyed with the VM even when create failed half-way */
			vm->devices[vm->nr_devices++] = (struct device_instance){ *d, state };
		if (rc)
			return -1;
		log_debug(&vm->log, "device %s created", (*d)->name);
	}
	return 0;
}

/* Registers guest RAM with KVM. Run on its own thread: on some hosts a memory-slot change waits for
 * an RCU grace period (milliseconds), which then overlaps device, kernel and vCPU set-up. */
static void *register_memory(void *arg)
{
	struct vm *vm = arg;
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct guest_mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = (uint32_t)i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->hva,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0) {
			error_set(&vm->memslot_error, "KVM_SET_USER_MEMORY_REGION (slot %d, %llu MiB at 0x%llx) failed: %s",
				  i, (unsigned long long)(r->size >> 20), (unsigned long long)r->gpa, strerror(errno));
			return (void *)1;
		}
	}
	return NULL;
}

static int map_memory(struct vm *vm, struct error *err)
{
	uint64_t low_limit, high_base;
	arch_mem_layout(&low_limit, &high_base);
	if (guest_mem_alloc(&vm->mem, vm->cfg->memory_mib << 20, low_limit, high_base,
			    vm->cfg->hugepages, err))
		return -1;
	if (pthread_create(&vm->memslot_thread, NULL, register_memory, vm) == 0) {
		vm->memslot_thread_started = true;
		return 0;
	}
	if (register_memory(vm)) { /* no thread: do it here */
		*err = vm->memslot_error;
		return -1;
	}
	return 0;
}

static int wait_memory(struct vm *vm, struct error *err)
{
	if (!vm->memslot_thread_started)
		return 0;
	void *ret;
	pthread_join(vm->memslot_thread, &ret);
	vm->memslot_thread_started = false;
	if (ret) {
		*err = vm->memslot_error;
		return -1;
	}
	return 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, struct error *err)
{
	memset(vm, 0, sizeof(*vm));
	log_init(&vm->log, cfg->log_level);
	vm->cfg = cfg;
	vm->kvm_fd = vm->vm_fd = vm->exit_eventfd = -1;
	vm->loop.epoll_fd = -1;
	vm->pio.name = "port";
	vm->mmio.name = "mmio";
	pthread_mutex_init(&vm->exit_lock, NULL);

	if (kvm_open(&vm->kvm_fd, &vm->backend, err))
		return -1;
	log_debug(&vm->log, "backend: %s", kvm_backend_name(vm->backend));
	do
		vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	while (vm->vm_fd < 0 && errno == EINTR);
	if (vm->vm_fd < 0)
		return error_set(err, "KVM_CREATE_VM failed: %s", strerror(errno));
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0)
		return error_set(err, "KVM_GET_VCPU_MMAP_SIZE failed: %s", strerror(errno));
	int max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus <= 0)
		max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max_vcpus > 0 && cfg->cpus > (unsigned)max_vcpus) {
		error_set(err, "--cpus %u: this host's KVM allows at most %d vCPUs per VM", cfg->cpus,
			  max_vcpus);
		return -VM_EXIT_BAD_INPUT;
	}

	/* More RAM than the host has can never be backed: the guest would be killed mid-run. */
	uint64_t host_mib = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) >> 20;
	if (host_mib && cfg->memory_mib > host_mib) {
		error_set(err, "--memory %llu: more than this host's %llu MiB of RAM; lower --memory",
			  (unsigned long long)cfg->memory_mib, (unsigned long long)host_mib);
		return -VM_EXIT_BAD_INPUT;
	}
	if (event_loop_init(&vm->loop, err))
		return -1;
	vm->exit_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->exit_eventfd < 0)
		return error_set(err, "eventfd failed: %s", strerror(errno));
	if (arch_vm_init(vm, err))
		return -1;
	if (map_memory(vm, err))
		return -VM_EXIT_BAD_INPUT;
	if (create_devices(vm, err))
		return err->user_input ? -VM_EXIT_BAD_INPUT : -1;
	if (arch_load_guest(vm, err))
		return -VM_EXIT_BAD_INPUT;

	vm->vcpus = calloc(cfg->cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return error_set(err, "out of memory for %u vCPUs", cfg->cpus);
	for (unsigned i = 0; i < cfg->cpus; i++) {
		if (vcpu_create(vm, &vm->vcpus[i], i, err))
			return -1;
		vm->nr_vcpus++;
	}
	return wait_memory(vm, err);
}

static void on_exit_event(void *ctx, uint32_t events)
{
	struct vm *vm = ctx;
	(void)events;
	uint64_t v;
	ssize_t r = read(vm->exit_eventfd, &v, sizeof(v));
	(void)r;
	vm->loop.stop = true;
}

struct vm_timeout {
	struct vm *vm;
	int fd;
};

static void on_timeout(void *ctx, uint32_t events)
{
	struct vm_timeout *t = ctx;
	(void)events;
	vm_request_exit(t->vm, VM_EXIT_TIMEOUT, "timeout: the guest ran for --timeout %.3g s",
			t->vm->cfg->timeout_s);
}

struct vm_signals {
	struct vm *vm;
	int fd;
};

static void on_signal(void *ctx, uint32_t events)
{
	struct vm_signals *s = ctx;
	(void)events;
	struct signalfd_siginfo si;
	if (read(s->fd, &si, sizeof(si)) == sizeof(si))
		vm_request_exit(s->vm, 128 + (int)si.ssi_signo, "stopped by signal %s",
				strsignal((int)si.ssi_signo));
}

int vm_run(struct vm *vm, struct error *err)
{
	struct vm_timeout timeout = { vm, -1 };
	struct vm_signals sigs = { vm, -1 };
	int rc = -1;
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGHUP);
	/* Blocked before the vCPU threads exist, so they inherit the mask and only the loop sees them. */
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	sigs.fd = signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigs.fd < 0) {
		error_set(err, "signalfd failed: %s", strerror(errno));
		goto out;
	}
	if (event_loop_add(&vm->loop, vm->exit_eventfd, EPOLLIN, on_exit_event, vm, err) ||
	    event_loop_add(&vm->loop, sigs.fd, EPOLLIN, on_signal, &sigs, err))
		goto out;
	if (vm->cfg->timeout_s > 0) {
		timeout.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		double t = vm->cfg->timeout_s;
		struct itimerspec its = { .it_value = { (time_t)t, (long)((t - (double)(time_t)t) * 1e9) } };
		if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
			its.it_value.tv_nsec = 1;
		if (timeout.fd < 0 || timerfd_settime(timeout.fd, 0, &its, NULL) < 0) {
			error_set(err, "timerfd for --timeout failed: %s", strerror(errno));
			goto out;
		}
		if (event_loop_add(&vm->loop, timeout.fd, EPOLLIN, on_timeout, &timeout, err))
			goto out;
	}
	if (vcpus_start(vm, err))
		goto out;
	if (event_loop_run(&vm->loop, err)) {
		vm_request_exit(vm, VM_EXIT_HOST, "event loop failed: %s", err->msg);
	}
	vcpus_stop(vm);
	/* A guest that panicked and then rebooted (panic=-1) ended with a panic, not a reboot. */
	if (vm->exit_code == VM_EXIT_OK && atomic_load(&vm->guest_panicked)) {
		vm->exit_code = VM_EXIT_PANIC;
		snprintf(vm->exit_reason, sizeof(vm->exit_reason),
			 "guest kernel panic (see the console), then it rebooted");
	}
	if (vm->exit_code == VM_EXIT_OK)
		log_info(&vm->log, "guest ended: %s", vm->exit_reason);
	else if (vm->exit_code > 128) /* asked to stop: not an error */
		log_info(&vm->log, "%s", vm->exit_reason);
	else
		log_error(&vm->log, "%s", vm->exit_reason);
	rc = vm->exit_code;
out:
	if (rc < 0)
		vcpus_stop(vm);
	if (timeout.fd >= 0) {
		event_loop_remove(&vm->loop, timeout.fd);
		close(timeout.fd);
	}
	if (sigs.fd >= 0) {
		event_loop_remove(&vm->loop, sigs.fd);
		close(sigs.fd);
	}
	return rc;
}

void vm_destroy(struct vm *vm)
{
	struct error ignored;
	wait_memory(vm, &ignored); /* vm_create may have failed while the slot thread ran */
	for (int i = vm->nr_devices - 1; i >= 0; i--)
		if (vm->devices[i].desc->destroy)
			vm->devices[i].desc->destroy(vm->devices[i].state);
	vm->nr_devices = 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_destroy(vm, &vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	free(vm->cmdline);
	free(vm->cmdline_extra);
	vm->cmdline = vm->cmdline_extra = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->exit_eventfd >= 0)
		close(vm->exit_eventfd);
	vm->vm_fd = vm->kvm_fd = vm->exit_eventfd = -1;
	event_loop_close(&vm->loop);
	guest_mem_free(&vm->mem);
	pthread_mutex_destroy(&vm->exit_lock);
}
