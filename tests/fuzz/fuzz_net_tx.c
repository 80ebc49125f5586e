/*
 * libFuzzer target: the virtio-net TX path's chain and header checks (devices/net_hdr.c), as a hostile
 * guest lays a transmit chain out, then the same bytes as a received packet spread over receive chains
 * (MRG_RXBUF). Every segment is its own heap block of exactly its length, so ASan sees any access outside
 * it. The target checks what net_hdr.h promises; any report or abort is a bug.
 *
 * Input: [0] features: 1 CSUM, 2 HOST_TSO4, 4 HOST_TSO6, 8 HOST_UFO, 16 HOST_ECN, 32 GUEST_CSUM,
 * 64 GUEST_TSO4, 128 GUEST_TSO6; [1] segments: 1 + [1] % 32; [2] first writable segment: [2] % (n + 1);
 * [3] receive chains at most: 1 + [3]; then a little-endian u16 length per segment; the rest is the
 * content, repeated to fill the segments in order (zeroes if empty). At most 256 KiB in all segments.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/net_hdr.h"

#define MAX_SEGS 32
#define MAX_TOTAL (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what)
{
	fprintf(stderr, "fuzz_net_tx: broken promise: %s\n", what);
	abort();
}

static uint64_t features_of(uint8_t b)
{
	static const unsigned bits[8] = { VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
					  VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_GUEST_CSUM,
					  VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6 };
	uint64_t f = 0;
	for (unsigned i = 0; i < 8; i++)
		if (b & (1u << i))
			f |= 1ull << bits[i];
	return f;
}

/* Whether [p, p + len) lies inside one readable segment of c. */
static int inside_readable(const struct virtq_chain *c, const uint8_t *p, size_t len)
{
	for (unsigned k = 0; k < c->nr_out; k++) {
		const uint8_t *b = c->iov[k].iov_base;
		if (p >= b && len <= c->iov[k].iov_len && (size_t)(p - b) <= c->iov[k].iov_len - len)
			return 1;
	}
	return 0;
}

static void check_tx(const struct virtq_chain *c, uint64_t features, const uint8_t *flat, size_t flat_len)
{
	struct virtio_net_hdr_v1 hdr;
	struct iovec iov[NET_TX_IOV_MAX];
	unsigned n = 12345;
	uint64_t frame_len = 777;
	enum net_tx_verdict v = net_tx_prepare(c, features, &hdr, iov, &n, &frame_len);
	if (flat_len != c->out_bytes)
		broken("test bookkeeping");
	if (v != NET_TX_OK) {
		if (n != 0 || frame_len != 0)
			broken("outputs set on a dropped chain");
		if (c->out_bytes < NET_HDR_LEN && v != NET_TX_SHORT)
			broken("a chain shorter than the header is not SHORT");
		if (c->out_bytes > NET_MAX_PACKET && v != NET_TX_LONG)
			broken("a chain longer than the largest packet is not LONG");
		if (c->out_bytes >= NET_HDR_LEN && c->out_bytes <= NET_MAX_PACKET) {
			struct virtio_net_hdr_v1 h;
			memcpy(&h, flat, NET_HDR_LEN);
			if (net_tx_check_hdr(&h, c->out_bytes - NET_HDR_LEN, features) != v)
				broken("verdict differs from net_tx_check_hdr");
		}
		return;
	}
	if (c->out_bytes < NET_HDR_LEN + NET_ETH_HLEN || c->out_bytes > NET_MAX_PACKET)
		broken("accepted a chain of a bad length");
	if (frame_len != c->out_bytes - NET_HDR_LEN)
		broken("frame length");
	if (n < 1 || n > NET_TX_IOV_MAX || n > c->nr_out + 1)
		broken("segment count");
	if (iov[0].iov_base != (void *)&hdr || iov[0].iov_len != NET_HDR_LEN)
		broken("the first segment is not our header copy");
	if (hdr.num_buffers != 0 || memcmp(&hdr, flat, NET_HDR_LEN - 2))
		broken("header copy");
	if (net_tx_check_hdr(&hdr, frame_len, features) != NET_TX_OK)
		broken("accepted a header net_tx_check_hdr refuses");
	uint64_t off = NET_HDR_LEN;
	for (unsigned k = 1; k < n; k++) {
		if (iov[k].iov_len == 0)
			broken("empty segment");
		if (!inside_readable(c, iov[k].iov_base, iov[k].iov_len))
			broken("segment outside the chain's readable buffers");
		if (off + iov[k].iov_len > flat_len || memcmp(iov[k].iov_base, flat + off, iov[k].iov_len))
			broken("frame bytes out of order");
		off += iov[k].iov_len;
	}
	if (off != flat_len)
		broken("frame bytes missing");
}

