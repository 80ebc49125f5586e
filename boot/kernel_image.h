/*
 * Kernel images: parsing (ELF vmlinux or freestanding ELF, bzImage) into a list of segments and entry
 * points, then loading them into guest memory. Parsers take the file as bytes and trust nothing in it.
 */
#ifndef KVMBOX_KERNEL_IMAGE_H
#define KVMBOX_KERNEL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/error.h"
#include "vmm/guest_mem.h"

enum kernel_format { KERNEL_ELF, KERNEL_BZIMAGE };

#define KERNEL_MAX_SEGMENTS 16

struct kernel_segment {
	uint64_t paddr;
	uint64_t offset; /* in the file */
	uint64_t filesz;
	uint64_t memsz;  /* >= filesz; the rest is zeroed */
};

struct kernel_image {
	enum kernel_format format;
	uint64_t entry64;   /* Linux 64-bit boot protocol entry (physical) */
	uint64_t pvh_entry; /* XEN_ELFNOTE_PHYS32_ENTRY, 0 when absent */
	bool is_linux;      /* "Linux" ELF notes or the "Linux version " banner, or a bzImage */
	struct kernel_segment segs[KERNEL_MAX_SEGMENTS];
	int nr_segs;
	uint64_t load_start; /* lowest paddr */
	uint64_t load_end;   /* highest paddr + memsz */
	/* bzImage only: the setup header to copy into boot_params, and its limits */
	uint64_t setup_header_offset; /* 0x1f1 */
	uint64_t setup_header_len;
	uint32_t cmdline_max;      /* longest command line the kernel takes, without the NUL */
	uint64_t initrd_addr_max;  /* highest address the initrd's last byte may have */
};

#define BOOT_DEFAULT_CMDLINE_MAX 2047 /* x86 COMMAND_LINE_SIZE 2048, minus the NUL */

/* Parses an ELF64 x86_64 or a bzImage. Every offset and size is checked against len. */
int kernel_image_parse(const uint8_t *img, size_t len, struct kernel_image *k, struct error *err);
int elf_parse(const uint8_t *img, size_t len, struct kernel_image *k, struct error *err);
int bzimage_parse(const uint8_t *img, size_t len, struct kernel_image *k, struct error *err);

/* Whether the image registers its PVCS page with the kvm_pvm host, i.e. runs natively there. */
bool kernel_image_has_pvm_shim(const uint8_t *img, size_t len);

/* Copies the segments into guest RAM; refuses any segment below min_paddr or outside RAM. */
int kernel_image_load(const struct kernel_image *k, const uint8_t *img, size_t len,
		      const struct guest_mem *mem, uint64_t min_paddr, struct error *err);

#endif
