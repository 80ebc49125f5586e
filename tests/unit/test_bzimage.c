/* bzImage: the setup header parser (bzimage_parse through kernel_image_parse) and loading. */
#include <criterion/criterion.h>

#include "tests/unit/unit.h"

UNIT_SUITE(bzimage);

static struct bz_img z;
static struct kernel_image k;
static struct error err;

static int parse(void)
{
	uint8_t *c = heap_copy(z.b, z.len);
	memset(&err, 0, sizeof(err));
	int rc = kernel_image_parse(c, z.len, &k, &err);
	free(c);
	return rc;
}

static void expect_error(const char *needle)
{
	cr_assert_eq(parse(), -1, "parse should fail (%s)", needle);
	cr_assert(strstr(err.msg, needle), "message \"%s\" should contain \"%s\"", err.msg, needle);
}

Test(bzimage, valid_setup_sects_0_means_4)
{
	bz_init(&z, 0);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.format, KERNEL_BZIMAGE);
	cr_assert(k.is_linux, "a bzImage is Linux");
	cr_assert_eq(k.nr_segs, 1);
	cr_assert_eq(k.segs[0].offset, 5 * 512, "protected-mode code after 4+1 sectors");
	cr_assert_eq(k.segs[0].filesz, BZ_PAYLOAD);
	cr_assert_eq(k.segs[0].memsz, BZ_INIT_SIZE, "init_size > file part: memsz is init_size");
	cr_assert_eq(k.segs[0].paddr, BZ_PREF, "relocatable, aligned pref_address is used");
	cr_assert_eq(k.load_start, BZ_PREF);
	cr_assert_eq(k.load_end, BZ_PREF + BZ_INIT_SIZE);
	cr_assert_eq(k.entry64, BZ_PREF + 0x200);
	cr_assert_eq(k.pvh_entry, 0);
	cr_assert_eq(k.setup_header_offset, 0x1f1);
	cr_assert_eq(k.setup_header_len, 0x202 + BZ_JUMP_OFF - 0x1f1);
	cr_assert_eq(k.cmdline_max, 255);
	cr_assert_eq(k.initrd_addr_max, 0x7fffffff);
}

Test(bzimage, setup_sects_explicit)
{
	bz_init(&z, 3);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.segs[0].offset, 4 * 512);
	cr_assert_eq(k.segs[0].filesz, BZ_PAYLOAD);
	bz_init(&z, 1);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.segs[0].offset, 2 * 512);
}

Test(bzimage, init_size_smaller_than_file)
{
	bz_init(&z, 0);
	put32(z.b + 0x260, 0x10);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.segs[0].memsz, BZ_PAYLOAD);
}

Test(bzimage, load_address_choice)
{
	bz_init(&z, 0);
	put8(z.b + 0x234, 0); /* not relocatable: 1 MiB */
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.segs[0].paddr, 0x100000);
	cr_assert_eq(k.entry64, 0x100200);
	bz_init(&z, 0);
	put64(z.b + 0x258, BZ_PREF + 0x1000); /* not aligned to kernel_alignment */
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.segs[0].paddr, 0x100000);
	bz_init(&z, 0);
	put64(z.b + 0x258, 0x80000); /* below 1 MiB */
	put32(z.b + 0x230, 0);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.segs[0].paddr, 0x100000);
	bz_init(&z, 0);
	put64(z.b + 0x258, 1ull << 32); /* not a 32-bit address */
	put32(z.b + 0x230, 0);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.segs[0].paddr, 0x100000);
	bz_init(&z, 0);
	put64(z.b + 0x258, 0x1234000); /* alignment 0: any address */
	put32(z.b + 0x230, 0);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.segs[0].paddr, 0x1234000);
}

Test(bzimage, cmdline_size_only_shrinks)
{
	bz_init(&z, 0);
	put32(z.b + 0x238, 0);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.cmdline_max, BOOT_DEFAULT_CMDLINE_MAX);
	put32(z.b + 0x238, 65535);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.cmdline_max, BOOT_DEFAULT_CMDLINE_MAX);
}

