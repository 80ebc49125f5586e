/* The agent's server and commands (tools/agent/agent.c, cmd.c) in-process: an agent whose connections
 * are socketpairs, driven one loop iteration at a time, running real commands (/bin/sh) on the host. */
#include "unit.h"

#include "tools/agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

UNIT_SUITE(agent_cmd);

struct client {
	struct agent *ag;
	int fd;
	uint8_t buf[FRAME_MAX_SIZE * 2];
	size_t len;
};

struct got {
	uint8_t type;
	uint32_t id;
	json_t *json;
	uint8_t *data;
	size_t data_len;
};

static struct agent *agent_new(void)
{
	struct agent_options o = {.system = false};
	struct agent_error e;
	struct agent *ag = agent_create(&o, &e);
	cr_assert(ag, "agent_create: %s", e.message);
	return ag;
}

static void client_open(struct client *c, struct agent *ag)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	c->ag = ag;
	c->fd = sv[0];
	c->len = 0;
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	cr_assert_eq(agent_add_connection(ag, sv[1]), 0);
}

static void send_frame(struct client *c, uint8_t type, uint8_t flags, uint32_t id, const char *json,
		       const void *data, size_t len)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	size_t jl = json ? strlen(json) : 0;
	cr_assert_eq(frame_encode_header(hdr, type, flags, id, jl, len), 0);
	struct iovec iov[3] = {{hdr, sizeof(hdr)}, {(void *)json, jl}, {(void *)data, len}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 3};
	size_t total = sizeof(hdr) + jl + len;
	/* The agent drains the socket as we go, so big frames go through. */
	size_t sent = 0;
	while (sent < total) {
		ssize_t n = sendmsg(c->fd, &m, MSG_DONTWAIT);
		if (n < 0) {
			cr_assert(errno == EAGAIN, "sendmsg: %s", strerror(errno));
			agent_run_once(c->ag, 10);
			continue;
		}
		sent += n;
		while (n > 0) { /* advance the iovecs */
			size_t k = (size_t)n < m.msg_iov->iov_len ? (size_t)n : m.msg_iov->iov_len;
			m.msg_iov->iov_base = (uint8_t *)m.msg_iov->iov_base + k;
			m.msg_iov->iov_len -= k;
			n -= k;
			if (!m.msg_iov->iov_len) {
				m.msg_iov++;
				m.msg_iovlen--;
			}
		}
	}
}

static void request(struct client *c, uint32_t id, const char *json)
{
	send_frame(c, FRAME_REQUEST, 0, id, json, NULL, 0);
}

/* The next frame from the agent, running its loop until one arrives (or fail after 10 s). Returns false
 * when the agent closed the connection. */
static bool next_frame(struct client *c, struct got *g)
{
	int64_t deadline = agent_mono_ms() + 10000;
	while (agent_mono_ms() < deadline) {
		struct frame f;
		size_t used;
		const char *why;
		enum frame_status st = frame_decode(c->buf, c->len, &f, &used, &why);
		cr_assert_neq(st, FRAME_BAD, "bad frame from the agent: %s", why);
		if (st == FRAME_OK) {
			g->type = f.type;
			g->id = f.id;
			json_error_t je;
			g->json = f.json_len ? json_loadb(f.json, f.json_len, 0, &je) : NULL;
			g->data_len = f.data_len;
			g->data = malloc(f.data_len + 1);
			memcpy(g->data, f.data ? f.data : (const uint8_t *)"", f.data_len);
			memmove(c->buf, c->buf + used, c->len - used);
			c->len -= used;
			return true;
		}
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
		if (n == 0)
			return false;
		if (n > 0) {
			c->len += n;
			continue;
		}
		agent_run_once(c->ag, 5);
	}
	cr_assert_fail("no frame from the agent in 10 s");
	return false;
}

static void got_free(struct got *g)
{
	json_decref(g->json);
	free(g->data);
}

