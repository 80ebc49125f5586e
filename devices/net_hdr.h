/*
 * virtio-net header logic without I/O (virtio 1.x, section 5.1), shared by devices/virtio_net.c, the
 * unit tests and the TX fuzzer: which tap offloads the negotiated features allow, what a guest TX chain
 * must look like before its bytes reach the tap, which RX headers a driver may be given, and how one
 * received packet is spread over several receive buffers (VIRTIO_NET_F_MRG_RXBUF).
 *
 * The virtio header (struct virtio_net_hdr_v1, 12 bytes) and the tap's vnet header with
 * TUNSETVNETHDRSZ 12 have the same layout, so bytes pass between the guest and the tap unchanged once
 * checked. The guest may rewrite its buffers at any moment: the device works on a copy of the header.
 */
#ifndef KVMBOX_NET_HDR_H
#define KVMBOX_NET_HDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/virtq.h"

/* Feature bits (5.1.3). */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_S_LINK_UP 1

/* Header flags and GSO types (5.1.6). */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP 3
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_ECN 0x80

struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));

#define NET_HDR_LEN 12u
#define NET_ETH_HLEN 14u
/* Largest frame either way: a 64 KiB GSO packet plus link-layer headers (Ethernet, a VLAN tag) with room
 * to spare. A TX chain longer than header + this is dropped; RX reads never ask for more. */
#define NET_MAX_FRAME (65536u + 64u)
#define NET_MAX_PACKET (NET_HDR_LEN + NET_MAX_FRAME)
/* Largest queue the device offers: a packet never spans more receive chains than this. */
#define NET_QUEUE_MAX 256u
/* Segments of one TX write: our copy of the header, then at most every segment of the chain. */
#define NET_TX_IOV_MAX (VIRTQ_CHAIN_MAX + 1)

/* The TUNSETOFFLOAD flags (TUN_F_*) for the features the driver accepted: what the tap may hand us
 * for the guest (partial checksums, TSO frames). TSO needs checksum offload as well, as the tap does. */
unsigned net_tun_offloads(uint64_t features);

enum net_tx_verdict {
	NET_TX_OK = 0,
	NET_TX_SHORT,           /* fewer readable bytes than header + an Ethernet header */
	NET_TX_LONG,            /* more than header + NET_MAX_FRAME */
	NET_TX_CSUM,            /* NEEDS_CSUM without VIRTIO_NET_F_CSUM, or a checksum place outside the frame */
	NET_TX_GSO,             /* a GSO type the driver did not negotiate (or unknown), or gso_size 0 */
};

const char *net_tx_verdict_str(enum net_tx_verdict v);

/* Checks a TX header (already copied out of guest memory) for a frame of frame_len bytes. */
enum net_tx_verdict net_tx_check_hdr(const struct virtio_net_hdr_v1 *h, uint64_t frame_len, uint64_t features);

/*
 * One TX chain to one writev: copies the header out of the chain's readable bytes into *hdr, checks it,
 * and fills iov[0] = hdr, iov[1..] = the frame (the readable bytes after the header, empty segments
 * left out). Writable segments of a TX chain are ignored. On NET_TX_OK *nr_iov is the number of
 * segments (at most NET_TX_IOV_MAX) and *frame_len the frame's length.
 */
enum net_tx_verdict net_tx_prepare(const struct virtq_chain *c, uint64_t features, struct virtio_net_hdr_v1 *hdr,
				   struct iovec *iov, unsigned *nr_iov, uint64_t *frame_len);

/*
 * A header the tap wrote for a received packet, made fit for the driver: false if the packet cannot
 * be delivered with these features (a GSO frame or a partial checksum the driver did not ask for; the
 * tap is told not to send those, but packets queued before a renegotiation may be). Clears the flags
 * the driver did not negotiate and sets num_buffers.
 */
bool net_rx_fix_hdr(struct virtio_net_hdr_v1 *h, uint64_t features, uint16_t num_buffers);

/* Whether an RX chain may receive anything: only device-writable segments, room for the header. */
bool net_rx_chain_ok(const struct virtq_chain *c);

/*
 * One received packet (header + frame, as read from the tap into a bounce buffer) spread over as many
 * receive chains as it needs (MRG_RXBUF). net_rx_place() copies the next part into one chain and
 * records its used length; net_rx_done() says whether the packet is placed; the caller then writes the
 * header (with num_buffers = nr_bufs) into the first chain and returns the chains in order.
 */
struct net_rx_merge {
	const uint8_t *pkt;
	uint32_t len;           /* bytes of pkt, header included */
	uint32_t placed;        /* bytes copied so far */
	uint16_t nr_bufs;       /* chains used so far */
	uint16_t max_bufs;      /* no more than this many (the queue size) */
	uint16_t heads[NET_QUEUE_MAX];
	uint32_t lens[NET_QUEUE_MAX];
};

/* max_bufs: the queue size, at most NET_QUEUE_MAX. */
void net_rx_merge_start(struct net_rx_merge *m, const uint8_t *pkt, uint32_t len, uint16_t max_bufs);
/* Copies into chain c (which must pass net_rx_chain_ok); returns the bytes it took, or -1 when the
 * packet would need more than max_bufs chains (drop it: return every chain with length 0). */
int64_t net_rx_place(struct net_rx_merge *m, const struct virtq_chain *c);
bool net_rx_done(const struct net_rx_merge *m);

/* Copies from the writable segments of a chain (what the device wrote) into dst. */
uint64_t net_chain_read_in(const struct virtq_chain *c, uint64_t offset, void *dst, uint64_t len);

/* "02:xx:.." → mac; false on anything else, a multicast address or all zeroes. */
bool net_parse_mac(const char *s, uint8_t mac[6]);

#endif
