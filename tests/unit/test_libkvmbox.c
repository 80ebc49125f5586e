/* libkvmbox (include/kvmbox.h): the client library of the agent protocol.
 *   libkvmbox:       against a fake agent, a thread on a Unix socket answering with scripted frames
 *                    (errors, streams, bad frames, closed connections, the CONNECT handshake, retries).
 *   libkvmbox_agent: against the real agent, `$KVMBOX_BUILD/kvmbox-agent --listen unix:PATH` (KVMBOX_BUILD
 *                    defaults to "build"), a child process with its cwd in a temporary folder. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "include/kvmbox.h"
#include "tests/unit/unit.h"
#include "tools/agent/frame.h"

UNIT_SUITE(libkvmbox);

#define KiB 1024u

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* ---- the fake agent's side of the wire ---- */

static int read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return; /* the client went away: the test's assertions say the rest */
		p += r;
		n -= (size_t)r;
	}
}

/* A frame as the fake agent received it (json NUL-terminated; both malloc'ed). */
struct rframe {
	uint8_t type, flags;
	uint32_t id;
	char *json;
	uint8_t *data;
	uint32_t json_len, data_len;
};

static int fk_read(int fd, struct rframe *f)
{
	uint8_t h[FRAME_HEADER_SIZE];
	memset(f, 0, sizeof(*f));
	if (read_full(fd, h, sizeof(h)))
		return -1;
	f->type = h[2];
	f->flags = h[3];
	f->id = get32(h + 4);
	f->json_len = get32(h + 8);
	f->data_len = get32(h + 12);
	if (h[0] != FRAME_MAGIC || f->json_len > FRAME_MAX_JSON || f->data_len > FRAME_MAX_DATA)
		return -1;
	f->json = calloc(1, f->json_len + 1);
	f->data = malloc(f->data_len + 1);
	if (read_full(fd, f->json, f->json_len) || read_full(fd, f->data, f->data_len)) {
		free(f->json);
		free(f->data);
		return -1;
	}
	return 0;
}

static void fk_free(struct rframe *f)
{
	free(f->json);
	free(f->data);
	memset(f, 0, sizeof(*f));
}

static void fk_send(int fd, uint8_t type, uint32_t id, const char *json, const void *data, size_t len)
{
	uint8_t h[FRAME_HEADER_SIZE];
	size_t jl = json ? strlen(json) : 0;
	if (frame_encode_header(h, type, 0, id, jl, len))
		abort();
	write_full(fd, h, sizeof(h));
	write_full(fd, json, jl);
	write_full(fd, data, len);
}

