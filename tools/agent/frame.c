/* Frame codec of the agent protocol (frame.h). The header, little-endian:
 *   0 magic 'K'  1 version  2 type  3 flags  4 id u32  8 json_len u32  12 data_len u32 */
#include "tools/agent/frame.h"

#include <string.h>

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = v >> 24;
}

static int type_known(uint8_t type)
{
	return type >= FRAME_REQUEST && type <= FRAME_DATA;
}

enum frame_status frame_decode(const uint8_t *buf, size_t len, struct frame *f, size_t *used, const char **why)
{
	*why = NULL;
	/* Reject a bad header as early as its first bytes arrive, not after 16. */
	if (len >= 1 && buf[0] != FRAME_MAGIC)
		return *why = "bad magic (not a kvmbox agent frame)", FRAME_BAD;
	if (len >= 2 && buf[1] != AGENT_PROTO_VERSION)
		return *why = "unsupported protocol version", FRAME_BAD;
	if (len >= 3 && !type_known(buf[2]))
		return *why = "unknown frame type", FRAME_BAD;
	if (len >= 4 && (buf[3] & ~FRAME_F_KNOWN))
		return *why = "unknown frame flags", FRAME_BAD;
	if (len < FRAME_HEADER_SIZE)
		return FRAME_NEED_MORE;
	uint32_t id = get_u32(buf + 4), json_len = get_u32(buf + 8), data_len = get_u32(buf + 12);
	if (id == 0)
		return *why = "frame id 0 is reserved", FRAME_BAD;
	if (json_len > FRAME_MAX_JSON)
		return *why = "JSON part over 1 MiB", FRAME_BAD;
	if (data_len > FRAME_MAX_DATA)
		return *why = "data part over 256 KiB", FRAME_BAD;
	if ((buf[3] & FRAME_F_MORE) && buf[2] != FRAME_REQUEST && buf[2] != FRAME_DATA)
		return *why = "MORE flag on a frame that is neither a request nor data", FRAME_BAD;
	size_t total = FRAME_HEADER_SIZE + (size_t)json_len + data_len; /* bounded above: no overflow */
	if (len < total)
		return FRAME_NEED_MORE;
	memset(f, 0, sizeof(*f));
	f->type = buf[2];
	f->flags = buf[3];
	f->id = id;
	f->json_len = json_len;
	f->json = json_len ? (const char *)buf + FRAME_HEADER_SIZE : NULL;
	f->data_len = data_len;
	f->data = data_len ? buf + FRAME_HEADER_SIZE + json_len : NULL;
	*used = total;
	return FRAME_OK;
}

int frame_encode_header(uint8_t hdr[FRAME_HEADER_SIZE], uint8_t type, uint8_t flags, uint32_t id,
			size_t json_len, size_t data_len)
{
	if (!type_known(type) || (flags & ~FRAME_F_KNOWN) || id == 0 || json_len > FRAME_MAX_JSON ||
	    data_len > FRAME_MAX_DATA)
		return -1;
	hdr[0] = FRAME_MAGIC;
	hdr[1] = AGENT_PROTO_VERSION;
	hdr[2] = type;
	hdr[3] = flags;
	put_u32(hdr + 4, id);
	put_u32(hdr + 8, (uint32_t)json_len);
	put_u32(hdr + 12, (uint32_t)data_len);
	return 0;
}

const char *frame_type_name(uint8_t type)
{
	switch (type) {
	case FRAME_REQUEST: return "request";
	case FRAME_RESPONSE: return "response";
	case FRAME_EVENT: return "event";
	case FRAME_DATA: return "data";
	}
	return "unknown";
}
