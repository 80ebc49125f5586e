/* The kvmbox agent protocol's framing (docs/agent-protocol.md), shared by the guest agent and libkvmbox.
 *
 * Every message is one frame: a 16-byte header, then json_len bytes of JSON (an object, or nothing), then
 * data_len bytes of raw data (file contents, command output, stdin). Both lengths are bounded, so a peer
 * never makes the other buffer more than FRAME_MAX_SIZE bytes for one frame. Pure functions over bytes:
 * unit-tested and fuzzed. */
#ifndef KVMBOX_AGENT_FRAME_H
#define KVMBOX_AGENT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTO_VERSION 1
#define AGENT_VSOCK_PORT    1024          /* the port the agent listens on in the guest */
#define FRAME_MAGIC         0x4b          /* 'K' */
#define FRAME_HEADER_SIZE   16
#define FRAME_MAX_JSON      (1024u * 1024) /* one request, response or event */
#define FRAME_MAX_DATA      (256u * 1024) /* one chunk of data */
#define FRAME_MAX_SIZE      (FRAME_HEADER_SIZE + FRAME_MAX_JSON + FRAME_MAX_DATA)

enum frame_type {
	FRAME_REQUEST = 1,  /* client → agent: JSON {"op": ...}, data optional */
	FRAME_RESPONSE = 2, /* agent → client: the one final answer to a request id */
	FRAME_EVENT = 3,    /* agent → client: an intermediate JSON message for a request id */
	FRAME_DATA = 4,     /* either way: a chunk of bytes for a request id, JSON meta optional */
};

/* flags */
#define FRAME_F_MORE 0x01u /* client → agent: DATA frames for this id follow; the last one clears it */
#define FRAME_F_KNOWN FRAME_F_MORE

struct frame {
	uint8_t type;
	uint8_t flags;
	uint32_t id;         /* chosen by the client for each request; 0 is reserved */
	const char *json;    /* points into the decoded buffer; NOT NUL-terminated; NULL when json_len is 0 */
	uint32_t json_len;
	const uint8_t *data; /* points into the decoded buffer; NULL when data_len is 0 */
	uint32_t data_len;
};

enum frame_status {
	FRAME_OK = 1,        /* one frame decoded; *used is its size */
	FRAME_NEED_MORE = 0, /* a valid prefix: read more bytes */
	FRAME_BAD = -1,      /* never valid: close the connection (msg says why) */
};

/* Decode the frame at the start of buf. On FRAME_BAD, *why names the broken field (a constant string). */
enum frame_status frame_decode(const uint8_t *buf, size_t len, struct frame *f, size_t *used, const char **why);

/* Write the header of a frame into hdr; returns -1 (and writes nothing) when a length is over its bound
 * or the type is unknown. */
int frame_encode_header(uint8_t hdr[FRAME_HEADER_SIZE], uint8_t type, uint8_t flags, uint32_t id,
			size_t json_len, size_t data_len);

const char *frame_type_name(uint8_t type);

#endif