Test(bzimage, initrd_addr_max)
{
	bz_init(&z, 0);
	put16(z.b + 0x236, 3); /* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G */
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.initrd_addr_max, UINT64_MAX);
	bz_init(&z, 0);
	put32(z.b + 0x22c, 0);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.initrd_addr_max, 0x37ffffff);
}

Test(bzimage, too_short)
{
	bz_init(&z, 0);
	z.len = 0x26f;
	expect_error("truncated");
	z.len = 0x206; /* just the "HdrS" magic */
	expect_error("truncated");
	z.len = 0x205; /* not even that: not recognised */
	expect_error("not a kernel");
	cr_assert_eq(bzimage_parse(z.b, 0, &k, &err), -1);
}

Test(bzimage, missing_boot_flag)
{
	bz_init(&z, 0);
	put16(z.b + 0x1fe, 0x55aa);
	expect_error("0xAA55");
}

Test(bzimage, old_protocol)
{
	bz_init(&z, 0);
	put16(z.b + 0x206, 0x020b);
	expect_error("older than 2.12");
	put16(z.b + 0x206, 0x020c);
	cr_assert_eq(parse(), 0, "%s", err.msg);
}

Test(bzimage, not_64_bit)
{
	bz_init(&z, 0);
	put16(z.b + 0x236, 2); /* CAN_BE_LOADED_ABOVE_4G without KERNEL_64 */
	expect_error("XLF_KERNEL_64");
}

Test(bzimage, setup_sects_past_eof)
{
	bz_init(&z, 0);
	put8(z.b + 0x1f1, 20); /* 21 sectors of setup in a 6.5 KiB file */
	expect_error("truncated");
	bz_init(&z, 3);
	z.len = 4 * 512; /* the protected-mode part would start exactly at EOF */
	expect_error("truncated");
	bz_init(&z, 0);
	put8(z.b + 0x1f1, 255);
	expect_error("truncated");
}

Test(bzimage, header_length_byte)
{
	bz_init(&z, 0);
	put8(z.b + 0x201, 0xff);
	expect_error("setup header length");
	put8(z.b + 0x201, 0x6f); /* 0x80 bytes: one more than boot_params has room for */
	expect_error("setup header length");
	put8(z.b + 0x201, 0x6e); /* 0x7f bytes: the largest accepted */
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.setup_header_len, 0x7f);
	put8(z.b + 0x201, 0);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(k.setup_header_len, 0x11);
}

Test(bzimage, load)
{
	bz_init(&z, 0);
	put8(z.b + 0x234, 0); /* load at 1 MiB */
	cr_assert_eq(parse(), 0, "%s", err.msg);
	struct test_mem t;
	test_mem_std(&t);
	cr_assert_eq(kernel_image_load(&k, z.b, z.len, &t.mem, 0x100000, &err), 0, "%s", err.msg);
	cr_assert_eq(memcmp(t.buf + 0x100000, z.b + 5 * 512, BZ_PAYLOAD), 0, "protected-mode code copied");
	cr_assert_eq(t.buf[0x100000 + BZ_PAYLOAD], 0, "init_size area zeroed");
	cr_assert_eq(t.buf[0x100000 + BZ_INIT_SIZE - 1], 0);
	cr_assert_eq(t.buf[0x100000 + BZ_INIT_SIZE], TEST_FILL);
	cr_assert_eq(t.buf[0xfffff], TEST_FILL, "nothing of the setup area below 1 MiB");
	/* At its preferred 16 MiB with 4 MiB of init_size, it does not fit in 8 MiB of RAM. */
	bz_init(&z, 0);
	cr_assert_eq(parse(), 0, "%s", err.msg);
	cr_assert_eq(kernel_image_load(&k, z.b, z.len, &t.mem, 0x100000, &err), -1);
	test_mem_fini(&t);
}

/*
 * KNOWN BUG (minor, validation): the 64-bit entry is load address + 0x200, but nothing checks that it
 * lies inside the segment: a file part of 0x100 bytes with init_size 0 parses, and the vCPU would start
 * past the end of the loaded kernel.
 */
Test(bzimage, entry_outside_kernel)
{
	bz_init(&z, 0);
	put32(z.b + 0x260, 0); /* init_size */
	z.len = 5 * 512 + 0x100;
	expect_error("entry");
}
