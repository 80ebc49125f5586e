/* The command and file routes of the API (docs/api.md, "Commands" and "Files"): each request opens its own
 * libkvmbox connection to the sandbox's agent (cheap: a Unix socket and one line) and maps onto the agent
 * protocol. Streams (logs, downloads, uploads) run the blocking libkvmbox call on a thread of their own,
 * joined to libmicrohttpd through a pipe. */
#include "tools/kvmboxd/http.h"
#include "tools/agent/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUTPUT_CAP (16u << 20)

/* Connect to the agent of the sandbox named by the first path argument; NULL after answering. */
static kvmbox_agent *agent_open(struct http_req *r)
{
	struct sandbox *s = sandbox_find(r->d->reg, r->arg[0]);
	if (!s) {
		http_error(r, 404, "NOT_FOUND", "no sandbox '%.80s' (kvmbox ls -a lists them)", r->arg[0]);
		return NULL;
	}
	char path[512];
	struct api_error ae;
	int rc = sandbox_agent_path(s, path, sizeof(path), &ae);
	sandbox_put(s);
	if (rc) {
		http_api_error(r, &ae);
		return NULL;
	}
	kvmbox_agent *a;
	struct kvmbox_error e;
	if (kvmbox_agent_connect(path, KVMBOX_AGENT_PORT, 5000, &a, &e)) {
		http_error(r, 502, "AGENT", "cannot reach the agent of sandbox %s: %s", r->arg[0], e.message);
		return NULL;
	}
	return a;
}

/* One agent request (JSON object, taken) answered with its result as the HTTP body. */
static enum MHD_Result call_and_answer(struct http_req *r, kvmbox_agent *a, json_t *req, unsigned ok_status)
{
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	char *result = NULL;
	struct kvmbox_error e;
	enum MHD_Result ret;
	if (!text)
		ret = http_error(r, 500, "INTERNAL", "out of memory");
	else if (kvmbox_agent_call(a, text, &result, &e))
		ret = http_agent_error(r, &e);
	else
		ret = http_json(r, ok_status, json_loads(result, 0, NULL));
	free(text);
	free(result);
	kvmbox_agent_close(a);
	return ret;
}

static bool no_query(struct http_req *r)
{
	static const char *const none[] = {NULL};
	return http_query_only(r, none);
}

/* ---- commands ---- */

static enum MHD_Result run(struct http_req *r)
{
	static const char *const allowed[] = {"cmd", "args", "cwd", "env", "user", "sudo", "stdin", "timeoutMs",
					      "outputBufferBytes", NULL};
	if (!no_query(r))
		return MHD_YES;
	json_t *o = http_body_object(r);
	if (!o)
		return MHD_YES;
	if (!http_fields_only(r, o, allowed)) {
		json_decref(o);
		return MHD_YES;
	}
	if (!json_is_string(json_object_get(o, "cmd"))) {
		json_decref(o);
		return http_error(r, 400, "BAD_REQUEST", "'cmd' is required: the program to run (argv[0])");
	}
	kvmbox_agent *a = agent_open(r);
	if (!a) {
		json_decref(o);
		return MHD_YES;
	}
	/* The agent checks every field's type and value; the command always runs detached. */
	json_object_set_new(o, "op", json_string("run"));
	json_object_set_new(o, "detached", json_true());
	return call_and_answer(r, a, o, 201);
}

static enum MHD_Result list_commands(struct http_req *r)
{
	if (!no_query(r))
		return MHD_YES;
	kvmbox_agent *a = agent_open(r);
	return a ? call_and_answer(r, a, json_pack("{s:s}", "op", "list"), 200) : MHD_YES;
}

static enum MHD_Result get_command(struct http_req *r)
{
	if (!no_query(r))
		return MHD_YES;
	kvmbox_agent *a = agent_open(r);
	return a ? call_and_answer(r, a, json_pack("{s:s, s:s}", "op", "get", "id", r->arg[1]), 200) : MHD_YES;
}

static enum MHD_Result wait_command(struct http_req *r)
{
	if (!no_query(r))
		return MHD_YES;
	kvmbox_agent *a = agent_open(r);
	return a ? call_and_answer(r, a, json_pack("{s:s, s:s, s:b}", "op", "attach", "id", r->arg[1], "output", 0),
				   200)
		 : MHD_YES;
}

