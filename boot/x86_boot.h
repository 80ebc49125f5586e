/*
 * The two x86 boot protocols the monitor speaks: Linux's zero page (struct boot_params, for the 64-bit
 * entry) and PVH's hvm_start_info (for the 32-bit PVH entry). Both are written into guest memory
 * through the checked translation.
 */
#ifndef KVMBOX_X86_BOOT_H
#define KVMBOX_X86_BOOT_H

#include <stdint.h>

#include "boot/kernel_image.h"

#define E820_RAM 1
#define E820_RESERVED 2
#define X86_BOOT_MAX_E820 16

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/* What both protocols hand the guest. */
struct x86_boot_info {
	uint64_t cmdline_gpa;
	uint32_t cmdline_len; /* without the NUL */
	uint64_t initrd_gpa;
	uint64_t initrd_size; /* 0: none */
	struct e820_entry e820[X86_BOOT_MAX_E820];
	int nr_e820;
};

/* Offsets in struct boot_params (arch/x86/include/uapi/asm/bootparam.h). */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_HEADER 0x1f1
#define BP_BOOT_FLAG 0x1fe
#define BP_HEADER_MAGIC 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_CMDLINE_SIZE 0x238
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define BP_SIZE 4096
#define LOADED_HIGH 0x01

#define PVH_START_MAGIC 0x336ec578u

/* Builds the zero page at gpa: the bzImage's own setup header when there is one, else a minimal one. */
int linux_boot_params_write(const struct guest_mem *mem, uint64_t gpa, const struct kernel_image *k,
			    const uint8_t *img, size_t img_len, const struct x86_boot_info *bi,
			    struct error *err);

/* Builds hvm_start_info at gpa, followed by its module list and memory map. */
int pvh_start_info_write(const struct guest_mem *mem, uint64_t gpa, const struct x86_boot_info *bi,
			 struct error *err);

#endif