/* Run the request to its RESPONSE; output bytes (stdout and stderr tagged) go to out. */
static json_t *exchange(struct client *c, uint32_t id, const char *json, char *out, size_t outsz)
{
	request(c, id, json);
	size_t olen = 0;
	for (;;) {
		struct got g;
		cr_assert(next_frame(c, &g), "connection closed");
		cr_assert_eq(g.id, id);
		if (g.type == FRAME_RESPONSE) {
			free(g.data);
			if (out)
				out[olen] = 0;
			return g.json;
		}
		if (g.type == FRAME_DATA && out) {
			const char *s = json_string_value(json_object_get(g.json, "stream"));
			int n = snprintf(out + olen, outsz - olen, "%s%.*s", s && strcmp(s, "stderr") == 0 ? "E:" : "",
					 (int)g.data_len, (char *)g.data);
			olen += n > 0 ? (size_t)n : 0;
			cr_assert_lt(olen, outsz);
		}
		got_free(&g);
	}
}

static const char *jstr(json_t *j, const char *k)
{
	return json_string_value(json_object_get(j, k));
}

static long long jint(json_t *j, const char *k)
{
	return json_integer_value(json_object_get(j, k));
}

static const char *errcode(json_t *r)
{
	return json_string_value(json_object_get(json_object_get(r, "error"), "code"));
}

Test(agent_cmd, run_streams_in_order_and_exit_code)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	char out[256];
	json_t *r = exchange(&c, 1,
			     "{\"op\":\"run\",\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"echo a; sleep 0.05; echo b >&2; "
			     "sleep 0.05; echo c; exit 5\"]}",
			     out, sizeof(out));
	cr_assert(json_is_true(json_object_get(r, "ok")));
	cr_assert_str_eq(jstr(r, "status"), "finished");
	cr_assert_eq(jint(r, "exitCode"), 5);
	cr_assert_str_eq(out, "a\nE:b\nc\n");
	cr_assert_eq(jint(r, "outputBytes"), 6);
	json_decref(r);
	agent_destroy(ag);
	close(c.fd);
}

Test(agent_cmd, started_event_comes_first)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	request(&c, 9, "{\"op\":\"run\",\"cmd\":\"echo\",\"args\":[\"hi\"]}");
	struct got g;
	cr_assert(next_frame(&c, &g));
	cr_assert_eq(g.type, FRAME_EVENT);
	cr_assert_str_eq(jstr(g.json, "event"), "started");
	cr_assert_str_eq(jstr(g.json, "id"), "cmd-1");
	cr_assert_gt(jint(g.json, "pid"), 0);
	got_free(&g);
	cr_assert(next_frame(&c, &g));
	cr_assert_eq(g.type, FRAME_DATA);
	cr_assert_eq(g.data_len, 3);
	cr_assert_eq(jint(g.json, "byteOffset"), 0);
	cr_assert_gt(jint(g.json, "timestamp"), 1000000000000ll);
	got_free(&g);
	cr_assert(next_frame(&c, &g));
	cr_assert_eq(g.type, FRAME_RESPONSE);
	got_free(&g);
	agent_destroy(ag);
	close(c.fd);
}

Test(agent_cmd, detached_attach_replay_and_bounds)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	json_t *r = exchange(&c, 1, "{\"op\":\"run\",\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"echo 0123456789\"],"
				    "\"detached\":true}", NULL, 0);
	cr_assert_str_eq(jstr(r, "status"), "running");
	cr_assert_str_eq(jstr(r, "id"), "cmd-1");
	json_decref(r);
	char out[64];
	r = exchange(&c, 2, "{\"op\":\"attach\",\"id\":\"cmd-1\"}", out, sizeof(out));
	cr_assert_str_eq(out, "0123456789\n");
	cr_assert_str_eq(jstr(r, "status"), "finished");
	json_decref(r);
	r = exchange(&c, 3, "{\"op\":\"attach\",\"id\":\"cmd-1\",\"fromOffset\":7}", out, sizeof(out));
	cr_assert_str_eq(out, "789\n");
	json_decref(r);
	r = exchange(&c, 4, "{\"op\":\"attach\",\"id\":\"cmd-1\",\"fromOffset\":12}", NULL, 0);
	cr_assert_str_eq(errcode(r), "BAD_REQUEST");
	json_decref(r);
	r = exchange(&c, 5, "{\"op\":\"attach\",\"id\":\"cmd-77\"}", NULL, 0);
	cr_assert_str_eq(errcode(r), "NOT_FOUND");
	json_decref(r);
	agent_destroy(ag);
	close(c.fd);
}

/* A 4 KiB ring over 100 KiB of output: the ring wraps many times, a prompt reader still sees every
 * byte, and a late replay gets OUTPUT_GONE, then exactly the last 4096 bytes. */
