/* Linux x86 boot protocol: the zero page for the 64-bit entry (Documentation/arch/x86/boot.rst). */
#include "boot/x86_boot.h"

#include <string.h>

static void wr8(uint8_t *bp, unsigned off, uint8_t v) { bp[off] = v; }
static void wr16(uint8_t *bp, unsigned off, uint16_t v) { memcpy(bp + off, &v, 2); }
static void wr32(uint8_t *bp, unsigned off, uint32_t v) { memcpy(bp + off, &v, 4); }

int linux_boot_params_write(const struct guest_mem *mem, uint64_t gpa, const struct kernel_image *k,
			    const uint8_t *img, size_t img_len, const struct x86_boot_info *bi,
			    struct error *err)
{
	uint8_t *bp = guest_mem_ptr(mem, gpa, BP_SIZE);
	if (!bp)
		return error_set(err, "boot_params at 0x%llx is outside guest RAM", (unsigned long long)gpa);
	memset(bp, 0, BP_SIZE);
	if (k->format == KERNEL_BZIMAGE) {
		/* The kernel reads its own header back from boot_params: copy it verbatim first. */
		if (k->setup_header_offset + k->setup_header_len > img_len ||
		    BP_SETUP_HEADER + k->setup_header_len > BP_SIZE)
			return error_set(err, "bzImage setup header does not fit");
		memcpy(bp + BP_SETUP_HEADER, img + k->setup_header_offset, k->setup_header_len);
	} else {
		wr16(bp, BP_BOOT_FLAG, 0xaa55);
		memcpy(bp + BP_HEADER_MAGIC, "HdrS", 4);
		wr16(bp, BP_VERSION, 0x020f);
		wr32(bp, BP_CMDLINE_SIZE, BOOT_DEFAULT_CMDLINE_MAX);
	}
	wr8(bp, BP_TYPE_OF_LOADER, 0xff); /* "undefined" loader id */
	wr8(bp, BP_LOADFLAGS, (uint8_t)(bp[BP_LOADFLAGS] | LOADED_HIGH));
	wr32(bp, BP_CMD_LINE_PTR, (uint32_t)bi->cmdline_gpa);
	wr32(bp, BP_EXT_CMD_LINE_PTR, (uint32_t)(bi->cmdline_gpa >> 32));
	if (bi->initrd_size) {
		wr32(bp, BP_RAMDISK_IMAGE, (uint32_t)bi->initrd_gpa);
		wr32(bp, BP_EXT_RAMDISK_IMAGE, (uint32_t)(bi->initrd_gpa >> 32));
		wr32(bp, BP_RAMDISK_SIZE, (uint32_t)bi->initrd_size);
		wr32(bp, BP_EXT_RAMDISK_SIZE, (uint32_t)(bi->initrd_size >> 32));
	}
	if (bi->nr_e820 < 0 || bi->nr_e820 > X86_BOOT_MAX_E820)
		return error_set(err, "bad number of e820 entries (%d)", bi->nr_e820);
	wr8(bp, BP_E820_ENTRIES, (uint8_t)bi->nr_e820);
	for (int i = 0; i < bi->nr_e820; i++) {
		uint8_t *e = bp + BP_E820_TABLE + 20 * i;
		memcpy(e, &bi->e820[i].addr, 8);
		memcpy(e + 8, &bi->e820[i].size, 8);
		memcpy(e + 16, &bi->e820[i].type, 4);
	}
	return 0;
}