/* Read until the client closes (what a script does after its last frame). */
static void fk_drain(int fd)
{
	char buf[4096];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

struct fake;
typedef void (*script_fn)(struct fake *f, int fd);

struct fake {
	char dir[64];
	char path[108];
	int lfd;
	pthread_t th;
	bool running;
	bool vsock;         /* expect "CONNECT 1024\n", answer "OK 5\n" */
	int refuse;         /* refuse this many CONNECT lines first (close the socket) */
	int attempts;       /* connections accepted */
	char line[64];      /* the last CONNECT line */
	script_fn script;
	/* what the script saw, for the test to check after fake_stop */
	char *req[4];       /* request JSONs, in order */
	uint32_t ids[4];
	int nreq;
	uint8_t *upload;    /* uploaded bytes, concatenated */
	size_t upload_len;
	int frames;         /* upload frames */
	uint8_t last_flags;
};

static void fake_keep(struct fake *f, const struct rframe *r)
{
	if (f->nreq < 4) {
		f->req[f->nreq] = strdup(r->json);
		f->ids[f->nreq] = r->id;
		f->nreq++;
	}
}

/* Read one request, keep it, return its id (0 when the client closed). */
static uint32_t fk_request(struct fake *f, int fd)
{
	struct rframe r;
	if (fk_read(fd, &r))
		return 0;
	cr_expect_eq(r.type, FRAME_REQUEST);
	fake_keep(f, &r);
	uint32_t id = r.id;
	fk_free(&r);
	return id;
}

static void *fake_thread(void *arg)
{
	struct fake *f = arg;
	for (;;) {
		int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			return NULL;
		f->attempts++;
		if (f->vsock) {
			size_t n = 0;
			char c = 0;
			while (n < sizeof(f->line) - 1 && read(fd, &c, 1) == 1) {
				f->line[n++] = c;
				if (c == '\n')
					break;
			}
			f->line[n] = 0;
			if (f->refuse != 0) { /* what the monitor does when nobody listens on the port */
				if (f->refuse > 0)
					f->refuse--;
				close(fd);
				continue;
			}
			write_full(fd, "OK 5\n", 5);
		}
		if (f->script)
			f->script(f, fd);
		close(fd);
		return NULL;
	}
}

static void fake_listen(struct fake *f)
{
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(f->lfd, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, f->path);
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", f->path, strerror(errno));
	cr_assert_eq(listen(f->lfd, 8), 0);
	cr_assert_eq(pthread_create(&f->th, NULL, fake_thread, f), 0);
	f->running = true;
}

/* A fake agent in a new temporary folder; listening unless later. */
static void fake_init(struct fake *f, script_fn script, bool vsock)
{
	memset(f, 0, sizeof(*f));
	f->lfd = -1;
	strcpy(f->dir, "/tmp/kvmbox-lib-XXXXXX");
	cr_assert(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/vm.vsock", f->dir);
	f->script = script;
	f->vsock = vsock;
}

static void fake_start(struct fake *f, script_fn script, bool vsock)
{
	fake_init(f, script, vsock);
	fake_listen(f);
}

/* Wait for the script to end; what it saw stays for the test to check. */
static void fake_join(struct fake *f)
{
	if (f->running) {
		shutdown(f->lfd, SHUT_RDWR); /* wakes accept() if the script never ran */
		pthread_join(f->th, NULL);
		f->running = false;
	}
	if (f->lfd >= 0)
		close(f->lfd);
	f->lfd = -1;
	unlink(f->path);
	rmdir(f->dir);
}

static void fake_stop(struct fake *f)
{
	fake_join(f);
	for (int i = 0; i < f->nreq; i++)
		free(f->req[i]);
	free(f->upload);
}

static kvmbox_agent *fake_connect(struct fake *f)
{
	kvmbox_agent *a = NULL;
	struct kvmbox_error e;
	int r = kvmbox_agent_connect(f->path, f->vsock ? KVMBOX_AGENT_PORT : 0, 2000, &a, &e);
	cr_assert_eq(r, 0, "connect: %s: %s", e.code, e.message);
	return a;
}

static json_t *req_json(struct fake *f, int i)
{
	cr_assert_lt(i, f->nreq);
	json_t *j = json_loads(f->req[i], 0, NULL);
	cr_assert(j, "request %d is JSON: %s", i, f->req[i]);
	return j;
}

/* ---- output collected by callbacks ---- */
struct out {
	char stdout_buf[256], stderr_buf[256];
	size_t nout, nerr;
	int chunks;
	uint64_t offsets[16];
	int64_t stamps[16];
	int stop_at;        /* return 7 at this chunk (1-based); 0: never */
};

static int collect(void *ctx, const struct kvmbox_chunk *c)
{
	struct out *o = ctx;
	if (o->chunks < 16) {
		o->offsets[o->chunks] = c->byte_offset;
		o->stamps[o->chunks] = c->timestamp_ms;
	}
	o->chunks++;
	char *buf = c->stream == KVMBOX_STDOUT ? o->stdout_buf : o->stderr_buf;
	size_t *n = c->stream == KVMBOX_STDOUT ? &o->nout : &o->nerr;
	size_t k = c->len < 255 - *n ? c->len : 255 - *n;
	memcpy(buf + *n, c->data, k);
	*n += k;
	buf[*n] = 0;
	return o->chunks == o->stop_at ? 7 : 0;
}

/* ---- (a) scripted fake agent ---- */

static void script_hello(struct fake *f, int fd)
{
	uint32_t id;
	for (int i = 0; i < 2 && (id = fk_request(f, fd)); i++)
		fk_send(fd, FRAME_RESPONSE, id, "{\"ok\":true,\"version\":1,\"pid\":1,\"ops\":[\"hello\"]}", NULL, 0);
	fk_drain(fd);
}

Test(libkvmbox, call_returns_the_response_without_ok_and_ids_increase)
{
	struct fake f;
	fake_start(&f, script_hello, false);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_error e;
	char *res = NULL;
	cr_assert_eq(kvmbox_agent_call(a, "{\"op\":\"hello\",\"version\":1}", &res, &e), 0, "%s", e.message);
	cr_expect_str_eq(res, "{\"version\":1,\"pid\":1,\"ops\":[\"hello\"]}");
	free(res);
	cr_assert_eq(kvmbox_agent_call(a, "{\"op\":\"hello\",\"version\":1}", NULL, &e), 0, "%s", e.message);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_assert_eq(f.nreq, 2);
	cr_expect_gt(f.ids[0], 0);
	cr_expect_gt(f.ids[1], f.ids[0]);
	json_t *j = req_json(&f, 0);
	cr_expect_str_eq(json_string_value(json_object_get(j, "op")), "hello");
	cr_expect_eq(json_integer_value(json_object_get(j, "version")), 1);
	json_decref(j);
	fake_stop(&f);
}

Test(libkvmbox, call_checks_the_request_before_sending)
{
	struct fake f;
	fake_start(&f, script_hello, false);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_error e;
	char *res = (char *)1;
	cr_expect_eq(kvmbox_agent_call(a, "[1,2]", &res, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	cr_expect_null(res);
	cr_expect_eq(kvmbox_agent_call(a, "{\"op\":", NULL, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	cr_expect_eq(kvmbox_agent_call(a, "{\"path\":\"/x\"}", NULL, NULL), -1); /* err may be NULL */
	/* The handle is still fine: nothing went out. */
	cr_expect_eq(kvmbox_agent_call(a, "{\"op\":\"hello\",\"version\":1}", NULL, &e), 0, "%s", e.message);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.nreq, 1);
	fake_stop(&f);
}

static void script_fs_error(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_RESPONSE, id,
		"{\"ok\":false,\"error\":{\"code\":\"EXDEV\",\"errno\":18,\"syscall\":\"rename\",\"path\":\"/a/b\","
		"\"dest\":\"/c/d\",\"message\":\"EXDEV: cross-device link not permitted, rename '/a/b' -> '/c/d'\"}}",
		NULL, 0);
	id = fk_request(f, fd);
	fk_send(fd, FRAME_RESPONSE, id,
		"{\"ok\":false,\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no command cmd-9\"}}", NULL, 0);
	fk_drain(fd);
}

Test(libkvmbox, agent_errors_are_decoded_exactly)
{
	struct fake f;
	fake_start(&f, script_fs_error, false);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_error e;
	char *res = NULL;
	cr_assert_eq(kvmbox_agent_call(a, "{\"op\":\"rename\",\"oldPath\":\"/a/b\",\"newPath\":\"/c/d\"}", &res, &e), -1);
	cr_expect_null(res);
	cr_expect_str_eq(e.code, "EXDEV");
	cr_expect_eq(e.errnum, 18);
	cr_expect_str_eq(e.syscall, "rename");
	cr_expect_str_eq(e.path, "/a/b");
	cr_expect_str_eq(e.dest, "/c/d");
	cr_expect_str_eq(e.message, "EXDEV: cross-device link not permitted, rename '/a/b' -> '/c/d'");
	struct kvmbox_command c;
	cr_assert_eq(kvmbox_command_get(a, "cmd-9", &c, &e), -1);
	cr_expect_str_eq(e.code, "NOT_FOUND");
	cr_expect_eq(e.errnum, 0);
	cr_expect_str_eq(e.syscall, "");
	cr_expect_str_eq(e.path, "");
	cr_expect_str_eq(e.message, "no command cmd-9");
	kvmbox_agent_close(a);
	fake_join(&f);
	json_t *j = req_json(&f, 1);
	cr_expect_str_eq(json_string_value(json_object_get(j, "op")), "get");
	cr_expect_str_eq(json_string_value(json_object_get(j, "id")), "cmd-9");
	json_decref(j);
	fake_stop(&f);
}

#define CMD_DONE "\"id\":\"cmd-1\",\"pid\":42,\"status\":\"finished\",\"exitCode\":3,\"signal\":null," \
	"\"timedOut\":false,\"startedAt\":1764145200123,\"finishedAt\":1764145200131,\"outputBytes\":8,\"bufferStart\":0"

static void script_run(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_EVENT, id, "{\"event\":\"started\",\"id\":\"cmd-1\",\"pid\":42}", NULL, 0);
	/* frames of some other request: skipped */
	fk_send(fd, FRAME_DATA, id + 100, "{\"stream\":\"stdout\",\"byteOffset\":0}", "junk", 4);
	fk_send(fd, FRAME_RESPONSE, id + 100, "{\"ok\":true}", NULL, 0);
	fk_send(fd, FRAME_DATA, id, "{\"stream\":\"stdout\",\"byteOffset\":0,\"timestamp\":1000}", "out\n", 4);
	fk_send(fd, FRAME_DATA, id, "{\"stream\":\"stderr\",\"byteOffset\":4,\"timestamp\":1001}", "err\n", 4);
	fk_send(fd, FRAME_RESPONSE, id, "{\"ok\":true," CMD_DONE "}", NULL, 0);
	fk_drain(fd);
}

Test(libkvmbox, run_streams_output_to_the_callback_and_returns_the_command)
{
	struct fake f;
	fake_start(&f, script_run, false);
	kvmbox_agent *a = fake_connect(&f);
	const char *args[] = { "-c", "echo out; echo err >&2; exit 3", NULL };
	const char *env[] = { "FOO=bar", "EMPTY=", NULL };
	struct kvmbox_run r = { .cmd = "/bin/sh", .args = args, .env = env, .cwd = "/tmp", .user = "nobody",
				.stdin_open = true, .timeout_ms = 5000, .output_buffer_bytes = 65536 };
	struct out o = { 0 };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(a, &r, collect, &o, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_str_eq(o.stdout_buf, "out\n");
	cr_expect_str_eq(o.stderr_buf, "err\n");
	cr_expect_eq(o.chunks, 2);
	cr_expect_eq(o.offsets[0], 0);
	cr_expect_eq(o.offsets[1], 4);
	cr_expect_eq(o.stamps[0], 1000);
	cr_expect_eq(o.stamps[1], 1001);
	cr_expect_str_eq(c.id, "cmd-1");
	cr_expect_eq(c.pid, 42);
	cr_expect_str_eq(c.status, "finished");
	cr_expect_eq(c.exit_code, 3);
	cr_expect_str_eq(c.signal, "");
	cr_expect_not(c.timed_out);
	cr_expect_eq(c.started_at_ms, 1764145200123);
	cr_expect_eq(c.finished_at_ms, 1764145200131);
	cr_expect_eq(c.output_bytes, 8);
	kvmbox_agent_close(a);
	fake_join(&f);
	json_t *j = req_json(&f, 0);
	cr_expect_str_eq(json_string_value(json_object_get(j, "op")), "run");
	cr_expect_str_eq(json_string_value(json_object_get(j, "cmd")), "/bin/sh");
	json_t *ja = json_object_get(j, "args");
	cr_expect_eq(json_array_size(ja), 2);
	cr_expect_str_eq(json_string_value(json_array_get(ja, 1)), "echo out; echo err >&2; exit 3");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "env"), "FOO")), "bar");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "env"), "EMPTY")), "");
	cr_expect_str_eq(json_string_value(json_object_get(j, "cwd")), "/tmp");
	cr_expect_str_eq(json_string_value(json_object_get(j, "user")), "nobody");
	cr_expect(json_is_true(json_object_get(j, "stdin")));
	cr_expect_null(json_object_get(j, "detached"));
	cr_expect_null(json_object_get(j, "sudo"));
	cr_expect_eq(json_integer_value(json_object_get(j, "timeoutMs")), 5000);
	cr_expect_eq(json_integer_value(json_object_get(j, "outputBufferBytes")), 65536);
	json_decref(j);
	fake_stop(&f);
}