Test(agent_cmd, ring_wraps_and_keeps_the_tail)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	static char out[200000];
	json_t *r = exchange(&c, 1, "{\"op\":\"run\",\"cmd\":\"seq\",\"args\":[\"1\",\"20000\"],"
				    "\"outputBufferBytes\":4096}", out, sizeof(out));
	cr_assert_str_eq(jstr(r, "status"), "finished", "%s", errcode(r));
	size_t total = jint(r, "outputBytes");
	cr_assert_eq(strlen(out), total);
	cr_assert_eq(jint(r, "bufferStart"), (long long)total - 4096);
	json_decref(r);
	/* the expected text */
	static char want[200000];
	size_t w = 0;
	for (int i = 1; i <= 20000; i++)
		w += snprintf(want + w, sizeof(want) - w, "%d\n", i);
	cr_assert_eq(w, total);
	cr_assert_str_eq(out, want);
	r = exchange(&c, 2, "{\"op\":\"attach\",\"id\":\"cmd-1\"}", NULL, 0);
	cr_assert_str_eq(errcode(r), "OUTPUT_GONE");
	cr_assert_eq(jint(r, "bufferStart"), (long long)total - 4096);
	json_decref(r);
	char req[128];
	snprintf(req, sizeof(req), "{\"op\":\"attach\",\"id\":\"cmd-1\",\"fromOffset\":%zu}", total - 4096);
	r = exchange(&c, 3, req, out, sizeof(out));
	cr_assert_str_eq(out, want + total - 4096);
	json_decref(r);
	agent_destroy(ag);
	close(c.fd);
}

/* Thousands of one-byte writes: segments are bounded too (the oldest are dropped), replay stays exact. */
Test(agent_cmd, many_small_writes)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	json_t *r = exchange(&c, 1, "{\"op\":\"run\",\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"i=0; while [ $i -lt 3000 ]; "
				    "do printf x; printf y >&2; i=$((i+1)); done\"],\"outputBufferBytes\":4096,"
				    "\"detached\":true}", NULL, 0);
	json_decref(r);
	r = exchange(&c, 2, "{\"op\":\"attach\",\"id\":\"cmd-1\",\"output\":false}", NULL, 0);
	cr_assert_eq(jint(r, "outputBytes"), 6000);
	long long start = jint(r, "bufferStart");
	cr_assert_gt(start, 0);
	json_decref(r);
	char req[128];
	static char out[20000];
	snprintf(req, sizeof(req), "{\"op\":\"attach\",\"id\":\"cmd-1\",\"fromOffset\":%lld}", start);
	r = exchange(&c, 3, req, out, sizeof(out));
	size_t xs = 0, ys = 0;
	for (char *p = out; *p; p++) {
		if (*p == 'x')
			xs++;
		else if (*p == 'y')
			ys++;
	}
	cr_assert_eq(xs + ys, (size_t)(6000 - start));
	json_decref(r);
	agent_destroy(ag);
	close(c.fd);
}

