/* Intel MultiProcessor Specification 1.4 tables: how Linux finds CPUs and the IOAPIC without ACPI. */
#ifndef KVMBOX_X86_MPTABLE_H
#define KVMBOX_X86_MPTABLE_H

#include "vmm/guest_mem.h"

/* Writes the floating pointer at gpa and the configuration table right after it. */
int mptable_write(const struct guest_mem *mem, uint64_t gpa, unsigned nr_cpus, struct error *err);

#endif
