/* virtio-net header logic (devices/net_hdr.c): feature → tap offload mapping, TX header and chain checks,
 * RX header fixing, MRG_RXBUF scatter with num_buffers, MAC parsing. Chains are built by hand over
 * heap buffers. */
#include <criterion/criterion.h>
#include <linux/if_tun.h>

#include "devices/net_hdr.h"
#include "tests/unit/unit.h"

UNIT_SUITE(net);

#define F(bit) (1ull << (bit))
#define TX_ALL (F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6))
#define RX_ALL (F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6) | \
		F(VIRTIO_NET_F_MRG_RXBUF))

/* ---- feature → TUNSETOFFLOAD ---- */

Test(net, offloads_follow_guest_features)
{
	cr_assert_eq(net_tun_offloads(0), 0u);
	cr_assert_eq(net_tun_offloads(TX_ALL), 0u, "HOST_* features say nothing about what the guest takes");
	/* TSO without GUEST_CSUM: the tap would refuse it (TSO needs TUN_F_CSUM), and the guest too. */
	cr_assert_eq(net_tun_offloads(F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6)), 0u);
	cr_assert_eq(net_tun_offloads(F(VIRTIO_NET_F_GUEST_CSUM)), (unsigned)TUN_F_CSUM);
	cr_assert_eq(net_tun_offloads(F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4)),
		     (unsigned)(TUN_F_CSUM | TUN_F_TSO4));
	cr_assert_eq(net_tun_offloads(RX_ALL), (unsigned)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6));
	cr_assert_eq(net_tun_offloads(RX_ALL | F(VIRTIO_NET_F_GUEST_ECN)),
		     (unsigned)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN));
	cr_assert_eq(net_tun_offloads(F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_ECN)), (unsigned)TUN_F_CSUM,
		     "ECN only with TSO");
}

/* ---- TX header ---- */

static struct virtio_net_hdr_v1 hdr(uint8_t flags, uint8_t gso, uint16_t gso_size, uint16_t cs, uint16_t co)
{
	return (struct virtio_net_hdr_v1){ .flags = flags, .gso_type = gso, .gso_size = gso_size, .csum_start = cs,
					   .csum_offset = co };
}

Test(net, tx_hdr_lengths)
{
	struct virtio_net_hdr_v1 h = hdr(0, 0, 0, 0, 0);
	cr_assert_eq(net_tx_check_hdr(&h, 0, TX_ALL), NET_TX_SHORT);
	cr_assert_eq(net_tx_check_hdr(&h, NET_ETH_HLEN - 1, TX_ALL), NET_TX_SHORT);
	cr_assert_eq(net_tx_check_hdr(&h, NET_ETH_HLEN, TX_ALL), NET_TX_OK);
	cr_assert_eq(net_tx_check_hdr(&h, NET_MAX_FRAME, TX_ALL), NET_TX_OK);
	cr_assert_eq(net_tx_check_hdr(&h, NET_MAX_FRAME + 1, TX_ALL), NET_TX_LONG);
}

Test(net, tx_hdr_checksum)
{
	struct virtio_net_hdr_v1 h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 34, 16);
	cr_assert_eq(net_tx_check_hdr(&h, 100, 0), NET_TX_CSUM, "NEEDS_CSUM without VIRTIO_NET_F_CSUM");
	cr_assert_eq(net_tx_check_hdr(&h, 100, F(VIRTIO_NET_F_CSUM)), NET_TX_OK);
	cr_assert_eq(net_tx_check_hdr(&h, 52, F(VIRTIO_NET_F_CSUM)), NET_TX_OK, "field ends at the frame's end");
	cr_assert_eq(net_tx_check_hdr(&h, 51, F(VIRTIO_NET_F_CSUM)), NET_TX_CSUM, "field past the frame's end");
	h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0xffff, 0xffff);
	cr_assert_eq(net_tx_check_hdr(&h, NET_MAX_FRAME, F(VIRTIO_NET_F_CSUM)), NET_TX_CSUM, "no 16-bit overflow");
	/* DATA_VALID (or unknown flags) on TX mean nothing to the tap: not refused. */
	h = hdr(VIRTIO_NET_HDR_F_DATA_VALID | 0x40, 0, 0, 0, 0);
	cr_assert_eq(net_tx_check_hdr(&h, 60, 0), NET_TX_OK);
}

