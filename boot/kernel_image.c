#include "boot/kernel_image.h"

#include <string.h>

/* `mov $0x4b564d10, %ecx`: how the PVM native shim loads its PVCS MSR number before the wrmsr. */
static const uint8_t pvm_shim_signature[] = { 0xb9, 0x10, 0x4d, 0x56, 0x4b };

int kernel_image_parse(const uint8_t *img, size_t len, struct kernel_image *k, struct error *err)
{
	memset(k, 0, sizeof(*k));
	k->cmdline_max = BOOT_DEFAULT_CMDLINE_MAX;
	k->initrd_addr_max = UINT64_MAX;
	int rc;
	if (len >= 4 && memcmp(img, "\x7f" "ELF", 4) == 0)
		rc = elf_parse(img, len, k, err);
	else if (len >= 0x206 && memcmp(img + 0x202, "HdrS", 4) == 0)
		rc = bzimage_parse(img, len, k, err);
	else
		return error_set(err, "not a kernel: neither an ELF file nor a bzImage (no \"HdrS\" boot "
				 "header); give an uncompressed vmlinux, a bzImage or a freestanding ELF");
	if (rc)
		return rc;
	/* A vmlinux carries "Linux" ELF notes (found by elf_parse); stripped ones still have the banner. */
	if (k->format == KERNEL_ELF && !k->is_linux)
		k->is_linux = memmem(img, len, "Linux version ", 14) != NULL;
	return 0;
}

bool kernel_image_has_pvm_shim(const uint8_t *img, size_t len)
{
	return memmem(img, len, pvm_shim_signature, sizeof(pvm_shim_signature)) != NULL;
}

int kernel_image_load(const struct kernel_image *k, const uint8_t *img, size_t len,
		      const struct guest_mem *mem, uint64_t min_paddr, struct error *err)
{
	for (int i = 0; i < k->nr_segs; i++) {
		const struct kernel_segment *s = &k->segs[i];
		/* The parsers checked offset+filesz <= len and filesz <= memsz; check again, it is cheap. */
		if (s->offset > len || s->filesz > len - s->offset || s->filesz > s->memsz)
			return error_set(err, "kernel segment %d lies outside the file", i);
		if (s->paddr < min_paddr)
			return error_set(err, "kernel segment %d at 0x%llx overlaps the boot area below 0x%llx; "
					 "link the kernel at 1 MiB or higher", i, (unsigned long long)s->paddr,
					 (unsigned long long)min_paddr);
		uint8_t *dst = guest_mem_ptr(mem, s->paddr, s->memsz);
		if (!dst)
			return error_set(err, "kernel segment %d (0x%llx, %llu bytes) does not fit in guest RAM "
					 "(%llu MiB): raise --memory", i, (unsigned long long)s->paddr,
					 (unsigned long long)s->memsz, (unsigned long long)(mem->size >> 20));
		memcpy(dst, img + s->offset, s->filesz);
		memset(dst + s->filesz, 0, s->memsz - s->filesz);
	}
	return 0;
}
