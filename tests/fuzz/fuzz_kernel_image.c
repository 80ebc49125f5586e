/*
 * libFuzzer target: a kernel file as the monitor reads it from --kernel. Parses it; if it parses,
 * checks the parser's promises, loads it into a small two-region guest RAM (8 MiB low, 1 MiB at
 * 4 GiB), then writes the zero page, the PVH start_info and the MP table as arch_load_guest does.
 * Any sanitizer report or broken promise (abort) is a bug in the monitor.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "boot/kernel_image.h"
#include "boot/x86_boot.h"

#define RAM_LOW (8ull << 20)
#define RAM_HIGH (1ull << 20)
#define RAM_HIGH_BASE (4ull << 30)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what)
{
	fprintf(stderr, "fuzz_kernel_image: broken promise: %s\n", what);
	abort();
}

/* What kernel_image.h promises about a parsed image. */
static void check_image(const struct kernel_image *k, size_t size)
{
	if (k->nr_segs < 1 || k->nr_segs > KERNEL_MAX_SEGMENTS)
		broken("nr_segs out of range");
	bool entry_inside = false;
	for (int i = 0; i < k->nr_segs; i++) {
		const struct kernel_segment *s = &k->segs[i];
		if (s->offset > size || s->filesz > size - s->offset)
			broken("segment outside the file");
		if (s->filesz > s->memsz)
			broken("segment filesz > memsz");
		if (s->paddr + s->memsz < s->paddr)
			broken("segment wraps");
		if (s->paddr < k->load_start || s->paddr + s->memsz > k->load_end)
			broken("segment outside [load_start, load_end)");
		if (k->entry64 >= s->paddr && k->entry64 - s->paddr < s->memsz)
			entry_inside = true;
	}
	if (k->format == KERNEL_ELF && k->entry64 && !entry_inside)
		broken("ELF entry64 outside every segment");
	/* entry64 0 means "none" (the monitor then refuses the 64-bit entry); it is also what an e_entry
	 * of 0 in a segment at 0 gives, which kernel_image_load refuses below 1 MiB anyway. */
	if (k->format == KERNEL_ELF && !k->entry64 && !k->pvh_entry && k->load_start != 0)
		broken("ELF with neither entry");
	if (k->pvh_entry >= (1ull << 32))
		broken("PVH entry above 4 GiB");
	if (k->cmdline_max == 0 || k->cmdline_max > BOOT_DEFAULT_CMDLINE_MAX)
		broken("cmdline_max");
	if (k->format == KERNEL_BZIMAGE) {
		if (!k->is_linux || k->nr_segs != 1)
			broken("bzImage shape");
		if (k->setup_header_offset + k->setup_header_len > size ||
		    BP_SETUP_HEADER + k->setup_header_len > BP_SIZE)
			broken("bzImage setup header outside the file or the zero page");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	static struct guest_mem mem;
	if (!ram) {
		ram = malloc(RAM_LOW + RAM_HIGH); /* heap: ASan's redzones catch a write past the end */
		if (!ram)
			abort();
		memset(ram, 0, RAM_LOW + RAM_HIGH);
		guest_mem_init_from(&mem, ram, RAM_LOW + RAM_HIGH, RAM_LOW, RAM_HIGH_BASE);
	}
	/* An exact-size copy, so that any read past the input is caught whatever the caller passed. */
	uint8_t *img = malloc(size ? size : 1);
	if (!img)
		abort();
	memcpy(img, data, size);

	struct kernel_image k;
	struct error err;
	err.msg[0] = '\0';
	if (kernel_image_parse(img, size, &k, &err)) {
		if (!err.msg[0])
			broken("parse failed without a message");
		free(img);
		return 0;
	}
	check_image(&k, size);
	(void)kernel_image_has_pvm_shim(img, size);

	err.msg[0] = '\0';
	if (kernel_image_load(&k, img, size, &mem, X86_HIGH_RAM_START, &err) && !err.msg[0])
		broken("load failed without a message");

	struct x86_boot_info bi;
	memset(&bi, 0, sizeof(bi));
	bi.cmdline_gpa = X86_CMDLINE_ADDR;
	bi.cmdline_len = 16;
	if (size & 1) {
		bi.initrd_gpa = RAM_LOW - 0x10000;
		bi.initrd_size = 0x10000;
	}
	bi.e820[bi.nr_e820++] = (struct e820_entry){ 0, X86_LOW_RAM_END, E820_RAM };
	bi.e820[bi.nr_e820++] = (struct e820_entry){ X86_LOW_RAM_END, X86_HIGH_RAM_START - X86_LOW_RAM_END,
						     E820_RESERVED };
	bi.e820[bi.nr_e820++] = (struct e820_entry){ X86_HIGH_RAM_START, RAM_LOW - X86_HIGH_RAM_START, E820_RAM };
	bi.e820[bi.nr_e820++] = (struct e820_entry){ RAM_HIGH_BASE, RAM_HIGH, E820_RAM };
	if (linux_boot_params_write(&mem, X86_ZERO_PAGE_ADDR, &k, img, size, &bi, &err))
		broken("zero page refused for a parsed kernel");
	if (pvh_start_info_write(&mem, X86_PVH_INFO_ADDR, &bi, &err))
		broken("PVH start_info refused");
	if (mptable_write(&mem, X86_MPTABLE_ADDR, 1 + (unsigned)(size % 255), &err))
		broken("MP table refused");
	free(img);
	return 0;
}