Test(agent_cmd, stdin_in_frames_then_eof)
{
	struct agent *ag = agent_new();
	struct client c, d;
	client_open(&c, ag);
	client_open(&d, ag);
	json_t *r = exchange(&c, 1, "{\"op\":\"run\",\"cmd\":\"cat\",\"stdin\":true,\"detached\":true}", NULL, 0);
	json_decref(r);
	/* 3 MiB through a pipe the command drains: stdin backpressure pauses and resumes the connection */
	size_t big = 3 << 20;
	uint8_t *buf = malloc(big);
	for (size_t i = 0; i < big; i++)
		buf[i] = 'a' + i % 26;
	send_frame(&d, FRAME_REQUEST, FRAME_F_MORE, 7, "{\"op\":\"stdin\",\"id\":\"cmd-1\",\"eof\":true}", buf, 1000);
	for (size_t off = 1000; off < big; off += FRAME_MAX_DATA) {
		size_t n = big - off < FRAME_MAX_DATA ? big - off : FRAME_MAX_DATA;
		send_frame(&d, FRAME_DATA, off + n < big ? FRAME_F_MORE : 0, 7, NULL, buf + off, n);
	}
	/* read the output meanwhile, from the other connection */
	request(&c, 2, "{\"op\":\"attach\",\"id\":\"cmd-1\"}");
	size_t got_bytes = 0;
	bool mismatch = false, responded = false, stdin_ok = false;
	while (!responded || !stdin_ok) {
		agent_run_once(ag, 1);
		if (!stdin_ok) {
			ssize_t n = recv(d.fd, d.buf + d.len, sizeof(d.buf) - d.len, MSG_DONTWAIT);
			if (n > 0)
				d.len += n;
			struct frame f;
			size_t used;
			const char *why;
			if (frame_decode(d.buf, d.len, &f, &used, &why) == FRAME_OK) {
				cr_assert_eq(f.type, FRAME_RESPONSE);
				cr_assert(memmem(f.json, f.json_len, "\"ok\":true", 9), "%.*s", (int)f.json_len, f.json);
				stdin_ok = true;
			}
		}
		ssize_t n = recv(c.fd, c.buf + c.len, sizeof(c.buf) - c.len, MSG_DONTWAIT);
		if (n > 0)
			c.len += n;
		struct frame f;
		size_t used;
		const char *why;
		while (frame_decode(c.buf, c.len, &f, &used, &why) == FRAME_OK) {
			if (f.type == FRAME_DATA) {
				for (size_t i = 0; i < f.data_len; i++)
					mismatch |= f.data[i] != 'a' + (got_bytes + i) % 26;
				got_bytes += f.data_len;
			} else if (f.type == FRAME_RESPONSE) {
				responded = true;
			}
			memmove(c.buf, c.buf + used, c.len - used);
			c.len -= used;
		}
	}
	cr_assert_eq(got_bytes, big);
	cr_assert(!mismatch);
	r = exchange(&c, 3, "{\"op\":\"stdin\",\"id\":\"cmd-1\"}", NULL, 0);
	cr_assert_str_eq(errcode(r), "NOT_RUNNING");
	json_decref(r);
	free(buf);
	agent_destroy(ag);
	close(c.fd);
	close(d.fd);
}

Test(agent_cmd, signal_timeout_and_states)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	json_t *r = exchange(&c, 1, "{\"op\":\"run\",\"cmd\":\"sleep\",\"args\":[\"30\"],\"detached\":true}", NULL, 0);
	json_decref(r);
	r = exchange(&c, 2, "{\"op\":\"signal\",\"id\":\"cmd-1\",\"signal\":\"SIGUSR1\"}", NULL, 0);
	cr_assert(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	r = exchange(&c, 3, "{\"op\":\"attach\",\"id\":\"cmd-1\",\"output\":false}", NULL, 0);
	cr_assert_str_eq(jstr(r, "status"), "killed");
	cr_assert_str_eq(jstr(r, "signal"), "SIGUSR1");
	cr_assert_eq(jint(r, "exitCode"), 128 + SIGUSR1);
	json_decref(r);
	r = exchange(&c, 4, "{\"op\":\"signal\",\"id\":\"cmd-1\",\"signal\":9}", NULL, 0);
	cr_assert_str_eq(errcode(r), "NOT_RUNNING");
	json_decref(r);
	r = exchange(&c, 5, "{\"op\":\"run\",\"cmd\":\"sleep\",\"args\":[\"30\"],\"timeoutMs\":100}", NULL, 0);
	cr_assert_str_eq(jstr(r, "status"), "killed");
	cr_assert(json_is_true(json_object_get(r, "timedOut")));
	json_decref(r);
	r = exchange(&c, 6, "{\"op\":\"list\"}", NULL, 0);
	cr_assert_eq(json_array_size(json_object_get(r, "commands")), 2);
	json_decref(r);
	agent_destroy(ag);
	close(c.fd);
}

Test(agent_cmd, spawn_failures_are_errno_coded)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	json_t *r = exchange(&c, 1, "{\"op\":\"run\",\"cmd\":\"/no/such/bin\"}", NULL, 0);
	cr_assert_str_eq(errcode(r), "ENOENT");
	cr_assert_str_eq(jstr(json_object_get(r, "error"), "syscall"), "execve");
	cr_assert_str_eq(jstr(json_object_get(r, "command"), "status"), "failed");
	json_decref(r);
	r = exchange(&c, 2, "{\"op\":\"run\",\"cmd\":\"true\",\"cwd\":\"/no/such/dir\"}", NULL, 0);
	cr_assert_str_eq(errcode(r), "ENOENT");
	cr_assert_str_eq(jstr(json_object_get(r, "error"), "syscall"), "chdir");
	json_decref(r);
	r = exchange(&c, 3, "{\"op\":\"run\",\"cmd\":\"true\",\"user\":\"no-such-user-here\"}", NULL, 0);
	cr_assert_str_eq(jstr(json_object_get(r, "error"), "syscall"), "getpwnam");
	json_decref(r);
	agent_destroy(ag);
	close(c.fd);
}

