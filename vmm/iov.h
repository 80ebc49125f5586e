/* Copies between a flat buffer and a list of segments, starting at a logical byte offset. */
#ifndef KVMBOX_IOV_H
#define KVMBOX_IOV_H

#include <stdint.h>
#include <sys/uio.h>

/* Return the bytes copied: fewer than len when the segments end first. */
uint64_t iov_copy_out(const struct iovec *iov, unsigned n, uint64_t offset, void *dst, uint64_t len);
uint64_t iov_copy_in(const struct iovec *iov, unsigned n, uint64_t offset, const void *src, uint64_t len);

#endif
