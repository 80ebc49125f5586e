/*
 * Guest RAM: one host mapping split into at most two guest-physical regions (below and above the
 * 32-bit MMIO hole). Every guest physical address the monitor touches goes through guest_mem_ptr(),
 * the one checked translation: it refuses any range that is not wholly inside one region.
 */
#ifndef KVMBOX_GUEST_MEM_H
#define KVMBOX_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/error.h"

#define GUEST_MEM_MAX_REGIONS 2

struct guest_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
	int nr_regions;
	uint8_t *base;    /* the whole mapping */
	uint64_t size;    /* total RAM in bytes */
	bool owned;       /* base was mmap()ed by guest_mem_alloc */
};

/*
 * Maps size bytes of anonymous memory (MAP_NORESERVE, optionally 2 MiB huge pages) and lays it out as
 * RAM from 0 up to low_limit, then from high_base upwards for the rest.
 */
int guest_mem_alloc(struct guest_mem *m, uint64_t size, uint64_t low_limit, uint64_t high_base,
		    bool hugepages, struct error *err);

/* Uses caller-owned host memory (tests, fuzzers, benchmarks): same layout rules, nothing mapped. */
void guest_mem_init_from(struct guest_mem *m, uint8_t *base, uint64_t size, uint64_t low_limit,
			 uint64_t high_base);

void guest_mem_free(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len) or NULL when any byte of it is not guest RAM (len 0 counts as 1). */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copies in or out with the same check; -1 when the range is not RAM. */
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);

/* Highest RAM address + 1 below limit, i.e. the end of the region that contains limit-1's neighbourhood. */
uint64_t guest_mem_low_end(const struct guest_mem *m);

#endif