/* The readable bytes as a received packet, over the writable segments, one receive chain each. */
static void check_rx(const struct virtq_chain *c, uint64_t features, const uint8_t *flat, size_t flat_len,
		     unsigned max_bufs)
{
	if (flat_len < NET_HDR_LEN || flat_len > NET_MAX_PACKET)
		return;
	struct virtio_net_hdr_v1 h;
	memcpy(&h, flat, NET_HDR_LEN);
	if (net_rx_fix_hdr(&h, features, 1)) {
		if (!(features & (1ull << VIRTIO_NET_F_GUEST_CSUM)) && h.flags)
			broken("flags left without GUEST_CSUM");
		if (h.num_buffers != 1)
			broken("num_buffers");
	}
	static struct net_rx_merge m;
	static struct virtq_chain one;
	net_rx_merge_start(&m, flat, (uint32_t)flat_len, (uint16_t)max_bufs);
	uint64_t placed = 0;
	int failed = 0;
	for (unsigned k = c->nr_out; k < c->nr_out + c->nr_in && !net_rx_done(&m); k++) {
		memset(&one, 0, sizeof(one));
		one.head = (uint16_t)k;
		one.nr_in = 1;
		one.iov[0] = c->iov[k];
		one.in_bytes = c->iov[k].iov_len;
		if (!net_rx_chain_ok(&one))
			continue;
		int64_t took = net_rx_place(&m, &one);
		if (took < 0) {
			failed = 1;
			break;
		}
		if ((uint64_t)took > one.in_bytes || memcmp(one.iov[0].iov_base, flat + placed, (size_t)took))
			broken("placed bytes");
		placed += (uint64_t)took;
	}
	if (m.nr_bufs > max_bufs || m.nr_bufs > NET_QUEUE_MAX)
		broken("more receive chains than allowed");
	if (!failed && placed != m.placed)
		broken("placed count");
	if (net_rx_done(&m) && (m.placed != flat_len || failed))
		broken("done without every byte");
	uint64_t sum = 0;
	for (unsigned i = 0; i < m.nr_bufs; i++)
		sum += m.lens[i];
	if (sum != m.placed)
		broken("used lengths do not add up");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	unsigned nseg = 1 + data[1] % MAX_SEGS;
	unsigned first_in = data[2] % (nseg + 1);
	unsigned max_bufs = 1u + data[3];
	if (size < 4 + 2ull * nseg)
		return 0;
	const uint8_t *content = data + 4 + 2 * nseg;
	size_t content_len = size - 4 - 2 * nseg;

	static struct virtq_chain c;
	memset(&c, 0, sizeof(c));
	uint8_t *segs[MAX_SEGS];
	size_t total = 0, ci = 0;
	for (unsigned k = 0; k < nseg; k++) {
		size_t len = (size_t)data[4 + 2 * k] | (size_t)data[5 + 2 * k] << 8;
		if (total + len > MAX_TOTAL)
			len = MAX_TOTAL - total;
		total += len;
		segs[k] = malloc(len ? len : 1);
		for (size_t i = 0; i < len; i++)
			segs[k][i] = content_len ? content[ci++ % content_len] : 0;
		c.iov[k].iov_base = segs[k];
		c.iov[k].iov_len = len;
		if (k >= first_in) {
			c.nr_in++;
			c.in_bytes += len;
		} else {
			c.nr_out++;
			c.out_bytes += len;
		}
	}
	c.head = 1;
	/* The readable bytes, flat. */
	uint8_t *flat = malloc(c.out_bytes ? c.out_bytes : 1);
	size_t off = 0;
	for (unsigned k = 0; k < c.nr_out; k++) {
		memcpy(flat + off, c.iov[k].iov_base, c.iov[k].iov_len);
		off += c.iov[k].iov_len;
	}
	uint64_t features = features_of(data[0]);
	check_tx(&c, features, flat, off);
	check_rx(&c, features, flat, off, max_bufs);
	free(flat);
	for (unsigned k = 0; k < nseg; k++)
		free(segs[k]);
	return 0;
}
