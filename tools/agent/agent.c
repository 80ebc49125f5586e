/* The agent's server (agent.h): listeners, connections, frame dispatch, file streams and signals. */
#include "tools/agent/agent.h"
#include "tools/agent/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

struct outbuf {
	struct outbuf *next;
	size_t len;
	uint8_t data[];
};

struct conn {
	int fd;
	struct agent *ag;
	struct agent_fd tag;
	uint8_t *rbuf;
	size_t rlen, rcap;
	struct outbuf *out_head, *out_tail;
	size_t out_off, out_bytes;
	uint32_t events;            /* what epoll watches now */
	bool paused;                /* stdin backpressure */
	bool read_eof;              /* the client shut down its sending side: answer, then close */
	bool dead;
	struct stream *streams;
	int nstreams;
	struct conn *next;
};

struct listener {
	int fd;
	struct agent_fd tag;
};

struct agent {
	int epfd;
	int sigfd;
	struct agent_fd sig_tag;
	struct listener listeners[2];
	int nlisteners;
	struct conn *conns;
	int nconns;
	struct cmd_table *cmds;
	bool stopping;
	struct agent_options opts;
	struct agent_settings settings;
};

void agent_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kvmbox-agent: %s\n", line);
}

int64_t agent_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t agent_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int agent_watch(struct agent *ag, int fd, uint32_t events, struct agent_fd *tag)
{
	struct epoll_event ev = {.events = events, .data.ptr = tag};
	return epoll_ctl(ag->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int agent_rewatch(struct agent *ag, int fd, uint32_t events, struct agent_fd *tag)
{
	struct epoll_event ev = {.events = events, .data.ptr = tag};
	return epoll_ctl(ag->epfd, EPOLL_CTL_MOD, fd, &ev);
}

void agent_unwatch(struct agent *ag, int fd)
{
	epoll_ctl(ag->epfd, EPOLL_CTL_DEL, fd, NULL);
}

struct cmd_table *agent_cmds(struct agent *ag)
{
	return ag->cmds;
}

const struct agent_settings *agent_settings(const struct agent *ag)
{
	return &ag->settings;
}

bool agent_stopping(const struct agent *ag)
{
	return ag->stopping;
}

/* ---- connections ---- */

static void conn_update_events(struct conn *c)
{
	if (c->dead)
		return;
	/* Read requests unless stdin is backed up or the client is not reading what we send. */
	uint32_t ev = 0;
	if (!c->paused && !c->read_eof && c->out_bytes < AGENT_OUT_HIGH)
		ev |= EPOLLIN;
	if (c->out_bytes)
		ev |= EPOLLOUT;
	if (ev != c->events) {
		c->events = ev;
		agent_rewatch(c->ag, c->fd, ev, &c->tag);
	}
}

static void conn_kill(struct conn *c, const char *why)
{
	if (c->dead)
		return;
	if (why)
		agent_log("connection closed: %s", why);
	c->dead = true;
	agent_unwatch(c->ag, c->fd);
	shutdown(c->fd, SHUT_RDWR);
}

struct agent *conn_agent(const struct conn *c)
{
	return c->ag;
}

bool conn_has_room(const struct conn *c)
{
	return !c->dead && c->out_bytes < AGENT_OUT_HIGH;
}

void conn_pause_input(struct conn *c, bool pause)
{
	c->paused = pause;
	conn_update_events(c);
}

static void conn_flush(struct conn *c);

void conn_send(struct conn *c, uint8_t type, uint32_t id, json_t *meta, const void *data, size_t len)
{
	char *js = NULL;
	size_t jlen = 0;
	if (meta) {
		js = json_dumps(meta, JSON_COMPACT);
		json_decref(meta);
		if (!js) {
			agent_log("out of memory encoding a %s frame", frame_type_name(type));
			conn_kill(c, "out of memory");
			return;
		}
		jlen = strlen(js);
	}
	if (c->dead) {
		free(js);
		return;
	}
	if (jlen > FRAME_MAX_JSON) {
		free(js);
		if (type == FRAME_RESPONSE) {
			struct agent_error e;
			agent_error_set(&e, AGENT_E_LIMIT, "the result is over 1 MiB of JSON; ask for less");
			conn_respond_error(c, id, &e, NULL);
		} else {
			conn_kill(c, "an event over 1 MiB of JSON");
		}
		return;
	}
	if (c->out_bytes > AGENT_OUT_MAX) {
		free(js);
		conn_kill(c, "the client does not read its responses (64 MiB queued)");
		return;
	}
	struct outbuf *b = malloc(sizeof(*b) + FRAME_HEADER_SIZE + jlen + len);
	if (!b || frame_encode_header(b->data, type, 0, id, jlen, len)) {
		free(b);
		free(js);
		conn_kill(c, "out of memory, or a frame over its bounds");
		return;
	}
	memcpy(b->data + FRAME_HEADER_SIZE, js, jlen);
	if (len)
		memcpy(b->data + FRAME_HEADER_SIZE + jlen, data, len);
	free(js);
	b->len = FRAME_HEADER_SIZE + jlen + len;
	b->next = NULL;
	if (c->out_tail)
		c->out_tail->next = b;
	else
		c->out_head = b;
	c->out_tail = b;
	c->out_bytes += b->len;
	conn_flush(c);
}

void conn_respond_ok(struct conn *c, uint32_t id, json_t *result)
{
	json_t *r = result ? result : json_object();
	json_object_set_new(r, "ok", json_true());
	conn_send(c, FRAME_RESPONSE, id, r, NULL, 0);
}

void conn_respond_error(struct conn *c, uint32_t id, const struct agent_error *e, json_t *extra)
{
	json_t *r = extra ? extra : json_object();
	json_object_set_new(r, "ok", json_false());
	json_object_set_new(r, "error", agent_error_json(e));
	conn_send(c, FRAME_RESPONSE, id, r, NULL, 0);
}

static void streams_pump(struct conn *c);

/* Write what is queued; never blocks. */
static void conn_flush(struct conn *c)
{
	while (!c->dead && c->out_head) {
		struct outbuf *b = c->out_head;
		ssize_t n = send(c->fd, b->data + c->out_off, b->len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_kill(c, NULL); /* the client went away: not worth a log line */
			return;
		}
		c->out_off += n;
		c->out_bytes -= n;
		if (c->out_off == b->len) {
			c->out_head = b->next;
			if (!c->out_head)
				c->out_tail = NULL;
			c->out_off = 0;
			free(b);
		}
	}
	conn_update_events(c);
}

static struct stream *stream_find(struct conn *c, uint32_t id)
{
	for (struct stream *s = c->streams; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

struct stream *agent_stream_new(struct conn *c, uint32_t id, enum stream_kind kind)
{
	struct stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->kind = kind;
	s->id = id;
	s->conn = c;
	s->fd = -1;
	s->next = c->streams;
	c->streams = s;
	c->nstreams++;
	return s;
}

void stream_end(struct stream *s)
{
	struct conn *c = s->conn;
	for (struct stream **p = &c->streams; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			c->nstreams--;
			break;
		}
	if (s->kind == STREAM_STDIN || s->kind == STREAM_ATTACH)
		cmd_stream_gone(s);
	if (s->fd >= 0)
		close(s->fd);
	free(s->path);
	free(s);
}

/* readFile: send chunks while the connection has room. */
static void read_file_pump(struct stream *s)
{
	static uint8_t buf[FRAME_MAX_DATA];
	struct conn *c = s->conn;
	while (conn_has_room(c)) {
		size_t want = s->remaining < (int64_t)sizeof(buf) ? (size_t)s->remaining : sizeof(buf);
		ssize_t n = want ? pread(s->fd, buf, want, s->offset) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			struct agent_error e;
			agent_error_errno(&e, errno, "read", s->path, NULL);
			conn_respond_error(c, s->id, &e, NULL);
			stream_end(s);
			return;
		}
		if (n == 0) { /* done, or the file shrank under us: send what there was */
			conn_respond_ok(c, s->id, json_pack("{s:I}", "size", (json_int_t)s->sent));
			stream_end(s);
			return;
		}
		conn_send(c, FRAME_DATA, s->id, json_pack("{s:I}", "offset", (json_int_t)s->offset), buf, n);
		s->offset += n;
		s->sent += n;
		s->remaining -= n;
	}
}

static void streams_pump(struct conn *c)
{
	struct stream *s = c->streams, *next;
	for (; s && conn_has_room(c); s = next) {
		next = s->next; /* s may end */
		if (s->kind == STREAM_READ_FILE)
			read_file_pump(s);
		else if (s->kind == STREAM_ATTACH)
			cmd_stream_pump(s);
	}
}

/* Write all of data to a file stream; on failure answer at once and turn the stream into a discard. */
static void write_file_data(struct stream *s, const void *data, size_t len, bool last)
{
	const uint8_t *p = data;
	while (len) {
		ssize_t n = write(s->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			struct agent_error e;
			agent_error_errno(&e, errno, "write", s->path, NULL);
			conn_respond_error(s->conn, s->id, &e, NULL);
			close(s->fd);
			s->fd = -1;
			s->kind = STREAM_DISCARD;
			if (last)
				stream_end(s);
			return;
		}
		p += n;
		len -= n;
		s->written += n;
	}
	if (!last)
		return;
	int fd = s->fd;
	s->fd = -1;
	if (close(fd)) {
		struct agent_error e;
		agent_error_errno(&e, errno, "close", s->path, NULL);
		conn_respond_error(s->conn, s->id, &e, NULL);
	} else {
		conn_respond_ok(s->conn, s->id, json_pack("{s:I}", "size", (json_int_t)s->written));
	}
	stream_end(s);
}

/* ---- requests ---- */

static json_t *settings_json(const struct agent_settings *st)
{
	return json_pack("{s:O, s:s, s:s, s:s}", "env", st->env, "cwd", st->cwd, "user", st->user, "hostname",
			 st->hostname);
}

static void do_configure(struct agent *ag, struct conn *c, uint32_t id, const struct agent_request *r)
{
	struct agent_error e;
	struct agent_settings *st = &ag->settings;
	if (r->cwd) {
		struct stat sb;
		if (stat(r->cwd, &sb) || (!S_ISDIR(sb.st_mode) && (errno = ENOTDIR)) || chdir(r->cwd)) {
			agent_error_errno(&e, errno, "chdir", r->cwd, NULL);
			conn_respond_error(c, id, &e, NULL);
			return;
		}
		if (!realpath(".", st->cwd))
			snprintf(st->cwd, sizeof(st->cwd), "%s", r->cwd);
	}
	if (r->hostname) {
		size_t n = strlen(r->hostname);
		if (n >= sizeof(st->hostname)) {
			agent_error_set(&e, AGENT_E_BAD_REQUEST, "configure: hostname is longer than 64 bytes");
			conn_respond_error(c, id, &e, NULL);
			return;
		}
		/* Only as the guest's PID 1: on the host the agent must not rename the machine. */
		if (ag->opts.system && sethostname(r->hostname, n)) {
			agent_error_errno(&e, errno, "sethostname", r->hostname, NULL);
			conn_respond_error(c, id, &e, NULL);
			return;
		}
		memcpy(st->hostname, r->hostname, n + 1);
	}
	if (r->user) {
		if (strlen(r->user) >= sizeof(st->user)) {
			agent_error_set(&e, AGENT_E_BAD_REQUEST, "configure: user name longer than 63 bytes");
			conn_respond_error(c, id, &e, NULL);
			return;
		}
		snprintf(st->user, sizeof(st->user), "%s", r->user);
	}
	if (r->env) {
		json_decref(st->env);
		st->env = json_deep_copy(r->env);
		if (!st->env)
			st->env = json_object();
	}
	conn_respond_ok(c, id, settings_json(st));
}

static void do_hello(struct agent *ag, struct conn *c, uint32_t id)
{
	json_t *ops = json_array();
	for (int i = 0; i < AGENT_OP_COUNT; i++)
		json_array_append_new(ops, json_string(agent_op_name(i)));
	conn_respond_ok(c, id, json_pack("{s:i, s:s, s:i, s:b, s:o}", "version", AGENT_PROTO_VERSION, "agent",
					 "kvmbox-agent " AGENT_VERSION, "pid", (int)getpid(), "pid1",
					 ag->opts.system, "ops", ops));
}

static void do_read_file(struct conn *c, uint32_t id, const struct agent_request *r)
{
	struct agent_error e;
	int fd;
	int64_t size;
	if (agent_fs_open_read(r, &fd, &size, &e)) {
		conn_respond_error(c, id, &e, NULL);
		return;
	}
	struct stream *s = agent_stream_new(c, id, STREAM_READ_FILE);
	char *path = strdup(r->path);
	if (!s || !path) {
		close(fd);
		free(path);
		if (s)
			stream_end(s);
		agent_error_set(&e, AGENT_E_INTERNAL, "out of memory");
		conn_respond_error(c, id, &e, NULL);
		return;
	}
	s->fd = fd;
	s->path = path;
	s->offset = r->offset;
	s->remaining = size;
	read_file_pump(s);
}

static void do_write_file(struct conn *c, uint32_t id, const struct agent_request *r, uint8_t flags,
			  const void *data, size_t len)
{
	struct agent_error e;
	bool more = flags & FRAME_F_MORE;
	struct stream *s = agent_stream_new(c, id, STREAM_DISCARD);
	if (!s) {
		agent_error_set(&e, AGENT_E_INTERNAL, "out of memory");
		conn_respond_error(c, id, &e, NULL);
		return; /* the client's further DATA frames close the connection */
	}
	int fd;
	if (agent_fs_open_write(r, &fd, &e)) {
		conn_respond_error(c, id, &e, NULL);
		if (!more)
			stream_end(s);
		return;
	}
	s->kind = STREAM_WRITE_FILE;
	s->fd = fd;
	s->path = strdup(r->path);
	write_file_data(s, data, len, !more);
}

static void dispatch(struct agent *ag, struct conn *c, const struct frame *f)
{
	struct agent_error e;
	struct agent_request r;
	bool more = f->flags & FRAME_F_MORE;
	if (agent_request_parse(f->json, f->json_len, &r, &e)) {
		conn_respond_error(c, f->id, &e, NULL);
		if (more && agent_stream_new(c, f->id, STREAM_DISCARD) == NULL)
			conn_kill(c, "out of memory");
		return;
	}
	bool upload = r.op == AGENT_OP_WRITE_FILE || r.op == AGENT_OP_APPEND_FILE || r.op == AGENT_OP_STDIN;
	if ((more || f->data_len) && !upload) {
		agent_error_set(&e, AGENT_E_BAD_REQUEST, "%s: takes no data", agent_op_name(r.op));
		conn_respond_error(c, f->id, &e, NULL);
		if (more && agent_stream_new(c, f->id, STREAM_DISCARD) == NULL)
			conn_kill(c, "out of memory");
		agent_request_free(&r);
		return;
	}
	switch (r.op) {
	case AGENT_OP_HELLO:
		do_hello(ag, c, f->id);
		break;
	case AGENT_OP_CONFIGURE:
		do_configure(ag, c, f->id, &r);
		break;
	case AGENT_OP_SHUTDOWN:
		conn_respond_ok(c, f->id, NULL);
		ag->stopping = true;
		break;
	case AGENT_OP_RUN:
	case AGENT_OP_ATTACH:
	case AGENT_OP_STDIN:
	case AGENT_OP_SIGNAL:
	case AGENT_OP_GET:
	case AGENT_OP_LIST:
		cmd_request(ag->cmds, c, f->id, &r, f->flags, f->data, f->data_len);
		break;
	case AGENT_OP_READ_FILE:
		do_read_file(c, f->id, &r);
		break;
	case AGENT_OP_WRITE_FILE:
	case AGENT_OP_APPEND_FILE:
		do_write_file(c, f->id, &r, f->flags, f->data, f->data_len);
		break;
	default: {
		json_t *result = NULL;
		if (agent_fs_call(&r, &result, &e))
			conn_respond_error(c, f->id, &e, NULL);
		else
			conn_respond_ok(c, f->id, result);
	}
	}
	agent_request_free(&r);
}

/* One decoded frame from a client; false when it broke the protocol (the connection is closed). */
static bool handle_frame(struct agent *ag, struct conn *c, const struct frame *f)
{
	struct stream *s = stream_find(c, f->id);
	if (f->type == FRAME_REQUEST) {
		if (s) {
			conn_kill(c, "a request reused the id of one still active");
			return false;
		}
		if (c->nstreams >= AGENT_MAX_STREAMS) {
			struct agent_error e;
			agent_error_set(&e, AGENT_E_LIMIT, "more than %d requests in flight on one connection",
					AGENT_MAX_STREAMS);
			conn_respond_error(c, f->id, &e, NULL);
			if (f->flags & FRAME_F_MORE)
				conn_kill(c, "too many requests in flight");
			return !c->dead;
		}
		dispatch(ag, c, f);
		return !c->dead;
	}
	if (f->type != FRAME_DATA) {
		conn_kill(c, "a client sent a response or event frame");
		return false;
	}
	if (!s || (s->kind != STREAM_WRITE_FILE && s->kind != STREAM_STDIN && s->kind != STREAM_DISCARD) ||
	    s->upload_done) {
		conn_kill(c, "a DATA frame for no upload in progress");
		return false;
	}
	if (f->json_len) {
		conn_kill(c, "a DATA frame from a client with a JSON part");
		return false;
	}
	bool last = !(f->flags & FRAME_F_MORE);
	switch (s->kind) {
	case STREAM_WRITE_FILE:
		write_file_data(s, f->data, f->data_len, last);
		break;
	case STREAM_STDIN:
		cmd_stdin_data(s, f->data, f->data_len, last);
		break;
	default:
		if (last)
			stream_end(s);
	}
	return !c->dead;
}

/* Decode and handle the frames in the read buffer while input is not paused. */
static void conn_process(struct agent *ag, struct conn *c)
{
	size_t pos = 0;
	while (!c->dead && !c->paused && c->out_bytes < AGENT_OUT_HIGH) {
		struct frame f;
		size_t used;
		const char *why;
		enum frame_status st = frame_decode(c->rbuf + pos, c->rlen - pos, &f, &used, &why);
		if (st == FRAME_NEED_MORE)
			break;
		if (st == FRAME_BAD) {
			conn_kill(c, why);
			break;
		}
		pos += used;
		if (!handle_frame(ag, c, &f))
			break;
	}
	if (pos) {
		memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
		c->rlen -= pos;
	}
}

static void conn_readable(struct agent *ag, struct conn *c, uint32_t events)
{
	if (c->rlen == c->rcap && c->rcap >= FRAME_MAX_SIZE + AGENT_CHUNK) {
		/* Full of frames we may not handle yet (input paused): wait, unless the peer is gone. */
		if (events & (EPOLLHUP | EPOLLERR))
			conn_kill(c, NULL);
		return;
	}
	if (c->rcap - c->rlen < AGENT_CHUNK && c->rcap < FRAME_MAX_SIZE + AGENT_CHUNK) {
		size_t ncap = c->rcap ? c->rcap * 2 : 2 * AGENT_CHUNK;
		if (ncap > FRAME_MAX_SIZE + AGENT_CHUNK)
			ncap = FRAME_MAX_SIZE + AGENT_CHUNK;
		uint8_t *nb = realloc(c->rbuf, ncap);
		if (!nb) {
			conn_kill(c, "out of memory");
			return;
		}
		c->rbuf = nb;
		c->rcap = ncap;
	}
	ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || (events & EPOLLHUP)) {
		conn_kill(c, NULL);
		return;
	}
	if (n == 0) {
		/* A half-close: the requests in flight still get their answers. Uploads cannot finish. */
		c->read_eof = true;
		for (struct stream *s = c->streams, *next; s; s = next) {
			next = s->next;
			if ((s->kind == STREAM_WRITE_FILE || s->kind == STREAM_STDIN || s->kind == STREAM_DISCARD) &&
			    !s->upload_done)
				stream_end(s);
		}
		conn_update_events(c);
		return;
	}
	c->rlen += n;
	conn_process(ag, c);
}

int agent_add_connection(struct agent *ag, int fd)
{
	if (ag->nconns >= AGENT_MAX_CONNS) {
		agent_log("refused a connection: already %d open", AGENT_MAX_CONNS);
		close(fd);
		return -1;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	c->fd = fd;
	c->ag = ag;
	c->tag = (struct agent_fd){FD_CONN, c};
	c->events = EPOLLIN;
	if (agent_watch(ag, fd, EPOLLIN, &c->tag)) {
		close(fd);
		free(c);
		return -1;
	}
	c->next = ag->conns;
	ag->conns = c;
	ag->nconns++;
	return 0;
}

static void conn_free(struct conn *c)
{
	while (c->streams)
		stream_end(c->streams);
	for (struct outbuf *b = c->out_head, *n; b; b = n) {
		n = b->next;
		free(b);
	}
	close(c->fd);
	free(c->rbuf);
	free(c);
}

static void reap_dead_conns(struct agent *ag)
{
	for (struct conn **p = &ag->conns; *p;) {
		struct conn *c = *p;
		if (c->read_eof && !c->nstreams && !c->out_bytes)
			conn_kill(c, NULL);
		if (c->dead) {
			*p = c->next;
			ag->nconns--;
			conn_free(c);
		} else {
			p = &c->next;
		}
	}
}

/* ---- the loop ---- */

static void on_signal(struct agent *ag)
{
	struct signalfd_siginfo si;
	while (read(ag->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo != SIGCHLD) {
			agent_log("signal %d: shutting down", (int)si.ssi_signo);
			ag->stopping = true;
		}
	}
	/* Reap every child: commands, and as PID 1 the orphans the guest's processes leave behind. */
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			break;
		cmd_reaped(ag->cmds, pid, status);
	}
}

int agent_run_once(struct agent *ag, int timeout_ms)
{
	int next = cmd_timeouts(ag->cmds);
	if (next >= 0 && (timeout_ms < 0 || next < timeout_ms))
		timeout_ms = next;
	struct epoll_event evs[32];
	int n = epoll_wait(ag->epfd, evs, 32, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -1;
	for (int i = 0; i < n; i++) {
		struct agent_fd *tag = evs[i].data.ptr;
		uint32_t e = evs[i].events;
		switch (tag->kind) {
		case FD_LISTEN: {
			struct listener *l = tag->obj;
			int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0)
				agent_add_connection(ag, fd);
			break;
		}
		case FD_CONN: {
			struct conn *c = tag->obj;
			if (c->dead)
				break;
			if (e & EPOLLOUT) {
				conn_flush(c);
				if (conn_has_room(c)) {
					streams_pump(c);
					conn_process(ag, c); /* frames read before input paused */
				}
			}
			if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->dead)
				conn_readable(ag, c, e);
			break;
		}
		case FD_SIGNAL:
			on_signal(ag);
			break;
		default:
			cmd_fd_ready(ag->cmds, tag, e);
		}
	}
	reap_dead_conns(ag);
	return 0;
}

void agent_flush(struct agent *ag, int timeout_ms)
{
	int64_t end = agent_mono_ms() + timeout_ms;
	for (;;) {
		bool pending = false;
		for (struct conn *c = ag->conns; c; c = c->next)
			if (!c->dead && c->out_bytes) {
				conn_flush(c);
				pending |= c->out_bytes > 0;
			}
		int64_t left = end - agent_mono_ms();
		if (!pending || left <= 0)
			return;
		agent_run_once(ag, (int)(left < 50 ? left : 50));
	}
}

void agent_kill_commands(struct agent *ag)
{
	cmd_kill_all(ag->cmds);
}

/* ---- set-up ---- */

static int listener_add(struct agent *ag, int fd, struct agent_error *err, const char *what)
{
	if (listen(fd, 64)) {
		agent_error_errno(err, errno, "listen", what, NULL);
		close(fd);
		return -1;
	}
	struct listener *l = &ag->listeners[ag->nlisteners];
	l->fd = fd;
	l->tag = (struct agent_fd){FD_LISTEN, l};
	if (agent_watch(ag, fd, EPOLLIN, &l->tag)) {
		agent_error_errno(err, errno, "epoll_ctl", what, NULL);
		close(fd);
		return -1;
	}
	ag->nlisteners++;
	return 0;
}

int agent_listen_vsock(struct agent *ag, unsigned port, struct agent_error *err)
{
	char what[32];
	snprintf(what, sizeof(what), "vsock port %u", port);
	if (ag->nlisteners == 2)
		return agent_error_set(err, AGENT_E_LIMIT, "at most two listeners");
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return agent_error_errno(err, errno, "socket", what, NULL);
	/* A larger receive window than Linux's 256 KiB default: the host's uploads are bound by window / the
	 * round trip of a credit update, which is long in a VM. Accepted sockets inherit it. */
	unsigned long long window = AGENT_VSOCK_WINDOW;
	setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &window, sizeof(window));
	setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &window, sizeof(window));
	struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
	if (bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		agent_error_errno(err, errno, "bind", what, NULL);
		close(fd);
		return -1;
	}
	return listener_add(ag, fd, err, what);
}

