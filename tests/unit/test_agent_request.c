/* The agent protocol's frame codec (tools/agent/frame.c) and request parser (tools/agent/request.c):
 * every prefix of a frame, every broken header field, the length bounds; every op with its required
 * fields, and each way a request can be wrong; the error objects. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "tools/agent/frame.h"
#include "tools/agent/request.h"

UNIT_SUITE(agent_frame);
UNIT_SUITE(agent_request);

/* ---- frames ---- */

/* A frame on the heap, exactly its size (ASan sees any read past it). */
static uint8_t *mkframe(uint8_t type, uint8_t flags, uint32_t id, const char *json, size_t json_len,
			const void *data, size_t data_len, size_t *len)
{
	*len = FRAME_HEADER_SIZE + json_len + data_len;
	uint8_t *b = malloc(*len);
	b[0] = FRAME_MAGIC;
	b[1] = AGENT_PROTO_VERSION;
	b[2] = type;
	b[3] = flags;
	put32(b + 4, id);
	put32(b + 8, (uint32_t)json_len);
	put32(b + 12, (uint32_t)data_len);
	if (json_len)
		memcpy(b + FRAME_HEADER_SIZE, json, json_len);
	if (data_len)
		memcpy(b + FRAME_HEADER_SIZE + json_len, data, data_len);
	return b;
}

static enum frame_status decode(const uint8_t *b, size_t len, struct frame *f, size_t *used, const char **why)
{
	/* a copy of exactly len bytes, so that reading past a prefix is caught */
	uint8_t *c = heap_copy(b, len);
	enum frame_status st = frame_decode(c, len, f, used, why);
	if (st == FRAME_OK) {
		/* point into the caller's buffer instead of the copy about to be freed */
		if (f->json)
			f->json = (const char *)b + (f->json - (const char *)c);
		if (f->data)
			f->data = b + (f->data - c);
	}
	free(c);
	return st;
}

Test(agent_frame, every_prefix_needs_more)
{
	const char *json = "{\"op\":\"list\"}";
	size_t len;
	uint8_t *b = mkframe(FRAME_REQUEST, FRAME_F_MORE, 7, json, strlen(json), "abc", 3, &len);
	for (size_t n = 0; n < len; n++) {
		struct frame f;
		size_t used = 12345;
		const char *why = "unset";
		cr_assert_eq(decode(b, n, &f, &used, &why), FRAME_NEED_MORE, "prefix %zu", n);
		cr_assert_null(why);
		cr_assert_eq(used, 12345, "used is only set for a frame");
	}
	struct frame f;
	size_t used = 0;
	const char *why;
	cr_assert_eq(decode(b, len, &f, &used, &why), FRAME_OK);
	cr_assert_eq(used, len);
	cr_assert_eq(f.type, FRAME_REQUEST);
	cr_assert_eq(f.flags, FRAME_F_MORE);
	cr_assert_eq(f.id, 7);
	cr_assert_eq(f.json_len, strlen(json));
	cr_assert_eq(memcmp(f.json, json, f.json_len), 0);
	cr_assert_eq(f.data_len, 3);
	cr_assert_eq(memcmp(f.data, "abc", 3), 0);
	free(b);
}

Test(agent_frame, empty_parts_are_null)
{
	size_t len;
	uint8_t *b = mkframe(FRAME_DATA, 0, 1, NULL, 0, NULL, 0, &len);
	struct frame f;
	size_t used;
	const char *why;
	cr_assert_eq(decode(b, len, &f, &used, &why), FRAME_OK);
	cr_assert_eq(used, FRAME_HEADER_SIZE);
	cr_assert_null(f.json);
	cr_assert_null(f.data);
	cr_assert_eq(f.json_len, 0);
	cr_assert_eq(f.data_len, 0);
	free(b);
}