static enum MHD_Result signal_command(struct http_req *r)
{
	static const char *const allowed[] = {"signal", NULL};
	if (!no_query(r))
		return MHD_YES;
	json_t *o = http_body_object(r);
	if (!o)
		return MHD_YES;
	if (!http_fields_only(r, o, allowed)) {
		json_decref(o);
		return MHD_YES;
	}
	if (!json_object_get(o, "signal"))
		json_object_set_new(o, "signal", json_string("SIGTERM"));
	kvmbox_agent *a = agent_open(r);
	if (!a) {
		json_decref(o);
		return MHD_YES;
	}
	json_object_set_new(o, "op", json_string("signal"));
	json_object_set_new(o, "id", json_string(r->arg[1]));
	return call_and_answer(r, a, o, 200);
}

/* Text for JSON: each byte that is not part of valid UTF-8 becomes U+FFFD. */
static json_t *json_text_lossy(const uint8_t *p, size_t n)
{
	return json_string_lossy((const char *)p, n);
}

static json_t *json_base64(const uint8_t *p, size_t n)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1);
	size_t o = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? tbl[v & 63] : '=';
	}
	json_t *j = json_stringn(out, o);
	free(out);
	return j;
}

struct output_buf {
	uint8_t *data[2];
	size_t len[2], total;
	bool truncated;
};

static int output_collect(void *ctx, const struct kvmbox_chunk *c)
{
	struct output_buf *b = ctx;
	int i = c->stream == KVMBOX_STDERR;
	size_t n = c->len;
	if (b->total + n > OUTPUT_CAP) {
		n = OUTPUT_CAP - b->total;
		b->truncated = true;
	}
	uint8_t *nd = realloc(b->data[i], b->len[i] + n + 1);
	if (!nd)
		return -1;
	b->data[i] = nd;
	memcpy(nd + b->len[i], c->data, n);
	b->len[i] += n;
	b->total += n;
	return 0;
}

static enum MHD_Result output_command(struct http_req *r)
{
	static const char *const q_allowed[] = {"encoding", NULL};
	if (!http_query_only(r, q_allowed))
		return MHD_YES;
	const char *enc = http_query(r, "encoding");
	if (enc && strcmp(enc, "utf8") && strcmp(enc, "base64"))
		return http_error(r, 400, "BAD_REQUEST", "encoding must be utf8 or base64");
	bool b64 = enc && !strcmp(enc, "base64");
	kvmbox_agent *a = agent_open(r);
	if (!a)
		return MHD_YES;
	struct kvmbox_error e;
	char req[256], *done = NULL;
	json_t *idj = json_string(r->arg[1]);
	char *idtext = json_dumps(idj, JSON_ENCODE_ANY);
	json_decref(idj);
	snprintf(req, sizeof(req), "{\"op\":\"attach\",\"id\":%s,\"output\":false}", idtext ? idtext : "\"\"");
	free(idtext);
	enum MHD_Result ret;
	/* Wait for the end first, then read what the buffer holds from its start. */
	if (kvmbox_agent_call(a, req, &done, &e)) {
		ret = http_agent_error(r, &e);
		goto out;
	}
	json_t *cmd = json_loads(done, 0, NULL);
	struct output_buf b = {0};
	uint64_t start = json_integer_value(json_object_get(cmd, "bufferStart"));
	if (kvmbox_attach(a, r->arg[1], start, false, output_collect, &b, NULL, &e) && strcmp(e.code, "CALLBACK")) {
		json_decref(cmd);
		ret = http_agent_error(r, &e);
	} else {
		json_t *(*conv)(const uint8_t *, size_t) = b64 ? json_base64 : json_text_lossy;
		json_t *body = json_pack("{s:o, s:o, s:b, s:o}", "stdout", conv(b.data[0], b.len[0]), "stderr",
					 conv(b.data[1], b.len[1]), "truncated", b.truncated || start > 0, "command", cmd);
		ret = http_json(r, 200, body);
	}
	free(b.data[0]);
	free(b.data[1]);
out:
	free(done);
	kvmbox_agent_close(a);
	return ret;
}

