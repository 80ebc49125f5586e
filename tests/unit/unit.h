/*
 * Helpers shared by the unit tests: kernel images built in memory (ELF64 with a PVH note, bzImage
 * headers), a two-region guest memory on a calloc'ed buffer, and little-endian readers.
 */
#ifndef KVMBOX_TESTS_UNIT_H
#define KVMBOX_TESTS_UNIT_H

#include <criterion/criterion.h>
#include <elf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boot/kernel_image.h"
#include "vmm/guest_mem.h"

/*
 * Tests for bugs found in the monitor and not fixed yet: skipped unless built with
 * -DKVMBOX_UNIT_KNOWN_BUGS=1 (make check-unit UNIT_KNOWN_BUGS=1).
 */
#ifndef KVMBOX_UNIT_KNOWN_BUGS
#define KVMBOX_UNIT_KNOWN_BUGS 0
#endif
#define KNOWN_BUG .disabled = !KVMBOX_UNIT_KNOWN_BUGS

/*
 * Leak check after every test of a suite (UNIT_SUITE(name)). LeakSanitizer's own check at process exit
 * reports leaks without failing the test, since Criterion has already recorded the result by then;
 * this one aborts in the teardown, which makes the run exit non-zero.
 */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
static inline void unit_leak_check(void)
{
	if (__lsan_do_recoverable_leak_check())
		abort();
}
#else
static inline void unit_leak_check(void) {}
#endif
#define UNIT_SUITE(name) TestSuite(name, .fini = unit_leak_check)

#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)

static inline uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void put8(uint8_t *p, uint8_t v) { *p = v; }
static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ---- Guest memory: LOW_SIZE bytes at 0, then HIGH_SIZE bytes at HIGH_BASE (above a hole). ---- */
#define TEST_LOW_SIZE (8 * MiB)
#define TEST_HIGH_SIZE (1 * MiB)
#define TEST_HIGH_BASE (4 * GiB)
#define TEST_FILL 0xcc

struct test_mem {
	struct guest_mem mem;
	uint8_t *buf;
	uint64_t size;
};

/* Memory of low+high bytes, every byte TEST_FILL so that writes are visible. */
static inline void test_mem_init(struct test_mem *t, uint64_t low, uint64_t high, uint64_t high_base)
{
	t->size = low + high;
	t->buf = malloc(t->size);
	memset(t->buf, TEST_FILL, t->size);
	guest_mem_init_from(&t->mem, t->buf, t->size, low, high_base);
}

static inline void test_mem_std(struct test_mem *t)
{
	test_mem_init(t, TEST_LOW_SIZE, TEST_HIGH_SIZE, TEST_HIGH_BASE);
}

static inline void test_mem_fini(struct test_mem *t)
{
	guest_mem_free(&t->mem);
	free(t->buf);
	t->buf = NULL;
}

/* ---- ELF64 images: a fixed layout that tests then corrupt field by field. ----
 *   0x000 Elf64_Ehdr, 0x040 program headers (up to ELF_MAX_PH), 0xc00 notes, 0x1000 segment data. */
#define ELF_MAX_PH 20
#define ELF_NOTE_OFF 0xc00
#define ELF_DATA_OFF 0x1000
#define ELF_DATA_LEN 0x100
#define ELF_IMG_CAP 0x2000
#define ELF_LOAD_PADDR 0x100000ull
#define ELF_LOAD_MEMSZ 0x2000ull
#define ELF_ENTRY (ELF_LOAD_PADDR + 0x10)
#define ELF_PVH_ENTRY (ELF_LOAD_PADDR + 0x40)

struct elf_img {
	union {
		uint8_t b[ELF_IMG_CAP];
		Elf64_Ehdr eh;
	};
	size_t len;
	size_t note_len;
};

static inline Elf64_Phdr *elf_ph(struct elf_img *e, unsigned i)
{
	return (Elf64_Phdr *)(e->b + 0x40 + i * sizeof(Elf64_Phdr));
}

static inline Elf64_Phdr *elf_add_ph(struct elf_img *e, uint32_t type)
{
	Elf64_Phdr *ph = elf_ph(e, e->eh.e_phnum++);
	memset(ph, 0, sizeof(*ph));
	ph->p_type = type;
	return ph;
}

/* Appends one note to the note area; the caller then sets a PT_NOTE over it (elf_note_ph). */
static inline void elf_add_note(struct elf_img *e, const char *name, uint32_t type, const void *desc,
				uint32_t descsz)
{
	uint8_t *p = e->b + ELF_NOTE_OFF + e->note_len;
	uint32_t namesz = (uint32_t)strlen(name) + 1;
	Elf64_Nhdr nh = { .n_namesz = namesz, .n_descsz = descsz, .n_type = type };
	memcpy(p, &nh, sizeof(nh));
	p += sizeof(nh);
	memset(p, 0, (namesz + 3) & ~3u);
	memcpy(p, name, namesz);
	p += (namesz + 3) & ~3u;
	memset(p, 0, (descsz + 3) & ~3u);
	memcpy(p, desc, descsz);
	e->note_len += sizeof(nh) + ((namesz + 3) & ~3u) + ((descsz + 3) & ~3u);
}

