/* check64: entered through the Linux 64-bit boot protocol (ELF e_entry, or a bzImage's load address +
 * 0x200 when built with -DBZIMAGE); checks from inside the guest what docs/kvmbox-vmm.md promises. */
#include "guest.h"
#include "lib.h"

/* Recorded by head64.S. */
extern u64 entry_rsi, entry_rsp, entry_rflags, entry_rip, entry_bss_dirty, entry_bss_dirty_at;
extern u16 entry_cs, entry_ds, entry_es, entry_ss;
extern u8 entry_gdtr[16];
extern char _start[], _image_start[], _end[], tramp_start[], tramp_end[], tramp_efer[];
extern volatile u32 ap_ticket;

#define BP 0x7000ULL /* where the contract puts boot_params */
#define LAPIC 0xfee00000ULL
#define MSR_EFER 0xc0000080
#define MSR_APIC_BASE 0x1b

/* How long the BSP waits for the APs: 2-3 s of RTC time, at most AP_WAIT_MAX_POLLS polls. */
#define AP_WAIT_SECONDS 3
#define AP_WAIT_MAX_POLLS 100000000u
#define ICR_WAIT_ITERS 100000u

static u64 bp;				/* boot_params as passed in RSI */
static const char *cmdline = "";
static struct mem_ent mem[128];
static u32 n_mem;

/* Per AP (by arrival ticket): what it saw. */
static volatile u32 ap_id_leaf1[MAX_APS], ap_id_leafb[MAX_APS], ap_id_lapic[MAX_APS];
static volatile u32 ap_arrived;

static u32 mp_ids[256];
static u32 mp_ncpu;

static void check_entry_state(void)
{
	u32 bad = n_fail;
	u64 efer = rdmsr(MSR_EFER);
	u64 cr0 = read_cr0(), cr3 = read_cr3(), cr4 = read_cr4();
	u64 gdt_base = *(u64 *)(entry_gdtr + 2);

	if ((efer & 0x500) != 0x500)
		fail("entry-state", "EFER=0x%llx: LME|LMA not set", efer);
	if (!(cr0 & 0x80000000) || !(cr0 & 1))
		fail("entry-state", "CR0=0x%llx: PG/PE not set", cr0);
	if (cr0 != 0x80050033)
		fail("entry-state", "CR0=0x%llx, want 0x80050033", cr0);
	if (!(cr4 & 0x20))
		fail("entry-state", "CR4=0x%llx: PAE not set", cr4);
	if ((cr3 & ~0xfffULL) != 0x9000)
		fail("entry-state", "CR3=0x%llx, want the PML4 at 0x9000", cr3);
	if (entry_rsi != BP)
		fail("entry-state", "RSI=0x%llx, want 0x7000", entry_rsi);
	if (entry_rsp != 0x8ff0)
		fail("entry-state", "RSP=0x%llx, want 0x8ff0", entry_rsp);
	if (entry_rflags & 0x200)
		fail("entry-state", "RFLAGS=0x%llx: IF set", entry_rflags);
	if (entry_rflags != 0x2)
		fail("entry-state", "RFLAGS=0x%llx, want 0x2", entry_rflags);
	if (entry_cs != 0x10)
		fail("entry-state", "CS=0x%x, want 0x10", entry_cs);
	if (entry_ds != 0x18 || entry_es != 0x18 || entry_ss != 0x18)
		fail("entry-state", "DS/ES/SS=0x%x/0x%x/0x%x, want 0x18", entry_ds, entry_es, entry_ss);
	if (gdt_base != 0x500)
		fail("entry-state", "GDT base 0x%llx, want 0x500", gdt_base);
	if (entry_rip != (u64)(uptr)_start)
		fail("entry-state", "entered at 0x%llx but linked at 0x%llx", entry_rip, (u64)(uptr)_start);
	if (n_fail == bad)
		pass("entry-state");

	if (entry_bss_dirty)
		fail("bss-zero", ".bss not zeroed by the loader: nonzero qword at 0x%llx", entry_bss_dirty_at);
	else
		pass("bss-zero");
}

