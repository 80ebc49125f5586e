/* The x86_64 machine: interrupt controllers, memory layout, and loading the guest with its boot data. */
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "boot/kernel_image.h"
#include "boot/x86_boot.h"
#include "vmm/arch.h"
#include "vmm/file_map.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

/* Arguments a Linux guest needs on this machine; the user's --cmdline comes after them and wins. */
static const char default_linux_cmdline[] =
	"console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd";

void arch_mem_layout(uint64_t *low_limit, uint64_t *high_base)
{
	*low_limit = X86_MMIO_HOLE_START;
	*high_base = X86_HIGH_MEM_BASE;
}

uint64_t arch_boot_marker_addr(void)
{
	return X86_BOOT_MARKER_ADDR;
}

/* Interrupts for virtio-mmio slots: free ISA lines first (4 is COM1, 8 the RTC), then IOAPIC pins 16-23. */
static const unsigned virtio_irqs[] = { 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23 };

int arch_virtio_mmio_slot(struct vm *vm, uint64_t *base, unsigned *irq, struct error *err)
{
	unsigned n = vm->nr_mmio_slots;
	if (n >= sizeof(virtio_irqs) / sizeof(virtio_irqs[0]))
		return error_set(err, "too many virtio devices (at most %zu)", sizeof(virtio_irqs) / sizeof(virtio_irqs[0]));
	*base = X86_VIRTIO_MMIO_BASE + 0x1000ull * n;
	*irq = virtio_irqs[n];
	vm->nr_mmio_slots++;
	return vm_cmdline_append(vm, err, "virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)*base, *irq);
}

int arch_vm_init(struct vm *vm, struct error *err)
{
	/* Only VMX needs these two; where KVM does not want them they fail harmlessly. */
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_TSS_ADDR) > 0 &&
	    ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_TSS_ADDR) < 0)
		log_debug(&vm->log, "KVM_SET_TSS_ADDR: %s", strerror(errno));
	uint64_t idmap = X86_IDENTITY_MAP_ADDR;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		log_debug(&vm->log, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return error_set(err, "KVM_CREATE_IRQCHIP failed: %s (kvmbox needs the in-kernel LAPIC/IOAPIC)",
				 strerror(errno));
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return error_set(err, "KVM_CREATE_PIT2 failed: %s", strerror(errno));
	return 0;
}

/* The e820 map: low RAM, the reserved BIOS/MP-table window, RAM from 1 MiB, RAM above 4 GiB. */
static void build_e820(const struct guest_mem *mem, struct x86_boot_info *bi)
{
	uint64_t low_end = guest_mem_low_end(mem);
	bi->nr_e820 = 0;
	bi->e820[bi->nr_e820++] = (struct e820_entry){ 0, X86_LOW_RAM_END, E820_RAM };
	bi->e820[bi->nr_e820++] = (struct e820_entry){ X86_LOW_RAM_END, X86_HIGH_RAM_START - X86_LOW_RAM_END,
						       E820_RESERVED };
	if (low_end > X86_HIGH_RAM_START)
		bi->e820[bi->nr_e820++] = (struct e820_entry){ X86_HIGH_RAM_START, low_end - X86_HIGH_RAM_START,
							       E820_RAM };
	for (int i = 1; i < mem->nr_regions; i++)
		bi->e820[bi->nr_e820++] = (struct e820_entry){ mem->regions[i].gpa, mem->regions[i].size,
							       E820_RAM };
}

/* GDT and identity page tables (4 GiB, 2 MiB pages). U=1 at every level: the PVM host requires it and
 * it is harmless elsewhere, since the guest kernel replaces these tables at once. */