Test(libkvmbox, run_rejects_a_bad_env_entry_locally)
{
	struct fake f;
	fake_start(&f, script_hello, false);
	kvmbox_agent *a = fake_connect(&f);
	const char *env[] = { "NOEQUALS", NULL };
	struct kvmbox_run r = { .cmd = "true", .env = env };
	struct kvmbox_error e;
	cr_expect_eq(kvmbox_run(a, &r, NULL, NULL, NULL, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	cr_expect(strstr(e.message, "NOEQUALS"), "%s", e.message);
	struct kvmbox_run none = { 0 };
	cr_expect_eq(kvmbox_run(a, &none, NULL, NULL, NULL, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.nreq, 0);
	fake_stop(&f);
}

/* A callback that stops: the call returns CALLBACK with the command's id; the next request on the
 * handle skips what is left of the abandoned one. */
static void script_run_then_get(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_EVENT, id, "{\"event\":\"started\",\"id\":\"cmd-1\",\"pid\":42}", NULL, 0);
	fk_send(fd, FRAME_DATA, id, "{\"stream\":\"stdout\",\"byteOffset\":0,\"timestamp\":1}", "one\n", 4);
	uint32_t id2 = fk_request(f, fd);
	fk_send(fd, FRAME_DATA, id, "{\"stream\":\"stdout\",\"byteOffset\":4,\"timestamp\":2}", "two\n", 4);
	fk_send(fd, FRAME_RESPONSE, id, "{\"ok\":true," CMD_DONE "}", NULL, 0);
	fk_send(fd, FRAME_RESPONSE, id2, "{\"ok\":true,\"id\":\"cmd-1\",\"pid\":42,\"status\":\"running\"}", NULL, 0);
	fk_drain(fd);
}

Test(libkvmbox, a_callback_that_stops_leaves_the_handle_usable)
{
	struct fake f;
	fake_start(&f, script_run_then_get, false);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_run r = { .cmd = "yes" };
	struct out o = { .stop_at = 1 };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(a, &r, collect, &o, &c, &e), -1);
	cr_expect_str_eq(e.code, "CALLBACK");
	cr_expect_eq(e.errnum, 7);
	cr_expect_str_eq(c.id, "cmd-1");
	cr_expect_eq(c.pid, 42);
	cr_expect_eq(o.chunks, 1);
	cr_assert_eq(kvmbox_command_get(a, "cmd-1", &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_str_eq(c.status, "running");
	cr_expect_eq(c.exit_code, -1);
	cr_expect_eq(o.chunks, 1);
	kvmbox_agent_close(a);
	fake_stop(&f);
}

static void script_bad_magic(struct fake *f, int fd)
{
	fk_request(f, fd);
	write_full(fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
	fk_drain(fd);
}

Test(libkvmbox, a_bad_frame_is_a_protocol_error_and_closes_the_handle)
{
	struct fake f;
	fake_start(&f, script_bad_magic, false);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_agent_call(a, "{\"op\":\"list\"}", NULL, &e), -1);
	cr_expect_str_eq(e.code, "PROTOCOL");
	cr_expect(strstr(e.message, "magic"), "%s", e.message);
	cr_expect(strstr(e.message, f.path), "%s", e.message);
	cr_assert_eq(kvmbox_agent_call(a, "{\"op\":\"list\"}", NULL, &e), -1);
	cr_expect_str_eq(e.code, "CLOSED");
	cr_expect(strstr(e.message, "new one"), "%s", e.message);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.nreq, 1);
	fake_stop(&f);
}

static void script_oversized(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	uint8_t h[FRAME_HEADER_SIZE] = { FRAME_MAGIC, AGENT_PROTO_VERSION, FRAME_DATA, 0 };
	put32(h + 4, id);
	put32(h + 12, FRAME_MAX_DATA + 1); /* never read: the header alone is bad */
	write_full(fd, h, sizeof(h));
	fk_drain(fd);
}

Test(libkvmbox, a_frame_over_the_limits_is_a_protocol_error)
{
	struct fake f;
	fake_start(&f, script_oversized, false);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_read_file(a, "/x", NULL, NULL, &e), -1);
	cr_expect_str_eq(e.code, "PROTOCOL");
	cr_expect(strstr(e.message, "256 KiB"), "%s", e.message);
	kvmbox_agent_close(a);
	fake_stop(&f);
}

static void script_bad_json(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_RESPONSE, id, "[true]", NULL, 0);
	fk_drain(fd);
}