static void check_boot_params(void)
{
	u32 bad = n_fail;
	bp = entry_rsi;
	if (bp != BP) {
		fail("boot-params", "RSI=0x%llx; using 0x7000", bp);
		bp = BP;
	}
	if (rd16(bp + 0x1fe) != 0xaa55)
		fail("boot-params", "boot_flag=0x%x", rd16(bp + 0x1fe));
	if (rd32(bp + 0x202) != 0x53726448)
		fail("boot-params", "header=0x%x, want \"HdrS\"", rd32(bp + 0x202));
	if (rd16(bp + 0x206) < 0x20f)
		fail("boot-params", "version=0x%x < 0x20f", rd16(bp + 0x206));
	if (rd8(bp + 0x210) != 0xff)
		fail("boot-params", "type_of_loader=0x%x, want 0xff", rd8(bp + 0x210));
	if (!(rd8(bp + 0x211) & 1))
		fail("boot-params", "loadflags=0x%x: LOADED_HIGH not set", rd8(bp + 0x211));
	u64 cl = rd32(bp + 0x228) | ((u64)rd32(bp + 0xc8) << 32);
	if (cl != 0x20000)
		fail("boot-params", "cmd_line_ptr=0x%llx, want 0x20000", cl);
	u32 ne = rd8(bp + 0x1e8);
	if (ne == 0 || ne > 128)
		fail("boot-params", "e820_entries=%u", ne);
	if (n_fail == bad)
		pass("boot-params");
}

#ifdef BZIMAGE
static void check_bzimage_header(void)
{
	u32 bad = n_fail;
	const char *n = "bzimage-header";
	if (rd8(bp + 0x1f1) != BZ_SETUP_SECTS)
		fail(n, "setup_sects=%u, the image has %u", rd8(bp + 0x1f1), BZ_SETUP_SECTS);
	if (rd16(bp + 0x206) != 0x020f)
		fail(n, "version=0x%x, the image has 0x020f", rd16(bp + 0x206));
	if (!(rd16(bp + 0x236) & 1))
		fail(n, "xloadflags=0x%x: XLF_KERNEL_64 lost", rd16(bp + 0x236));
	if (rd32(bp + 0x214) != 0x100000)
		fail(n, "code32_start=0x%x, want 0x100000", rd32(bp + 0x214));
	if (rd32(bp + 0x230) != 0x200000)
		fail(n, "kernel_alignment=0x%x, the image has 0x200000", rd32(bp + 0x230));
	if (rd32(bp + 0x238) != 2047)
		fail(n, "cmdline_size=%u, the image has 2047", rd32(bp + 0x238));
	if (rd64(bp + 0x258) != 0x100000)
		fail(n, "pref_address=0x%llx, the image has 0x100000", rd64(bp + 0x258));
	u64 need = (u64)(uptr)_end - 0x100000;
	if (rd32(bp + 0x260) < need)
		fail(n, "init_size=0x%x < image+bss 0x%llx", rd32(bp + 0x260), need);
	if (rd8(bp + 0x1ef) != 0)
		fail(n, "sentinel=0x%x: the loader copied more than the setup header", rd8(bp + 0x1ef));
	if (n_fail == bad)
		pass(n);
}
#endif

static void check_cmdline(void)
{
	u64 cl = rd32(bp + 0x228) | ((u64)rd32(bp + 0xc8) << 32);
	if (cl == 0 || cl >= 0x100000000ULL) {
		fail("cmdline", "cmd_line_ptr=0x%llx", cl);
		kprintf("CMDLINE \n");
		return;
	}
	cmdline = (const char *)(uptr)cl;
	usize len = strnlen_bounded(cmdline, 4096);
	if (len > 2047) {
		fail("cmdline", "not terminated within 2047 bytes");
		cmdline = "";
	} else {
		pass("cmdline");
	}
	kprintf("CMDLINE %s\n", cmdline);
}

static void check_e820(void)
{
	n_mem = rd8(bp + 0x1e8);
	if (n_mem > 128)
		n_mem = 128;
	for (u32 i = 0; i < n_mem; i++) {
		u64 a = bp + 0x2d0 + 20 * i;
		mem[i].addr = rd64(a);
		mem[i].size = rd64(a + 8);
		mem[i].type = rd32(a + 16);
	}
	u64 total = check_memmap("e820", mem, n_mem);
	kprintf("RAM %llu\n", total / MIB);
}