/* Answer 200 with a body streamed from fd (the read end of a pipe a thread writes; taken): chunked,
 * since its length is not known. */
static enum MHD_Result answer_pipe(struct http_req *r, int fd, const char *content_type)
{
	struct MHD_Response *resp = MHD_create_response_from_pipe(fd);
	if (!resp) {
		close(fd); /* the writer gets EPIPE and stops */
		return http_error(r, 500, "INTERNAL", "cannot start the response stream");
	}
	MHD_add_response_header(resp, "Content-Type", content_type);
	enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
	MHD_destroy_response(resp);
	r->answered = true;
	return ret;
}

/* ---- logs: NDJSON through a pipe fed by a thread ---- */

struct logs_job {
	kvmbox_agent *a;
	char id[64];
	uint64_t from;
	bool follow, b64;
	int fd;             /* the pipe's write end */
	uint8_t carry[2][4]; /* an incomplete UTF-8 sequence at a chunk's end, per stream */
	size_t carry_len[2];
};

static int write_line(int fd, json_t *line)
{
	char *text = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (!text)
		return -1;
	size_t n = strlen(text);
	text[n] = '\n'; /* replaces the NUL; written with its length */
	size_t off = 0;
	int rc = 0;
	while (off < n + 1) {
		ssize_t w = write(fd, text + off, n + 1 - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = -1; /* the client went away */
			break;
		}
		off += w;
	}
	free(text);
	return rc;
}

/* Bytes at the end of p[0..n) that start a UTF-8 sequence longer than what is there. */
static size_t utf8_tail(const uint8_t *p, size_t n)
{
	for (size_t k = 1; k <= 3 && k <= n; k++) {
		uint8_t c = p[n - k];
		if ((c & 0xc0) == 0x80)
			continue;
		size_t need = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
		return need > k ? k : 0;
	}
	return 0;
}

static int logs_chunk(void *ctx, const struct kvmbox_chunk *c)
{
	struct logs_job *j = ctx;
	int s = c->stream == KVMBOX_STDERR;
	json_t *data;
	uint64_t off = c->byte_offset;
	if (j->b64) {
		data = json_base64(c->data, c->len);
	} else {
		/* Keep a multi-byte character split across chunks whole: hold its start for the next chunk. */
		size_t n = j->carry_len[s] + c->len;
		uint8_t *buf = malloc(n);
		if (!buf)
			return -1;
		memcpy(buf, j->carry[s], j->carry_len[s]);
		memcpy(buf + j->carry_len[s], c->data, c->len);
		off -= j->carry_len[s];
		size_t tail = utf8_tail(buf, n);
		data = json_text_lossy(buf, n - tail);
		memcpy(j->carry[s], buf + n - tail, tail);
		j->carry_len[s] = tail;
		free(buf);
	}
	return write_line(j->fd, json_pack("{s:s, s:s, s:o, s:I, s:I}", "type", "output", "stream",
					   s ? "stderr" : "stdout", "data", data, "byteOffset", (json_int_t)off,
					   "timestamp", (json_int_t)c->timestamp_ms));
}

static void *logs_thread(void *arg)
{
	struct logs_job *j = arg;
	struct kvmbox_error e;
	struct kvmbox_command cmd;
	if (kvmbox_attach(j->a, j->id, j->from, j->follow, logs_chunk, j, &cmd, &e)) {
		if (strcmp(e.code, "CALLBACK")) /* else the client left */
			write_line(j->fd, json_pack("{s:s, s:s, s:s}", "type", "error", "code", e.code, "message",
						    e.message));
	} else {
		for (int s = 0; s < 2; s++) /* a truncated character at the very end */
			if (j->carry_len[s])
				write_line(j->fd, json_pack("{s:s, s:s, s:o, s:I, s:I}", "type", "output", "stream",
							    s ? "stderr" : "stdout", "data",
							    json_text_lossy(j->carry[s], j->carry_len[s]), "byteOffset",
							    (json_int_t)(cmd.output_bytes - j->carry_len[s]), "timestamp",
							    (json_int_t)0));
		char req[128], *res = NULL;
		snprintf(req, sizeof(req), "{\"op\":\"get\",\"id\":\"%s\"}", j->id);
		bool ended = strcmp(cmd.status, "running") && strcmp(cmd.status, "pending");
		if (ended && !kvmbox_agent_call(j->a, req, &res, &e))
			write_line(j->fd, json_pack("{s:s, s:o}", "type", "exit", "command", json_loads(res, 0, NULL)));
		free(res);
	}
	close(j->fd);
	kvmbox_agent_close(j->a);
	free(j);
	return NULL;
}

