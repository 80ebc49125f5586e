/* Tiny freestanding library shared by the kvmbox test guests (32- and 64-bit builds). */
#include "lib.h"

#define COM1 0x3f8
#define LSR (COM1 + 5)
#define LSR_DR 0x01
#define LSR_THRE 0x20

u32 n_pass, n_fail;

void *memcpy(void *d, const void *s, usize n)
{
	u8 *dd = d;
	const u8 *ss = s;
	while (n--)
		*dd++ = *ss++;
	return d;
}

void *memset(void *d, int c, usize n)
{
	u8 *dd = d;
	while (n--)
		*dd++ = (u8)c;
	return d;
}

int memcmp(const void *a, const void *b, usize n)
{
	const u8 *x = a, *y = b;
	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

usize strlen(const char *s)
{
	usize n = 0;
	while (s[n])
		n++;
	return n;
}

usize strnlen_bounded(const char *s, usize max)
{
	usize n = 0;
	while (n < max && s[n])
		n++;
	return n;
}

void con_putc(char c)
{
	/* Bounded wait: a UART that never drains must not hang the guest. */
	for (u32 i = 0; i < 100000 && !(inb(LSR) & LSR_THRE); i++)
		cpu_pause();
	outb(COM1, (u8)c);
}

void con_puts(const char *s)
{
	while (*s)
		con_putc(*s++);
}

int serial_getc(u32 seconds)
{
	struct rtc_bound b;
	rtc_bound_start(&b, seconds, 100000000u);
	while (!rtc_bound_over(&b)) {
		if (inb(LSR) & LSR_DR)
			return inb(COM1);
		cpu_pause();
	}
	return -1;
}

/* 64-by-10 division without libgcc (the 32-bit build has no __udivdi3). */
static u64 divmod10(u64 n, u32 *rem)
{
	if (n <= 0xffffffffULL) {
		u32 m = (u32)n;
		*rem = m % 10;
		return m / 10;
	}
	u64 q = 0;
	u32 r = 0;
	for (int i = 63; i >= 0; i--) {
		r = (r << 1) | (u32)((n >> i) & 1);
		if (r >= 10) {
			r -= 10;
			q |= 1ULL << i;
		}
	}
	*rem = r;
	return q;
}

static void put_u64(u64 v, int base, int width, char pad)
{
	char buf[24];
	int n = 0;
	do {
		u32 d;
		if (base == 16) {
			d = (u32)(v & 15);
			v >>= 4;
		} else {
			v = divmod10(v, &d);
		}
		buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
	} while (v && n < (int)sizeof(buf));
	while (width > n) {
		con_putc(pad);
		width--;
	}
	while (n)
		con_putc(buf[--n]);
}

static void vkprintf(const char *fmt, __builtin_va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			con_putc(*fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0, longs = 0;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			longs++;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = __builtin_va_arg(ap, const char *);
			con_puts(s ? s : "(null)");
			break;
		}
		case 'c':
			con_putc((char)__builtin_va_arg(ap, int));
			break;
		case 'd': {
			long long v = longs >= 2 ? __builtin_va_arg(ap, long long)
				    : longs == 1 ? __builtin_va_arg(ap, long)
						 : __builtin_va_arg(ap, int);
			if (v < 0) {
				con_putc('-');
				v = -v;
			}
			put_u64((u64)v, 10, width, pad);
			break;
		}
		case 'u':
		case 'x': {
			u64 v = longs >= 2 ? __builtin_va_arg(ap, unsigned long long)
			      : longs == 1 ? __builtin_va_arg(ap, unsigned long)
					   : __builtin_va_arg(ap, unsigned int);
			put_u64(v, *fmt == 'x' ? 16 : 10, width, pad);
			break;
		}
		case '%':
			con_putc('%');
			break;
		default:
			con_putc('?');
			break;
		}
		if (!*fmt)
			break;
	}
}

void kprintf(const char *fmt, ...)
{
	__builtin_va_list ap;
	__builtin_va_start(ap, fmt);
	vkprintf(fmt, ap);
	__builtin_va_end(ap);
}

void pass(const char *name)
{
	n_pass++;
	kprintf("PASS %s\n", name);
}