/* Each broken header field, caught as soon as the byte that breaks it arrives. */
Test(agent_frame, bad_headers)
{
	static const struct {
		unsigned off;     /* the byte (or u32) to change */
		uint32_t value;
		bool u32;
		size_t bad_from;  /* the shortest prefix already refused */
		const char *why;
	} cases[] = {
		{ 0, 0x4c, false, 1, "magic" },
		{ 0, 0x00, false, 1, "magic" },
		{ 1, 0, false, 2, "version" },
		{ 1, 2, false, 2, "version" },
		{ 2, 0, false, 3, "type" },
		{ 2, 5, false, 3, "type" },
		{ 2, 0xff, false, 3, "type" },
		{ 3, 0x02, false, 4, "flags" },
		{ 3, 0x80, false, 4, "flags" },
		{ 4, 0, true, 16, "id 0" },
		{ 8, FRAME_MAX_JSON + 1, true, 16, "JSON" },
		{ 8, UINT32_MAX, true, 16, "JSON" },
		{ 12, FRAME_MAX_DATA + 1, true, 16, "data" },
		{ 12, UINT32_MAX, true, 16, "data" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *b = mkframe(FRAME_REQUEST, 0, 9, "{}", 2, NULL, 0, &len);
		if (cases[i].u32)
			put32(b + cases[i].off, cases[i].value);
		else
			b[cases[i].off] = (uint8_t)cases[i].value;
		for (size_t n = 0; n <= len; n++) {
			struct frame f;
			size_t used = 0;
			const char *why = NULL;
			enum frame_status st = decode(b, n, &f, &used, &why);
			if (n < cases[i].bad_from) {
				cr_assert_eq(st, FRAME_NEED_MORE, "case %zu prefix %zu", i, n);
			} else {
				cr_assert_eq(st, FRAME_BAD, "case %zu prefix %zu", i, n);
				cr_assert_not_null(why);
				cr_assert(strstr(why, cases[i].why), "case %zu: '%s'", i, why);
			}
		}
		free(b);
	}
}

Test(agent_frame, more_flag_only_on_request_and_data)
{
	static const struct {
		uint8_t type;
		enum frame_status st;
	} cases[] = {
		{ FRAME_REQUEST, FRAME_OK }, { FRAME_DATA, FRAME_OK },
		{ FRAME_RESPONSE, FRAME_BAD }, { FRAME_EVENT, FRAME_BAD },
	};
	for (size_t i = 0; i < 4; i++) {
		size_t len;
		uint8_t *b = mkframe(cases[i].type, FRAME_F_MORE, 3, NULL, 0, "x", 1, &len);
		struct frame f;
		size_t used;
		const char *why;
		cr_assert_eq(decode(b, len, &f, &used, &why), cases[i].st, "type %u", cases[i].type);
		if (cases[i].st == FRAME_BAD)
			cr_assert(strstr(why, "MORE"));
		free(b);
	}
}

Test(agent_frame, lengths_at_the_bounds)
{
	/* both parts at their largest: a valid frame, and every prefix of the header is too */
	size_t len = FRAME_MAX_SIZE;
	uint8_t *b = calloc(1, len);
	uint8_t hdr[FRAME_HEADER_SIZE];
	cr_assert_eq(frame_encode_header(hdr, FRAME_DATA, 0, UINT32_MAX, FRAME_MAX_JSON, FRAME_MAX_DATA), 0);
	memcpy(b, hdr, sizeof(hdr));
	struct frame f;
	size_t used = 0;
	const char *why;
	cr_assert_eq(frame_decode(b, FRAME_HEADER_SIZE, &f, &used, &why), FRAME_NEED_MORE);
	cr_assert_eq(frame_decode(b, len - 1, &f, &used, &why), FRAME_NEED_MORE);
	cr_assert_eq(frame_decode(b, len, &f, &used, &why), FRAME_OK);
	cr_assert_eq(used, FRAME_MAX_SIZE);
	cr_assert_eq(f.id, UINT32_MAX);
	cr_assert_eq(f.json_len, FRAME_MAX_JSON);
	cr_assert_eq(f.data_len, FRAME_MAX_DATA);
	cr_assert_eq(f.data, b + FRAME_HEADER_SIZE + FRAME_MAX_JSON);
	/* one over either bound: refused from the header alone */
	put32(b + 8, FRAME_MAX_JSON + 1);
	cr_assert_eq(frame_decode(b, FRAME_HEADER_SIZE, &f, &used, &why), FRAME_BAD);
	put32(b + 8, FRAME_MAX_JSON);
	put32(b + 12, FRAME_MAX_DATA + 1);
	cr_assert_eq(frame_decode(b, FRAME_HEADER_SIZE, &f, &used, &why), FRAME_BAD);
	free(b);
}

Test(agent_frame, back_to_back)
{
	size_t l1, l2;
	const char *json = "{\"op\":\"stdin\",\"id\":\"c\"}";
	uint8_t *a = mkframe(FRAME_REQUEST, FRAME_F_MORE, 1, json, strlen(json), "in", 2, &l1);
	uint8_t *d = mkframe(FRAME_DATA, 0, 1, NULL, 0, "put", 3, &l2);
	uint8_t *both = malloc(l1 + l2 + 5);
	memcpy(both, a, l1);
	memcpy(both + l1, d, l2);
	memcpy(both + l1 + l2, "\x4b\x01\x04\x00\x02", 5); /* and the start of a third */
	size_t len = l1 + l2 + 5, off = 0, used;
	struct frame f;
	const char *why;
	cr_assert_eq(frame_decode(both, len, &f, &used, &why), FRAME_OK);
	cr_assert_eq(used, l1);
	cr_assert_eq(f.type, FRAME_REQUEST);
	cr_assert_eq(f.data_len, 2);
	off += used;
	cr_assert_eq(frame_decode(both + off, len - off, &f, &used, &why), FRAME_OK);
	cr_assert_eq(used, l2);
	cr_assert_eq(f.type, FRAME_DATA);
	cr_assert_eq(f.flags, 0);
	cr_assert_eq(memcmp(f.data, "put", 3), 0);
	off += used;
	cr_assert_eq(frame_decode(both + off, len - off, &f, &used, &why), FRAME_NEED_MORE);
	free(a);
	free(d);
	free(both);
}

Test(agent_frame, encode_round_trip)
{
	static const uint8_t types[] = { FRAME_REQUEST, FRAME_RESPONSE, FRAME_EVENT, FRAME_DATA };
	for (size_t i = 0; i < 4; i++) {
		uint8_t flags = types[i] == FRAME_REQUEST || types[i] == FRAME_DATA ? FRAME_F_MORE : 0;
		uint8_t b[FRAME_HEADER_SIZE + 8];
		cr_assert_eq(frame_encode_header(b, types[i], flags, 0x01020304u + i, 3, 5), 0);
		cr_assert_eq(b[0], 'K');
		cr_assert_eq(b[1], 1);
		cr_assert_eq(get32(b + 4), 0x01020304u + i); /* little-endian */
		cr_assert_eq(b[4], 0x04 + i);
		memcpy(b + FRAME_HEADER_SIZE, "{}\0abcde", 8);
		struct frame f;
		size_t used;
		const char *why;
		cr_assert_eq(frame_decode(b, sizeof(b), &f, &used, &why), FRAME_OK);
		cr_assert_eq(used, sizeof(b));
		cr_assert_eq(f.type, types[i]);
		cr_assert_eq(f.flags, flags);
		cr_assert_eq(f.id, 0x01020304u + i);
		cr_assert_eq(f.json_len, 3);
		cr_assert_eq(f.data_len, 5);
		cr_assert_eq(memcmp(f.data, "abcde", 5), 0);
	}
	cr_assert_str_eq(frame_type_name(FRAME_REQUEST), "request");
	cr_assert_str_eq(frame_type_name(FRAME_RESPONSE), "response");
	cr_assert_str_eq(frame_type_name(FRAME_EVENT), "event");
	cr_assert_str_eq(frame_type_name(FRAME_DATA), "data");
	cr_assert_str_eq(frame_type_name(0), "unknown");
	cr_assert_str_eq(frame_type_name(200), "unknown");
}

Test(agent_frame, encode_refuses)
{
	static const struct {
		uint8_t type, flags;
		uint32_t id;
		size_t json_len, data_len;
	} bad[] = {
		{ 0, 0, 1, 0, 0 }, { 5, 0, 1, 0, 0 }, { FRAME_DATA, 0x02, 1, 0, 0 }, { FRAME_DATA, 0xfe, 1, 0, 0 },
		{ FRAME_DATA, 0, 0, 0, 0 }, { FRAME_EVENT, 0, 1, FRAME_MAX_JSON + 1, 0 },
		{ FRAME_EVENT, 0, 1, 0, FRAME_MAX_DATA + 1 }, { FRAME_EVENT, 0, 1, SIZE_MAX, 0 },
		{ FRAME_EVENT, 0, 1, 0, (size_t)UINT32_MAX + 2 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t hdr[FRAME_HEADER_SIZE];
		memset(hdr, 0xa5, sizeof(hdr));
		cr_assert_eq(frame_encode_header(hdr, bad[i].type, bad[i].flags, bad[i].id, bad[i].json_len,
						 bad[i].data_len), -1, "case %zu", i);
		for (size_t j = 0; j < sizeof(hdr); j++)
			cr_assert_eq(hdr[j], 0xa5, "case %zu wrote byte %zu", i, j);
	}
	uint8_t hdr[FRAME_HEADER_SIZE];
	cr_assert_eq(frame_encode_header(hdr, FRAME_EVENT, 0, 1, FRAME_MAX_JSON, FRAME_MAX_DATA), 0);
}

/* ---- requests ---- */

static struct agent_request req;
static struct agent_error err;

static void req_fini(void)
{
	agent_request_free(&req);
}

static int parse(const char *json)
{
	memset(&err, 0, sizeof(err));
	agent_request_free(&req);
	int rc = agent_request_parse(json, strlen(json), &req, &err);
	if (rc) {
		cr_assert_eq(rc, -1);
		cr_assert_null(req.root, "a refused request holds nothing");
	}
	return rc;
}

#define ACCEPTS(json) cr_assert_eq(parse(json), 0, "%s refused: %s", json, err.message)
/* Refused as BAD_REQUEST, the message containing what. */
#define REFUSES(json, what) do { \
		cr_assert_eq(parse(json), -1, "%s accepted", json); \
		cr_assert_str_eq(err.code, "BAD_REQUEST"); \
		cr_assert_eq(err.errnum, 0); \
		cr_assert(strstr(err.message, what), "%s: message '%s' lacks '%s'", json, err.message, what); \
	} while (0)

#define R(name) Test(agent_request, name, .fini = req_fini)

R(every_op_with_its_required_fields)
{
	static const struct {
		const char *json;
		enum agent_op op;
		const char *name;
	} ok[] = {
		{ "{\"op\":\"hello\",\"version\":1}", AGENT_OP_HELLO, "hello" },
		{ "{\"op\":\"configure\"}", AGENT_OP_CONFIGURE, "configure" },
		{ "{\"op\":\"shutdown\"}", AGENT_OP_SHUTDOWN, "shutdown" },
		{ "{\"op\":\"run\",\"cmd\":\"/bin/true\"}", AGENT_OP_RUN, "run" },
		{ "{\"op\":\"attach\",\"id\":\"cmd-1\"}", AGENT_OP_ATTACH, "attach" },
		{ "{\"op\":\"stdin\",\"id\":\"cmd-1\"}", AGENT_OP_STDIN, "stdin" },
		{ "{\"op\":\"signal\",\"id\":\"cmd-1\",\"signal\":\"SIGTERM\"}", AGENT_OP_SIGNAL, "signal" },
		{ "{\"op\":\"get\",\"id\":\"cmd-1\"}", AGENT_OP_GET, "get" },
		{ "{\"op\":\"list\"}", AGENT_OP_LIST, "list" },
		{ "{\"op\":\"readFile\",\"path\":\"/f\"}", AGENT_OP_READ_FILE, "readFile" },
		{ "{\"op\":\"writeFile\",\"path\":\"/f\"}", AGENT_OP_WRITE_FILE, "writeFile" },
		{ "{\"op\":\"appendFile\",\"path\":\"/f\"}", AGENT_OP_APPEND_FILE, "appendFile" },
		{ "{\"op\":\"mkdir\",\"path\":\"/d\"}", AGENT_OP_MKDIR, "mkdir" },
		{ "{\"op\":\"readdir\",\"path\":\"/d\"}", AGENT_OP_READDIR, "readdir" },
		{ "{\"op\":\"mkdtemp\",\"prefix\":\"/tmp/x-\"}", AGENT_OP_MKDTEMP, "mkdtemp" },
		{ "{\"op\":\"stat\",\"path\":\"/f\"}", AGENT_OP_STAT, "stat" },
		{ "{\"op\":\"lstat\",\"path\":\"/f\"}", AGENT_OP_LSTAT, "lstat" },
		{ "{\"op\":\"realpath\",\"path\":\"/f\"}", AGENT_OP_REALPATH, "realpath" },
		{ "{\"op\":\"rename\",\"oldPath\":\"/a\",\"newPath\":\"/b\"}", AGENT_OP_RENAME, "rename" },
		{ "{\"op\":\"copyFile\",\"src\":\"/a\",\"dest\":\"/b\"}", AGENT_OP_COPY_FILE, "copyFile" },
		{ "{\"op\":\"unlink\",\"path\":\"/f\"}", AGENT_OP_UNLINK, "unlink" },
		{ "{\"op\":\"rm\",\"path\":\"/f\"}", AGENT_OP_RM, "rm" },
		{ "{\"op\":\"rmdir\",\"path\":\"/d\"}", AGENT_OP_RMDIR, "rmdir" },
		{ "{\"op\":\"truncate\",\"path\":\"/f\"}", AGENT_OP_TRUNCATE, "truncate" },
		{ "{\"op\":\"chmod\",\"path\":\"/f\",\"mode\":420}", AGENT_OP_CHMOD, "chmod" },
		{ "{\"op\":\"chown\",\"path\":\"/f\",\"uid\":0,\"gid\":0}", AGENT_OP_CHOWN, "chown" },
		{ "{\"op\":\"symlink\",\"target\":\"/a\",\"path\":\"/l\"}", AGENT_OP_SYMLINK, "symlink" },
		{ "{\"op\":\"readlink\",\"path\":\"/l\"}", AGENT_OP_READLINK, "readlink" },
		{ "{\"op\":\"access\",\"path\":\"/f\"}", AGENT_OP_ACCESS, "access" },
		{ "{\"op\":\"exists\",\"path\":\"/f\"}", AGENT_OP_EXISTS, "exists" },
	};
	cr_assert_eq(sizeof(ok) / sizeof(ok[0]), AGENT_OP_COUNT, "one case per op");
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ACCEPTS(ok[i].json);
		cr_assert_eq(req.op, ok[i].op, "%s", ok[i].json);
		cr_assert_str_eq(agent_op_name(req.op), ok[i].name);
		/* the defaults */
		if (req.op != AGENT_OP_CHMOD)
			cr_assert_eq(req.mode, -1);
		if (req.op != AGENT_OP_CHOWN)
			cr_assert(req.uid == -1 && req.gid == -1);
		cr_assert_eq(req.length, -1);
		cr_assert(req.follow && req.output && req.preserve);
		cr_assert(!req.recursive && !req.force && !req.exclusive && !req.with_file_types);
		/* each required field, left out */
		json_t *j = json_loads(ok[i].json, 0, NULL);
		const char *k;
		json_t *v;
		void *tmp;
		json_object_foreach_safe(j, tmp, k, v) {
			if (strcmp(k, "op") == 0)
				continue;
			json_t *c = json_deep_copy(j);
			json_object_del(c, k);
			char *s = json_dumps(c, 0);
			char want[64];
			snprintf(want, sizeof(want), "missing field '%s'", k);
			REFUSES(s, want);
			free(s);
			json_decref(c);
		}
		json_decref(j);
	}
	cr_assert_str_eq(agent_op_name(AGENT_OP_COUNT), "?");
	cr_assert_str_eq(agent_op_name((enum agent_op)-1), "?");
}

