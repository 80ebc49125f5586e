/* The x86_64 guest-physical layout (docs/kvmbox-vmm.md has the table). */
#ifndef KVMBOX_X86_LAYOUT_H
#define KVMBOX_X86_LAYOUT_H

#define X86_GDT_ADDR 0x500ull
#define X86_PVH_INFO_ADDR 0x6000ull
#define X86_ZERO_PAGE_ADDR 0x7000ull
#define X86_BOOT_STACK_TOP 0x8ff0ull
#define X86_PML4_ADDR 0x9000ull
#define X86_PDPT_ADDR 0xa000ull
#define X86_PD_ADDR 0xb000ull       /* four page directories: 0xb000-0xefff */
#define X86_IDENTITY_MAP_GIB 4
#define X86_CMDLINE_ADDR 0x20000ull
#define X86_LOW_RAM_END 0x9f000ull  /* RAM below it; reserved up to 1 MiB */
#define X86_MPTABLE_ADDR 0x9fc00ull
#define X86_HIGH_RAM_START 0x100000ull
#define X86_MMIO_HOLE_START 0xd0000000ull
#define X86_HIGH_MEM_BASE 0x100000000ull
#define X86_BOOT_MARKER_ADDR 0xd0000000ull
#define X86_VIRTIO_MMIO_BASE 0xd0001000ull
#define X86_IOAPIC_ADDR 0xfec00000ull
#define X86_LAPIC_ADDR 0xfee00000ull
#define X86_TSS_ADDR 0xfffbd000ull  /* KVM's real-mode TSS (VMX), three pages */
#define X86_IDENTITY_MAP_ADDR 0xfffbc000ull

/* GDT selectors: Linux's __BOOT_CS/__BOOT_DS are 0x10/0x18. */
#define X86_SEL_CODE32 0x08
#define X86_SEL_CODE64 0x10
#define X86_SEL_DATA 0x18
#define X86_SEL_TSS 0x20

enum x86_entry_mode { X86_ENTRY_LINUX64 = 1, X86_ENTRY_PVH = 2 };

#endif