static void script_no_ok(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_RESPONSE, id, "{\"okay\":true}", NULL, 0);
	fk_drain(fd);
}

static void script_bad_meta(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_DATA, id, "{\"stream\":\"stdweird\",\"byteOffset\":0}", "x", 1);
	fk_drain(fd);
}

Test(libkvmbox, bad_json_in_a_frame_is_a_protocol_error)
{
	script_fn scripts[] = { script_bad_json, script_no_ok, script_bad_meta };
	for (unsigned i = 0; i < 3; i++) {
		struct fake f;
		fake_start(&f, scripts[i], false);
		kvmbox_agent *a = fake_connect(&f);
		struct kvmbox_error e;
		struct kvmbox_command c;
		cr_expect_eq(kvmbox_attach(a, "cmd-1", 0, true, NULL, NULL, &c, &e), -1);
		cr_expect_str_eq(e.code, "PROTOCOL", "script %u: %s", i, e.message);
		kvmbox_agent_close(a);
		fake_stop(&f);
	}
}

static void script_close_midway(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_EVENT, id, "{\"event\":\"started\",\"id\":\"cmd-3\",\"pid\":7}", NULL, 0);
	fk_send(fd, FRAME_DATA, id, "{\"stream\":\"stdout\",\"byteOffset\":0}", "partial", 7);
	/* and half a frame */
	uint8_t h[FRAME_HEADER_SIZE];
	frame_encode_header(h, FRAME_DATA, 0, id, 0, 100);
	write_full(fd, h, sizeof(h));
	write_full(fd, "abc", 3);
}

Test(libkvmbox, a_connection_closed_mid_request_is_closed)
{
	struct fake f;
	fake_start(&f, script_close_midway, false);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_run r = { .cmd = "/bin/true" };
	struct out o = { 0 };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(a, &r, collect, &o, &c, &e), -1);
	cr_expect_str_eq(e.code, "CLOSED");
	cr_expect(strstr(e.message, "run"), "%s", e.message);
	cr_expect_str_eq(o.stdout_buf, "partial");
	cr_expect_str_eq(c.id, "cmd-3");
	cr_expect_str_eq(c.status, "running");
	cr_expect_eq(c.exit_code, -1);
	cr_expect_eq(kvmbox_signal(a, "cmd-3", SIGTERM, &e), -1);
	cr_expect_str_eq(e.code, "CLOSED");
	kvmbox_agent_close(a);
	fake_stop(&f);
}

static void script_silent(struct fake *f, int fd)
{
	fk_request(f, fd);
	fk_drain(fd);
}

Test(libkvmbox, the_handle_timeout_bounds_a_silent_agent)
{
	struct fake f;
	fake_start(&f, script_silent, false);
	kvmbox_agent *a = fake_connect(&f);
	kvmbox_agent_set_timeout(a, 150);
	struct kvmbox_error e;
	int64_t t0 = now_ms();
	cr_assert_eq(kvmbox_wait(a, "cmd-1", NULL, &e), -1);
	int64_t took = now_ms() - t0;
	cr_expect_str_eq(e.code, "TIMEOUT");
	cr_expect_eq(e.errnum, ETIMEDOUT);
	cr_expect_geq(took, 140);
	cr_expect_lt(took, 2000);
	kvmbox_agent_close(a);
	fake_stop(&f);
}

/* Uploads: the REQUEST carries the first 256 KiB with MORE, DATA frames the rest, the last without MORE. */
static void script_upload(struct fake *f, int fd)
{
	struct rframe r;
	if (fk_read(fd, &r))
		return;
	fake_keep(f, &r);
	uint32_t id = r.id;
	for (;;) {
		f->upload = realloc(f->upload, f->upload_len + r.data_len + 1);
		memcpy(f->upload + f->upload_len, r.data, r.data_len);
		f->upload_len += r.data_len;
		f->frames++;
		f->last_flags = r.flags;
		cr_expect_eq(r.id, id);
		cr_expect_eq(r.type, f->frames == 1 ? FRAME_REQUEST : FRAME_DATA);
		cr_expect_leq(r.data_len, FRAME_MAX_DATA);
		bool more = r.flags & FRAME_F_MORE;
		fk_free(&r);
		if (!more || fk_read(fd, &r))
			break;
	}
	fk_send(fd, FRAME_RESPONSE, id, "{\"ok\":true}", NULL, 0);
	fk_drain(fd);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return p;
}

Test(libkvmbox, write_file_splits_into_frames_with_more)
{
	struct fake f;
	fake_start(&f, script_upload, false);
	kvmbox_agent *a = fake_connect(&f);
	size_t n = 600 * KiB;
	uint8_t *data = pattern(n, 1);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_write_file(a, "/d/f.bin", 0640, KVMBOX_WRITE_RECURSIVE | KVMBOX_WRITE_EXCLUSIVE, data, n,
				       &e), 0, "%s: %s", e.code, e.message);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.frames, 3);
	cr_expect_eq(f.last_flags, 0);
	cr_assert_eq(f.upload_len, n);
	cr_expect_eq(memcmp(f.upload, data, n), 0);
	json_t *j = req_json(&f, 0);
	cr_expect_str_eq(json_string_value(json_object_get(j, "op")), "writeFile");
	cr_expect_str_eq(json_string_value(json_object_get(j, "path")), "/d/f.bin");
	cr_expect_eq(json_integer_value(json_object_get(j, "mode")), 0640);
	cr_expect(json_is_true(json_object_get(j, "recursive")));
	cr_expect(json_is_true(json_object_get(j, "exclusive")));
	json_decref(j);
	free(data);
	fake_stop(&f);
}

Test(libkvmbox, write_file_from_fd_ends_a_whole_last_chunk_with_an_empty_frame)
{
	struct fake f;
	fake_start(&f, script_upload, false);
	kvmbox_agent *a = fake_connect(&f);
	size_t n = 2 * FRAME_MAX_DATA;
	uint8_t *data = pattern(n, 2);
	char tmp[] = "/tmp/kvmbox-lib-src-XXXXXX";
	int fd = mkstemp(tmp);
	cr_assert_geq(fd, 0);
	unlink(tmp);
	cr_assert_eq(write(fd, data, n), (ssize_t)n);
	lseek(fd, 0, SEEK_SET);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_write_file_from_fd(a, "log", -1, KVMBOX_WRITE_APPEND, fd, &e), 0, "%s", e.message);
	close(fd);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.frames, 3);
	cr_assert_eq(f.upload_len, n);
	cr_expect_eq(memcmp(f.upload, data, n), 0);
	json_t *j = req_json(&f, 0);
	cr_expect_str_eq(json_string_value(json_object_get(j, "op")), "appendFile");
	cr_expect_null(json_object_get(j, "mode"));
	json_decref(j);
	free(data);
	fake_stop(&f);
}