R(fields_land_in_their_members)
{
	ACCEPTS("{\"op\":\"rename\",\"oldPath\":\"/a\",\"newPath\":\"/b\"}");
	cr_assert_str_eq(req.path, "/a");
	cr_assert_str_eq(req.path2, "/b");
	ACCEPTS("{\"op\":\"copyFile\",\"src\":\"s\",\"dest\":\"d\",\"exclusive\":true,\"preserve\":false}");
	cr_assert_str_eq(req.path, "s");
	cr_assert_str_eq(req.path2, "d");
	cr_assert(req.exclusive && !req.preserve);
	ACCEPTS("{\"op\":\"symlink\",\"target\":\"t\",\"path\":\"l\"}");
	cr_assert_str_eq(req.path, "l");
	cr_assert_str_eq(req.path2, "t");
	ACCEPTS("{\"op\":\"truncate\",\"path\":\"f\",\"len\":7}");
	cr_assert_eq(req.length, 7);
	ACCEPTS("{\"op\":\"readFile\",\"path\":\"f\",\"offset\":3,\"length\":9}");
	cr_assert_eq(req.offset, 3);
	cr_assert_eq(req.length, 9);
	ACCEPTS("{\"op\":\"attach\",\"id\":\"c\",\"fromOffset\":42,\"follow\":false,\"output\":false}");
	cr_assert_eq(req.offset, 42);
	cr_assert(!req.follow && !req.output);
	cr_assert_str_eq(req.id, "c");
	ACCEPTS("{\"op\":\"chown\",\"path\":\"f\",\"uid\":-1,\"gid\":4294967294}");
	cr_assert_eq(req.uid, -1);
	cr_assert_eq(req.gid, 4294967294ll);
	ACCEPTS("{\"op\":\"run\",\"cmd\":\"ls\",\"args\":[\"-l\",\"\"],\"cwd\":\"/\",\"env\":{\"A\":\"1\",\"B\":\"\"},"
		"\"user\":\"nobody\",\"sudo\":true,\"stdin\":true,\"detached\":true,\"timeoutMs\":1000,"
		"\"outputBufferBytes\":4096}");
	cr_assert_str_eq(req.cmd, "ls");
	cr_assert_eq(json_array_size(req.args), 2);
	cr_assert_eq(json_object_size(req.env), 2);
	cr_assert(req.sudo && req.stdin_open && req.detached);
	cr_assert_eq(req.timeout_ms, 1000);
	cr_assert_eq(req.output_buffer, 4096);
	cr_assert_str_eq(req.user, "nobody");
	cr_assert_str_eq(req.cwd, "/");
	cr_assert(req.given & (1ull << AGENT_F_SUDO));
	cr_assert(!(req.given & (1ull << AGENT_F_HOSTNAME)));
	ACCEPTS("{\"op\":\"configure\",\"env\":{},\"cwd\":\"/w\",\"user\":\"u\",\"hostname\":\"h\"}");
	cr_assert_str_eq(req.hostname, "h");
	ACCEPTS("{\"op\":\"readdir\",\"path\":\"d\",\"withFileTypes\":true}");
	cr_assert(req.with_file_types);
	ACCEPTS("{\"op\":\"mkdtemp\",\"prefix\":\"p\"}");
	cr_assert_str_eq(req.prefix, "p");
	ACCEPTS("{\"op\":\"stdin\",\"id\":\"c\",\"eof\":true}");
	cr_assert(req.eof);
	ACCEPTS("{\"op\":\"hello\",\"version\":1073741824}");
	cr_assert_eq(req.version, 1 << 30);
}