Test(net, tx_hdr_gso)
{
	struct virtio_net_hdr_v1 h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16);
	cr_assert_eq(net_tx_check_hdr(&h, 60000, F(VIRTIO_NET_F_CSUM)), NET_TX_GSO, "TSO4 not negotiated");
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL), NET_TX_OK);
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL & ~F(VIRTIO_NET_F_HOST_TSO6)), NET_TX_GSO);
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL), NET_TX_OK);
	h.gso_size = 0;
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL), NET_TX_GSO, "gso_size 0");
	h.gso_size = 1448;
	h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL), NET_TX_GSO, "UFO is not offered");
	h.gso_type = 2; /* no such type */
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL), NET_TX_GSO);
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL), NET_TX_GSO, "ECN without HOST_ECN");
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL | F(VIRTIO_NET_F_HOST_ECN)), NET_TX_OK);
	h.gso_type = VIRTIO_NET_HDR_GSO_ECN; /* ECN on a non-GSO packet */
	cr_assert_eq(net_tx_check_hdr(&h, 60000, TX_ALL | F(VIRTIO_NET_F_HOST_ECN)), NET_TX_GSO);
}

/* ---- TX chains ---- */

static struct virtq_chain *new_chain(void)
{
	struct virtq_chain *c = calloc(1, sizeof(*c));
	cr_assert_not_null(c);
	c->head = 3;
	return c;
}

/* Appends a segment (readable unless writable) holding bytes; the chain owns nothing: caller frees. */
static void add_seg(struct virtq_chain *c, void *buf, size_t len, bool writable)
{
	unsigned k = c->nr_out + c->nr_in;
	c->iov[k].iov_base = buf;
	c->iov[k].iov_len = len;
	if (writable) {
		c->nr_in++;
		c->in_bytes += len;
	} else {
		cr_assert_eq(c->nr_in, 0u);
		c->nr_out++;
		c->out_bytes += len;
	}
}

/* header + frame bytes 0, 1, 2, ... (mod 251) in one flat buffer */
static uint8_t *packet(size_t frame_len, struct virtio_net_hdr_v1 h)
{
	uint8_t *p = malloc(NET_HDR_LEN + frame_len);
	memcpy(p, &h, NET_HDR_LEN);
	for (size_t i = 0; i < frame_len; i++)
		p[NET_HDR_LEN + i] = (uint8_t)(i % 251);
	return p;
}

static void check_frame(const struct iovec *iov, unsigned n, size_t frame_len)
{
	size_t off = 0;
	for (unsigned k = 1; k < n; k++) {
		cr_assert_gt(iov[k].iov_len, 0u, "empty segment %u handed to the tap", k);
		for (size_t i = 0; i < iov[k].iov_len; i++, off++)
			cr_assert_eq(((uint8_t *)iov[k].iov_base)[i], (uint8_t)(off % 251), "frame byte %zu", off);
	}
	cr_assert_eq(off, frame_len);
}

Test(net, tx_prepare_split_header)
{
	/* Splits the same packet at every pair of cut points around the header: 3 segments. */
	size_t flen = 100;
	uint8_t *p = packet(flen, hdr(0, 0, 0, 0, 0));
	p[10] = 0x77; /* num_buffers from the guest: must not reach the tap */
	for (size_t a = 0; a <= 20; a++) {
		for (size_t b = a; b <= 30; b++) {
			struct virtq_chain *c = new_chain();
			add_seg(c, p, a, false);
			add_seg(c, p + a, b - a, false);
			add_seg(c, p + b, NET_HDR_LEN + flen - b, false);
			struct virtio_net_hdr_v1 h;
			struct iovec iov[NET_TX_IOV_MAX];
			unsigned n;
			uint64_t fl;
			cr_assert_eq(net_tx_prepare(c, 0, &h, iov, &n, &fl), NET_TX_OK, "cut %zu/%zu", a, b);
			cr_assert_eq(fl, flen);
			cr_assert_eq(iov[0].iov_base, (void *)&h, "the tap reads our copy of the header");
			cr_assert_eq(iov[0].iov_len, NET_HDR_LEN);
			cr_assert_eq(h.num_buffers, 0);
			cr_assert_eq(p[10], 0x77, "the guest's buffer is not written");
			check_frame(iov, n, flen);
			free(c);
		}
	}
	free(p);
}

