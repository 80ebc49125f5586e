/*
 * virtio-vsock connections, without any I/O: the packet format, the connection table and each
 * connection's state machine and credit-based flow control (virtio 1.2 section 5.10). The device
 * (devices/virtio_vsock.c) feeds it the guest's packets and the results of host socket I/O, and asks it
 * what to read from and write to each host socket and what to put in the guest's rx buffers. Unit tests
 * and the fuzzer drive it with fake I/O.
 *
 * Memory is bounded whatever either peer does: per connection a guest->host buffer of exactly the
 * buf_alloc we advertise (a guest that overruns its credit is reset) and a host->guest buffer that is
 * only refilled from the host socket when it has room; at most VSOCK_MAX_CONNS connections; RSTs for
 * packets that match no connection go through a fixed-size queue (dropped when it is full).
 *
 * Everything here runs on one thread at a time (the device holds the transport lock).
 */
#ifndef KVMBOX_VSOCK_CONN_H
#define KVMBOX_VSOCK_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "vmm/log.h"

#define VSOCK_HOST_CID 2
#define VSOCK_HDR_SIZE 44

#define VSOCK_TYPE_STREAM 1

#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7

#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2
#define VSOCK_SHUTDOWN_BOTH 3

#define VSOCK_BUF_ALLOC (256u * 1024)  /* our buf_alloc: the guest->host buffer of each connection */
#define VSOCK_RX_BUF (128u * 1024)     /* host->guest buffer of each connection */
#define VSOCK_MAX_PKT (64u * 1024)     /* largest payload in one packet, either way (Linux's limit too) */
#define VSOCK_MAX_CONNS 256u           /* connections, including closed ones still being torn down */
#define VSOCK_RST_QUEUE 128u           /* RSTs to the guest for packets without a connection */
#define VSOCK_HOST_PORT_MIN 1024u      /* local ports of host-initiated connections start here */
#define VSOCK_BUCKETS 256u

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
};

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h);
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE]);

/* "CONNECT <port>\n" (an optional '\r' before the '\n'): the first line a host program writes to the
 * listening socket. line[0..len) holds the line without its '\n'. Returns 0 and the port, or -1. */
int vsock_parse_connect(const char *line, size_t len, uint32_t *port);

/* A byte ring of a power-of-two size; rd and wr run freely (wr - rd bytes are queued). */
struct vsock_ring {
	uint8_t *buf;
	uint32_t size;
	uint32_t rd, wr;
};

/* Intrusive doubly-linked list (circular, with a head node). */
struct vsock_link {
	struct vsock_link *prev, *next;
};

enum vsock_state {
	VSOCK_CONNECTING_GUEST, /* host-initiated: REQUEST sent (or queued), waiting for the guest's RESPONSE */
	VSOCK_CONNECTING_HOST,  /* guest-initiated: the device is connecting to PATH_<port> */
	VSOCK_ESTABLISHED,
	VSOCK_CLOSING,          /* the guest shut down both ways: forward what it sent, then RST */
	VSOCK_CLOSED,           /* out of the table: the device tears the host socket down, then frees it */
};

#define VSOCK_PEND_REQUEST 1u
#define VSOCK_PEND_RESPONSE 2u
#define VSOCK_PEND_CREDIT_UPDATE 4u
#define VSOCK_PEND_CREDIT_REQUEST 8u

struct vsock_mux;

struct vsock_conn {
	struct vsock_mux *mux;
	uint32_t local_port;    /* the host side's port */
	uint32_t peer_port;     /* the guest's port */
	bool host_initiated;
	enum vsock_state state;
	struct vsock_conn *hnext;       /* hash chain */
	struct vsock_link all, rx, dirty;
	bool in_rx, in_dirty;
	uint32_t pending;               /* VSOCK_PEND_* control packets to send to the guest */
	uint32_t guest_shutdown;        /* SHUTDOWN flags the guest sent (cumulative) */
	bool host_eof;                  /* the host socket reached end-of-file */
	bool eof_sent;                  /* ...and the guest was told (SHUTDOWN SEND) */
	bool credit_requested;          /* a CREDIT_REQUEST went out since the guest's credit last moved */
	/* Credit, host->guest: what the guest advertised and what we sent. */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint32_t rx_cnt;
	/* Credit, guest->host: bytes forwarded to the host socket, and the value the guest last saw. */
	uint32_t fwd_cnt, fwd_cnt_sent;
	struct vsock_ring tx;           /* guest -> host */
	struct vsock_ring rx_ring;      /* host -> guest */
	char reply[24];                 /* "OK <port>\n" to the host program, ahead of the guest's data */
	uint8_t reply_len, reply_off;
	void *host;                     /* the device's state for the host socket */
};