static int build_cpu_tables(const struct guest_mem *mem, struct error *err)
{
	const uint64_t gdt[] = {
		0,                     /* null */
		0x00cf9b000000ffffull, /* 0x08: 32-bit code, flat */
		0x00af9b000000ffffull, /* 0x10: 64-bit code */
		0x00cf93000000ffffull, /* 0x18: data, flat */
		0x00008b0000000067ull, /* 0x20: TSS (busy), base 0 */
		0,                     /* upper half of the 64-bit TSS descriptor */
	};
	if (guest_mem_write(mem, X86_GDT_ADDR, gdt, sizeof(gdt)))
		return error_set(err, "guest RAM too small for the GDT");
	uint64_t *pml4 = guest_mem_ptr(mem, X86_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_ptr(mem, X86_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem_ptr(mem, X86_PD_ADDR, 4096 * X86_IDENTITY_MAP_GIB);
	if (!pml4 || !pdpt || !pd)
		return error_set(err, "guest RAM too small for the boot page tables");
	const uint64_t present_rw_user = 0x7, page_size = 0x80;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = X86_PDPT_ADDR | present_rw_user;
	for (uint64_t g = 0; g < X86_IDENTITY_MAP_GIB; g++) {
		pdpt[g] = (X86_PD_ADDR + g * 4096) | present_rw_user;
		for (uint64_t i = 0; i < 512; i++)
			pd[g * 512 + i] = ((g << 30) | (i << 21)) | present_rw_user | page_size;
	}
	return 0;
}

static int compose_cmdline(struct vm *vm, const struct kernel_image *k, struct error *err)
{
	const char *user = vm->cfg->cmdline ? vm->cfg->cmdline : "";
	const char *def = (!vm->cfg->no_default_cmdline && k->is_linux) ? default_linux_cmdline : "";
	const char *dev = vm->cmdline_extra ? vm->cmdline_extra : "";
	size_t len = strlen(def) + 1 + strlen(dev) + 1 + strlen(user);
	char *s = malloc(len + 1);
	if (!s)
		return error_set(err, "out of memory");
	/* Monitor defaults, then the devices, then the user's words, which win on repeats. */
	snprintf(s, len + 1, "%s%s%s%s%s", def, (*def && *dev) ? " " : "", dev, ((*def || *dev) && *user) ? " " : "", user);
	vm->cmdline = s;
	if (strlen(s) > k->cmdline_max)
		return error_set(err, "the kernel command line is %zu bytes, longer than the %u the kernel "
				 "accepts; shorten --cmdline", strlen(s), k->cmdline_max);
	return 0;
}

static int place_initrd(struct vm *vm, const struct kernel_image *k, struct x86_boot_info *bi,
			struct error *err)
{
	if (!vm->cfg->initrd)
		return 0;
	struct file_map f;
	if (file_map_open(&f, vm->cfg->initrd, "initrd", err))
		return -1;
	/* As high as possible below the MMIO hole (and the kernel's limit), above the kernel. */
	uint64_t top = guest_mem_low_end(&vm->mem);
	if (k->initrd_addr_max != UINT64_MAX && top > k->initrd_addr_max + 1)
		top = k->initrd_addr_max + 1;
	uint64_t floor = (k->load_end + 0xfff) & ~0xfffull;
	int rc = 0;
	if (f.len > top || ((top - f.len) & ~0xfffull) < floor) {
		rc = error_set(err, "initrd %s (%zu KiB) does not fit in guest RAM above the kernel (%llu KiB "
			       "free below 0x%llx): raise --memory", vm->cfg->initrd, f.len >> 10,
			       (unsigned long long)(top > floor ? (top - floor) >> 10 : 0),
			       (unsigned long long)top);
		goto out;
	}
	bi->initrd_gpa = (top - f.len) & ~0xfffull;
	bi->initrd_size = f.len;
	if (guest_mem_write(&vm->mem, bi->initrd_gpa, f.data, f.len))
		rc = error_set(err, "initrd does not fit in guest RAM");
	log_debug(&vm->log, "initrd: %zu bytes at 0x%llx", f.len, (unsigned long long)bi->initrd_gpa);
out:
	file_map_close(&f);
	return rc;
}

static int choose_entry(struct vm *vm, const struct kernel_image *k, struct error *err)
{
	enum entry_mode want = vm->cfg->entry;
	if (want == ENTRY_AUTO)
		want = (k->is_linux && k->entry64) || !k->pvh_entry ? ENTRY_LINUX64 : ENTRY_PVH;
	if (want == ENTRY_PVH) {
		if (!k->pvh_entry)
			return error_set(err, "--entry pvh: the kernel %s has no PVH entry note "
					 "(XEN_ELFNOTE_PHYS32_ENTRY); build it with CONFIG_PVH or use --entry linux64",
					 vm->cfg->kernel);
		vm->boot.mode = X86_ENTRY_PVH;
		vm->boot.ip = k->pvh_entry;
		vm->boot.arg = X86_PVH_INFO_ADDR;
	} else {
		if (!k->entry64)
			return error_set(err, "the kernel %s has no 64-bit entry point", vm->cfg->kernel);
		vm->boot.mode = X86_ENTRY_LINUX64;
		vm->boot.ip = k->entry64;
		vm->boot.arg = X86_ZERO_PAGE_ADDR;
	}
	return 0;
}

/* On a PVM host a Linux kernel without the native shim runs in KVM's instruction emulator: refuse it. */
static int check_runs_natively(struct vm *vm, const struct kernel_image *k, const struct file_map *kf,
			       struct error *err)
{
	if (vm->backend != KVM_BACKEND_PVM || vm->cfg->allow_emulated || !k->is_linux)
		return 0;
	if (k->format == KERNEL_BZIMAGE)
		return error_set(err, "%s is a bzImage: on this PVM host its decompressor would run in KVM's "
				 "instruction emulator (minutes, not milliseconds); boot the uncompressed vmlinux "
				 "built with the PVM shim (make images), or pass --allow-emulated", vm->cfg->kernel);
	if (!kernel_image_has_pvm_shim(kf->data, kf->len))
		return error_set(err, "%s is a Linux kernel without the PVM native shim: on this PVM host it would "
				 "run in KVM's instruction emulator and take minutes to boot; build it with "
				 "images/kernel/build.sh (which applies images/kernel/pvm/*.patch here) or pass "
				 "--allow-emulated", vm->cfg->kernel);
	return 0;
}

int arch_load_guest(struct vm *vm, struct error *err)
{
	struct file_map kf;
	struct kernel_image k;
	struct x86_boot_info bi = { 0 };
	if (file_map_open(&kf, vm->cfg->kernel, "kernel", err))
		return -1;
	int rc = -1;
	if (kernel_image_parse(kf.data, kf.len, &k, err)) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err->msg);
		error_set(err, "kernel %s: %s", vm->cfg->kernel, why);
		goto out;
	}
	vm->guest_is_linux = k.is_linux;
	if (check_runs_natively(vm, &k, &kf, err) || choose_entry(vm, &k, err))
		goto out;
	if (kernel_image_load(&k, kf.data, kf.len, &vm->mem, X86_HIGH_RAM_START, err)) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err->msg);
		error_set(err, "kernel %s: %s", vm->cfg->kernel, why);
		goto out;
	}
	if (compose_cmdline(vm, &k, err))
		goto out;
	bi.cmdline_gpa = X86_CMDLINE_ADDR;
	bi.cmdline_len = (uint32_t)strlen(vm->cmdline);
	if (guest_mem_write(&vm->mem, X86_CMDLINE_ADDR, vm->cmdline, bi.cmdline_len + 1)) {
		error_set(err, "guest RAM too small for the command line");
		goto out;
	}
	if (place_initrd(vm, &k, &bi, err))
		goto out;
	build_e820(&vm->mem, &bi);
	if (build_cpu_tables(&vm->mem, err) || mptable_write(&vm->mem, X86_MPTABLE_ADDR, vm->cfg->cpus, err))
		goto out;
	if (vm->boot.mode == X86_ENTRY_PVH)
		rc = pvh_start_info_write(&vm->mem, X86_PVH_INFO_ADDR, &bi, err);
	else
		rc = linux_boot_params_write(&vm->mem, X86_ZERO_PAGE_ADDR, &k, kf.data, kf.len, &bi, err);
	if (rc == 0)
		log_debug(&vm->log, "kernel %s: %s, %s entry at 0x%llx, loaded 0x%llx-0x%llx, cmdline \"%s\"",
			  vm->cfg->kernel, k.format == KERNEL_BZIMAGE ? "bzImage" : "ELF",
			  vm->boot.mode == X86_ENTRY_PVH ? "PVH" : "64-bit", (unsigned long long)vm->boot.ip,
			  (unsigned long long)k.load_start, (unsigned long long)k.load_end, vm->cmdline);
out:
	file_map_close(&kf);
	return rc;
}
