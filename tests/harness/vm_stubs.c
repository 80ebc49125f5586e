/*
 * What the device models ask of vmm/vm.c and arch/, without KVM (linked instead of vmm/vm.c, vmm/vcpu.c
 * and arch/ by the harness binaries). The struct vm is always the first member of a struct vd, so the
 * stubs record the eventfds there for the driver (tests/harness/virtio_driver.h).
 */
#include "tests/harness/virtio_driver.h"
#include "vmm/arch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static struct vd *vd_of(struct vm *vm)
{
	return (struct vd *)vm; /* vm is struct vd's first member */
}

int arch_virtio_mmio_slot(struct vm *vm, uint64_t *base, unsigned *irq, struct error *err)
{
	unsigned n = vm->nr_mmio_slots++;
	*base = VD_SLOT_BASE + 0x1000ull * n;
	*irq = VD_SLOT_IRQ0 + n;
	vd_of(vm)->base = *base; /* the harness drives one device: the last slot handed out */
	return vm_cmdline_append(vm, err, "virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)*base, *irq);
}

/* KVM would signal the eventfd when the guest writes datamatch at addr; here the driver writes it. */
int vm_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, uint64_t datamatch, int *fd, struct error *err)
{
	struct vd *vd = vd_of(vm);
	(void)len;
	*fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*fd < 0)
		return error_set(err, "eventfd failed: %s", strerror(errno));
	if (addr == vd->base + VD_REG_QUEUE_NOTIFY && datamatch < VD_MAX_QUEUES) {
		vd->ioeventfd[datamatch] = *fd;
		vd->nr_ioeventfds++;
	}
	return 0;
}

/* KVM would inject gsi when the eventfd is written; here the driver reads the counter. */
int vm_irqfd(struct vm *vm, unsigned gsi, int *fd, struct error *err)
{
	struct vd *vd = vd_of(vm);
	*fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*fd < 0)
		return error_set(err, "eventfd failed: %s", strerror(errno));
	vd->irq = gsi;
	vd->irqfd = *fd;
	return 0;
}

void vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	(void)vm;
	(void)irq;
	(void)level;
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
