/* ELF64 x86_64 kernels: PT_LOAD segments at their physical addresses, e_entry, and the PVH note. */
#include "boot/kernel_image.h"

#include <elf.h>
#include <string.h>

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Reads the notes in [off, off+size) of the file, looking for Xen's PVH entry. */
static int scan_notes(const uint8_t *img, uint64_t off, uint64_t size, struct kernel_image *k,
		      struct error *err)
{
	uint64_t pos = 0;
	while (size - pos >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		memcpy(&nh, img + off + pos, sizeof(nh));
		pos += sizeof(nh);
		uint64_t namesz = ((uint64_t)nh.n_namesz + 3) & ~3ull;
		uint64_t descsz = ((uint64_t)nh.n_descsz + 3) & ~3ull;
		if (namesz > size - pos || descsz > size - pos - namesz)
			return error_set(err, "ELF note runs past its segment (corrupt kernel file)");
		const uint8_t *name = img + off + pos;
		const uint8_t *desc = name + namesz;
		if (nh.n_namesz == 6 && memcmp(name, "Linux", 6) == 0)
			k->is_linux = true;
		if (nh.n_namesz == 4 && memcmp(name, "Xen", 4) == 0 && nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY) {
			uint64_t entry = 0;
			if (nh.n_descsz == 4) {
				uint32_t e32;
				memcpy(&e32, desc, 4);
				entry = e32;
			} else if (nh.n_descsz == 8) {
				memcpy(&entry, desc, 8);
			} else {
				return error_set(err, "the PVH entry note has %u bytes, expected 4 or 8",
						 nh.n_descsz);
			}
			if (entry == 0 || entry >= (1ull << 32))
				return error_set(err, "the PVH entry 0x%llx is not a 32-bit physical address",
						 (unsigned long long)entry);
			k->pvh_entry = entry;
		}
		pos += namesz + descsz;
	}
	return 0;
}

int elf_parse(const uint8_t *img, size_t len, struct kernel_image *k, struct error *err)
{
	Elf64_Ehdr eh;
	if (len < sizeof(eh))
		return error_set(err, "ELF file truncated: %zu bytes, shorter than the ELF header", len);
	memcpy(&eh, img, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return error_set(err, "not a 64-bit little-endian ELF; kvmbox boots x86_64 kernels");
	if (eh.e_machine != EM_X86_64)
		return error_set(err, "ELF machine %u is not x86_64", eh.e_machine);
	if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
		return error_set(err, "ELF type %u is not an executable", eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
		return error_set(err, "ELF has no usable program headers (e_phnum %u, e_phentsize %u)",
				 eh.e_phnum, eh.e_phentsize);
	if (eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return error_set(err, "ELF program headers lie past the end of the file (truncated?)");
	k->format = KERNEL_ELF;
	k->load_start = UINT64_MAX;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, img + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE)
			continue;
		if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
			return error_set(err, "ELF segment %u (offset 0x%llx, %llu bytes) lies past the end of "
					 "the file: the kernel file is truncated", i,
					 (unsigned long long)ph.p_offset, (unsigned long long)ph.p_filesz);
		if (ph.p_type == PT_NOTE) {
			if (scan_notes(img, ph.p_offset, ph.p_filesz, k, err))
				return -1;
			continue;
		}
		if (ph.p_memsz == 0)
			continue;
		if (ph.p_filesz > ph.p_memsz)
			return error_set(err, "ELF segment %u has more file bytes than memory bytes", i);
		if (ph.p_paddr + ph.p_memsz < ph.p_paddr)
			return error_set(err, "ELF segment %u wraps around the address space", i);
		if (k->nr_segs == KERNEL_MAX_SEGMENTS)
			return error_set(err, "ELF has more than %d loadable segments", KERNEL_MAX_SEGMENTS);
		k->segs[k->nr_segs++] = (struct kernel_segment){ ph.p_paddr, ph.p_offset, ph.p_filesz,
								  ph.p_memsz };
		if (ph.p_paddr < k->load_start)
			k->load_start = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > k->load_end)
			k->load_end = ph.p_paddr + ph.p_memsz;
	}
	if (k->nr_segs == 0)
		return error_set(err, "ELF has no loadable segment");
	/* Linux's vmlinux has a virtual e_entry (0xffffffff81000000+); the boot protocol wants physical. */
	uint64_t entry = eh.e_entry;
	if (entry >= 0xffffffff80000000ull)
		entry -= 0xffffffff80000000ull;
	bool inside = false;
	for (int i = 0; i < k->nr_segs; i++)
		if (entry >= k->segs[i].paddr && entry - k->segs[i].paddr < k->segs[i].memsz)
			inside = true;
	if (!inside && !k->pvh_entry)
		return error_set(err, "ELF entry point 0x%llx is not inside any loadable segment",
				 (unsigned long long)eh.e_entry);
	k->entry64 = inside ? entry : 0;
	if (k->pvh_entry) {
		bool pvh_inside = false;
		for (int i = 0; i < k->nr_segs; i++)
			if (k->pvh_entry >= k->segs[i].paddr && k->pvh_entry - k->segs[i].paddr < k->segs[i].filesz)
				pvh_inside = true;
		if (!pvh_inside)
			return error_set(err, "the PVH entry 0x%llx is not inside any loaded segment",
					 (unsigned long long)k->pvh_entry);
	}
	return 0;
}