Test(agent_cmd, env_merge_and_cwd)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	json_t *r = exchange(&c, 1, "{\"op\":\"configure\",\"env\":{\"A\":\"sb\",\"B\":\"sb\"},\"cwd\":\"/tmp\"}",
			     NULL, 0);
	cr_assert_str_eq(jstr(r, "cwd"), "/tmp");
	json_decref(r);
	char out[256];
	r = exchange(&c, 2, "{\"op\":\"run\",\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"echo $A $B; pwd\"],"
			    "\"env\":{\"A\":\"cmd\"}}", out, sizeof(out));
	cr_assert_str_eq(out, "cmd sb\n/tmp\n");
	json_decref(r);
	r = exchange(&c, 3, "{\"op\":\"configure\",\"cwd\":\"/no/such\"}", NULL, 0);
	cr_assert_str_eq(errcode(r), "ENOENT");
	json_decref(r);
	agent_destroy(ag);
	close(c.fd);
}

/* Protocol violations close only the offending connection. */
Test(agent_cmd, protocol_violations_close_one_connection)
{
	struct agent *ag = agent_new();
	struct client good, bad;
	client_open(&good, ag);
	const char *cases[] = {"reuse", "data", "response", "magic"};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		client_open(&bad, ag);
		if (strcmp(cases[i], "reuse") == 0) {
			request(&bad, 1, "{\"op\":\"run\",\"cmd\":\"sleep\",\"args\":[\"1\"]}");
			request(&bad, 1, "{\"op\":\"list\"}");
		} else if (strcmp(cases[i], "data") == 0) {
			send_frame(&bad, FRAME_DATA, 0, 3, NULL, "x", 1);
		} else if (strcmp(cases[i], "response") == 0) {
			send_frame(&bad, FRAME_RESPONSE, 0, 3, "{}", NULL, 0);
		} else {
			cr_assert_eq(send(bad.fd, "GET / HTTP/1.1\r\n", 16, 0), 16);
		}
		struct got g;
		bool open = true;
		while ((open = next_frame(&bad, &g)))
			got_free(&g); /* the started event of "reuse" */
		cr_assert(!open, "%s: the connection stayed open", cases[i]);
		close(bad.fd);
	}
	json_t *r = exchange(&good, 1, "{\"op\":\"list\"}", NULL, 0);
	cr_assert(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	agent_destroy(ag);
	close(good.fd);
}

/* A client that shuts down its sending side still gets its answers. */
Test(agent_cmd, half_close_gets_answers)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	request(&c, 1, "{\"op\":\"run\",\"cmd\":\"echo\",\"args\":[\"bye\"]}");
	shutdown(c.fd, SHUT_WR);
	struct got g;
	bool response = false;
	while (next_frame(&c, &g)) {
		response |= g.type == FRAME_RESPONSE;
		got_free(&g);
	}
	cr_assert(response);
	agent_destroy(ag);
	close(c.fd);
}

Test(agent_cmd, too_many_requests_in_flight)
{
	struct agent *ag = agent_new();
	struct client c;
	client_open(&c, ag);
	json_t *r = exchange(&c, 1, "{\"op\":\"run\",\"cmd\":\"sleep\",\"args\":[\"30\"],\"detached\":true}", NULL, 0);
	json_decref(r);
	for (uint32_t id = 2; id < 2 + AGENT_MAX_STREAMS; id++)
		request(&c, id, "{\"op\":\"attach\",\"id\":\"cmd-1\"}");
	r = exchange(&c, 1000, "{\"op\":\"attach\",\"id\":\"cmd-1\"}", NULL, 0);
	cr_assert_str_eq(errcode(r), "LIMIT");
	json_decref(r);
	agent_kill_commands(ag);
	agent_destroy(ag);
	close(c.fd);
}