static bool id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n >= 64)
		return false;
	for (; *id; id++)
		if (!((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z') || (*id >= '0' && *id <= '9') ||
		      *id == '-' || *id == '_'))
			return false;
	return true;
}

static enum MHD_Result logs_command(struct http_req *r)
{
	static const char *const q_allowed[] = {"fromOffset", "follow", "encoding", NULL};
	int64_t from;
	bool follow;
	if (!http_query_only(r, q_allowed) || !http_query_int(r, "fromOffset", 0, INT64_MAX, 0, &from) ||
	    !http_query_bool(r, "follow", true, &follow))
		return MHD_YES;
	const char *enc = http_query(r, "encoding");
	if (enc && strcmp(enc, "utf8") && strcmp(enc, "base64"))
		return http_error(r, 400, "BAD_REQUEST", "encoding must be utf8 or base64");
	if (!id_ok(r->arg[1]))
		return http_error(r, 404, "NOT_FOUND", "no command '%.64s'", r->arg[1]);
	kvmbox_agent *a = agent_open(r);
	if (!a)
		return MHD_YES;
	/* Refuse a replay the buffer cannot serve before the 200 goes out. */
	char req[128], *res = NULL;
	struct kvmbox_error e;
	snprintf(req, sizeof(req), "{\"op\":\"get\",\"id\":\"%s\"}", r->arg[1]);
	if (kvmbox_agent_call(a, req, &res, &e)) {
		kvmbox_agent_close(a);
		return http_agent_error(r, &e);
	}
	json_t *cmd = json_loads(res, 0, NULL);
	free(res);
	int64_t start = json_integer_value(json_object_get(cmd, "bufferStart"));
	int64_t total = json_integer_value(json_object_get(cmd, "outputBytes"));
	json_decref(cmd);
	if (from < start) {
		kvmbox_agent_close(a);
		return http_error(r, 409, "OUTPUT_GONE",
				  "bytes before offset %lld are gone from the command's output buffer; read from "
				  "fromOffset=%lld", (long long)start, (long long)start);
	}
	if (from > total) {
		kvmbox_agent_close(a);
		return http_error(r, 400, "BAD_REQUEST", "fromOffset %lld is past the %lld bytes written so far",
				  (long long)from, (long long)total);
	}
	int p[2];
	struct logs_job *j = calloc(1, sizeof(*j));
	if (!j || pipe2(p, O_CLOEXEC)) {
		free(j);
		kvmbox_agent_close(a);
		return http_error(r, 500, "INTERNAL", "cannot create a pipe: %s", strerror(errno));
	}
	*j = (struct logs_job){.a = a, .from = from, .follow = follow, .b64 = enc && !strcmp(enc, "base64"),
			       .fd = p[1]};
	snprintf(j->id, sizeof(j->id), "%s", r->arg[1]);
	pthread_t t;
	if (pthread_create(&t, NULL, logs_thread, j)) {
		close(p[0]);
		close(p[1]);
		kvmbox_agent_close(a);
		free(j);
		return http_error(r, 500, "INTERNAL", "cannot start the log stream");
	}
	pthread_detach(t);
	return answer_pipe(r, p[0], "application/x-ndjson");
}

/* The state of a streamed upload, whose first member is its connection to the agent of the request's
 * sandbox; r owns it (free_fn frees it). NULL after answering. */
static void *upload_open(struct http_req *r, size_t size, void (*free_fn)(struct http_req *))
{
	kvmbox_agent *a = agent_open(r);
	if (!a)
		return NULL;
	kvmbox_agent **state = calloc(1, size);
	if (!state) {
		kvmbox_agent_close(a);
		http_error(r, 500, "INTERNAL", "out of memory");
		return NULL;
	}
	*state = a;
	r->upload_state = state;
	r->upload_free = free_fn;
	return state;
}

