/* virtio-net header logic without I/O (devices/net_hdr.h). */
#include "devices/net_hdr.h"

#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(struct virtio_net_hdr_v1) == NET_HDR_LEN, "virtio_net_hdr_v1 is 12 bytes");

static bool has(uint64_t features, unsigned bit)
{
	return features & (1ull << bit);
}

unsigned net_tun_offloads(uint64_t features)
{
	if (!has(features, VIRTIO_NET_F_GUEST_CSUM))
		return 0;
	unsigned f = TUN_F_CSUM;
	if (has(features, VIRTIO_NET_F_GUEST_TSO4))
		f |= TUN_F_TSO4;
	if (has(features, VIRTIO_NET_F_GUEST_TSO6))
		f |= TUN_F_TSO6;
	if ((f & (TUN_F_TSO4 | TUN_F_TSO6)) && has(features, VIRTIO_NET_F_GUEST_ECN))
		f |= TUN_F_TSO_ECN;
	return f;
}

const char *net_tx_verdict_str(enum net_tx_verdict v)
{
	switch (v) {
	case NET_TX_OK: return "ok";
	case NET_TX_SHORT: return "shorter than the virtio-net header and an Ethernet header";
	case NET_TX_LONG: return "longer than the largest frame";
	case NET_TX_CSUM: return "checksum offload not negotiated or outside the frame";
	case NET_TX_GSO: return "segmentation offload not negotiated or malformed";
	}
	return "?";
}

enum net_tx_verdict net_tx_check_hdr(const struct virtio_net_hdr_v1 *h, uint64_t frame_len, uint64_t features)
{
	if (frame_len < NET_ETH_HLEN)
		return NET_TX_SHORT;
	if (frame_len > NET_MAX_FRAME)
		return NET_TX_LONG;
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!has(features, VIRTIO_NET_F_CSUM))
			return NET_TX_CSUM;
		/* The 16-bit checksum field must lie inside the frame. */
		if ((uint64_t)h->csum_start + h->csum_offset + 2 > frame_len)
			return NET_TX_CSUM;
	}
	uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	if (gso == VIRTIO_NET_HDR_GSO_NONE)
		return h->gso_type & VIRTIO_NET_HDR_GSO_ECN ? NET_TX_GSO : NET_TX_OK;
	bool ok = (gso == VIRTIO_NET_HDR_GSO_TCPV4 && has(features, VIRTIO_NET_F_HOST_TSO4)) ||
		  (gso == VIRTIO_NET_HDR_GSO_TCPV6 && has(features, VIRTIO_NET_F_HOST_TSO6)) ||
		  (gso == VIRTIO_NET_HDR_GSO_UDP && has(features, VIRTIO_NET_F_HOST_UFO));
	if (!ok || h->gso_size == 0)
		return NET_TX_GSO;
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has(features, VIRTIO_NET_F_HOST_ECN))
		return NET_TX_GSO;
	return NET_TX_OK;
}

enum net_tx_verdict net_tx_prepare(const struct virtq_chain *c, uint64_t features, struct virtio_net_hdr_v1 *hdr,
				   struct iovec *iov, unsigned *nr_iov, uint64_t *frame_len)
{
	*nr_iov = 0;
	*frame_len = 0;
	if (c->out_bytes < NET_HDR_LEN)
		return NET_TX_SHORT;
	if (c->out_bytes > NET_MAX_PACKET)
		return NET_TX_LONG;
	uint64_t flen = c->out_bytes - NET_HDR_LEN;
	if (virtq_chain_read(c, 0, hdr, NET_HDR_LEN) != NET_HDR_LEN)
		return NET_TX_SHORT;
	enum net_tx_verdict v = net_tx_check_hdr(hdr, flen, features);
	if (v != NET_TX_OK)
		return v;
	/* The tap reads only the first 10 bytes of a 12-byte vnet header; num_buffers means nothing on TX. */
	hdr->num_buffers = 0;
	unsigned n = 0;
	iov[n].iov_base = hdr;
	iov[n].iov_len = NET_HDR_LEN;
	n++;
	uint64_t skip = NET_HDR_LEN;
	for (unsigned i = 0; i < c->nr_out; i++) {
		uint64_t len = c->iov[i].iov_len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		iov[n].iov_base = (uint8_t *)c->iov[i].iov_base + skip;
		iov[n].iov_len = len - skip;
		skip = 0;
		n++;
	}
	*nr_iov = n;
	*frame_len = flen;
	return NET_TX_OK;
}