struct vsock_rst {
	uint32_t src_port, dst_port;    /* as the guest will see them: src is ours */
	uint64_t src_cid;
};

struct vsock_stats {
	uint64_t conns_opened, conns_refused, rst_sent, rst_dropped, bad_packets, credit_violations;
	uint64_t bytes_to_guest, bytes_to_host;
};

struct vsock_mux {
	uint64_t guest_cid;
	const struct log *log;
	struct vsock_conn *buckets[VSOCK_BUCKETS];
	struct vsock_link all;          /* every connection, closed ones included */
	struct vsock_link rx_list;      /* connections with something to send to the guest, round robin */
	struct vsock_link dirty_list;   /* connections whose host I/O the device should look at */
	unsigned nr_conns;
	uint32_t next_host_port;
	struct vsock_rst rst[VSOCK_RST_QUEUE];
	unsigned rst_head, rst_len;
	struct vsock_stats stats;
};

void vsock_mux_init(struct vsock_mux *m, uint64_t guest_cid, const struct log *log);
/* Frees every connection (the device has closed the host sockets). */
void vsock_mux_destroy(struct vsock_mux *m);
/* The driver reset the device: every connection closes without a word to the guest, except host
 * programs' connections whose REQUEST was not delivered yet (they wait for the next driver). */
void vsock_mux_reset(struct vsock_mux *m);

/* A host program asked for guest port `guest_port`; early[0..n) is what it wrote after the CONNECT line
 * (at most VSOCK_RX_BUF bytes). Returns the new connection (a REQUEST to the guest is queued), or NULL
 * when there are too many connections or no memory. */
struct vsock_conn *vsock_mux_host_connect(struct vsock_mux *m, uint32_t guest_port, const void *early, size_t n);

/* One packet from the guest's tx queue: the chain's readable segments (header, then payload). */
void vsock_mux_guest_packet(struct vsock_mux *m, const struct iovec *iov, unsigned niov);

/* Whether there is a packet for the guest (an rx buffer would be used). */
bool vsock_mux_rx_pending(struct vsock_mux *m);
/* Writes the next packet into an rx buffer's writable segments; returns the bytes written (header and
 * payload), 0 when nothing is pending or the buffer cannot hold a header. */
size_t vsock_mux_rx_packet(struct vsock_mux *m, const struct iovec *iov, unsigned niov);

/* The next connection whose host I/O may need attention (new data to send, room to receive, a
 * connect to start, closed), or NULL. */
struct vsock_conn *vsock_mux_next_dirty(struct vsock_mux *m);
/* The device is done with a closed connection's host socket: free it. */
void vsock_mux_free_conn(struct vsock_mux *m, struct vsock_conn *c);

/* Host socket I/O of one connection. */
/* Where to receive host data now (iov[2]); 0 segments: don't read. */
unsigned vsock_conn_recv_space(const struct vsock_conn *c, struct iovec iov[2]);
/* A receive finished: n > 0 bytes landed in the space given, 0 end-of-file, < 0 -errno. */
void vsock_conn_host_received(struct vsock_conn *c, ssize_t n);
/* What to send to the host socket now (iov[3]); 0 segments: nothing. */
unsigned vsock_conn_send_data(const struct vsock_conn *c, struct iovec iov[3]);
/* A send finished: n >= 0 bytes went out from the start of what was given, < 0 -errno. */
void vsock_conn_host_sent(struct vsock_conn *c, ssize_t n);
/* Whether the host socket's write side should be shut down now (the guest shut SEND, all forwarded). */
bool vsock_conn_want_shut_wr(const struct vsock_conn *c);
/* The connect to PATH_<port> finished: 0 or -errno. */
void vsock_conn_host_connected(struct vsock_conn *c, int res);

#endif