R(not_a_request)
{
	REFUSES("", "not valid JSON");
	REFUSES("{", "not valid JSON");
	REFUSES("{\"op\":\"list\"} x", "not valid JSON");
	REFUSES("[]", "must be a JSON object");
	REFUSES("[{\"op\":\"list\"}]", "must be a JSON object");
	REFUSES("\"list\"", "not valid JSON"); /* jansson wants an object or an array */
	REFUSES("{}", "needs \"op\"");
	REFUSES("{\"op\":null}", "needs \"op\"");
	REFUSES("{\"op\":7}", "needs \"op\"");
	REFUSES("{\"op\":\"nope\"}", "unknown op 'nope'");
	REFUSES("{\"op\":\"List\"}", "unknown op");
	REFUSES("{\"op\":\"\"}", "unknown op");
	REFUSES("{\"op\":\"list\\u0000x\"}", "\\u0000");
	REFUSES("{\"op\":\"list\",\"op\":\"get\"}", "not valid JSON"); /* duplicate keys */
	REFUSES("{\"op\":\"stat\",\"path\":\"a\",\"path\":\"b\"}", "duplicate");
	cr_assert_eq(agent_request_parse(NULL, 0, &req, &err), -1);
	cr_assert_str_eq(err.code, "BAD_REQUEST");
	/* the length is what counts, not a NUL */
	const char *j = "{\"op\":\"list\"}garbage";
	cr_assert_eq(agent_request_parse(j, 13, &req, &err), 0);
	cr_assert_eq(req.op, AGENT_OP_LIST);
}