static void check_initrd(void)
{
	u64 img = rd32(bp + 0x218) | ((u64)rd32(bp + 0xc0) << 32);
	u64 size = rd32(bp + 0x21c) | ((u64)rd32(bp + 0xc4) << 32);
	u32 bad = n_fail;
	if (size == 0)
		return;
	if (img & 0xfff)
		fail("initrd", "ramdisk_image=0x%llx is not page aligned", img);
	if (!in_ram(mem, n_mem, img, size))
		fail("initrd", "[0x%llx,+0x%llx) is not inside one RAM entry", img, size);
	if (img + size > 0x100000000ULL)
		fail("initrd", "[0x%llx,+0x%llx) is above 4 GiB", img, size);
	if (img < (u64)(uptr)_end && (u64)(uptr)_image_start < img + size)
		fail("initrd", "[0x%llx,+0x%llx) overlaps the kernel image", img, size);
	if (n_fail != bad) {
		kprintf("INITRD size=%llu fnv=bad\n", size);
		return;
	}
	kprintf("INITRD size=%llu fnv=%08x\n", size, fnv1a((const void *)(uptr)img, (usize)size));
	pass("initrd");
}

static u8 sum8(u64 a, u32 n)
{
	u8 s = 0;
	for (u32 i = 0; i < n; i++)
		s += rd8(a + i);
	return s;
}

static u64 find_mpfp(u64 lo, u64 hi)
{
	for (u64 a = lo; a < hi; a += 16)
		if (rd32(a) == 0x5f504d5f) /* "_MP_" */
			return a;
	return 0;
}

static void check_mptable(void)
{
	const char *n = "mptable";
	u32 bad = n_fail;
	u32 ioapic_addr = 0, ioapic_id = 0, have_ioapic = 0, isa_bus = 0xffff, n_ioint = 0;
	int extint = 0, nmi = 0, bsp_seen = 0;
	u32 my_id = rd32(LAPIC + 0x20) >> 24;

	mp_ncpu = 0;
	u64 fp = find_mpfp(0x9fc00, 0xa0000);
	if (!fp)
		fp = find_mpfp(0xf0000, 0x100000);
	if (!fp) {
		fail(n, "no \"_MP_\" floating pointer in [0x9fc00,0xa0000) or the BIOS area");
		kprintf("MPTABLE cpus=0 ioapic=0x0\n");
		return;
	}
	if (fp != 0x9fc00)
		fail(n, "floating pointer at 0x%llx, want 0x9fc00", fp);
	if (rd8(fp + 8) != 1 || sum8(fp, 16) != 0)
		fail(n, "floating pointer length %u or checksum bad", rd8(fp + 8));
	if (rd8(fp + 9) != 1 && rd8(fp + 9) != 4)
		fail(n, "floating pointer spec_rev %u", rd8(fp + 9));
	if (rd8(fp + 11) != 0)
		fail(n, "feature byte 1 = %u: default configuration instead of a table", rd8(fp + 11));
	if (!outside_ram(mem, n_mem, fp, 16))
		fail(n, "floating pointer at 0x%llx lies in e820 RAM", fp);
	u64 ct = rd32(fp + 4);
	if (ct == 0 || rd32(ct) != 0x504d4350) { /* "PCMP" */
		fail(n, "no \"PCMP\" configuration table at 0x%llx", ct);
		kprintf("MPTABLE cpus=0 ioapic=0x0\n");
		return;
	}
	u32 len = rd16(ct + 4), count = rd16(ct + 34);
	if (len < 44 || len > 0x10000 || sum8(ct, len) != 0)
		fail(n, "configuration table length %u or checksum bad", len);
	if (!outside_ram(mem, n_mem, ct, len))
		fail(n, "configuration table at 0x%llx lies in e820 RAM", ct);
	if (rd32(ct + 36) != LAPIC)
		fail(n, "local APIC address 0x%x", rd32(ct + 36));

	u64 p = ct + 44, end = ct + len;
	for (u32 i = 0; i < count && p < end; i++) {
		u8 type = rd8(p);
		if (type == 0) {
			u32 id = rd8(p + 1), flags = rd8(p + 3);
			if (!(flags & 1))
				fail(n, "processor %u not enabled", id);
			if (flags & 2) {
				if (bsp_seen++ || id != my_id)
					fail(n, "BSP flag on APIC ID %u (BSP is %u)", id, my_id);
			}
			if (mp_ncpu < 256)
				mp_ids[mp_ncpu] = id;
			mp_ncpu++;
			p += 20;
			continue;
		}
		if (type == 1) {
			if (memcmp((const void *)(uptr)(p + 2), "ISA   ", 6) == 0)
				isa_bus = rd8(p + 1);
		} else if (type == 2) {
			if (rd8(p + 3) & 1) {
				have_ioapic++;
				ioapic_id = rd8(p + 1);
				ioapic_addr = rd32(p + 4);
			}
		} else if (type == 3) {
			if (rd8(p + 4) == isa_bus && rd8(p + 6) == ioapic_id)
				n_ioint++;
		} else if (type == 4) {
			if (rd8(p + 1) == 3)
				extint = 1;
			if (rd8(p + 1) == 1)
				nmi = 1;
		} else {
			fail(n, "unknown entry type %u at 0x%llx", type, p);
			break;
		}
		p += 8;
	}
	if (p != end)
		fail(n, "entries end at 0x%llx, table ends at 0x%llx", p, end);
	if (!bsp_seen)
		fail(n, "no processor has the BSP flag");
	if (mp_ncpu == 0 || mp_ncpu > 255)
		fail(n, "%u processors", mp_ncpu);
	for (u32 i = 0; i < mp_ncpu && i < 256; i++)
		if (mp_ids[i] != i)
			fail(n, "processor entry %u has APIC ID %u, want %u", i, mp_ids[i], i);
	if (isa_bus == 0xffff)
		fail(n, "no ISA bus entry");
	if (have_ioapic != 1 || ioapic_addr != 0xfec00000)
		fail(n, "%u enabled IOAPICs, address 0x%x (want one at 0xfec00000)", have_ioapic, ioapic_addr);
	if (n_ioint == 0)
		fail(n, "no ISA IRQ routing entries to the IOAPIC");
	if (!extint || !nmi)
		fail(n, "local interrupt entries: ExtINT %d NMI %d", extint, nmi);
	kprintf("MPTABLE cpus=%u ioapic=0x%x\n", mp_ncpu, ioapic_addr);
	if (n_fail == bad)
		pass(n);
}