void fail(const char *name, const char *fmt, ...)
{
	__builtin_va_list ap;
	n_fail++;
	kprintf("FAIL %s: ", name);
	__builtin_va_start(ap, fmt);
	vkprintf(fmt, ap);
	__builtin_va_end(ap);
	con_putc('\n');
}

void done_and_reset(void)
{
	kprintf("DONE pass=%u fail=%u\n", n_pass, n_fail);
	outb(0x64, 0xfe); /* i8042 pulse reset line: the monitor ends the VM with exit code 0 */
	for (;;)
		__asm__ volatile("cli; hlt");
}

int has_word(const char *s, const char *word)
{
	usize wl = strlen(word);
	for (const char *p = s; *p; p++) {
		if ((p == s || p[-1] == ' ') && memcmp(p, word, wl) == 0 && (p[wl] == ' ' || p[wl] == 0))
			return 1;
	}
	return 0;
}

/* FNV-1a, 32-bit. XOR-ing the byte into the low byte of the hash is exactly `h ^= byte`; the
 * unrolled loop keeps the instruction count low for the instruction emulator. */
u32 fnv1a(const void *p, usize n)
{
	u32 h = 0x811c9dc5u;
	const u8 *s = p;
	usize blocks = n / 8;
	if (blocks) {
		__asm__ volatile("1:\n\t"
				 "xorb 0(%[s]), %b[h]\n\t imul $0x01000193, %[h], %[h]\n\t"
				 "xorb 1(%[s]), %b[h]\n\t imul $0x01000193, %[h], %[h]\n\t"
				 "xorb 2(%[s]), %b[h]\n\t imul $0x01000193, %[h], %[h]\n\t"
				 "xorb 3(%[s]), %b[h]\n\t imul $0x01000193, %[h], %[h]\n\t"
				 "xorb 4(%[s]), %b[h]\n\t imul $0x01000193, %[h], %[h]\n\t"
				 "xorb 5(%[s]), %b[h]\n\t imul $0x01000193, %[h], %[h]\n\t"
				 "xorb 6(%[s]), %b[h]\n\t imul $0x01000193, %[h], %[h]\n\t"
				 "xorb 7(%[s]), %b[h]\n\t imul $0x01000193, %[h], %[h]\n\t"
				 "add $8, %[s]\n\t"
				 "dec %[cnt]\n\t"
				 "jnz 1b"
				 : [h] "+q"(h), [s] "+r"(s), [cnt] "+r"(blocks)
				 :
				 : "cc", "memory");
	}
	for (n &= 7; n; n--) {
		h ^= *s++;
		h *= 0x01000193u;
	}
	return h;
}

int in_ram(const struct mem_ent *e, u32 n, u64 addr, u64 size)
{
	for (u32 i = 0; i < n; i++)
		if (e[i].type == E820_RAM && addr >= e[i].addr && addr + size >= addr &&
		    addr + size <= e[i].addr + e[i].size)
			return 1;
	return 0;
}

int outside_ram(const struct mem_ent *e, u32 n, u64 addr, u64 size)
{
	for (u32 i = 0; i < n; i++)
		if (e[i].type == E820_RAM && addr < e[i].addr + e[i].size && e[i].addr < addr + size)
			return 0;
	return 1;
}

#define LEGACY_LO 0x9f000ULL
#define LEGACY_HI 0x100000ULL
#define HOLE_LO 0xd0000000ULL
#define HOLE_HI 0x100000000ULL