Test(net, tx_prepare_lengths_and_writable_segments)
{
	struct virtio_net_hdr_v1 h;
	struct iovec iov[NET_TX_IOV_MAX];
	unsigned n;
	uint64_t fl;
	uint8_t small[11] = { 0 };
	struct virtq_chain *c = new_chain();
	add_seg(c, small, sizeof(small), false);
	cr_assert_eq(net_tx_prepare(c, 0, &h, iov, &n, &fl), NET_TX_SHORT, "shorter than the header");
	cr_assert_eq(n, 0u);
	free(c);

	uint8_t *p = packet(NET_ETH_HLEN - 1, hdr(0, 0, 0, 0, 0));
	c = new_chain();
	add_seg(c, p, NET_HDR_LEN + NET_ETH_HLEN - 1, false);
	cr_assert_eq(net_tx_prepare(c, 0, &h, iov, &n, &fl), NET_TX_SHORT, "header only, runt frame");
	free(c);
	free(p);

	/* Longest frame accepted; one byte more is dropped (the chain's size is all that counts). */
	p = packet(NET_MAX_FRAME + 1, hdr(0, 0, 0, 0, 0));
	c = new_chain();
	add_seg(c, p, NET_HDR_LEN + NET_MAX_FRAME, false);
	cr_assert_eq(net_tx_prepare(c, 0, &h, iov, &n, &fl), NET_TX_OK);
	check_frame(iov, n, NET_MAX_FRAME);
	c->iov[0].iov_len++;
	c->out_bytes++;
	cr_assert_eq(net_tx_prepare(c, 0, &h, iov, &n, &fl), NET_TX_LONG);
	free(c);

	/* Writable segments of a TX chain are ignored; empty readable ones are left out. */
	uint8_t junk[64];
	c = new_chain();
	add_seg(c, p, NET_HDR_LEN, false);
	add_seg(c, p + NET_HDR_LEN, 0, false);
	add_seg(c, p + NET_HDR_LEN, 60, false);
	add_seg(c, junk, sizeof(junk), true);
	cr_assert_eq(net_tx_prepare(c, 0, &h, iov, &n, &fl), NET_TX_OK);
	cr_assert_eq(n, 2u);
	cr_assert_eq(fl, 60u);
	check_frame(iov, n, 60);
	free(c);
	free(p);

	/* The header's verdict carries through. */
	p = packet(60, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 14, 6));
	c = new_chain();
	add_seg(c, p, NET_HDR_LEN + 60, false);
	cr_assert_eq(net_tx_prepare(c, 0, &h, iov, &n, &fl), NET_TX_CSUM);
	cr_assert_eq(net_tx_prepare(c, F(VIRTIO_NET_F_CSUM), &h, iov, &n, &fl), NET_TX_OK);
	free(c);
	free(p);
}

Test(net, tx_prepare_most_segments)
{
	/* VIRTQ_CHAIN_MAX one-byte-or-more segments still fit NET_TX_IOV_MAX. */
	size_t flen = VIRTQ_CHAIN_MAX * 4;
	uint8_t *p = packet(flen, hdr(0, 0, 0, 0, 0));
	struct virtq_chain *c = new_chain();
	size_t total = NET_HDR_LEN + flen, per = total / VIRTQ_CHAIN_MAX, off = 0;
	for (unsigned k = 0; k < VIRTQ_CHAIN_MAX; k++) {
		size_t len = k == VIRTQ_CHAIN_MAX - 1 ? total - off : per;
		add_seg(c, p + off, len, false);
		off += len;
	}
	struct virtio_net_hdr_v1 h;
	struct iovec iov[NET_TX_IOV_MAX];
	unsigned n;
	uint64_t fl;
	cr_assert_eq(net_tx_prepare(c, 0, &h, iov, &n, &fl), NET_TX_OK);
	cr_assert_leq(n, NET_TX_IOV_MAX);
	check_frame(iov, n, flen);
	free(c);
	free(p);
}

/* ---- RX header ---- */

