#include "vmm/vcpu.h"
#include "vmm/arch.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* SIGUSR1 only interrupts KVM_RUN (with kvm_run.immediate_exit closing the race); it does nothing else. */
#define VCPU_KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
	(void)sig;
}

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned id, struct error *err)
{
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0)
		return error_set(err, "KVM_CREATE_VCPU %u failed: %s", id, strerror(errno));
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return error_set(err, "mmap of vCPU %u's kvm_run failed: %s", id, strerror(errno));
	}
	return arch_vcpu_init(vm, v, err);
}

void vcpu_destroy(struct vm *vm, struct vcpu *v)
{
	if (v->run)
		munmap(v->run, (size_t)vm->vcpu_mmap_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

static const char *internal_error_name(uint32_t suberror)
{
	switch (suberror) {
	case KVM_INTERNAL_ERROR_EMULATION:
		return "instruction emulation failed (the guest executed something KVM cannot run)";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "event delivery failed";
	default:
		return "internal error";
	}
}

/* Returns false when the vCPU must stop. */
static bool handle_exit(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_run *run = v->run;
	switch (run->exit_reason) {
	case KVM_EXIT_MMIO:
		if (!bus_access(&vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
				run->mmio.is_write))
			log_debug(&vm->log, "vCPU %u: %s of %u bytes at unassigned MMIO 0x%llx", v->id,
				  run->mmio.is_write ? "write" : "read", run->mmio.len,
				  (unsigned long long)run->mmio.phys_addr);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		arch_vcpu_dump(v);
		vm_request_exit(vm, VM_EXIT_TRIPLE_FAULT,
				"vCPU %u: the guest triple-faulted (KVM shutdown exit); registers are in the log",
				v->id);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		arch_vcpu_dump(v);
		vm_request_exit(vm, VM_EXIT_KVM_ERROR, "vCPU %u: KVM internal error %u: %s; registers are in the log",
				v->id, run->internal.suberror, internal_error_name(run->internal.suberror));
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		arch_vcpu_dump(v);
		vm_request_exit(vm, VM_EXIT_KVM_ERROR, "vCPU %u: VM entry failed (hardware reason 0x%llx)", v->id,
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			vm_request_exit(vm, VM_EXIT_OK, "guest powered off");
			break;
		case KVM_SYSTEM_EVENT_RESET:
			vm_request_exit(vm, VM_EXIT_OK, "guest rebooted");
			break;
		case KVM_SYSTEM_EVENT_CRASH:
			vm_request_exit(vm, VM_EXIT_PANIC, "guest reported a crash");
			break;
		default:
			vm_request_exit(vm, VM_EXIT_KVM_ERROR, "vCPU %u: unknown system event %u", v->id,
					run->system_event.type);
		}
		return false;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; with it, HLT waits inside KVM. */
		vm_request_exit(vm, VM_EXIT_OK, "guest halted");
		return false;
	default:
		if (arch_vcpu_exit(v))
			return true;
		arch_vcpu_dump(v);
		vm_request_exit(vm, VM_EXIT_KVM_ERROR, "vCPU %u: unexpected KVM exit reason %u", v->id,
				run->exit_reason);
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t kick;
	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	while (!vm_is_exiting(vm)) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vm_request_exit(vm, VM_EXIT_HOST, "vCPU %u: KVM_RUN failed: %s", v->id, strerror(errno));
			break;
		}
		if (!handle_exit(v))
			break;
	}
	return NULL;
}

int vcpus_start(struct vm *vm, struct error *err)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL); /* no SA_RESTART: KVM_RUN must return EINTR */
	sigset_t kick, old;
	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &kick, &old); /* the main thread never takes the kick */
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int e = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (e)
			return error_set(err, "cannot start the thread of vCPU %u: %s", i, strerror(e));
		v->thread_started = true;
		char name[16];
		snprintf(name, sizeof(name), "vcpu%u", i);
		pthread_setname_np(v->thread, name);
	}
	log_debug(&vm->log, "%u vCPU thread(s) started", vm->nr_vcpus);
	return 0;
}

void vcpus_stop(struct vm *vm)
{
	if (!vm_is_exiting(vm))
		vm_request_exit(vm, VM_EXIT_HOST, "monitor stopped");
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->thread_started)
			continue;
		v->run->immediate_exit = 1;
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->thread_started)
			continue;
		/* A vCPU blocked in HLT wakes on the signal; keep kicking until it is gone. */
		struct timespec ts;
		for (;;) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 20 * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			if (pthread_timedjoin_np(v->thread, NULL, &ts) == 0)
				break;
			pthread_kill(v->thread, VCPU_KICK_SIGNAL);
		}
		v->thread_started = false;
	}
}