R(unknown_fields)
{
	REFUSES("{\"op\":\"list\",\"path\":\"/\"}", "list: unknown field 'path'");
	REFUSES("{\"op\":\"stat\",\"path\":\"/\",\"Path\":\"/\"}", "unknown field 'Path'");
	/* a field of another op */
	REFUSES("{\"op\":\"rename\",\"oldPath\":\"a\",\"newPath\":\"b\",\"mode\":1}", "rename: unknown field 'mode'");
	REFUSES("{\"op\":\"appendFile\",\"path\":\"a\",\"exclusive\":true}", "unknown field 'exclusive'");
	REFUSES("{\"op\":\"rename\",\"path\":\"a\",\"newPath\":\"b\"}", "unknown field 'path'");
	/* even as null */
	REFUSES("{\"op\":\"list\",\"bogus\":null}", "unknown field 'bogus'");
}

R(wrong_types)
{
	REFUSES("{\"op\":\"stat\",\"path\":1}", "'path' must be a string");
	REFUSES("{\"op\":\"stat\",\"path\":[\"a\"]}", "'path' must be a string");
	REFUSES("{\"op\":\"mkdir\",\"path\":\"a\",\"recursive\":\"yes\"}", "'recursive' must be true or false");
	REFUSES("{\"op\":\"mkdir\",\"path\":\"a\",\"recursive\":1}", "'recursive' must be true or false");
	REFUSES("{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":\"0644\"}", "'mode' must be an integer");
	REFUSES("{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":420.0}", "'mode' must be an integer");
	REFUSES("{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":true}", "'mode' must be an integer");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"args\":\"-l\"}", "'args' must be an array");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"args\":[1]}", "'args' must be an array");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"args\":[null]}", "'args' must be an array");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"env\":[]}", "'env' must be an object");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"env\":{\"A\":1}}", "every value must be a string");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"env\":{\"A\":null}}", "every value must be a string");
	REFUSES("{\"op\":\"get\",\"id\":5}", "'id' must be a string");
	REFUSES("{\"op\":\"hello\",\"version\":\"1\"}", "'version' must be an integer");
}

