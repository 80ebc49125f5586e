/* check-pvh: entered through the PVH boot ABI (Xen XEN_ELFNOTE_PHYS32_ENTRY); checks the entry state
 * and struct hvm_start_info (Xen's arch/x86/hvm/start_info.h) against docs/kvmbox-vmm.md. */
#include "lib.h"

extern u32 entry_ebx, entry_esp, entry_eflags, entry_bss_dirty, entry_bss_dirty_at;
extern u16 entry_cs, entry_ds, entry_es, entry_ss;
extern char _image_start[], _end[];

#define HVM_START_MAGIC 0x336ec578u

/* struct hvm_start_info offsets. */
#define SI_MAGIC 0
#define SI_VERSION 4
#define SI_FLAGS 8
#define SI_NR_MODULES 12
#define SI_MODLIST 16
#define SI_CMDLINE 24
#define SI_RSDP 32
#define SI_MEMMAP 40
#define SI_MEMMAP_ENTRIES 48

static struct mem_ent mem[128];
static u32 n_mem;

static void check_entry_state(void)
{
	u32 bad = n_fail;
	u32 cr0 = (u32)read_cr0();
	if (!(cr0 & 1) || (cr0 & 0x80000000))
		fail("entry-state", "CR0=0x%x: want PE=1 PG=0", cr0);
	if (entry_cs != 0x08)
		fail("entry-state", "CS=0x%x, want 0x08", entry_cs);
	if (entry_ds != 0x18 || entry_es != 0x18 || entry_ss != 0x18)
		fail("entry-state", "DS/ES/SS=0x%x/0x%x/0x%x, want 0x18", entry_ds, entry_es, entry_ss);
	if (entry_eflags & 0x200)
		fail("entry-state", "EFLAGS=0x%x: IF set", entry_eflags);
	if (n_fail == bad)
		pass("entry-state");
	if (entry_bss_dirty)
		fail("bss-zero", ".bss not zeroed by the loader: nonzero dword at 0x%x", entry_bss_dirty_at);
	else
		pass("bss-zero");
}

static u64 si64(u32 si, u32 off) { return rd64(si + off); }

void pvh_main(void);
void pvh_main(void)
{
	u32 si = entry_ebx;
	u32 bad;
	kprintf("GUEST check-pvh.elf\n");
	check_entry_state();

	bad = n_fail;
	if (si == 0 || si >= 0x100000) {
		fail("start-info", "EBX=0x%x: not a low-memory address", si);
		done_and_reset();
	}
	if (rd32(si + SI_MAGIC) != HVM_START_MAGIC) {
		fail("start-info", "magic=0x%x, want 0x336ec578", rd32(si + SI_MAGIC));
		done_and_reset();
	}
	u32 version = rd32(si + SI_VERSION);
	if (version < 1)
		fail("start-info", "version=%u, want >= 1 (memory map)", version);
	u64 memmap = si64(si, SI_MEMMAP), cl = si64(si, SI_CMDLINE), modlist = si64(si, SI_MODLIST);
	n_mem = rd32(si + SI_MEMMAP_ENTRIES);
	if (n_mem == 0 || n_mem > 128 || memmap == 0 || memmap >= 0x100000000ULL)
		fail("start-info", "memmap_paddr=0x%llx memmap_entries=%u", memmap, n_mem);
	if (cl >= 0x100000000ULL)
		fail("start-info", "cmdline_paddr=0x%llx above 4 GiB", cl);
	if (rd32(si + SI_MEMMAP_ENTRIES + 4) != 0)
		fail("start-info", "reserved field=0x%x, want 0", rd32(si + SI_MEMMAP_ENTRIES + 4));
	u32 nmod = rd32(si + SI_NR_MODULES);
	if (nmod && (modlist == 0 || modlist >= 0x100000000ULL))
		fail("start-info", "nr_modules=%u modlist_paddr=0x%llx", nmod, modlist);
	if (n_fail != bad) {
		n_mem = 0;
		done_and_reset();
	}
	pass("start-info");
	kprintf("STARTINFO addr=0x%x version=%u flags=0x%x modules=%u rsdp=0x%llx\n", si, version,
		rd32(si + SI_FLAGS), nmod, si64(si, SI_RSDP));

	/* Command line (0 means none: print it empty). */
	const char *cmdline = cl ? (const char *)(uptr)cl : "";
	if (strnlen_bounded(cmdline, 4096) > 2047) {
		fail("cmdline", "not terminated within 2047 bytes");
		cmdline = "";
	} else {
		pass("cmdline");
	}
	kprintf("CMDLINE %s\n", cmdline);

	/* Memory map: struct hvm_memmap_table_entry {u64 addr, size; u32 type, reserved;}. */
	for (u32 i = 0; i < n_mem; i++) {
		u32 a = (u32)memmap + 24 * i;
		mem[i].addr = rd64(a);
		mem[i].size = rd64(a + 8);
		mem[i].type = rd32(a + 16);
	}
	u64 total = check_memmap("memmap", mem, n_mem);
	kprintf("RAM %u\n", (u32)(total >> 20));

	/* Module 0 is the initrd: struct hvm_modlist_entry {u64 paddr, size, cmdline_paddr, reserved;}. */
	if (nmod >= 1) {
		u64 pa = rd64((u32)modlist), size = rd64((u32)modlist + 8);
		bad = n_fail;
		if (pa & 0xfff)
			fail("initrd", "module 0 at 0x%llx is not page aligned", pa);
		if (size == 0 || size >= 0x100000000ULL || !in_ram(mem, n_mem, pa, size))
			fail("initrd", "module 0 [0x%llx,+0x%llx) is not inside one RAM entry", pa, size);
		if (pa < (u64)(uptr)_end && (u64)(uptr)_image_start < pa + size)
			fail("initrd", "module 0 [0x%llx,+0x%llx) overlaps the kernel image", pa, size);
		if (n_fail != bad) {
			kprintf("INITRD size=%llu fnv=bad\n", size);
		} else {
			kprintf("INITRD size=%llu fnv=%08x\n", size,
				fnv1a((const void *)(uptr)pa, (usize)size));
			pass("initrd");
		}
	}
	wr8(0xd0000000, 123); /* boot-time marker */
	done_and_reset();
}