bool net_rx_fix_hdr(struct virtio_net_hdr_v1 *h, uint64_t features, uint16_t num_buffers)
{
	uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	if (!has(features, VIRTIO_NET_F_GUEST_CSUM)) {
		if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
			return false;
		h->flags = 0; /* 5.1.6.4.1: without GUEST_CSUM the flags are zero */
	} else {
		h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
	}
	if (gso != VIRTIO_NET_HDR_GSO_NONE) {
		bool ok = (gso == VIRTIO_NET_HDR_GSO_TCPV4 && has(features, VIRTIO_NET_F_GUEST_TSO4)) ||
			  (gso == VIRTIO_NET_HDR_GSO_TCPV6 && has(features, VIRTIO_NET_F_GUEST_TSO6)) ||
			  (gso == VIRTIO_NET_HDR_GSO_UDP && has(features, VIRTIO_NET_F_GUEST_UFO));
		if (!ok || ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has(features, VIRTIO_NET_F_GUEST_ECN)))
			return false;
	} else if (h->gso_type) {
		return false;
	} else {
		h->gso_size = 0;
	}
	h->num_buffers = num_buffers;
	return true;
}

bool net_rx_chain_ok(const struct virtq_chain *c)
{
	return c->nr_out == 0 && c->in_bytes >= NET_HDR_LEN;
}

void net_rx_merge_start(struct net_rx_merge *m, const uint8_t *pkt, uint32_t len, uint16_t max_bufs)
{
	m->pkt = pkt;
	m->len = len;
	m->placed = 0;
	m->nr_bufs = 0;
	m->max_bufs = max_bufs < NET_QUEUE_MAX ? max_bufs : NET_QUEUE_MAX;
}

int64_t net_rx_place(struct net_rx_merge *m, const struct virtq_chain *c)
{
	if (m->nr_bufs >= m->max_bufs)
		return -1;
	uint64_t want = m->len - m->placed;
	uint64_t n = virtq_chain_write(c, 0, m->pkt + m->placed, want);
	m->heads[m->nr_bufs] = c->head;
	m->lens[m->nr_bufs] = (uint32_t)n;
	m->nr_bufs++;
	m->placed += (uint32_t)n;
	if (m->placed < m->len && m->nr_bufs == m->max_bufs)
		return -1;
	return (int64_t)n;
}

bool net_rx_done(const struct net_rx_merge *m)
{
	return m->nr_bufs > 0 && m->placed == m->len;
}

uint64_t net_chain_read_in(const struct virtq_chain *c, uint64_t offset, void *dst, uint64_t len)
{
	uint8_t *out = dst;
	uint64_t done = 0;
	for (unsigned k = c->nr_out; k < c->nr_out + c->nr_in && done < len; k++) {
		uint64_t seg = c->iov[k].iov_len;
		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		uint64_t m = seg - offset < len - done ? seg - offset : len - done;
		memcpy(out + done, (const uint8_t *)c->iov[k].iov_base + offset, m);
		done += m;
		offset = 0;
	}
	return done;
}

bool net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;
	if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
				     &end) != 6)
		return false;
	for (unsigned i = 0; i < 17; i++) {
		bool colon = i % 3 == 2;
		char ch = s[i];
		if (colon ? ch != ':' : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
			return false;
	}
	unsigned any = 0;
	for (unsigned i = 0; i < 6; i++) {
		mac[i] = (uint8_t)v[i];
		any |= v[i];
	}
	return any && !(mac[0] & 1);
}