R(out_of_range)
{
	ACCEPTS("{\"op\":\"chmod\",\"path\":\"a\",\"mode\":4095}");
	cr_assert_eq(req.mode, 07777);
	ACCEPTS("{\"op\":\"chmod\",\"path\":\"a\",\"mode\":0}");
	REFUSES("{\"op\":\"chmod\",\"path\":\"a\",\"mode\":4096}", "'mode' must be in 0..4095");
	REFUSES("{\"op\":\"chmod\",\"path\":\"a\",\"mode\":-1}", "'mode' must be in");
	REFUSES("{\"op\":\"chown\",\"path\":\"a\",\"uid\":-2,\"gid\":0}", "'uid' must be in -1..");
	REFUSES("{\"op\":\"chown\",\"path\":\"a\",\"uid\":0,\"gid\":4294967295}", "'gid' must be in");
	REFUSES("{\"op\":\"hello\",\"version\":0}", "'version' must be in 1..");
	REFUSES("{\"op\":\"hello\",\"version\":1073741825}", "'version'");
	ACCEPTS("{\"op\":\"run\",\"cmd\":\"x\",\"outputBufferBytes\":268435456}");
	REFUSES("{\"op\":\"run\",\"cmd\":\"x\",\"outputBufferBytes\":4095}", "'outputBufferBytes' must be in 4096..268435456");
	REFUSES("{\"op\":\"run\",\"cmd\":\"x\",\"outputBufferBytes\":268435457}", "'outputBufferBytes'");
	REFUSES("{\"op\":\"run\",\"cmd\":\"x\",\"timeoutMs\":-1}", "'timeoutMs'");
	ACCEPTS("{\"op\":\"run\",\"cmd\":\"x\",\"timeoutMs\":31536000000}");
	REFUSES("{\"op\":\"run\",\"cmd\":\"x\",\"timeoutMs\":31536000001}", "'timeoutMs'");
	REFUSES("{\"op\":\"readFile\",\"path\":\"a\",\"offset\":-1}", "'offset'");
	REFUSES("{\"op\":\"readFile\",\"path\":\"a\",\"length\":-1}", "'length'");
	REFUSES("{\"op\":\"truncate\",\"path\":\"a\",\"len\":-5}", "'len'");
	ACCEPTS("{\"op\":\"readFile\",\"path\":\"a\",\"offset\":9223372036854775807}");
	cr_assert_eq(req.offset, INT64_MAX);
	/* past int64: not an integer jansson keeps */
	REFUSES("{\"op\":\"readFile\",\"path\":\"a\",\"offset\":9223372036854775808}", "");
	REFUSES("{\"op\":\"attach\",\"id\":\"c\",\"fromOffset\":-1}", "'fromOffset'");
}

R(strings_checked)
{
	/* NUL in a string: jansson refuses \u0000 (no JSON_ALLOW_NUL) before the parser's own check would */
	REFUSES("{\"op\":\"stat\",\"path\":\"a\\u0000b\"}", "\\u0000");
	REFUSES("{\"op\":\"get\",\"id\":\"\\u0000\"}", "\\u0000");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"args\":[\"a\\u0000\"]}", "\\u0000");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"env\":{\"A\":\"x\\u0000y\"}}", "\\u0000");
	REFUSES("{\"op\":\"run\",\"cmd\":\"ls\",\"env\":{\"A\\u0000\":\"x\"}}", "NUL");
	REFUSES("{\"op\":\"signal\",\"id\":\"c\",\"signal\":\"TERM\\u0000\"}", "\\u0000");
	/* and a raw NUL byte inside a string is a control character */
	const char raw[] = "{\"op\":\"stat\",\"path\":\"a\0b\"}";
	cr_assert_eq(agent_request_parse(raw, sizeof(raw) - 1, &req, &err), -1);
	cr_assert_str_eq(err.code, "BAD_REQUEST");
	REFUSES("{\"op\":\"stat\",\"path\":\"\"}", "'path' must not be empty");
	REFUSES("{\"op\":\"get\",\"id\":\"\"}", "'id' must not be empty");
	/* paths: at most PATH_MAX - 1 bytes */
	static char json[PATH_MAX + 64];
	int n = snprintf(json, sizeof(json), "{\"op\":\"stat\",\"path\":\"");
	memset(json + n, 'p', PATH_MAX - 1);
	snprintf(json + n + PATH_MAX - 1, sizeof(json) - n - (PATH_MAX - 1), "\"}");
	ACCEPTS(json);
	cr_assert_eq(strlen(req.path), PATH_MAX - 1);
	memset(json + n, 'p', PATH_MAX);
	snprintf(json + n + PATH_MAX, sizeof(json) - n - PATH_MAX, "\"}");
	REFUSES(json, "longer than PATH_MAX");
	/* other strings have no such bound */
	char *big = malloc(3 * PATH_MAX);
	n = snprintf(big, 3 * PATH_MAX, "{\"op\":\"get\",\"id\":\"");
	memset(big + n, 'i', 2 * PATH_MAX);
	strcpy(big + n + 2 * PATH_MAX, "\"}");
	ACCEPTS(big);
	free(big);
	/* unicode escapes are fine */
	ACCEPTS("{\"op\":\"stat\",\"path\":\"\\u00e9\\ud83d\\ude00\"}");
	cr_assert_str_eq(req.path, "\xc3\xa9\xf0\x9f\x98\x80");
	REFUSES("{\"op\":\"stat\",\"path\":\"\xff\"}", "not valid JSON");
}