static inline Elf64_Phdr *elf_note_ph(struct elf_img *e)
{
	Elf64_Phdr *ph = elf_add_ph(e, PT_NOTE);
	ph->p_offset = ELF_NOTE_OFF;
	ph->p_filesz = e->note_len;
	ph->p_align = 4;
	return ph;
}

/* A valid freestanding kernel: one PT_LOAD of 0x100 file bytes / 0x2000 memory bytes at 1 MiB. */
static inline void elf_init_bare(struct elf_img *e)
{
	memset(e, 0, sizeof(*e));
	Elf64_Ehdr *eh = &e->eh;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = ELF_ENTRY;
	eh->e_phoff = 0x40;
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 0;
	Elf64_Phdr *ph = elf_add_ph(e, PT_LOAD);
	ph->p_flags = PF_R | PF_X;
	ph->p_offset = ELF_DATA_OFF;
	ph->p_vaddr = ph->p_paddr = ELF_LOAD_PADDR;
	ph->p_filesz = ELF_DATA_LEN;
	ph->p_memsz = ELF_LOAD_MEMSZ;
	ph->p_align = 0x1000;
	for (unsigned i = 0; i < ELF_DATA_LEN; i++)
		e->b[ELF_DATA_OFF + i] = (uint8_t)(i ^ 0x5a);
	e->len = ELF_DATA_OFF + ELF_DATA_LEN;
}

/* The same with a PT_NOTE holding Xen's PHYS32_ENTRY note (type 18) of descsz 4 or 8 bytes. */
static inline void elf_init_pvh(struct elf_img *e, uint32_t descsz, uint64_t pvh_entry)
{
	uint8_t desc[16] = { 0 };
	memcpy(desc, &pvh_entry, 8);
	elf_init_bare(e);
	elf_add_note(e, "Xen", 18, desc, descsz <= sizeof(desc) ? descsz : sizeof(desc));
	elf_note_ph(e);
}

/* A copy of the image on the heap, exactly len bytes long, so ASan sees any read past the end. */
static inline uint8_t *heap_copy(const void *p, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);
	memcpy(c, p, len);
	return c;
}

/* ---- bzImage headers (Documentation/arch/x86/boot.rst). ---- */
#define BZ_CAP (64 * 1024)
#define BZ_PAYLOAD 0x1000
#define BZ_PREF 0x1000000ull
#define BZ_INIT_SIZE 0x400000u
#define BZ_JUMP_OFF 0x6a /* header ends at 0x202 + 0x6a = 0x26c (protocol 2.15) */

struct bz_img {
	uint8_t b[BZ_CAP];
	size_t len;
};

/* setup_sects as stored (0 means 4), then BZ_PAYLOAD bytes of protected-mode kernel. */
static inline void bz_init(struct bz_img *z, uint8_t setup_sects)
{
	memset(z, 0, sizeof(*z));
	unsigned real = setup_sects ? setup_sects : 4;
	size_t pm = ((size_t)real + 1) * 512;
	put8(z->b + 0x1f1, setup_sects);
	put16(z->b + 0x1fe, 0xaa55);
	put8(z->b + 0x200, 0xeb);
	put8(z->b + 0x201, BZ_JUMP_OFF);
	memcpy(z->b + 0x202, "HdrS", 4);
	put16(z->b + 0x206, 0x020f);
	put8(z->b + 0x211, 0x01);              /* loadflags: LOADED_HIGH */
	put32(z->b + 0x22c, 0x7fffffff);       /* initrd_addr_max */
	put32(z->b + 0x230, 0x200000);         /* kernel_alignment */
	put8(z->b + 0x234, 1);                 /* relocatable_kernel */
	put16(z->b + 0x236, 1);                /* xloadflags: XLF_KERNEL_64 */
	put32(z->b + 0x238, 255);              /* cmdline_size */
	put64(z->b + 0x258, BZ_PREF);          /* pref_address */
	put32(z->b + 0x260, BZ_INIT_SIZE);     /* init_size */
	put8(z->b + 0x26b, 0x77);              /* last byte of the header */
	put8(z->b + 0x26c, 0x99);              /* first byte after it */
	for (size_t i = 0; i < BZ_PAYLOAD; i++)
		z->b[pm + i] = (uint8_t)(i * 7 + 3);
	z->len = pm + BZ_PAYLOAD;
}

#endif
