/* What the generic monitor asks of an architecture; each arch implements it under arch/<name>/. */
#ifndef KVMBOX_ARCH_H
#define KVMBOX_ARCH_H

#include <stdbool.h>
#include <stdio.h>

#include "vmm/vm.h"

/* Guest RAM layout: RAM from 0 up to low_limit, the rest from high_base. */
void arch_mem_layout(uint64_t *low_limit, uint64_t *high_base);

/* Guest-physical address of the boot-time marker (the first MMIO slot). */
uint64_t arch_boot_marker_addr(void);

/* Hands out the next virtio-mmio slot (4 KiB of MMIO and an interrupt) and tells the guest about it
 * (x86: virtio_mmio.device= on the command line). */
int arch_virtio_mmio_slot(struct vm *vm, uint64_t *base, unsigned *irq, struct error *err);

/* VM-wide set-up before memory and vCPUs exist (interrupt controllers, timers). Host error on failure. */
int arch_vm_init(struct vm *vm, struct error *err);

/* Loads kernel, initrd and command line into guest memory and builds the boot structures. Bad input. */
int arch_load_guest(struct vm *vm, struct error *err);

/* Per-vCPU set-up after KVM_CREATE_VCPU: CPUID, MSRs, and the boot vCPU's entry registers. */
int arch_vcpu_init(struct vm *vm, struct vcpu *v, struct error *err);

/* Handles an exit reason the generic loop does not know; false when the arch does not either. */
bool arch_vcpu_exit(struct vcpu *v);

/* Logs the vCPU's registers (after a fault or KVM error). */
void arch_vcpu_dump(struct vcpu *v);

/* Prints the arch part of --probe. */
void arch_probe(FILE *out, int kvm_fd, enum kvm_backend backend);

#endif