Test(libkvmbox, a_source_fd_that_fails_before_the_upload_leaves_the_handle_usable)
{
	struct fake f;
	fake_start(&f, script_hello, false);
	kvmbox_agent *a = fake_connect(&f);
	int dfd = open("/", O_RDONLY | O_DIRECTORY);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_write_file_from_fd(a, "x", -1, 0, dfd, &e), -1);
	close(dfd);
	cr_expect_str_eq(e.code, "EISDIR");
	cr_expect_eq(e.errnum, EISDIR);
	cr_expect_str_eq(e.syscall, "read");
	cr_expect_eq(kvmbox_agent_call(a, "{\"op\":\"hello\",\"version\":1}", NULL, &e), 0, "%s", e.message);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.nreq, 1);
	fake_stop(&f);
}

Test(libkvmbox, stdin_splits_and_sends_eof)
{
	struct fake f;
	fake_start(&f, script_upload, false);
	kvmbox_agent *a = fake_connect(&f);
	size_t n = 300 * KiB;
	uint8_t *data = pattern(n, 3);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_stdin(a, "cmd-4", data, n, true, &e), 0, "%s", e.message);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.frames, 2);
	cr_assert_eq(f.upload_len, n);
	cr_expect_eq(memcmp(f.upload, data, n), 0);
	json_t *j = req_json(&f, 0);
	cr_expect_str_eq(json_string_value(json_object_get(j, "op")), "stdin");
	cr_expect_str_eq(json_string_value(json_object_get(j, "id")), "cmd-4");
	cr_expect(json_is_true(json_object_get(j, "eof")));
	json_decref(j);
	free(data);
	fake_stop(&f);
}

/* An upload refused at once: the agent answers after the first frame and drops the rest. */
static void script_upload_refused(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_RESPONSE, id,
		"{\"ok\":false,\"error\":{\"code\":\"EACCES\",\"errno\":13,\"syscall\":\"open\",\"path\":\"/ro/f\","
		"\"message\":\"EACCES: permission denied, open '/ro/f'\"}}", NULL, 0);
	fk_drain(fd);
}

Test(libkvmbox, an_upload_refused_early_returns_the_error)
{
	struct fake f;
	fake_start(&f, script_upload_refused, false);
	kvmbox_agent *a = fake_connect(&f);
	size_t n = 8u << 20;
	uint8_t *data = pattern(n, 4);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_write_file(a, "/ro/f", -1, 0, data, n, &e), -1);
	cr_expect_str_eq(e.code, "EACCES");
	cr_expect_eq(e.errnum, EACCES);
	cr_expect_str_eq(e.syscall, "open");
	cr_expect_str_eq(e.path, "/ro/f");
	kvmbox_agent_close(a);
	fake_stop(&f);
	free(data);
}

Test(libkvmbox, write_flags_are_checked)
{
	struct fake f;
	fake_start(&f, script_hello, false);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_error e;
	cr_expect_eq(kvmbox_write_file(a, "x", -1, KVMBOX_WRITE_APPEND | KVMBOX_WRITE_EXCLUSIVE, "a", 1, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	cr_expect_eq(kvmbox_write_file(a, "x", 010000, 0, "a", 1, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	cr_expect_eq(kvmbox_write_file(a, "x", -1, 0x80, "a", 1, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.nreq, 0);
	fake_stop(&f);
}

static void script_read_file(struct fake *f, int fd)
{
	uint32_t id = fk_request(f, fd);
	fk_send(fd, FRAME_DATA, id, NULL, "hello, ", 7);
	fk_send(fd, FRAME_DATA, id + 1, NULL, "NOT THIS", 8);
	fk_send(fd, FRAME_DATA, id, NULL, "world\n", 6);
	fk_send(fd, FRAME_RESPONSE, id, "{\"ok\":true}", NULL, 0);
	fk_drain(fd);
}

struct sink {
	char buf[64];
	size_t len;
	int calls, stop_at;
};

static int sink_fn(void *ctx, const void *data, size_t len)
{
	struct sink *s = ctx;
	size_t k = len < sizeof(s->buf) - 1 - s->len ? len : sizeof(s->buf) - 1 - s->len;
	memcpy(s->buf + s->len, data, k);
	s->len += k;
	s->buf[s->len] = 0;
	return ++s->calls == s->stop_at ? -5 : 0;
}

Test(libkvmbox, read_file_delivers_data_chunks_in_order)
{
	struct fake f;
	fake_start(&f, script_read_file, false);
	kvmbox_agent *a = fake_connect(&f);
	struct sink s = { 0 };
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_read_file(a, "/etc/motd", sink_fn, &s, &e), 0, "%s", e.message);
	cr_expect_str_eq(s.buf, "hello, world\n");
	cr_expect_eq(s.calls, 2);
	kvmbox_agent_close(a);
	fake_join(&f);
	json_t *j = req_json(&f, 0);
	cr_expect_str_eq(json_string_value(json_object_get(j, "op")), "readFile");
	cr_expect_str_eq(json_string_value(json_object_get(j, "path")), "/etc/motd");
	json_decref(j);
	fake_stop(&f);
}

Test(libkvmbox, read_file_stops_when_the_callback_says_so)
{
	struct fake f;
	fake_start(&f, script_read_file, false);
	kvmbox_agent *a = fake_connect(&f);
	struct sink s = { .stop_at = 1 };
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_read_file(a, "/etc/motd", sink_fn, &s, &e), -1);
	cr_expect_str_eq(e.code, "CALLBACK");
	cr_expect_eq(e.errnum, -5);
	cr_expect_str_eq(s.buf, "hello, ");
	kvmbox_agent_close(a);
	fake_stop(&f);
}

Test(libkvmbox, read_file_to_a_closed_pipe_is_epipe_not_sigpipe)
{
	struct fake f;
	fake_start(&f, script_read_file, false);
	kvmbox_agent *a = fake_connect(&f);
	int p[2];
	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_read_file_to_fd(a, "/etc/motd", p[1], &e), -1);
	cr_expect_str_eq(e.code, "EPIPE");
	cr_expect_eq(e.errnum, EPIPE);
	cr_expect_str_eq(e.syscall, "write");
	sigset_t pending;
	sigpending(&pending);
	cr_expect_not(sigismember(&pending, SIGPIPE));
	close(p[1]);
	kvmbox_agent_close(a);
	fake_stop(&f);
}

/* ---- connecting ---- */

Test(libkvmbox, connect_sends_the_connect_line_and_reads_ok)
{
	struct fake f;
	fake_start(&f, script_hello, true);
	kvmbox_agent *a = fake_connect(&f);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_agent_call(a, "{\"op\":\"hello\",\"version\":1}", NULL, &e), 0, "%s", e.message);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_str_eq(f.line, "CONNECT 1024\n");
	cr_expect_eq(f.attempts, 1);
	cr_expect_eq(f.nreq, 1);
	fake_stop(&f);
}

Test(libkvmbox, connect_retries_a_refused_connect_until_the_agent_listens)
{
	struct fake f;
	fake_init(&f, script_hello, true);
	f.refuse = 3;
	fake_listen(&f);
	kvmbox_agent *a = NULL;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_agent_connect(f.path, KVMBOX_AGENT_PORT, 5000, &a, &e), 0, "%s", e.message);
	cr_expect_eq(kvmbox_agent_call(a, "{\"op\":\"hello\",\"version\":1}", NULL, &e), 0, "%s", e.message);
	kvmbox_agent_close(a);
	fake_join(&f);
	cr_expect_eq(f.attempts, 4);
	fake_stop(&f);
}