/* ---- stdin: each uploaded chunk goes to the agent as it arrives ---- */

struct stdin_state {
	kvmbox_agent *a; /* first: upload_open fills it */
	bool eof;
	uint64_t bytes;
	struct kvmbox_error e;
	bool failed;
};

static void stdin_free(struct http_req *r)
{
	struct stdin_state *st = r->upload_state;
	if (st)
		kvmbox_agent_close(st->a);
	free(st);
}

static enum MHD_Result stdin_begin(struct http_req *r)
{
	static const char *const q_allowed[] = {"eof", NULL};
	bool eof;
	if (!http_query_only(r, q_allowed) || !http_query_bool(r, "eof", false, &eof))
		return MHD_YES;
	struct stdin_state *st = upload_open(r, sizeof(*st), stdin_free);
	if (st)
		st->eof = eof;
	return MHD_YES;
}

static void stdin_data(struct http_req *r, const char *buf, size_t len)
{
	struct stdin_state *st = r->upload_state;
	if (st->failed)
		return;
	if (kvmbox_stdin(st->a, r->arg[1], buf, len, false, &st->e))
		st->failed = true;
	else
		st->bytes += len;
}

static enum MHD_Result stdin_end(struct http_req *r)
{
	struct stdin_state *st = r->upload_state;
	if (!st->failed && (st->eof || !st->bytes) && kvmbox_stdin(st->a, r->arg[1], NULL, 0, st->eof, &st->e))
		st->failed = true;
	if (st->failed)
		return http_agent_error(r, &st->e);
	return http_json(r, 200, json_pack("{s:I}", "bytes", (json_int_t)st->bytes));
}

static const struct http_upload_ops stdin_ops = {stdin_begin, stdin_data, stdin_end};

/* ---- files ---- */

static const char *path_arg(struct http_req *r)
{
	const char *p = http_query(r, "path");
	if (!p || !*p) {
		http_error(r, 400, "BAD_REQUEST", "the query parameter 'path' is required");
		return NULL;
	}
	return p;
}

/* Download: a thread runs kvmbox_read_file into a pipe libmicrohttpd streams from. The handler waits
 * for the first bytes (or the end) so that an error the agent reports at once (ENOENT, EISDIR, EACCES,
 * with the system call that failed) is answered as JSON, not as a cut-short 200. */
struct download_job {
	kvmbox_agent *a;
	char *path;
	int fd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int state;                /* 0 waiting for the first bytes, 1 streaming, 2 failed before any byte */
	bool handler_gone;        /* the handler answered: the thread frees the job */
	struct kvmbox_error e;
};

static void download_started(struct download_job *j, int state)
{
	pthread_mutex_lock(&j->lock);
	if (j->state == 0) {
		j->state = state;
		pthread_cond_signal(&j->cond);
	}
	pthread_mutex_unlock(&j->lock);
}

static int download_chunk(void *ctx, const void *data, size_t len)
{
	struct download_job *j = ctx;
	download_started(j, 1);
	const char *p = data;
	while (len) {
		ssize_t n = write(j->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1; /* the client went away */
		p += n;
		len -= n;
	}
	return 0;
}

static void download_free(struct download_job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	kvmbox_agent_close(j->a);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j->path);
	free(j);
}

static void *download_thread(void *arg)
{
	struct download_job *j = arg;
	struct kvmbox_error e;
	int rc = kvmbox_read_file(j->a, j->path, download_chunk, j, &e);
	close(j->fd); /* the end of the body (an error mid-stream cuts it short) */
	j->fd = -1;
	pthread_mutex_lock(&j->lock);
	if (j->state == 0) {
		j->state = rc ? 2 : 1;
		j->e = e;
		pthread_cond_signal(&j->cond);
	}
	/* The handler either still needs the job (it frees it) or has moved on (we do). */
	bool free_it = j->handler_gone;
	j->handler_gone = true;
	pthread_mutex_unlock(&j->lock);
	if (free_it)
		download_free(j);
	return NULL;
}