R(null_is_absent)
{
	ACCEPTS("{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":null,\"recursive\":null}");
	cr_assert_eq(req.mode, -1);
	cr_assert(!req.recursive);
	cr_assert(!(req.given & (1ull << AGENT_F_MODE)));
	cr_assert(req.given & (1ull << AGENT_F_PATH));
	ACCEPTS("{\"op\":\"copyFile\",\"src\":\"a\",\"dest\":\"b\",\"preserve\":null}");
	cr_assert(req.preserve);
	ACCEPTS("{\"op\":\"run\",\"cmd\":\"x\",\"args\":null,\"env\":null,\"cwd\":null}");
	cr_assert_null(req.args);
	cr_assert_null(req.env);
	cr_assert_null(req.cwd);
	REFUSES("{\"op\":\"stat\",\"path\":null}", "stat: missing field 'path'");
	REFUSES("{\"op\":\"chmod\",\"path\":\"a\",\"mode\":null}", "chmod: missing field 'mode'");
}

R(signals)
{
	static const struct {
		const char *v;
		int sig;
	} ok[] = {
		{ "\"SIGTERM\"", SIGTERM }, { "\"TERM\"", SIGTERM }, { "15", SIGTERM }, { "\"15\"", SIGTERM },
		{ "\"SIGKILL\"", SIGKILL }, { "9", SIGKILL }, { "\"HUP\"", SIGHUP }, { "\"SIGUSR2\"", SIGUSR2 },
		{ "\"WINCH\"", SIGWINCH }, { "1", 1 }, { "64", 64 },
	};
	char json[128];
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(json, sizeof(json), "{\"op\":\"signal\",\"id\":\"c\",\"signal\":%s}", ok[i].v);
		ACCEPTS(json);
		cr_assert_eq(req.signal, ok[i].sig, "%s", ok[i].v);
	}
	static const char *const bad[] = { "0", "-1", "65", "\"\"", "\"SIG\"", "\"SIGFOO\"", "\"term\"", "\"0\"",
					   "\"15x\"", "\" 15\"", "true", "1.5", "[15]", "\"SIGSIGTERM\"" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(json, sizeof(json), "{\"op\":\"signal\",\"id\":\"c\",\"signal\":%s}", bad[i]);
		REFUSES(json, "'signal' must be a signal number or name");
	}
	cr_assert_eq(agent_signal_parse("SIGINT"), SIGINT);
	cr_assert_eq(agent_signal_parse("SYS"), SIGSYS);
	cr_assert_eq(agent_signal_parse(NULL), -1);
	cr_assert_eq(agent_signal_parse(""), -1);
	cr_assert_eq(agent_signal_parse("99999999999999999999"), -1);
	cr_assert_str_eq(agent_signal_name(SIGTERM), "SIGTERM");
	cr_assert_str_eq(agent_signal_name(SIGKILL), "SIGKILL");
	cr_assert_null(agent_signal_name(0));
	cr_assert_null(agent_signal_name(-3));
	cr_assert_null(agent_signal_name(SIGRTMIN + 1));
	cr_assert_null(agent_signal_name(1000));
	/* every name there is parses back */
	for (int s = 1; s < 65; s++)
		if (agent_signal_name(s))
			cr_assert_eq(agent_signal_parse(agent_signal_name(s)), s);
}

R(env_names)
{
	REFUSES("{\"op\":\"run\",\"cmd\":\"x\",\"env\":{\"A=B\":\"1\"}}", "without '='");
	REFUSES("{\"op\":\"configure\",\"env\":{\"=\":\"1\"}}", "without '='");
	REFUSES("{\"op\":\"configure\",\"env\":{\"\":\"1\"}}", "non-empty");
	REFUSES("{\"op\":\"configure\",\"env\":{\"A\":\"1\",\"A\":\"2\"}}", "not valid JSON");
	ACCEPTS("{\"op\":\"configure\",\"env\":{\"A\":\"x=y\",\"_b1\":\"\"}}");
	cr_assert_str_eq(json_string_value(json_object_get(req.env, "A")), "x=y");
}

/* ---- errors ---- */

