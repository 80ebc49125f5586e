/* bzImage (Documentation/arch/x86/boot.rst): setup header, protected-mode kernel, 64-bit entry at +0x200. */
#include "boot/kernel_image.h"

#include <string.h>

#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_VERSION 0x206
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define XLF_KERNEL_64 (1u << 0)
#define XLF_CAN_BE_LOADED_ABOVE_4G (1u << 1)
/* Where a non-relocatable protected-mode kernel must go, and the address we use when it is relocatable. */
#define BZIMAGE_DEFAULT_LOAD 0x100000ull

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

int bzimage_parse(const uint8_t *img, size_t len, struct kernel_image *k, struct error *err)
{
	if (len < 0x270)
		return error_set(err, "bzImage truncated: %zu bytes, shorter than its setup header", len);
	if (rd16(img + HDR_BOOT_FLAG) != 0xaa55)
		return error_set(err, "bzImage has no 0xAA55 boot flag: corrupt or not a kernel");
	uint16_t version = rd16(img + HDR_VERSION);
	if (version < 0x020c)
		return error_set(err, "bzImage boot protocol %u.%02u is older than 2.12: it has no 64-bit "
				 "entry; use a newer kernel or its vmlinux", version >> 8, version & 0xff);
	uint16_t xloadflags = rd16(img + HDR_XLOADFLAGS);
	if (!(xloadflags & XLF_KERNEL_64))
		return error_set(err, "bzImage lacks XLF_KERNEL_64: not a 64-bit kernel");
	unsigned setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	uint64_t pm_offset = ((uint64_t)setup_sects + 1) * 512;
	if (pm_offset >= len)
		return error_set(err, "bzImage truncated: the protected-mode kernel starts at %llu but the "
				 "file has %zu bytes", (unsigned long long)pm_offset, len);
	uint64_t filesz = len - pm_offset;
	if (filesz <= 0x200)
		return error_set(err, "bzImage truncated: its protected-mode kernel (%llu bytes) ends before the "
				 "64-bit entry at +0x200", (unsigned long long)filesz);
	uint64_t init_size = rd32(img + HDR_INIT_SIZE);
	uint64_t memsz = init_size > filesz ? init_size : filesz;
	uint64_t load = BZIMAGE_DEFAULT_LOAD;
	if (img[HDR_RELOCATABLE]) {
		uint64_t pref = rd64(img + HDR_PREF_ADDRESS);
		uint32_t align = rd32(img + HDR_KERNEL_ALIGNMENT);
		if (pref >= BZIMAGE_DEFAULT_LOAD && pref < (1ull << 32) &&
		    (align == 0 || (align & (align - 1)) || pref % align == 0))
			load = pref;
	}
	k->format = KERNEL_BZIMAGE;
	k->is_linux = true;
	k->segs[0] = (struct kernel_segment){ load, pm_offset, filesz, memsz };
	k->nr_segs = 1;
	k->load_start = load;
	k->load_end = load + memsz;
	k->entry64 = load + 0x200;
	k->setup_header_offset = HDR_SETUP_SECTS;
	/* The header runs from 0x1f1 to the end given by the jump at 0x200 (offset byte at 0x201). */
	k->setup_header_len = (uint64_t)(0x202 + img[HDR_JUMP + 1]) - HDR_SETUP_SECTS;
	if (k->setup_header_offset + k->setup_header_len > len || k->setup_header_len > 0x7f)
		return error_set(err, "bzImage setup header length %llu is implausible (corrupt kernel)",
				 (unsigned long long)k->setup_header_len);
	if (version >= 0x0206) {
		uint32_t cs = rd32(img + HDR_CMDLINE_SIZE);
		if (cs > 0 && cs < k->cmdline_max)
			k->cmdline_max = cs;
	}
	uint32_t imax = rd32(img + HDR_INITRD_ADDR_MAX);
	k->initrd_addr_max = (xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) ? UINT64_MAX
								   : (imax ? imax : 0x37ffffff);
	return 0;
}