static enum MHD_Result download(struct http_req *r)
{
	static const char *const q_allowed[] = {"path", NULL};
	if (!http_query_only(r, q_allowed))
		return MHD_YES;
	const char *path = path_arg(r);
	if (!path)
		return MHD_YES;
	kvmbox_agent *a = agent_open(r);
	if (!a)
		return MHD_YES;
	int p[2];
	struct download_job *j = calloc(1, sizeof(*j));
	if (!j || pipe2(p, O_CLOEXEC)) {
		free(j);
		kvmbox_agent_close(a);
		return http_error(r, 500, "INTERNAL", "cannot create a pipe: %s", strerror(errno));
	}
	j->a = a;
	j->path = strdup(path);
	j->fd = p[1];
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	pthread_t t;
	if (!j->path || pthread_create(&t, NULL, download_thread, j)) {
		close(p[0]);
		download_free(j);
		return http_error(r, 500, "INTERNAL", "cannot start the download");
	}
	pthread_detach(t);
	pthread_mutex_lock(&j->lock);
	while (j->state == 0)
		pthread_cond_wait(&j->cond, &j->lock);
	int state = j->state;
	struct kvmbox_error e = j->e;
	bool free_it = j->handler_gone;
	j->handler_gone = true;
	pthread_mutex_unlock(&j->lock);
	if (free_it)
		download_free(j);
	if (state == 2) {
		close(p[0]);
		return http_agent_error(r, &e);
	}
	return answer_pipe(r, p[0], "application/octet-stream");
}

/* Upload: a thread runs kvmbox_write_file_from_fd on a pipe the upload chunks are written into. */
struct upload_state {
	kvmbox_agent *a; /* first: upload_open fills it */
	char *path;
	int mode;
	unsigned flags;
	int fd[2];
	pthread_t thread;
	bool started;
	int rc;
	struct kvmbox_error e;
};

static void *upload_thread(void *arg)
{
	struct upload_state *u = arg;
	u->rc = kvmbox_write_file_from_fd(u->a, u->path, u->mode, u->flags, u->fd[0], &u->e);
	close(u->fd[0]); /* a failure mid-upload: our writer gets EPIPE and drops the rest */
	u->fd[0] = -1;
	return NULL;
}

static void upload_free(struct http_req *r)
{
	struct upload_state *u = r->upload_state;
	if (!u)
		return;
	if (u->fd[1] >= 0)
		close(u->fd[1]);
	if (u->started)
		pthread_join(u->thread, NULL);
	if (u->fd[0] >= 0)
		close(u->fd[0]);
	kvmbox_agent_close(u->a);
	free(u->path);
	free(u);
}

static enum MHD_Result upload_begin(struct http_req *r)
{
	static const char *const q_allowed[] = {"path", "mode", "recursive", "append", "exclusive", NULL};
	bool recursive, append, exclusive;
	if (!http_query_only(r, q_allowed) || !http_query_bool(r, "recursive", false, &recursive) ||
	    !http_query_bool(r, "append", false, &append) || !http_query_bool(r, "exclusive", false, &exclusive))
		return MHD_YES;
	const char *path = path_arg(r), *mode_s = http_query(r, "mode");
	if (!path)
		return MHD_YES;
	int mode = -1;
	if (mode_s) {
		char *end;
		long m = strtol(mode_s, &end, 8);
		if (!*mode_s || *end || m < 0 || m > 07777)
			return http_error(r, 400, "BAD_REQUEST", "mode must be octal, 0 to 7777 (like 0644)");
		mode = (int)m;
	}
	if (append && exclusive)
		return http_error(r, 400, "BAD_REQUEST", "append and exclusive do not go together");
	struct upload_state *u = upload_open(r, sizeof(*u), upload_free);
	if (!u)
		return MHD_YES;
	u->fd[0] = u->fd[1] = -1;
	u->path = strdup(path);
	u->mode = mode;
	u->flags = (append ? KVMBOX_WRITE_APPEND : 0) | (recursive ? KVMBOX_WRITE_RECURSIVE : 0) |
		   (exclusive ? KVMBOX_WRITE_EXCLUSIVE : 0);
	if (!u->path || pipe2(u->fd, O_CLOEXEC))
		return http_error(r, 500, "INTERNAL", "cannot create a pipe: %s", strerror(errno));
	if (pthread_create(&u->thread, NULL, upload_thread, u))
		return http_error(r, 500, "INTERNAL", "cannot start the upload");
	u->started = true;
	return MHD_YES;
}

