#include "vmm/guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static void layout(struct guest_mem *m, uint8_t *base, uint64_t size, uint64_t low_limit,
		   uint64_t high_base)
{
	memset(m, 0, sizeof(*m));
	m->base = base;
	m->size = size;
	uint64_t low = size < low_limit ? size : low_limit;
	m->regions[0] = (struct guest_mem_region){ .gpa = 0, .size = low, .hva = base };
	m->nr_regions = 1;
	if (size > low) {
		m->regions[1] = (struct guest_mem_region){ .gpa = high_base, .size = size - low,
							   .hva = base + low };
		m->nr_regions = 2;
	}
}

int guest_mem_alloc(struct guest_mem *m, uint64_t size, uint64_t low_limit, uint64_t high_base,
		    bool hugepages, struct error *err)
{
	if (hugepages && size % (2ull << 20))
		return error_set(err, "--memory %llu with --hugepages: must be a multiple of 2 MiB",
				 (unsigned long long)(size >> 20));
	int flags = MAP_PRIVATE | MAP_ANONYMOUS;
	if (hugepages)
		flags |= MAP_HUGETLB; /* 2 MiB pages, reserved now: NORESERVE would turn a shortage into SIGBUS later */
	else
		flags |= MAP_NORESERVE;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED) {
		if (hugepages)
			return error_set(err, "cannot map %llu MiB of guest RAM in huge pages: %s; reserve "
					 "them first (echo N > /proc/sys/vm/nr_hugepages) or drop --hugepages",
					 (unsigned long long)(size >> 20), strerror(errno));
		return error_set(err, "cannot map %llu MiB of guest RAM: %s; lower --memory",
				 (unsigned long long)(size >> 20), strerror(errno));
	}
	/* Guest RAM never belongs in a core dump of the monitor. */
	madvise(p, size, MADV_DONTDUMP);
	layout(m, p, size, low_limit, high_base);
	m->owned = true;
	return 0;
}

void guest_mem_init_from(struct guest_mem *m, uint8_t *base, uint64_t size, uint64_t low_limit,
			 uint64_t high_base)
{
	layout(m, base, size, low_limit, high_base);
}

void guest_mem_free(struct guest_mem *m)
{
	if (m->owned && m->base)
		munmap(m->base, m->size);
	memset(m, 0, sizeof(*m));
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	for (int i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];
		/* Written so that nothing can overflow: gpa >= r->gpa first, then compare remainders. */
		if (gpa < r->gpa)
			continue;
		uint64_t off = gpa - r->gpa;
		if (off >= r->size || len > r->size - off)
			continue;
		return r->hva + off;
	}
	return NULL;
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	return 0;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
	const void *p = guest_mem_ptr(m, gpa, len);
	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

uint64_t guest_mem_low_end(const struct guest_mem *m)
{
	return m->regions[0].gpa + m->regions[0].size;
}
