/*
 * libFuzzer target: what a client writes to the agent (tools/agent/frame.c, tools/agent/request.c). The
 * input is the byte stream of one connection: frames are decoded from it one after the other, as the
 * agent does from its read buffer, until it needs more bytes or a frame is bad (the agent closes the
 * connection there); the JSON of every REQUEST goes through agent_request_parse and agent_request_free.
 * Nothing is executed. The target checks what frame.h and request.h promise:
 *   - a decoded frame lies inside the buffer, its lengths within the bounds; one byte less is NEED_MORE;
 *   - a bad frame says why; re-encoding a decoded header gives the same 16 bytes;
 *   - a parsed request has a known op, every required field, strings without NUL, paths < PATH_MAX;
 *   - a refused one is BAD_REQUEST with a message, holds nothing, and its error turns into JSON.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/agent/frame.h"
#include "tools/agent/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what)
{
	fprintf(stderr, "fuzz_agent_request: broken promise: %s\n", what);
	abort();
}

/* max 0: no bound */
static void check_string(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = max ? strnlen(s, max + 1) : strlen(s);
	if (n == 0 || (max && n > max))
		broken("a string field that is empty or too long");
}

static void check_request(const struct agent_request *r)
{
	if ((unsigned)r->op >= AGENT_OP_COUNT || !r->root)
		broken("parsed request without an op or a root");
	if (strcmp(agent_op_name(r->op), "?") == 0)
		broken("op without a name");
	check_string(r->path, PATH_MAX - 1);
	check_string(r->path2, PATH_MAX - 1);
	check_string(r->cmd, PATH_MAX - 1);
	check_string(r->cwd, PATH_MAX - 1);
	check_string(r->prefix, PATH_MAX - 1);
	check_string(r->user, 0);
	check_string(r->id, 0);
	check_string(r->hostname, 0);
	if (r->mode < -1 || r->mode > 07777)
		broken("mode out of range");
	if (r->uid < -1 || r->uid > 0xfffffffell || r->gid < -1 || r->gid > 0xfffffffell)
		broken("uid/gid out of range");
	if (r->offset < 0 || r->length < -1 || r->timeout_ms < 0 || r->signal < 0)
		broken("negative offset, length, timeout or signal");
	if (r->output_buffer && (r->output_buffer < AGENT_OUTPUT_BUFFER_MIN || r->output_buffer > AGENT_OUTPUT_BUFFER_MAX))
		broken("outputBufferBytes out of range");
	if (r->args) {
		size_t i;
		json_t *a;
		if (!json_is_array(r->args))
			broken("args is not an array");
		json_array_foreach(r->args, i, a)
			if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
				broken("args holds a non-string or a NUL");
	}
	if (r->env) {
		const char *k;
		json_t *v;
		if (!json_is_object(r->env))
			broken("env is not an object");
		json_object_foreach(r->env, k, v)
			if (!*k || strchr(k, '=') || !json_is_string(v))
				broken("env with a bad name or value");
	}
	/* the fields each op needs */
	switch (r->op) {
	case AGENT_OP_RENAME:
	case AGENT_OP_COPY_FILE:
	case AGENT_OP_SYMLINK:
		if (!r->path || !r->path2)
			broken("two-path op without both paths");
		break;
	case AGENT_OP_READ_FILE: case AGENT_OP_WRITE_FILE: case AGENT_OP_APPEND_FILE: case AGENT_OP_MKDIR:
	case AGENT_OP_READDIR: case AGENT_OP_STAT: case AGENT_OP_LSTAT: case AGENT_OP_REALPATH:
	case AGENT_OP_UNLINK: case AGENT_OP_RM: case AGENT_OP_RMDIR: case AGENT_OP_TRUNCATE:
	case AGENT_OP_READLINK: case AGENT_OP_ACCESS: case AGENT_OP_EXISTS:
		if (!r->path)
			broken("file op without a path");
		break;
	case AGENT_OP_CHMOD:
		if (!r->path || r->mode < 0)
			broken("chmod without path or mode");
		break;
	case AGENT_OP_CHOWN:
		if (!r->path || !(r->given & (1ull << AGENT_F_UID)) || !(r->given & (1ull << AGENT_F_GID)))
			broken("chown without path, uid or gid");
		break;
	case AGENT_OP_MKDTEMP:
		if (!r->prefix)
			broken("mkdtemp without a prefix");
		break;
	case AGENT_OP_RUN:
		if (!r->cmd)
			broken("run without cmd");
		break;
	case AGENT_OP_ATTACH: case AGENT_OP_STDIN: case AGENT_OP_GET:
		if (!r->id)
			broken("op without its command id");
		break;
	case AGENT_OP_SIGNAL:
		if (!r->id || r->signal < 1)
			broken("signal without id or signal");
		break;
	case AGENT_OP_HELLO:
		if (r->version < 1)
			broken("hello without a version");
		break;
	default:
		break;
	}
}

