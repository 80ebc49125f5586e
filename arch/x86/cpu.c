/* x86 vCPUs: CPUID with a per-vCPU topology, the MSRs Linux expects, entry registers, port I/O exits. */
#include "arch/x86/layout.h"
#include "vmm/arch.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_MAX_ENTRIES 256

/* CPUID bits (leaf, register, bit). */
#define CPUID1_ECX_PCID (1u << 17)
#define CPUID1_ECX_X2APIC (1u << 21)
#define CPUID1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID1_ECX_HYPERVISOR (1u << 31)
#define CPUID1_EDX_HTT (1u << 28)
#define CPUID7_EBX_SMEP (1u << 7)
#define CPUID7_EBX_INVPCID (1u << 10)
#define CPUID7_EBX_SMAP (1u << 20)
#define CPUID7_EDX_ARCH_CAPABILITIES (1u << 29)

static struct kvm_cpuid2 *supported_cpuid(int kvm_fd, struct error *err)
{
	for (unsigned n = CPUID_MAX_ENTRIES; n <= 4 * CPUID_MAX_ENTRIES; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
		if (!c) {
			error_set(err, "out of memory");
			return NULL;
		}
		c->nent = n;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		int e = errno;
		free(c);
		if (e != E2BIG) {
			error_set(err, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(e));
			return NULL;
		}
	}
	error_set(err, "KVM_GET_SUPPORTED_CPUID: too many entries");
	return NULL;
}

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

/* One package of nr cores, one thread each; APIC ID = vCPU index. */
static void cpuid_set_topology(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned nr)
{
	switch (e->function) {
	case 1:
		e->ebx = (e->ebx & 0x0000ffffu) | (apic_id << 24) | ((nr > 255 ? 255 : nr) << 16);
		if (nr > 1)
			e->edx |= CPUID1_EDX_HTT;
		else
			e->edx &= ~CPUID1_EDX_HTT;
		break;
	case 4:
		/* Cores per package - 1 in EAX[31:26]; only for leaves that describe a cache. */
		if (e->eax & 0x1f)
			e->eax = (e->eax & 0x03ffffffu) | (((nr - 1) & 0x3f) << 26);
		break;
	case 0xb:
	case 0x1f:
		if (e->index == 0) { /* SMT level: one thread per core */
			e->eax = 0;
			e->ebx = 1;
			e->ecx = (1u << 8) | 0;
		} else if (e->index == 1) { /* core level */
			e->eax = bits_for(nr);
			e->ebx = nr;
			e->ecx = (2u << 8) | 1;
		} else {
			e->eax = e->ebx = 0;
			e->ecx = e->index;
		}
		e->edx = apic_id;
		break;
	case 0x80000008:
		/* AMD: number of cores - 1 in ECX[7:0], and the APIC ID width. */
		e->ecx = (e->ecx & ~0xf0ffu) | ((nr - 1) & 0xff) | (bits_for(nr) << 12);
		break;
	}
}

static int setup_cpuid(struct vm *vm, struct vcpu *v, struct error *err)
{
	struct kvm_cpuid2 *c = supported_cpuid(vm->kvm_fd, err);
	if (!c)
		return -1;
	bool tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		cpuid_set_topology(e, v->id, vm->cfg->cpus);
		if (e->function == 1) {
			e->ecx |= CPUID1_ECX_HYPERVISOR;
			if (tsc_deadline)
				e->ecx |= CPUID1_ECX_TSC_DEADLINE;
		}
		if (vm->backend != KVM_BACKEND_PVM)
			continue;
		/* The PVM host #GPs on CR4.PCIDE, cannot emulate INVPCID, runs the guest kernel at CPL3 (no
		 * SMEP/SMAP) and refuses IA32_ARCH_CAPABILITIES (../shared/pvm/README.md). */
		if (e->function == 1)
			e->ecx &= ~CPUID1_ECX_PCID;
		if (e->function == 7 && e->index == 0) {
			e->ebx &= ~(CPUID7_EBX_SMEP | CPUID7_EBX_INVPCID | CPUID7_EBX_SMAP);
			e->edx &= ~CPUID7_EDX_ARCH_CAPABILITIES;
		}
	}
	int rc = 0;
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		rc = error_set(err, "KVM_SET_CPUID2 on vCPU %u failed: %s", v->id, strerror(errno));
	free(c);
	return rc;
}

#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