static void check_cpuid(void)
{
	u32 a, b, c, d, max;
	u32 bad = n_fail;
	cpuid(0, 0, &max, &b, &c, &d);
	cpuid(1, 0, &a, &b, &c, &d);
	if (!(c & (1u << 31)))
		fail("cpuid", "leaf 1 ECX=0x%x: hypervisor bit clear", c);
	if (b >> 24 != 0)
		fail("cpuid", "BSP leaf 1 APIC ID %u, want 0", b >> 24);
	if (max < 0xb) {
		fail("cpuid", "max basic leaf 0x%x < 0xb", max);
	} else {
		cpuid(0xb, 0, &a, &b, &c, &d);
		if (d != 0)
			fail("cpuid", "BSP leaf 0xb x2APIC ID %u, want 0", d);
	}
	if (n_fail == bad)
		pass("cpuid");
}

/* Runs on each AP (ticket = arrival order) on its own stack, then the AP parks in cli;hlt. */
void ap_main(u32 ticket);
void ap_main(u32 ticket)
{
	u32 a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	ap_id_leaf1[ticket] = b >> 24;
	cpuid(0xb, 0, &a, &b, &c, &d);
	ap_id_leafb[ticket] = d;
	ap_id_lapic[ticket] = rd32(LAPIC + 0x20) >> 24;
	__atomic_fetch_add(&ap_arrived, 1, __ATOMIC_SEQ_CST);
}

static int icr_idle(void)
{
	for (u32 i = 0; i < ICR_WAIT_ITERS; i++) {
		if (!(rd32(LAPIC + 0x300) & (1u << 12)))
			return 1;
		cpu_pause();
	}
	return 0;
}

static int send_ipi(u32 dest, u32 low)
{
	if (!icr_idle())
		return 0;
	wr32(LAPIC + 0x310, dest << 24);
	wr32(LAPIC + 0x300, low);
	return icr_idle();
}