static void parse_json(const char *json, size_t len)
{
	struct agent_request r;
	struct agent_error err;
	memset(&err, 0, sizeof(err));
	if (agent_request_parse(json, len, &r, &err) == 0) {
		check_request(&r);
		agent_request_free(&r);
		if (r.root)
			broken("agent_request_free left the root");
		return;
	}
	if (strcmp(err.code, AGENT_E_BAD_REQUEST) || !err.message[0] || err.errnum)
		broken("a refused request that is not BAD_REQUEST with a message");
	if (r.root)
		broken("a refused request holds a root");
	json_t *j = agent_error_json(&err);
	if (!j)
		broken("agent_error_json failed");
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	while (off < size) {
		const uint8_t *buf = data + off;
		size_t len = size - off, used = 0;
		struct frame f;
		const char *why = NULL;
		enum frame_status st = frame_decode(buf, len, &f, &used, &why);
		if (st == FRAME_BAD) {
			if (!why || !*why)
				broken("a bad frame without a reason");
			break; /* the agent closes the connection */
		}
		if (st == FRAME_NEED_MORE) {
			if (why)
				broken("NEED_MORE with a reason");
			break; /* the agent waits for more bytes; the input has none */
		}
		if (st != FRAME_OK)
			broken("unknown frame status");
		if (used < FRAME_HEADER_SIZE || used > len || used > FRAME_MAX_SIZE ||
		    used != FRAME_HEADER_SIZE + (size_t)f.json_len + f.data_len)
			broken("frame size");
		if (f.id == 0 || f.json_len > FRAME_MAX_JSON || f.data_len > FRAME_MAX_DATA)
			broken("frame fields out of bounds");
		if ((f.json_len == 0) != (f.json == NULL) || (f.data_len == 0) != (f.data == NULL))
			broken("NULL part pointers");
		if ((f.json && (const uint8_t *)f.json != buf + FRAME_HEADER_SIZE) ||
		    (f.data && f.data != buf + FRAME_HEADER_SIZE + f.json_len))
			broken("part pointers outside the frame");
		uint8_t hdr[FRAME_HEADER_SIZE];
		if (frame_encode_header(hdr, f.type, f.flags, f.id, f.json_len, f.data_len) ||
		    memcmp(hdr, buf, FRAME_HEADER_SIZE))
			broken("re-encoded header differs");
		struct frame g;
		size_t used2 = 0;
		if (frame_decode(buf, used - 1, &g, &used2, &why) != FRAME_NEED_MORE)
			broken("a frame less one byte is not NEED_MORE");
		if (f.type == FRAME_REQUEST && f.json) {
			/* an exact copy, so that a read past the JSON part is caught */
			char *json = malloc(f.json_len);
			if (!json)
				abort();
			memcpy(json, f.json, f.json_len);
			parse_json(json, f.json_len);
			free(json);
		} else if (f.type == FRAME_REQUEST) {
			parse_json(NULL, 0); /* a request without JSON is refused too */
		}
		off += used;
	}
	return 0;
}