static void upload_data(struct http_req *r, const char *buf, size_t len)
{
	struct upload_state *u = r->upload_state;
	while (len && u->fd[1] >= 0) {
		ssize_t n = write(u->fd[1], buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) { /* the upload failed already: drop the rest, answer its error at the end */
			close(u->fd[1]);
			u->fd[1] = -1;
			return;
		}
		buf += n;
		len -= n;
	}
}

static enum MHD_Result upload_end(struct http_req *r)
{
	struct upload_state *u = r->upload_state;
	if (u->fd[1] >= 0) {
		close(u->fd[1]);
		u->fd[1] = -1;
	}
	pthread_join(u->thread, NULL);
	u->started = false;
	if (u->rc)
		return http_agent_error(r, &u->e);
	/* The size the guest now has. */
	json_t *req = json_pack("{s:s, s:s}", "op", "stat", "path", u->path);
	char *text = json_dumps(req, JSON_COMPACT), *res = NULL;
	json_decref(req);
	struct kvmbox_error e;
	int rc = kvmbox_agent_call(u->a, text, &res, &e);
	free(text);
	if (rc)
		return http_agent_error(r, &e);
	json_t *st = json_loads(res, 0, NULL);
	free(res);
	json_t *body = json_pack("{s:I}", "size", (json_int_t)json_integer_value(json_object_get(st, "size")));
	json_decref(st);
	return http_json(r, 200, body);
}

static const struct http_upload_ops upload_ops = {upload_begin, upload_data, upload_end};

static enum MHD_Result fs_call(struct http_req *r)
{
	static const char *const ops[] = {"mkdir", "readdir", "mkdtemp", "stat", "lstat", "realpath", "rename",
					  "copyFile", "unlink", "rm", "rmdir", "truncate", "chmod", "chown", "symlink",
					  "readlink", "access", "exists", NULL};
	if (!no_query(r))
		return MHD_YES;
	json_t *o = http_body_object(r);
	if (!o)
		return MHD_YES;
	json_t *op = json_object_get(o, "op");
	const char *const *k = ops;
	for (; *k && !(json_is_string(op) && !strcmp(json_string_value(op), *k)); k++)
		;
	if (!*k) {
		json_decref(o);
		return http_error(r, 400, "BAD_REQUEST",
				  "'op' must be one of mkdir, readdir, mkdtemp, stat, lstat, realpath, rename, copyFile, "
				  "unlink, rm, rmdir, truncate, chmod, chown, symlink, readlink, access, exists "
				  "(files are read and written with GET and PUT .../files)");
	}
	kvmbox_agent *a = agent_open(r);
	if (!a) {
		json_decref(o);
		return MHD_YES;
	}
	return call_and_answer(r, a, o, 200);
}

const struct route api_agent_routes[] = {
	{"POST", "v1/sandboxes/*/commands", run, NULL},
	{"GET", "v1/sandboxes/*/commands", list_commands, NULL},
	{"GET", "v1/sandboxes/*/commands/*", get_command, NULL},
	{"GET", "v1/sandboxes/*/commands/*/wait", wait_command, NULL},
	{"GET", "v1/sandboxes/*/commands/*/output", output_command, NULL},
	{"GET", "v1/sandboxes/*/commands/*/logs", logs_command, NULL},
	{"POST", "v1/sandboxes/*/commands/*/signal", signal_command, NULL},
	{"POST", "v1/sandboxes/*/commands/*/stdin", NULL, &stdin_ops},
	{"GET", "v1/sandboxes/*/files", download, NULL},
	{"PUT", "v1/sandboxes/*/files", NULL, &upload_ops},
	{"POST", "v1/sandboxes/*/fs", fs_call, NULL},
	{NULL, NULL, NULL, NULL},
};