int agent_listen_unix(struct agent *ag, const char *path, struct agent_error *err)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (ag->nlisteners == 2)
		return agent_error_set(err, AGENT_E_LIMIT, "at most two listeners");
	if (strlen(path) >= sizeof(a.sun_path))
		return agent_error_errno(err, ENAMETOOLONG, "bind", path, NULL);
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return agent_error_errno(err, errno, "socket", path, NULL);
	unlink(path); /* a stale socket from an earlier run */
	if (bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		agent_error_errno(err, errno, "bind", path, NULL);
		close(fd);
		return -1;
	}
	return listener_add(ag, fd, err, path);
}

struct agent *agent_create(const struct agent_options *opts, struct agent_error *err)
{
	struct agent *ag = calloc(1, sizeof(*ag));
	if (!ag) {
		agent_error_set(err, AGENT_E_INTERNAL, "out of memory");
		return NULL;
	}
	ag->opts = *opts;
	ag->sigfd = -1;
	ag->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ag->epfd < 0) {
		agent_error_errno(err, errno, "epoll_create1", NULL, NULL);
		free(ag);
		return NULL;
	}
	/* Signals arrive through the loop; the commands get a clean mask and default handlers (cmd.c). */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPWR);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	ag->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	ag->sig_tag = (struct agent_fd){FD_SIGNAL, ag};
	if (ag->sigfd < 0 || agent_watch(ag, ag->sigfd, EPOLLIN, &ag->sig_tag)) {
		agent_error_errno(err, errno, "signalfd", NULL, NULL);
		agent_destroy(ag);
		return NULL;
	}
	ag->settings.env = json_object();
	struct stat sb;
	if (opts->system)
		snprintf(ag->settings.cwd, sizeof(ag->settings.cwd), "%s",
			 stat("/root", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/root" : "/");
	else if (!getcwd(ag->settings.cwd, sizeof(ag->settings.cwd)))
		snprintf(ag->settings.cwd, sizeof(ag->settings.cwd), "/");
	if (chdir(ag->settings.cwd))
		agent_log("chdir %s: %s", ag->settings.cwd, strerror(errno));
	gethostname(ag->settings.hostname, sizeof(ag->settings.hostname) - 1);
	ag->cmds = cmd_table_create(ag);
	if (!ag->settings.env || !ag->cmds) {
		agent_error_set(err, AGENT_E_INTERNAL, "out of memory");
		agent_destroy(ag);
		return NULL;
	}
	return ag;
}

void agent_destroy(struct agent *ag)
{
	if (!ag)
		return;
	for (struct conn *c = ag->conns; c; c = c->next)
		conn_kill(c, NULL);
	reap_dead_conns(ag);
	if (ag->cmds)
		cmd_table_destroy(ag->cmds);
	for (int i = 0; i < ag->nlisteners; i++)
		close(ag->listeners[i].fd);
	if (ag->sigfd >= 0)
		close(ag->sigfd);
	close(ag->epfd);
	json_decref(ag->settings.env);
	free(ag);
}
