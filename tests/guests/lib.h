/* Tiny freestanding library shared by the kvmbox test guests (32- and 64-bit builds). */
#ifndef GUEST_LIB_H
#define GUEST_LIB_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long uptr;
typedef unsigned long usize;

#define NULL ((void *)0)
#define MIB (1024ULL * 1024ULL)

/* Port I/O. */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void cpu_pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}
static inline uptr read_cr0(void)
{
	uptr v;
	__asm__ volatile("mov %%cr0, %0" : "=r"(v));
	return v;
}
static inline uptr read_cr3(void)
{
	uptr v;
	__asm__ volatile("mov %%cr3, %0" : "=r"(v));
	return v;
}
static inline uptr read_cr4(void)
{
	uptr v;
	__asm__ volatile("mov %%cr4, %0" : "=r"(v));
	return v;
}

static inline u8 rd8(u64 a) { return *(volatile u8 *)(uptr)a; }
static inline u16 rd16(u64 a) { return *(volatile u16 *)(uptr)a; }
static inline u32 rd32(u64 a) { return *(volatile u32 *)(uptr)a; }
static inline u64 rd64(u64 a) { return *(volatile u64 *)(uptr)a; }
static inline void wr8(u64 a, u8 v) { *(volatile u8 *)(uptr)a = v; }
static inline void wr32(u64 a, u32 v) { *(volatile u32 *)(uptr)a = v; }

/* Compiler-required routines (gcc may emit calls to these even when freestanding). */
void *memcpy(void *d, const void *s, usize n);
void *memset(void *d, int c, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);

/* Serial console (COM1 8250 at 0x3f8). */
void con_putc(char c);
void con_puts(const char *s);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int serial_getc(u32 seconds); /* -1 when nothing arrived within about `seconds` seconds */

/* PASS/FAIL bookkeeping: FAIL lines count individually, DONE prints the totals. */
extern u32 n_pass, n_fail;
void pass(const char *name);
void fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
__attribute__((noreturn)) void done_and_reset(void);

/* Strings and data. */
int has_word(const char *s, const char *word);
usize strnlen_bounded(const char *s, usize max);
u32 fnv1a(const void *p, usize n);

/* Memory map checks shared by the zero-page e820 and the PVH memmap. */
struct mem_ent {
	u64 addr, size;
	u32 type;
};
#define E820_RAM 1
/* Checks the map (sorted, disjoint, the monitor's fixed layout) under check name `name`; returns the
 * RAM total in bytes counting the legacy window [0x9f000, 0x100000) as RAM (0 when the map is bad). */
u64 check_memmap(const char *name, const struct mem_ent *e, u32 n);
/* 1 when [addr, addr+size) lies inside one RAM entry. */
int in_ram(const struct mem_ent *e, u32 n, u64 addr, u64 size);
/* 1 when [addr, addr+size) overlaps no RAM entry. */
int outside_ram(const struct mem_ent *e, u32 n, u64 addr, u64 size);

/* A wall-clock bound for polling loops without timers or interrupts: the CMOS RTC seconds register is
 * read every 256 calls; rtc_bound_over() turns true once it has changed `seconds` times (that is,
 * after seconds-1 to seconds of host time), or after max_calls calls whatever the RTC does. The same
 * bound then holds for a guest in KVM's instruction emulator and for one running natively. */
struct rtc_bound {
	u32 calls, max_calls, changes, seconds;
	u8 last;
};
void rtc_bound_start(struct rtc_bound *b, u32 seconds, u32 max_calls);
int rtc_bound_over(struct rtc_bound *b);

/* CMOS RTC: prints `RTC YYYY-MM-DD HH:MM:SS` and checks the register contract. */
void check_rtc(void);

#endif
