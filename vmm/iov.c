#include "vmm/iov.h"

#include <stdbool.h>
#include <string.h>

static uint64_t iov_copy(const struct iovec *iov, unsigned n, uint64_t offset, uint8_t *buf, uint64_t len,
			 bool into_iov)
{
	uint64_t done = 0;
	for (unsigned k = 0; k < n && done < len; k++) {
		uint64_t seg = iov[k].iov_len;
		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		uint64_t m = seg - offset < len - done ? seg - offset : len - done;
		uint8_t *p = (uint8_t *)iov[k].iov_base + offset;
		if (into_iov)
			memcpy(p, buf + done, m);
		else
			memcpy(buf + done, p, m);
		done += m;
		offset = 0;
	}
	return done;
}

uint64_t iov_copy_out(const struct iovec *iov, unsigned n, uint64_t offset, void *dst, uint64_t len)
{
	return iov_copy(iov, n, offset, dst, len, false);
}

uint64_t iov_copy_in(const struct iovec *iov, unsigned n, uint64_t offset, const void *src, uint64_t len)
{
	return iov_copy(iov, n, offset, (uint8_t *)(uintptr_t)src, len, true);
}
