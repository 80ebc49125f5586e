/*
 * Asynchronous teardown (QEMU's async-teardown habit): destroying a KVM VM waits for host RCU grace
 * periods and takes tens of milliseconds. Once the guest has ended and every device has finished, a
 * small child process keeps the KVM file descriptors open, so the monitor exits at once and the host
 * destroys the VM when the child exits, right after the monitor is gone.
 */
#ifndef KVMBOX_TEARDOWN_H
#define KVMBOX_TEARDOWN_H

#include "vmm/vm.h"

/* Call after the guest ended and before vm_destroy(); does nothing when it cannot fork. */
void teardown_detach(struct vm *vm);

#endif
