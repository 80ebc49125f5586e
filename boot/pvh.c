/* PVH boot (Xen's hvm_start_info, version 1): cmdline, one module (the initrd), and the memory map. */
#include "boot/x86_boot.h"

#include <string.h>

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "memmap entry layout");

int pvh_start_info_write(const struct guest_mem *mem, uint64_t gpa, const struct x86_boot_info *bi,
			 struct error *err)
{
	if (bi->nr_e820 < 0 || bi->nr_e820 > X86_BOOT_MAX_E820)
		return error_set(err, "bad number of memory map entries (%d)", bi->nr_e820);
	uint64_t modlist = gpa + 64;
	uint64_t memmap = modlist + sizeof(struct hvm_modlist_entry);
	uint64_t total = memmap - gpa + (uint64_t)bi->nr_e820 * sizeof(struct hvm_memmap_table_entry);
	uint8_t *base = guest_mem_ptr(mem, gpa, total);
	if (!base)
		return error_set(err, "hvm_start_info at 0x%llx is outside guest RAM", (unsigned long long)gpa);
	memset(base, 0, total);
	struct hvm_start_info si = {
		.magic = PVH_START_MAGIC,
		.version = 1,
		.cmdline_paddr = bi->cmdline_gpa,
		.memmap_paddr = memmap,
		.memmap_entries = (uint32_t)bi->nr_e820,
	};
	if (bi->initrd_size) {
		struct hvm_modlist_entry m = { .paddr = bi->initrd_gpa, .size = bi->initrd_size };
		memcpy(base + (modlist - gpa), &m, sizeof(m));
		si.nr_modules = 1;
		si.modlist_paddr = modlist;
	}
	memcpy(base, &si, sizeof(si));
	for (int i = 0; i < bi->nr_e820; i++) {
		struct hvm_memmap_table_entry e = { bi->e820[i].addr, bi->e820[i].size, bi->e820[i].type, 0 };
		memcpy(base + (memmap - gpa) + (uint64_t)i * sizeof(e), &e, sizeof(e));
	}
	return 0;
}