Test(libkvmbox, connect_gives_up_on_a_refused_connect_at_the_deadline)
{
	struct fake f;
	fake_init(&f, NULL, true);
	f.refuse = -1; /* forever */
	fake_listen(&f);
	kvmbox_agent *a = (kvmbox_agent *)1;
	struct kvmbox_error e;
	int64_t t0 = now_ms();
	cr_assert_eq(kvmbox_agent_connect(f.path, KVMBOX_AGENT_PORT, 300, &a, &e), -1);
	int64_t took = now_ms() - t0;
	cr_expect_null(a);
	cr_expect_str_eq(e.code, "CONNECT");
	cr_expect(strstr(e.message, "refused \"CONNECT 1024\""), "%s", e.message);
	cr_expect(strstr(e.message, "300 ms"), "%s", e.message);
	cr_expect_geq(took, 290);
	cr_expect_lt(took, 3000);
	cr_expect_gt(f.attempts, 1);
	fake_stop(&f);
}

Test(libkvmbox, connect_to_a_missing_socket_says_what_to_check)
{
	kvmbox_agent *a = NULL;
	struct kvmbox_error e;
	int64_t t0 = now_ms();
	cr_assert_eq(kvmbox_agent_connect("/nonexistent/kvmbox/vm.vsock", KVMBOX_AGENT_PORT, 200, &a, &e), -1);
	cr_expect_geq(now_ms() - t0, 190);
	cr_expect_str_eq(e.code, "CONNECT");
	cr_expect_eq(e.errnum, ENOENT);
	cr_expect(strstr(e.message, "connect to /nonexistent/kvmbox/vm.vsock: No such file or directory: is the VM "
			 "running with --vsock uds=/nonexistent/kvmbox/vm.vsock?"), "%s", e.message);
	cr_assert_eq(kvmbox_agent_connect("/nonexistent/kvmbox/a.sock", 0, 0, &a, &e), -1);
	cr_expect(strstr(e.message, "--listen unix:/nonexistent/kvmbox/a.sock"), "%s", e.message);
	cr_expect_eq(kvmbox_agent_connect("", 0, 0, &a, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	char longp[200];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	cr_expect_eq(kvmbox_agent_connect(longp, 0, 0, &a, NULL), -1);
	cr_expect_null(a);
}

static void *listen_later(void *arg)
{
	sleep_ms(200);
	fake_listen(arg);
	return NULL;
}

Test(libkvmbox, connect_waits_for_the_socket_to_appear)
{
	struct fake f;
	fake_init(&f, script_hello, true);
	pthread_t th;
	pthread_create(&th, NULL, listen_later, &f);
	kvmbox_agent *a = NULL;
	struct kvmbox_error e;
	int64_t t0 = now_ms();
	int r = kvmbox_agent_connect(f.path, KVMBOX_AGENT_PORT, 5000, &a, &e);
	pthread_join(th, NULL);
	cr_assert_eq(r, 0, "%s", e.message);
	cr_expect_geq(now_ms() - t0, 190);
	cr_expect_eq(kvmbox_agent_call(a, "{\"op\":\"hello\",\"version\":1}", NULL, &e), 0, "%s", e.message);
	kvmbox_agent_close(a);
	fake_stop(&f);
}

static void script_bad_answer(struct fake *f, int fd)
{
	(void)f;
	write_full(fd, "ERR nope\n", 9);
	fk_drain(fd);
}

Test(libkvmbox, connect_rejects_an_answer_that_is_not_ok_without_retrying)
{
	struct fake f;
	fake_start(&f, script_bad_answer, false); /* not a monitor: answers its own line */
	kvmbox_agent *a = NULL;
	struct kvmbox_error e;
	int64_t t0 = now_ms();
	cr_assert_eq(kvmbox_agent_connect(f.path, KVMBOX_AGENT_PORT, 5000, &a, &e), -1);
	cr_expect_lt(now_ms() - t0, 1000);
	cr_expect_str_eq(e.code, "CONNECT");
	cr_expect(strstr(e.message, "\"ERR nope\""), "%s", e.message);
	fake_join(&f);
	cr_expect_eq(f.attempts, 1);
	fake_stop(&f);
}

Test(libkvmbox, null_handles_are_einval)
{
	struct kvmbox_error e;
	cr_expect_eq(kvmbox_agent_call(NULL, "{\"op\":\"list\"}", NULL, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	cr_expect_eq(kvmbox_signal(NULL, "cmd-1", 9, &e), -1);
	cr_expect_str_eq(e.code, "EINVAL");
	kvmbox_agent_close(NULL);
	kvmbox_agent_set_timeout(NULL, 5);
}

/* ---- (b) the real agent: $KVMBOX_BUILD/kvmbox-agent --listen unix:PATH ---- */

static struct {
	char dir[64];
	char sock[128];
	pid_t pid;
	kvmbox_agent *a;
} real;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void real_setup(void)
{
	const char *build = getenv("KVMBOX_BUILD");
	char agent[512];
	snprintf(agent, sizeof(agent), "%s/kvmbox-agent", build && build[0] ? build : "build");
	if (access(agent, X_OK)) {
		cr_skip_test("%s is missing: make %s", agent, agent);
		return;
	}
	char abs[PATH_MAX];
	cr_assert(realpath(agent, abs));
	strcpy(real.dir, "/tmp/kvmbox-lib-agent-XXXXXX");
	cr_assert(mkdtemp(real.dir));
	snprintf(real.sock, sizeof(real.sock), "%s/agent.sock", real.dir);
	char listen_at[160];
	snprintf(listen_at, sizeof(listen_at), "unix:%s", real.sock);
	real.pid = fork();
	cr_assert_geq(real.pid, 0);
	if (real.pid == 0) {
		char log[128];
		snprintf(log, sizeof(log), "%s/agent.log", real.dir);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || chdir(real.dir) || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execl(abs, abs, "--listen", listen_at, (char *)NULL);
		_exit(127);
	}
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_agent_connect(real.sock, 0, 10000, &real.a, &e), 0, "%s", e.message);
}

static void real_teardown(void)
{
	kvmbox_agent_close(real.a);
	real.a = NULL;
	if (real.pid > 0) {
		kill(real.pid, SIGTERM);
		int st;
		waitpid(real.pid, &st, 0);
		real.pid = 0;
	}
	if (real.dir[0])
		nftw(real.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	unit_leak_check();
}

TestSuite(libkvmbox_agent, .init = real_setup, .fini = real_teardown, .timeout = 60);

static kvmbox_agent *second_handle(void)
{
	kvmbox_agent *b = NULL;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_agent_connect(real.sock, 0, 5000, &b, &e), 0, "%s", e.message);
	return b;
}

Test(libkvmbox_agent, run_collects_both_streams_and_the_exit_code)
{
	const char *args[] = { "-c", "echo out; echo err >&2; exit 3", NULL };
	struct kvmbox_run r = { .cmd = "/bin/sh", .args = args };
	struct out o = { 0 };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(real.a, &r, collect, &o, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_str_eq(o.stdout_buf, "out\n");
	cr_expect_str_eq(o.stderr_buf, "err\n");
	cr_expect_str_eq(c.status, "finished");
	cr_expect_eq(c.exit_code, 3);
	cr_expect_eq(c.output_bytes, 8);
	cr_expect_gt(c.pid, 0);
	cr_expect_neq(c.id[0], 0);
	cr_expect_geq(c.finished_at_ms, c.started_at_ms);
	cr_expect_gt(c.started_at_ms, 0);
}

Test(libkvmbox_agent, run_with_env_and_cwd)
{
	char sub[160];
	snprintf(sub, sizeof(sub), "%s/sub", real.dir);
	cr_assert_eq(mkdir(sub, 0755), 0);
	const char *args[] = { "-c", "printf '%s:%s' \"$FOO\" \"$(pwd)\"", NULL };
	const char *env[] = { "FOO=bar baz", NULL };
	struct kvmbox_run r = { .cmd = "sh", .args = args, .env = env, .cwd = sub };
	struct out o = { 0 };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(real.a, &r, collect, &o, &c, &e), 0, "%s: %s", e.code, e.message);
	char want[200];
	snprintf(want, sizeof(want), "bar baz:%s", sub);
	cr_expect_str_eq(o.stdout_buf, want);
	cr_expect_eq(c.exit_code, 0);
}

Test(libkvmbox_agent, a_command_that_cannot_start_is_an_execve_error)
{
	struct kvmbox_run r = { .cmd = "/nonexistent/program" };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(real.a, &r, NULL, NULL, &c, &e), -1);
	cr_expect_str_eq(e.code, "ENOENT");
	cr_expect_str_eq(e.syscall, "execve");
}

Test(libkvmbox_agent, detached_then_attach_replays_from_an_offset)
{
	const char *args[] = { "-c", "printf abcdef; sleep 0.3; printf ghi >&2", NULL };
	struct kvmbox_run r = { .cmd = "/bin/sh", .args = args, .detached = true };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(real.a, &r, NULL, NULL, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect(!strcmp(c.status, "running") || !strcmp(c.status, "pending"), "%s", c.status);
	cr_expect_eq(c.exit_code, -1);
	char id[32];
	strcpy(id, c.id);
	/* Follow it live from the start... */
	struct out o = { 0 };
	cr_assert_eq(kvmbox_attach(real.a, id, 0, true, collect, &o, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_str_eq(o.stdout_buf, "abcdef");
	cr_expect_str_eq(o.stderr_buf, "ghi");
	cr_expect_eq(o.offsets[0], 0);
	cr_expect_str_eq(c.status, "finished");
	cr_expect_eq(c.exit_code, 0);
	cr_expect_eq(c.output_bytes, 9);
	/* ...then replay it from offsets 3 and 7, without follow, on another handle. */
	kvmbox_agent *b = second_handle();
	struct out o2 = { 0 };
	cr_assert_eq(kvmbox_attach(b, id, 3, false, collect, &o2, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_str_eq(o2.stdout_buf, "def");
	cr_expect_str_eq(o2.stderr_buf, "ghi");
	cr_expect_eq(o2.offsets[0], 3);
	cr_expect_eq(o2.offsets[1], 6);
	struct out o3 = { 0 };
	cr_assert_eq(kvmbox_attach(b, id, 7, false, collect, &o3, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_str_eq(o3.stdout_buf, "");
	cr_expect_str_eq(o3.stderr_buf, "hi");
	cr_expect_eq(o3.offsets[0], 7);
	kvmbox_agent_close(b);
}

Test(libkvmbox_agent, stdin_on_a_second_handle)
{
	struct kvmbox_run r = { .cmd = "wc", .args = (const char *[]){ "-c", NULL }, .stdin_open = true,
				.detached = true };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(real.a, &r, NULL, NULL, &c, &e), 0, "%s: %s", e.code, e.message);
	char id[32];
	strcpy(id, c.id);
	size_t n = 600 * KiB + 3;
	uint8_t *data = pattern(n, 5);
	kvmbox_agent *b = second_handle();
	cr_assert_eq(kvmbox_stdin(b, id, data, n - 3, false, &e), 0, "%s: %s", e.code, e.message);
	cr_assert_eq(kvmbox_stdin(b, id, data + n - 3, 3, true, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_eq(kvmbox_stdin(b, id, "x", 1, false, &e), -1);
	/* after eof: closed, or already ended (wc is quick) */
	cr_expect(!strcmp(e.code, "STDIN_CLOSED") || !strcmp(e.code, "NOT_RUNNING"), "%s", e.code);
	struct out o = { 0 };
	cr_assert_eq(kvmbox_attach(real.a, id, 0, true, collect, &o, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_eq(atol(o.stdout_buf), (long)n, "%s", o.stdout_buf);
	cr_expect_eq(c.exit_code, 0);
	kvmbox_agent_close(b);
	free(data);
}

Test(libkvmbox_agent, signal_kills_the_command)
{
	struct kvmbox_run r = { .cmd = "sleep", .args = (const char *[]){ "30", NULL }, .detached = true };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(real.a, &r, NULL, NULL, &c, &e), 0, "%s: %s", e.code, e.message);
	char id[32];
	strcpy(id, c.id);
	cr_assert_eq(kvmbox_signal(real.a, id, SIGTERM, &e), 0, "%s: %s", e.code, e.message);
	/* cmd->id of the cmd being filled, as callers will write it */
	cr_assert_eq(kvmbox_wait(real.a, c.id, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect_str_eq(c.id, id);
	cr_expect_str_eq(c.status, "killed");
	cr_expect_str_eq(c.signal, "SIGTERM");
	cr_expect_eq(c.exit_code, 128 + SIGTERM);
	cr_expect_eq(kvmbox_command_get(real.a, id, &c, &e), 0, "%s", e.message);
	cr_expect_str_eq(c.status, "killed");
	cr_expect_eq(kvmbox_signal(real.a, id, SIGTERM, &e), -1);
	cr_expect_str_eq(e.code, "NOT_RUNNING");
	cr_expect_eq(kvmbox_command_get(real.a, "cmd-999999", &c, &e), -1);
	cr_expect_str_eq(e.code, "NOT_FOUND");
}

Test(libkvmbox_agent, timeout_kills_the_command)
{
	struct kvmbox_run r = { .cmd = "sleep", .args = (const char *[]){ "30", NULL }, .timeout_ms = 100 };
	struct kvmbox_command c;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_run(real.a, &r, NULL, NULL, &c, &e), 0, "%s: %s", e.code, e.message);
	cr_expect(c.timed_out);
	cr_expect_str_eq(c.status, "killed");
	cr_expect_str_eq(c.signal, "SIGKILL");
}

struct membuf {
	uint8_t *p;
	size_t len, cap;
	int calls;
};

static int membuf_fn(void *ctx, const void *data, size_t len)
{
	struct membuf *m = ctx;
	if (m->len + len > m->cap)
		return 1;
	memcpy(m->p + m->len, data, len);
	m->len += len;
	m->calls++;
	return 0;
}

Test(libkvmbox_agent, a_10_mib_file_round_trips_byte_exact)
{
	size_t n = 10u << 20;
	uint8_t *data = pattern(n, 6);
	char path[160];
	snprintf(path, sizeof(path), "%s/deep/er/big.bin", real.dir);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_write_file(real.a, path, 0600, KVMBOX_WRITE_RECURSIVE, data, n, &e), 0, "%s: %s", e.code,
		     e.message);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	cr_expect_eq(sb.st_size, (off_t)n);
	cr_expect_eq(sb.st_mode & 0777, 0600);
	struct membuf m = { malloc(n + 1), 0, n + 1, 0 };
	cr_assert_eq(kvmbox_read_file(real.a, path, membuf_fn, &m, &e), 0, "%s: %s", e.code, e.message);
	cr_assert_eq(m.len, n);
	cr_expect_eq(memcmp(m.p, data, n), 0);
	cr_expect_geq(m.calls, 40);

	/* The same through fds: from a file (a whole last chunk), into a file. */
	char src[160], dst[160], copy[160];
	snprintf(src, sizeof(src), "%s/src.bin", real.dir);
	snprintf(dst, sizeof(dst), "%s/dst.bin", real.dir);
	snprintf(copy, sizeof(copy), "%s/copy.bin", real.dir);
	int fd = open(src, O_RDWR | O_CREAT | O_TRUNC, 0644);
	cr_assert_eq(write(fd, data, n), (ssize_t)n);
	lseek(fd, 0, SEEK_SET);
	cr_assert_eq(kvmbox_write_file_from_fd(real.a, dst, -1, 0, fd, &e), 0, "%s: %s", e.code, e.message);
	close(fd);
	fd = open(copy, O_RDWR | O_CREAT | O_TRUNC, 0644);
	cr_assert_eq(kvmbox_read_file_to_fd(real.a, dst, fd, &e), 0, "%s: %s", e.code, e.message);
	lseek(fd, 0, SEEK_SET);
	m.len = 0;
	cr_assert_eq(read(fd, m.p, n + 1), (ssize_t)n);
	cr_expect_eq(memcmp(m.p, data, n), 0);
	close(fd);
	free(m.p);
	free(data);
}

Test(libkvmbox_agent, append_and_exclusive)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/log.txt", real.dir);
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_write_file(real.a, path, -1, KVMBOX_WRITE_EXCLUSIVE, "one\n", 4, &e), 0, "%s", e.message);
	cr_assert_eq(kvmbox_write_file(real.a, path, -1, KVMBOX_WRITE_APPEND, "two\n", 4, &e), 0, "%s", e.message);
	cr_assert_eq(kvmbox_write_file(real.a, path, -1, KVMBOX_WRITE_EXCLUSIVE, "x", 1, &e), -1);
	cr_expect_str_eq(e.code, "EEXIST");
	cr_expect_eq(e.errnum, EEXIST);
	cr_expect_str_eq(e.path, path);
	struct sink s = { 0 };
	cr_assert_eq(kvmbox_read_file(real.a, path, sink_fn, &s, &e), 0, "%s", e.message);
	cr_expect_str_eq(s.buf, "one\ntwo\n");
	/* An empty file, and a relative path: it resolves against the agent's cwd (the test's folder). */
	cr_assert_eq(kvmbox_write_file(real.a, "empty", -1, 0, NULL, 0, &e), 0, "%s", e.message);
	char empty[160];
	snprintf(empty, sizeof(empty), "%s/empty", real.dir);
	struct stat sb;
	cr_expect_eq(stat(empty, &sb), 0);
	cr_expect_eq(sb.st_size, 0);
}

Test(libkvmbox_agent, a_missing_file_is_enoent_with_syscall_and_path)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/no/such/file", real.dir);
	struct sink s = { 0 };
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_read_file(real.a, path, sink_fn, &s, &e), -1);
	cr_expect_str_eq(e.code, "ENOENT");
	cr_expect_eq(e.errnum, ENOENT);
	cr_expect_str_eq(e.syscall, "open");
	cr_expect_str_eq(e.path, path);
	cr_expect(strstr(e.message, "no such file or directory"), "%s", e.message);
	/* The handle goes on. */
	char *res = NULL;
	char req[300];
	snprintf(req, sizeof(req), "{\"op\":\"stat\",\"path\":\"%s\"}", real.dir);
	cr_assert_eq(kvmbox_agent_call(real.a, req, &res, &e), 0, "%s", e.message);
	json_t *j = json_loads(res, 0, NULL);
	cr_expect_str_eq(json_string_value(json_object_get(j, "type")), "directory");
	json_decref(j);
	free(res);
}

Test(libkvmbox_agent, hello_and_list_through_call)
{
	char *res = NULL;
	struct kvmbox_error e;
	cr_assert_eq(kvmbox_agent_call(real.a, "{\"op\":\"hello\",\"version\":1}", &res, &e), 0, "%s", e.message);
	json_t *j = json_loads(res, 0, NULL);
	cr_expect_eq(json_integer_value(json_object_get(j, "version")), 1);
	cr_expect_null(json_object_get(j, "ok"));
	json_decref(j);
	free(res);
	cr_assert_eq(kvmbox_agent_call(real.a, "{\"op\":\"nope\"}", &res, &e), -1);
	cr_expect_str_eq(e.code, "BAD_REQUEST");
	cr_expect_null(res);
}