u64 check_memmap(const char *name, const struct mem_ent *e, u32 n)
{
	u32 bad = n_fail;
	u64 ram = 0, low_end = 0;
	int have_zero = 0, have_1m = 0, have_high = 0;

	if (n == 0 || n > 128) {
		fail(name, "%u entries", n);
		return 0;
	}
	for (u32 i = 0; i < n; i++) {
		u64 end = e[i].addr + e[i].size;
		if (e[i].size == 0 || end < e[i].addr)
			fail(name, "entry %u addr=0x%llx size=0x%llx is empty or wraps", i, e[i].addr, e[i].size);
		if (i + 1 < n && end > e[i + 1].addr)
			fail(name, "entry %u [0x%llx,0x%llx) is not sorted before / overlaps entry %u at 0x%llx", i,
			     e[i].addr, end, i + 1, e[i + 1].addr);
		if (e[i].type != E820_RAM)
			continue;
		ram += e[i].size;
		if (e[i].addr == 0) {
			have_zero = 1;
			if (end != LEGACY_LO)
				fail(name, "RAM at 0 ends at 0x%llx, want 0x9f000", end);
		}
		if (e[i].addr == LEGACY_HI) {
			have_1m = 1;
			low_end = end;
		}
		if (e[i].addr < HOLE_HI && end > HOLE_LO)
			fail(name, "RAM [0x%llx,0x%llx) overlaps the MMIO hole [0xd0000000,4G)", e[i].addr, end);
		if (e[i].addr >= HOLE_HI) {
			if (e[i].addr != HOLE_HI || have_high)
				fail(name, "RAM above 4G at 0x%llx, want exactly one entry at 4G", e[i].addr);
			have_high = 1;
		}
	}
	if (!have_zero)
		fail(name, "no RAM entry at address 0");
	if (!have_1m)
		fail(name, "no RAM entry at 1 MiB");
	if (!outside_ram(e, n, LEGACY_LO, LEGACY_HI - LEGACY_LO))
		fail(name, "RAM overlaps the legacy window [0x9f000,0x100000)");
	/* The legacy window must be covered by reserved (non-RAM) entries without gaps. */
	u64 cur = LEGACY_LO;
	while (cur < LEGACY_HI) {
		u32 i;
		for (i = 0; i < n; i++)
			if (e[i].type != E820_RAM && e[i].addr <= cur && cur < e[i].addr + e[i].size)
				break;
		if (i == n) {
			fail(name, "0x%llx in the legacy window is not reserved", cur);
			break;
		}
		cur = e[i].addr + e[i].size;
	}
	if (have_high && low_end != HOLE_LO)
		fail(name, "RAM above 4G but low RAM ends at 0x%llx, want 0xd0000000", low_end);
	u64 total = ram + (LEGACY_HI - LEGACY_LO);
	if (total & (MIB - 1))
		fail(name, "RAM total 0x%llx (RAM + legacy window) is not a whole number of MiB", total);
	if (n_fail != bad)
		return 0;
	pass(name);
	return total;
}

/* CMOS RTC. */
static u8 cmos(u8 reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

void rtc_bound_start(struct rtc_bound *b, u32 seconds, u32 max_calls)
{
	b->calls = 0;
	b->max_calls = max_calls;
	b->changes = 0;
	b->seconds = seconds;
	b->last = cmos(0x00);
}

int rtc_bound_over(struct rtc_bound *b)
{
	if (++b->calls >= b->max_calls)
		return 1;
	if (b->calls & 255)
		return 0;
	u8 s = cmos(0x00);
	if (s != b->last) {
		b->last = s;
		b->changes++;
	}
	return b->changes >= b->seconds;
}

static int bcd_ok(u8 v) { return (v & 0x0f) < 10 && (v >> 4) < 10; }
static u32 bcd(u8 v) { return (v >> 4) * 10 + (v & 0x0f); }

void check_rtc(void)
{
	u32 bad = n_fail;
	u8 a = cmos(0x0a), b = cmos(0x0b);
	if (a & 0x80)
		fail("rtc", "register A = 0x%x: update in progress is set", a);
	if (b != 0x02)
		fail("rtc", "register B = 0x%x, want 0x02 (24-hour, BCD)", b);
	u8 r[7] = {cmos(0x00), cmos(0x02), cmos(0x04), cmos(0x07), cmos(0x08), cmos(0x09), cmos(0x32)};
	static const char *const names[7] = {"sec", "min", "hour", "day", "month", "year", "century"};
	for (int i = 0; i < 7; i++)
		if (!bcd_ok(r[i]))
			fail("rtc", "%s register 0x%x is not BCD", names[i], r[i]);
	u32 sec = bcd(r[0]), min = bcd(r[1]), hour = bcd(r[2]), day = bcd(r[3]), mon = bcd(r[4]);
	u32 year = bcd(r[6]) * 100 + bcd(r[5]);
	kprintf("RTC %04u-%02u-%02u %02u:%02u:%02u\n", year, mon, day, hour, min, sec);
	if (sec > 59 || min > 59 || hour > 23 || day < 1 || day > 31 || mon < 1 || mon > 12 || year < 2000)
		fail("rtc", "out-of-range date/time");
	if (n_fail == bad)
		pass("rtc");
}