/* Reset values Linux expects; anything KVM does not list in KVM_GET_MSR_INDEX_LIST is skipped. */
static const struct { uint32_t index; uint64_t value; } boot_msrs[] = {
	{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 }, { MSR_IA32_SYSENTER_EIP, 0 },
	{ MSR_STAR, 0 }, { MSR_CSTAR, 0 }, { MSR_KERNEL_GS_BASE, 0 }, { MSR_SYSCALL_MASK, 0 },
	{ MSR_LSTAR, 0 }, { MSR_IA32_TSC, 0 },
	{ MSR_IA32_MISC_ENABLE, 1 },              /* fast strings */
	{ MSR_MTRR_DEF_TYPE, (1u << 11) | 6 },    /* MTRRs on, default write-back */
};
#define NR_BOOT_MSRS (sizeof(boot_msrs) / sizeof(boot_msrs[0]))

static bool msr_listed(const struct kvm_msr_list *list, uint32_t index)
{
	for (unsigned i = 0; list && i < list->nmsrs; i++)
		if (list->indices[i] == index)
			return true;
	return false;
}

static int setup_msrs(struct vm *vm, struct vcpu *v, struct error *err)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe); /* E2BIG, fills nmsrs */
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + NR_BOOT_MSRS * sizeof(struct kvm_msr_entry));
	if (!list || !msrs) {
		free(list);
		free(msrs);
		return error_set(err, "out of memory");
	}
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
		list->nmsrs = 0;
	for (size_t i = 0; i < NR_BOOT_MSRS; i++) {
		/* MISC_ENABLE and MTRRdefType are emulated MSRs, not in the index list; always offer them. */
		if (msr_listed(list, boot_msrs[i].index) || boot_msrs[i].index == MSR_IA32_MISC_ENABLE ||
		    boot_msrs[i].index == MSR_MTRR_DEF_TYPE)
			msrs->entries[msrs->nmsrs++] = (struct kvm_msr_entry){ .index = boot_msrs[i].index,
									       .data = boot_msrs[i].value };
	}
	/* KVM_SET_MSRS stops at the first MSR it refuses: set one at a time and log refusals. */
	for (unsigned i = 0; i < msrs->nmsrs; i++) {
		struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = { .h.nmsrs = 1, .e = msrs->entries[i] };
		if (ioctl(v->fd, KVM_SET_MSRS, &one) != 1)
			log_debug(&vm->log, "vCPU %u: KVM refused MSR 0x%x", v->id, msrs->entries[i].index);
	}
	free(list);
	free(msrs);
	return 0;
}

/* LINT0 = ExtINT (the PIC), LINT1 = NMI, as the MP table says. */
static int setup_lapic(struct vcpu *v, struct error *err)
{
	struct kvm_lapic_state lapic;
	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return error_set(err, "KVM_GET_LAPIC on vCPU %u failed: %s", v->id, strerror(errno));
	const unsigned lvt_lint0 = 0x350, lvt_lint1 = 0x360;
	uint32_t l0, l1;
	memcpy(&l0, lapic.regs + lvt_lint0, 4);
	memcpy(&l1, lapic.regs + lvt_lint1, 4);
	l0 = (l0 & ~0x700u) | (7u << 8); /* delivery mode ExtINT */
	l1 = (l1 & ~0x700u) | (4u << 8); /* delivery mode NMI */
	memcpy(lapic.regs + lvt_lint0, &l0, 4);
	memcpy(lapic.regs + lvt_lint1, &l1, 4);
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		return error_set(err, "KVM_SET_LAPIC on vCPU %u failed: %s", v->id, strerror(errno));
	return 0;
}

static struct kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code64, bool db)
{
	return (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
				     .present = 1, .dpl = 0, .db = db, .s = 1, .l = code64, .g = 1 };
}

