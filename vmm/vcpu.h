/* vCPU threads: each runs KVM_RUN and hands exits to the buses; they never do device work themselves. */
#ifndef KVMBOX_VCPU_H
#define KVMBOX_VCPU_H

#include "vmm/vm.h"

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned id, struct error *err);
void vcpu_destroy(struct vm *vm, struct vcpu *v);
/* Starts one thread per vCPU; the APs wait in the in-kernel LAPIC until the guest wakes them. */
int vcpus_start(struct vm *vm, struct error *err);
/* Makes every vCPU leave KVM_RUN and joins the threads. */
void vcpus_stop(struct vm *vm);

#endif