Test(net, rx_fix_hdr)
{
	struct virtio_net_hdr_v1 h = hdr(VIRTIO_NET_HDR_F_DATA_VALID, 0, 99, 5, 6);
	cr_assert(net_rx_fix_hdr(&h, 0, 1));
	cr_assert_eq(h.flags, 0, "flags are zero without GUEST_CSUM");
	cr_assert_eq(h.gso_size, 0);
	cr_assert_eq(h.num_buffers, 1);

	h = hdr(VIRTIO_NET_HDR_F_DATA_VALID | 0x80, 0, 0, 0, 0);
	cr_assert(net_rx_fix_hdr(&h, RX_ALL, 7));
	cr_assert_eq(h.flags, VIRTIO_NET_HDR_F_DATA_VALID, "unknown flags cleared");
	cr_assert_eq(h.num_buffers, 7);

	h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 34, 16);
	cr_assert_not(net_rx_fix_hdr(&h, 0, 1), "a partial checksum the driver cannot finish");
	cr_assert(net_rx_fix_hdr(&h, F(VIRTIO_NET_F_GUEST_CSUM), 1));
	cr_assert_eq(h.csum_start, 34);

	h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16);
	cr_assert_not(net_rx_fix_hdr(&h, F(VIRTIO_NET_F_GUEST_CSUM), 1), "TSO4 frame without GUEST_TSO4");
	cr_assert(net_rx_fix_hdr(&h, RX_ALL, 2));
	cr_assert_eq(h.gso_size, 1448);
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
	cr_assert_not(net_rx_fix_hdr(&h, RX_ALL & ~F(VIRTIO_NET_F_GUEST_TSO6), 1));
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
	cr_assert_not(net_rx_fix_hdr(&h, RX_ALL, 1), "ECN without GUEST_ECN");
	h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
	cr_assert_not(net_rx_fix_hdr(&h, RX_ALL, 1), "UFO without GUEST_UFO");
	h.gso_type = 9;
	cr_assert_not(net_rx_fix_hdr(&h, RX_ALL, 1));
}

Test(net, rx_chain_ok)
{
	uint8_t buf[64];
	struct virtq_chain *c = new_chain();
	add_seg(c, buf, 11, true);
	cr_assert_not(net_rx_chain_ok(c), "no room for the header");
	add_seg(c, buf + 11, 1, true);
	cr_assert(net_rx_chain_ok(c));
	free(c);
	c = new_chain();
	add_seg(c, buf, 4, false);
	add_seg(c, buf + 4, 60, true);
	cr_assert_not(net_rx_chain_ok(c), "device-readable part in a receive buffer");
	free(c);
}

/* ---- MRG_RXBUF scatter ---- */

/* A receive chain of nseg segments of seg bytes each (zero-filled heap buffers). */
static struct virtq_chain *rx_chain(uint16_t head, unsigned nseg, size_t seg, uint8_t **bufs)
{
	struct virtq_chain *c = new_chain();
	c->head = head;
	for (unsigned k = 0; k < nseg; k++) {
		bufs[k] = calloc(1, seg);
		add_seg(c, bufs[k], seg, true);
	}
	return c;
}

Test(net, rx_merge_scatter)
{
	size_t flen = 5000 - NET_HDR_LEN;
	uint8_t *p = packet(flen, hdr(0, 0, 0, 0, 0));
	struct net_rx_merge *m = malloc(sizeof(*m));
	net_rx_merge_start(m, p, 5000, 256);
	cr_assert_not(net_rx_done(m));
	uint8_t *bufs[4][2];
	struct virtq_chain *c[4];
	int64_t took[4];
	for (unsigned i = 0; i < 4; i++) {
		c[i] = rx_chain((uint16_t)(10 + i), 2, 768, bufs[i]); /* 1536 bytes in two segments */
		took[i] = net_rx_place(m, c[i]);
	}
	cr_assert_eq(took[0], 1536);
	cr_assert_eq(took[1], 1536);
	cr_assert_eq(took[2], 1536);
	cr_assert_eq(took[3], 5000 - 3 * 1536);
	cr_assert(net_rx_done(m));
	cr_assert_eq(m->nr_bufs, 4);
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(m->heads[i], 10 + i);
		cr_assert_eq(m->lens[i], (uint32_t)took[i]);
	}
	/* The bytes landed in order. */
	size_t off = 0;
	for (unsigned i = 0; i < 4 && off < 5000; i++)
		for (unsigned k = 0; k < 2; k++)
			for (size_t j = 0; j < 768 && off < 5000; j++, off++)
				cr_assert_eq(bufs[i][k][j], p[off], "byte %zu", off);
	cr_assert_eq(off, 5000u);
	for (unsigned i = 0; i < 4; i++) {
		free(bufs[i][0]);
		free(bufs[i][1]);
		free(c[i]);
	}
	free(m);
	free(p);
}