static void sort_u32(u32 *v, u32 n)
{
	for (u32 i = 1; i < n; i++)
		for (u32 j = i; j && v[j - 1] > v[j]; j--) {
			u32 t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
}

static void check_smp(void)
{
	const char *n = "smp";
	u32 bad = n_fail;
	static u32 ids[257];
	u64 apic_base = rdmsr(MSR_APIC_BASE);
	u32 my_id = rd32(LAPIC + 0x20) >> 24;
	u32 want = 0;

	if ((apic_base & ~0xfffULL) != LAPIC || !(apic_base & (1 << 11)) || !(apic_base & (1 << 8)) ||
	    (apic_base & (1 << 10)))
		fail(n, "IA32_APIC_BASE=0x%llx: want xAPIC enabled at 0xfee00000 with the BSP flag", apic_base);
	if (my_id != 0)
		fail(n, "BSP local APIC ID %u, want 0", my_id);

	/* Trampoline at TRAMP_BASE, EFER value for the APs (LME plus the BSP's NXE). */
	memcpy((void *)TRAMP_BASE, tramp_start, (usize)(tramp_end - tramp_start));
	wr32(TRAMP_BASE + (u64)(tramp_efer - tramp_start), (u32)(rdmsr(MSR_EFER) & 0x900) | 0x100);
	wr32(LAPIC + 0xf0, 0x1ff); /* software-enable the local APIC, spurious vector 0xff */

	for (u32 i = 0; i < mp_ncpu && i < 256; i++) {
		if (mp_ids[i] == my_id)
			continue;
		want++;
		/* INIT (level, assert), then SIPI twice (the second is ignored once the AP runs). */
		if (!send_ipi(mp_ids[i], 0xc500) || !send_ipi(mp_ids[i], 0x4600 | (TRAMP_BASE >> 12)) ||
		    !send_ipi(mp_ids[i], 0x4600 | (TRAMP_BASE >> 12)))
			fail(n, "ICR stays busy sending to APIC ID %u", mp_ids[i]);
	}
	/* Bounded wait: poll the counter; the bound is the RTC's seconds (no timer, no interrupt) or an
	 * iteration cap, so it holds both in the instruction emulator and natively. */
	struct rtc_bound b;
	rtc_bound_start(&b, AP_WAIT_SECONDS, AP_WAIT_MAX_POLLS);
	while (ap_arrived < want && !rtc_bound_over(&b))
		cpu_pause();
	barrier();
	u32 got = ap_arrived;
	if (got > MAX_APS)
		got = MAX_APS;
	if (got != want)
		fail(n, "%u of %u APs arrived within %u polls, %u RTC seconds (tickets taken: %u)", got, want,
		     b.calls, b.changes, ap_ticket);

	ids[0] = my_id;
	for (u32 i = 0; i < got; i++) {
		ids[i + 1] = ap_id_leaf1[i];
		if (ap_id_leaf1[i] != ap_id_leafb[i] || ap_id_leaf1[i] != ap_id_lapic[i])
			fail(n, "AP %u: CPUID leaf 1 APIC ID %u, leaf 0xb %u, local APIC %u disagree", i,
			     ap_id_leaf1[i], ap_id_leafb[i], ap_id_lapic[i]);
	}
	sort_u32(ids, got + 1);
	for (u32 i = 0; i <= got; i++) {
		if (i && ids[i] == ids[i - 1])
			fail(n, "APIC ID %u reported twice", ids[i]);
		int listed = 0;
		for (u32 j = 0; j < mp_ncpu && j < 256; j++)
			listed |= mp_ids[j] == ids[i];
		if (!listed)
			fail(n, "APIC ID %u is not in the MP table", ids[i]);
	}
	kprintf("CPUS online=%u apicids=", got + 1);
	for (u32 i = 0; i <= got; i++)
		kprintf(i ? ",%u" : "%u", ids[i]);
	kprintf("\n");
	if (n_fail == bad)
		pass(n);
}

static void serial_echo(void)
{
	char line[256];
	u32 len = 0;
	int c = 0;
	kprintf("READY\n");
	while (len < sizeof(line) - 1) {
		c = serial_getc(5);
		if (c < 0 || c == '\n' || c == '\r')
			break;
		line[len++] = (char)c;
	}
	line[len] = 0;
	kprintf("ECHO %s\n", line);
	if (c < 0)
		fail("serial-echo", "no end of line on the UART (got %u bytes)", len);
	else
		pass("serial-echo");
}

void main64(void);
void main64(void)
{
#ifdef BZIMAGE
	kprintf("GUEST check.bzImage\n");
#else
	kprintf("GUEST check64.elf\n");
#endif
	check_entry_state();
	check_boot_params();
#ifdef BZIMAGE
	check_bzimage_header();
#endif
	check_cmdline();
	check_e820();
	check_initrd();
	check_mptable();
	check_cpuid();
	check_smp();
	check_rtc();
	wr8(0xd0000000, 123); /* boot-time marker: the monitor logs "boot marker" */
	if (has_word(cmdline, "serial-echo"))
		serial_echo();
	done_and_reset();
}