Test(agent_request, errno_errors_like_node)
{
	struct agent_error e;
	cr_assert_eq(agent_error_errno(&e, ENOENT, "open", "/x", NULL), -1);
	cr_assert_str_eq(e.code, "ENOENT");
	cr_assert_eq(e.errnum, ENOENT);
	cr_assert_str_eq(e.syscall, "open");
	cr_assert_str_eq(e.path, "/x");
	cr_assert_str_eq(e.dest, "");
	cr_assert_str_eq(e.message, "ENOENT: no such file or directory, open '/x'");
	agent_error_errno(&e, EXDEV, "rename", "/a", "/b");
	cr_assert_str_eq(e.message, "EXDEV: invalid cross-device link, rename '/a' -> '/b'");
	cr_assert_str_eq(e.dest, "/b");
	agent_error_errno(&e, EISDIR, "read", NULL, NULL);
	cr_assert_str_eq(e.message, "EISDIR: is a directory, read");
	agent_error_errno(&e, EPERM, NULL, NULL, NULL);
	cr_assert_str_eq(e.message, "EPERM: operation not permitted");
	cr_assert_str_eq(e.syscall, "");
	agent_error_errno(&e, ENOTEMPTY, "rmdir", "d", NULL);
	cr_assert_str_eq(e.message, "ENOTEMPTY: directory not empty, rmdir 'd'");
	agent_error_errno(&e, EIO, "read", "f", NULL);
	cr_assert_str_eq(e.message, "EIO: input/output error, read 'f'");
	/* an errno without a name */
	agent_error_errno(&e, 4000, "open", "f", NULL);
	cr_assert_str_eq(e.code, "E4000");
	cr_assert_eq(e.errnum, 4000);
	/* the longest paths: the message is cut, the fields are whole */
	static char p[PATH_MAX];
	memset(p, 'a', PATH_MAX - 1);
	agent_error_errno(&e, ENAMETOOLONG, "rename", p, p);
	cr_assert_eq(strlen(e.path), PATH_MAX - 1);
	cr_assert_eq(strlen(e.dest), PATH_MAX - 1);
	cr_assert_eq(strlen(e.message), sizeof(e.message) - 1);
	cr_assert_eq(strncmp(e.message, "ENAMETOOLONG: file name too long, rename 'aaa", 45), 0);
	/* longer than the fields: cut, never overrun */
	char *huge = malloc(3 * PATH_MAX);
	memset(huge, 'b', 3 * PATH_MAX - 1);
	huge[3 * PATH_MAX - 1] = '\0';
	agent_error_errno(&e, ENOENT, "a-syscall-name-longer-than-24-bytes", huge, huge);
	cr_assert_eq(strlen(e.path), PATH_MAX - 1);
	cr_assert_eq(strlen(e.syscall), sizeof(e.syscall) - 1);
	free(huge);
}

Test(agent_request, error_json_shape)
{
	struct agent_error e;
	agent_error_errno(&e, EEXIST, "symlink", "t", "l");
	json_t *j = agent_error_json(&e);
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert_str_eq(s, "{\"code\":\"EEXIST\",\"dest\":\"l\",\"errno\":17,\"message\":\"EEXIST: file exists, "
			    "symlink 't' -> 'l'\",\"path\":\"t\",\"syscall\":\"symlink\"}");
	free(s);
	json_decref(j);

	agent_error_errno(&e, EISDIR, "read", NULL, NULL);
	j = agent_error_json(&e);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert_str_eq(s, "{\"code\":\"EISDIR\",\"errno\":21,\"message\":\"EISDIR: is a directory, read\","
			    "\"syscall\":\"read\"}");
	free(s);
	json_decref(j);

	cr_assert_eq(agent_error_set(&e, AGENT_E_NOT_FOUND, "no command '%s'", "cmd-9"), -1);
	j = agent_error_json(&e);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert_str_eq(s, "{\"code\":\"NOT_FOUND\",\"message\":\"no command 'cmd-9'\"}");
	free(s);
	json_decref(j);

	/* a request's error, as the agent answers it */
	struct agent_request r;
	cr_assert_eq(agent_request_parse("{\"op\":1}", 8, &r, &e), -1);
	j = agent_error_json(&e);
	cr_assert_str_eq(json_string_value(json_object_get(j, "code")), "BAD_REQUEST");
	cr_assert_eq(json_object_size(j), 2);
	json_decref(j);

	/* messages quote the request's raw bytes, which need not be UTF-8: still an error object */
	const char bad_utf8[] = "{\"op\":\"stat\",\"path\":\"a\\u000\xd7\x9d\"}";
	cr_assert_eq(agent_request_parse(bad_utf8, sizeof(bad_utf8) - 1, &r, &e), -1);
	j = agent_error_json(&e);
	cr_assert_not_null(j, "error of %s", e.message);
	cr_assert(strstr(json_string_value(json_object_get(j, "message")), "\xef\xbf\xbd"));
	json_decref(j);
	/* an op name cut in the middle of a character */
	char op[160] = "{\"op\":\"a";
	for (int i = 0; i < 40; i++)
		strcat(op, "\xc3\xa9");
	strcat(op, "\"}");
	cr_assert_eq(agent_request_parse(op, strlen(op), &r, &e), -1);
	j = agent_error_json(&e);
	cr_assert_not_null(j, "error of %s", e.message);
	json_decref(j);
	/* a path from the file system */
	agent_error_errno(&e, EACCES, "unlink", "dir/\xff\xfe", "\xc3");
	j = agent_error_json(&e);
	cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "dir/\xef\xbf\xbd\xef\xbf\xbd");
	cr_assert_str_eq(json_string_value(json_object_get(j, "dest")), "\xef\xbf\xbd");
	json_decref(j);

	/* an empty error still has a code */
	memset(&e, 0, sizeof(e));
	j = agent_error_json(&e);
	cr_assert_str_eq(json_string_value(json_object_get(j, "code")), "INTERNAL");
	json_decref(j);

	/* a long formatted message is cut */
	char big[2000];
	memset(big, 'm', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	agent_error_set(&e, AGENT_E_LIMIT, "%s", big);
	cr_assert_eq(strlen(e.message), sizeof(e.message) - 1);
	cr_assert_str_eq(e.code, "LIMIT");
}