Test(net, rx_merge_one_chain_and_limit)
{
	uint8_t *p = packet(1000, hdr(0, 0, 0, 0, 0));
	struct net_rx_merge *m = malloc(sizeof(*m));
	uint8_t *b[1];
	struct virtq_chain *big = rx_chain(1, 1, 4096, b);
	net_rx_merge_start(m, p, NET_HDR_LEN + 1000, 256);
	cr_assert_eq(net_rx_place(m, big), NET_HDR_LEN + 1000);
	cr_assert(net_rx_done(m));
	cr_assert_eq(m->nr_bufs, 1);
	cr_assert_eq(m->lens[0], NET_HDR_LEN + 1000);
	free(b[0]);
	free(big);

	/* At most max_bufs chains: the one that would leave bytes over with no chain left fails. */
	net_rx_merge_start(m, p, NET_HDR_LEN + 1000, 2);
	uint8_t *s1[1], *s2[1];
	struct virtq_chain *a = rx_chain(1, 1, 100, s1), *c = rx_chain(2, 1, 100, s2);
	cr_assert_eq(net_rx_place(m, a), 100);
	cr_assert_eq(net_rx_place(m, c), -1);
	cr_assert_eq(m->nr_bufs, 2, "both chains recorded, to be given back");
	cr_assert_eq(net_rx_place(m, c), -1, "no more after the limit");
	cr_assert_eq(m->nr_bufs, 2);
	cr_assert_not(net_rx_done(m));
	/* max_bufs above NET_QUEUE_MAX is capped. */
	net_rx_merge_start(m, p, NET_HDR_LEN + 1000, 60000);
	cr_assert_eq(m->max_bufs, NET_QUEUE_MAX);
	free(s1[0]);
	free(s2[0]);
	free(a);
	free(c);
	free(m);
	free(p);
}

Test(net, chain_read_in)
{
	uint8_t *b[3];
	struct virtq_chain *c = rx_chain(0, 3, 5, b);
	for (unsigned k = 0; k < 3; k++)
		for (unsigned j = 0; j < 5; j++)
			b[k][j] = (uint8_t)(k * 5 + j);
	uint8_t out[20];
	memset(out, 0xee, sizeof(out));
	cr_assert_eq(net_chain_read_in(c, 3, out, 20), 12u, "short at the end");
	for (unsigned i = 0; i < 12; i++)
		cr_assert_eq(out[i], 3 + i);
	cr_assert_eq(out[12], 0xee);
	cr_assert_eq(net_chain_read_in(c, 15, out, 4), 0u);
	for (unsigned k = 0; k < 3; k++)
		free(b[k]);
	free(c);
}

/* ---- MAC ---- */

Test(net, parse_mac)
{
	uint8_t mac[6];
	cr_assert(net_parse_mac("02:00:00:00:00:01", mac));
	cr_assert_eq(mac[0], 2);
	cr_assert_eq(mac[5], 1);
	cr_assert(net_parse_mac("52:54:AB:cd:Ef:ff", mac));
	cr_assert_eq(mac[2], 0xab);
	cr_assert_eq(mac[5], 0xff);
	const char *bad[] = { "", "02:00:00:00:00", "02:00:00:00:00:01:", "02:00:00:00:00:0g", "2:0:0:0:0:1",
			      "02-00-00-00-00-01", "01:00:5e:00:00:01" /* multicast */, "00:00:00:00:00:00",
			      "ff:ff:ff:ff:ff:ff", " 02:00:00:00:00:01", "02:00:00:00:00:1 ", "+2:00:00:00:00:01" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(net_parse_mac(bad[i], mac), "'%s' accepted", bad[i]);
}