/* The boot vCPU's registers for the chosen entry protocol; APs keep KVM's reset state. */
static int setup_boot_registers(struct vm *vm, struct vcpu *v, struct error *err)
{
	struct kvm_sregs sregs;
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return error_set(err, "KVM_GET_SREGS failed: %s", strerror(errno));
	struct kvm_segment data = flat_segment(X86_SEL_DATA, 0x3, false, true);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = X86_SEL_TSS, .type = 0xb,
					 .present = 1 };
	sregs.gdt.base = X86_GDT_ADDR;
	sregs.gdt.limit = 6 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	struct kvm_regs regs = { .rflags = 0x2, .rip = vm->boot.ip };
	if (vm->boot.mode == X86_ENTRY_PVH) {
		/* PVH: 32-bit protected mode, paging off, EBX = hvm_start_info. */
		sregs.cs = flat_segment(X86_SEL_CODE32, 0xb, false, true);
		sregs.cr0 = 0x11; /* PE | ET */
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
		regs.rbx = vm->boot.arg;
	} else {
		/* Linux 64-bit boot protocol: long mode on the identity map, RSI = boot_params. */
		sregs.cs = flat_segment(X86_SEL_CODE64, 0xb, true, false);
		sregs.cr0 = 0x80050033; /* PG | AM | WP | NE | ET | MP | PE */
		sregs.cr3 = X86_PML4_ADDR;
		sregs.cr4 = 0x20;       /* PAE */
		sregs.efer = 0x500;     /* LME | LMA */
		regs.rsi = vm->boot.arg;
		regs.rsp = regs.rbp = X86_BOOT_STACK_TOP;
	}
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return error_set(err, "KVM_SET_SREGS failed: %s", strerror(errno));
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return error_set(err, "KVM_SET_REGS failed: %s", strerror(errno));
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		return error_set(err, "KVM_SET_FPU failed: %s", strerror(errno));
	return 0;
}

int arch_vcpu_init(struct vm *vm, struct vcpu *v, struct error *err)
{
	if (setup_cpuid(vm, v, err) || setup_msrs(vm, v, err) || setup_lapic(v, err))
		return -1;
	return v->id == 0 ? setup_boot_registers(vm, v, err) : 0;
}

bool arch_vcpu_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	if (run->exit_reason != KVM_EXIT_IO)
		return false;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	/* String I/O (rep outsb etc.) arrives as count back-to-back elements. */
	for (uint32_t i = 0; i < run->io.count; i++)
		bus_access(&v->vm->pio, run->io.port, data + (size_t)i * run->io.size, run->io.size, is_write);
	return true;
}

void arch_vcpu_dump(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	const struct log *log = &v->vm->log;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_error(log, "vCPU %u: cannot read registers: %s", v->id, strerror(errno));
		return;
	}
	log_error(log, "vCPU %u: rip=%016llx rsp=%016llx rflags=%08llx", v->id, r.rip, r.rsp, r.rflags);
	log_error(log, "vCPU %u: rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx", v->id, r.rax, r.rbx,
		  r.rcx, r.rdx);
	log_error(log, "vCPU %u: rsi=%016llx rdi=%016llx rbp=%016llx r8=%016llx", v->id, r.rsi, r.rdi,
		  r.rbp, r.r8);
	log_error(log, "vCPU %u: cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%llx", v->id, s.cr0,
		  s.cr2, s.cr3, s.cr4, s.efer);
	log_error(log, "vCPU %u: cs=%04x (base %llx, l=%u db=%u) ss=%04x gdt=%llx/%x idt=%llx/%x", v->id,
		  s.cs.selector, s.cs.base, s.cs.l, s.cs.db, s.ss.selector, s.gdt.base, s.gdt.limit,
		  s.idt.base, s.idt.limit);
	struct kvm_run *run = v->run;
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR && run->internal.ndata > 0) {
		char buf[256];
		int n = 0;
		for (uint32_t i = 0; i < run->internal.ndata && i < 8 && n < (int)sizeof(buf) - 20; i++)
			n += snprintf(buf + n, sizeof(buf) - (size_t)n, " %llx",
				      (unsigned long long)run->internal.data[i]);
		log_error(log, "vCPU %u: internal error data:%s", v->id, buf);
	}
}

void arch_probe(FILE *out, int kvm_fd, enum kvm_backend backend)
{
	struct error err;
	struct kvm_cpuid2 *c = supported_cpuid(kvm_fd, &err);
	bool vmx = false, svm = false;
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[4096];
		while (fgets(line, sizeof(line), f)) {
			if (strncmp(line, "flags", 5) != 0)
				continue;
			vmx = strstr(line, " vmx") != NULL;
			svm = strstr(line, " svm") != NULL;
			break;
		}
		fclose(f);
	}
	fprintf(out, "host cpu virtualization: %s\n", vmx ? "vmx" : svm ? "svm" : "none (no vmx/svm flag)");
	fprintf(out, "supported cpuid entries: %u\n", c ? c->nent : 0);
	free(c);
	if (backend == KVM_BACKEND_PVM)
		fprintf(out, "guests: Linux kernels with the kvmbox PVM native shim (make images) run natively; "
			     "any other code runs in KVM's instruction emulator (about 1M instructions/s)\n");
	else
		fprintf(out, "guests: run natively (hardware virtualization)\n");
}
