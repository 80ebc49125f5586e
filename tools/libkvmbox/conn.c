/* libkvmbox: the connection to the agent (docs/libkvmbox.md). Connect with retries while the guest boots,
 * the hybrid-vsock CONNECT line, and a buffered frame reader and writer over a non-blocking socket, so
 * that every wait is one poll() that timeouts and EINTR can bound. The reader never holds more than one
 * frame (FRAME_MAX_SIZE) beyond what it has handed out. */
#include "tools/libkvmbox/lib.h"

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RBUF_INITIAL (64u * 1024)
#define CONNECT_LINE_MAX 64       /* "OK <port>\n" is short; the monitor's own bound is 64 */
#define CONNECT_ONCE_MS 1000      /* timeout_ms 0: one attempt, its handshake bounded by this */
#define RETRY_MIN_MS 10
#define RETRY_MAX_MS 20 /* short: the caller that waits for a booting guest wants it as soon as it listens */

int64_t kb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

int kb_err(struct kvmbox_error *err, const char *code, int errnum, const char *fmt, ...)
{
	if (!err)
		return -1;
	memset(err, 0, sizeof(*err));
	copy_str(err->code, sizeof(err->code), code);
	err->errnum = errnum;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

static const char *errno_name(int errnum)
{
	const char *n = strerrorname_np(errnum);
	return n ? n : "EIO";
}

int kb_errno(struct kvmbox_error *err, int errnum, const char *syscall, const char *what)
{
	kb_err(err, errno_name(errnum), errnum, "%s: %s", what, strerror(errnum));
	if (err)
		copy_str(err->syscall, sizeof(err->syscall), syscall);
	return -1;
}

void kb_kill(struct kvmbox_agent *a, const char *why)
{
	if (a->dead[0])
		return;
	copy_str(a->dead, sizeof(a->dead), why);
	/* The agent must see the end too: it may be waiting for the rest of a frame or an upload. */
	shutdown(a->fd, SHUT_RDWR);
}

int kb_protocol(struct kvmbox_agent *a, struct kvmbox_error *err, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	kb_kill(a, why);
	return kb_err(err, "PROTOCOL", 0, "%s sent a bad frame during %s: %s; the handle is closed (is it a kvmbox "
		      "agent of protocol version %d?)", a->where, a->op, why, AGENT_PROTO_VERSION);
}

static int closed(struct kvmbox_agent *a, int errnum, struct kvmbox_error *err)
{
	kb_kill(a, errnum ? strerror(errnum) : "the agent closed the connection");
	return kb_err(err, "CLOSED", errnum, "%s: the connection ended during %s%s%s: did the VM or the agent exit?",
		      a->where, a->op, errnum ? ": " : "", errnum ? strerror(errnum) : "");
}

static int timed_out(struct kvmbox_agent *a, const char *doing, struct kvmbox_error *err)
{
	return kb_err(err, "TIMEOUT", ETIMEDOUT, "%s %s nothing for %d ms during %s (the handle's timeout, "
		      "kvmbox_agent_set_timeout)", a->where, doing, a->io_timeout_ms, a->op);
}

/* poll() one fd for up to timeout_ms (< 0: forever), through EINTR. Returns revents, 0 on timeout. */
static int poll_one(int fd, short events, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : kb_now_ms() + timeout_ms;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int left = deadline < 0 ? -1 : (int)(deadline - kb_now_ms() > 0 ? deadline - kb_now_ms() : 0);
		int n = poll(&p, 1, left);
		if (n > 0)
			return p.revents;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

static int io_wait_ms(const struct kvmbox_agent *a)
{
	return a->io_timeout_ms > 0 ? a->io_timeout_ms : -1;
}

/* ---- reading ---- */

/* Room for the frame at rpos: its whole size once its header is in. */
static int reserve(struct kvmbox_agent *a, size_t need, struct kvmbox_error *err)
{
	if (a->rpos) { /* drop what was handed out before reading more */
		memmove(a->rbuf, a->rbuf + a->rpos, a->rlen - a->rpos);
		a->rlen -= a->rpos;
		a->rpos = 0;
	}
	if (need <= a->rcap)
		return 0;
	uint8_t *p = realloc(a->rbuf, need);
	if (!p)
		return kb_err(err, "ENOMEM", ENOMEM, "%s: no memory for a frame of %zu bytes", a->where, need);
	a->rbuf = p;
	a->rcap = need;
	return 0;
}

/* Read what is there. wait: block (bounded by the handle's timeout) until something comes.
 * Returns 1 with bytes added, 0 (only without wait) when none are ready, -1 on error. */
static int fill(struct kvmbox_agent *a, bool wait, struct kvmbox_error *err)
{
	for (;;) {
		ssize_t n = recv(a->fd, a->rbuf + a->rlen, a->rcap - a->rlen, MSG_DONTWAIT);
		if (n > 0) {
			a->rlen += (size_t)n;
			return 1;
		}
		if (n == 0)
			return closed(a, 0, err);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return closed(a, errno, err);
		if (!wait)
			return 0;
		int ev = poll_one(a->fd, POLLIN, io_wait_ms(a));
		if (ev < 0)
			return kb_errno(err, errno, "poll", a->where);
		if (ev == 0)
			return timed_out(a, "sent", err);
	}
}

/* The frame at rpos: 1 when one is complete (*used its size), 0 when more must come (only without wait). */
static int next_frame(struct kvmbox_agent *a, bool wait, struct frame *f, size_t *used, struct kvmbox_error *err)
{
	for (;;) {
		const char *why;
		const uint8_t *p = a->rbuf + a->rpos;
		size_t have = a->rlen - a->rpos;
		enum frame_status st = frame_decode(p, have, f, used, &why);
		if (st == FRAME_OK)
			return 1;
		if (st == FRAME_BAD)
			return kb_protocol(a, err, "%s", why);
		size_t need = FRAME_HEADER_SIZE;
		if (have >= FRAME_HEADER_SIZE) { /* the header is valid: its lengths are bounded */
			uint32_t jl, dl;
			memcpy(&jl, p + 8, 4);
			memcpy(&dl, p + 12, 4);
			need = FRAME_HEADER_SIZE + (size_t)le32toh(jl) + le32toh(dl);
		}
		if (reserve(a, need > RBUF_INITIAL ? need : RBUF_INITIAL, err))
			return -1;
		int r = fill(a, wait, err);
		if (r <= 0)
			return r;
	}
}

static void skip(struct kvmbox_agent *a, size_t used)
{
	a->rpos += used;
}

int kb_peek(struct kvmbox_agent *a, uint32_t id, struct kvmbox_error *err)
{
	for (;;) {
		struct frame f;
		size_t used;
		int r = next_frame(a, false, &f, &used, err);
		if (r <= 0)
			return r;
		if (f.id == id)
			return 1;
		skip(a, used);
	}
}

int kb_recv(struct kvmbox_agent *a, uint32_t id, struct kb_frame *out, struct kvmbox_error *err)
{
	memset(out, 0, sizeof(*out));
	for (;;) {
		struct frame f;
		size_t used;
		if (next_frame(a, true, &f, &used, err) < 0)
			return -1;
		if (f.id != id) { /* a request given up earlier (a callback stopped it): its frames go */
			skip(a, used);
			continue;
		}
		if (f.type == FRAME_REQUEST)
			return kb_protocol(a, err, "a request frame from the agent (id %u)", f.id);
		json_t *j = NULL;
		if (f.json_len) {
			json_error_t jerr;
			j = json_loadb(f.json, f.json_len, 0, &jerr);
			if (!j || !json_is_object(j)) {
				json_decref(j);
				return kb_protocol(a, err, "the JSON of a %s frame is not an object%s%s",
						   frame_type_name(f.type), j ? "" : ": ", j ? "" : jerr.text);
			}
		} else if (f.type != FRAME_DATA) {
			return kb_protocol(a, err, "a %s frame without JSON", frame_type_name(f.type));
		}
		skip(a, used); /* the data stays where it is until the next read */
		out->type = f.type;
		out->flags = f.flags;
		out->json = j;
		out->data = f.data;
		out->len = f.data_len;
		return 0;
	}
}

/* ---- writing ---- */

int kb_send(struct kvmbox_agent *a, uint8_t type, uint8_t flags, uint32_t id, json_t *req, const void *data,
	    size_t len, struct kvmbox_error *err)
{
	char *text = NULL;
	size_t tlen = 0;
	if (req) {
		text = json_dumps(req, JSON_COMPACT);
		if (!text)
			return kb_err(err, "ENOMEM", ENOMEM, "%s: cannot encode the %s request", a->where, a->op);
		tlen = strlen(text);
	}
	uint8_t hdr[FRAME_HEADER_SIZE];
	if (frame_encode_header(hdr, type, flags, id, tlen, len)) {
		free(text);
		return kb_err(err, "EINVAL", EINVAL, "%s request of %zu bytes of JSON is over the protocol's %u",
			      a->op, tlen, FRAME_MAX_JSON);
	}
	struct iovec iov[3] = { { hdr, sizeof(hdr) }, { text, tlen }, { (void *)data, len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 3 };
	size_t total = sizeof(hdr) + tlen + len, sent = 0;
	bool ours_pending = false;
	int ret = 0;
	while (sent < total) {
		ssize_t n = sendmsg(a->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			sent += (size_t)n;
			size_t k = (size_t)n;
			while (k && msg.msg_iovlen) { /* step over what went out */
				if (k >= msg.msg_iov->iov_len) {
					k -= msg.msg_iov->iov_len;
					msg.msg_iov++;
					msg.msg_iovlen--;
				} else {
					msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + k;
					msg.msg_iov->iov_len -= k;
					k = 0;
				}
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			ret = closed(a, errno, err);
			break;
		}
		/* While the socket is full, keep reading: the agent may be blocked sending us the frames of
		 * an earlier request, which are skipped, or an early answer to this one, which stays. */
		int ev = poll_one(a->fd, ours_pending ? POLLOUT : POLLOUT | POLLIN, io_wait_ms(a));
		if (ev < 0) {
			ret = kb_errno(err, errno, "poll", a->where);
			break;
		}
		if (ev == 0) {
			ret = timed_out(a, "took", err);
			break;
		}
		if ((ev & (POLLIN | POLLHUP | POLLERR)) && !(ev & POLLOUT) && !ours_pending) {
			int r = kb_peek(a, id, err);
			if (r < 0) {
				ret = -1;
				break;
			}
			ours_pending = r == 1;
		}
	}
	free(text);
	if (ret && sent > 0 && sent < total)
		kb_kill(a, "a frame was sent in part");
	return ret;
}

/* ---- responses ---- */

int kb_agent_error(struct kvmbox_agent *a, json_t *resp, struct kvmbox_error *err)
{
	json_t *e = json_object_get(resp, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	if (!json_is_object(e) || !code || !code[0])
		return kb_protocol(a, err, "an error response without error.code");
	if (!err)
		return -1;
	memset(err, 0, sizeof(*err));
	copy_str(err->code, sizeof(err->code), code);
	err->errnum = (int)kb_get_int(e, "errno", 0);
	kb_get_str(e, "syscall", err->syscall, sizeof(err->syscall));
	kb_get_str(e, "path", err->path, sizeof(err->path));
	kb_get_str(e, "dest", err->dest, sizeof(err->dest));
	kb_get_str(e, "message", err->message, sizeof(err->message));
	if (!err->message[0])
		snprintf(err->message, sizeof(err->message), "%s: %s failed", code, a->op);
	return -1;
}

int kb_response(struct kvmbox_agent *a, json_t *resp, json_t **result, struct kvmbox_error *err)
{
	json_t *ok = json_object_get(resp, "ok");
	if (!json_is_boolean(ok))
		return kb_protocol(a, err, "a response without \"ok\"");
	if (!json_is_true(ok))
		return kb_agent_error(a, resp, err);
	if (result) {
		json_object_del(resp, "ok");
		*result = json_incref(resp);
	}
	return 0;
}

int kb_begin(struct kvmbox_agent *a, const char *op, uint32_t *id, struct kvmbox_error *err)
{
	if (!a)
		return kb_err(err, "EINVAL", EINVAL, "%s: no agent handle (kvmbox_agent_connect failed?)", op);
	copy_str(a->op, sizeof(a->op), op);
	if (a->dead[0])
		return kb_err(err, "CLOSED", 0, "%s: the handle was closed by an earlier error (%s): open a new one "
			      "with kvmbox_agent_connect", a->where, a->dead);
	if (++a->next_id == 0)
		a->next_id = 1;
	*id = a->next_id;
	return 0;
}

int kb_upload(struct kvmbox_agent *a, uint32_t id, json_t *req, kb_source_fn src, void *ctx, json_t **result,
	      struct kvmbox_error *err)
{
	uint8_t *buf = malloc(FRAME_MAX_DATA);
	int ret = -1;
	bool eof = false, first = true;
	if (!buf) {
		kb_err(err, "ENOMEM", ENOMEM, "%s: no memory for an upload buffer", a->op);
		goto out;
	}
	/* Each chunk is filled whole (or to the end) before it goes, so MORE is exact; a source that only
	 * learns of its end after a full chunk ends the upload with an empty DATA frame. */
	while (!eof) {
		ssize_t n = src(ctx, buf, FRAME_MAX_DATA, &eof, err);
		if (n < 0) {
			if (!first) { /* the agent waits for more: only closing the connection ends the upload */
				kb_kill(a, "an upload was abandoned (reading its source failed)");
			}
			goto out;
		}
		uint8_t flags = eof ? 0 : FRAME_F_MORE;
		if (kb_send(a, first ? FRAME_REQUEST : FRAME_DATA, flags, id, first ? req : NULL, buf, (size_t)n, err))
			goto out;
		first = false;
		if (!eof) { /* an upload that failed early is answered at once: stop sending */
			int r = kb_peek(a, id, err);
			if (r < 0)
				goto out;
			if (r)
				break;
		}
	}
	ret = kb_await(a, id, NULL, NULL, result, err);
out:
	free(buf);
	json_decref(req);
	return ret;
}

/* ---- JSON helpers ---- */

bool kb_set_str(json_t *o, const char *key, const char *value)
{
	return json_object_set_new(o, key, json_string(value)) == 0;
}

bool kb_set_int(json_t *o, const char *key, json_int_t v)
{
	return json_object_set_new(o, key, json_integer(v)) == 0;
}

bool kb_set_bool(json_t *o, const char *key, bool v)
{
	return json_object_set_new(o, key, json_boolean(v)) == 0;
}

void kb_get_str(json_t *o, const char *key, char *dst, size_t size)
{
	copy_str(dst, size, json_string_value(json_object_get(o, key)));
}

int64_t kb_get_int(json_t *o, const char *key, int64_t def)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

/* ---- connecting ---- */

/* One attempt. Returns the connected fd, -1 with *retry set when the agent is not there yet (err says
 * why), or -1 without it for errors that waiting does not fix. */
static int try_connect(const char *path, unsigned port, int64_t deadline, bool *retry, struct kvmbox_error *err)
{
	const char *hint = port ? "is the VM running with --vsock uds=" : "is kvmbox-agent running with --listen unix:";
	*retry = false;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return kb_err(err, "CONNECT", errno, "socket(AF_UNIX): %s", strerror(errno));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno == EINPROGRESS) { /* not for Unix sockets today, but cheap to honour */
		int ev = poll_one(fd, POLLOUT, deadline < 0 ? -1 : (int)(deadline > kb_now_ms() ? deadline - kb_now_ms() : 0));
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (ev <= 0)
			soerr = ev == 0 ? ETIMEDOUT : errno;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
			soerr = errno;
		errno = soerr;
		r = soerr ? -1 : 0;
	}
	if (r < 0) {
		int e = errno;
		close(fd);
		*retry = e == ENOENT || e == ECONNREFUSED || e == EAGAIN || e == ETIMEDOUT;
		return kb_err(err, "CONNECT", e, "connect to %s: %s: %s%s?", path, strerror(e), hint, path);
	}
	if (!port)
		return fd;

	/* Hybrid vsock: our CONNECT line, then "OK <port>\n" or the socket closed (nobody listens). */
	char line[32];
	int ll = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	size_t off = 0;
	while (off < (size_t)ll) {
		ssize_t n = send(fd, line + off, (size_t)ll - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (poll_one(fd, POLLOUT, 100) < 0)
				break;
		} else {
			int e = errno;
			close(fd);
			*retry = true;
			return kb_err(err, "CONNECT", e, "%s: sending \"CONNECT %u\": %s: is the VM still running?",
				      path, port, strerror(e));
		}
	}
	char ans[CONNECT_LINE_MAX];
	size_t al = 0;
	for (;;) {
		/* Byte by byte: what follows the line is the agent's, not ours to swallow. */
		ssize_t n = recv(fd, ans + al, 1, MSG_DONTWAIT);
		if (n == 1) {
			if (ans[al] == '\n')
				break;
			if (++al == sizeof(ans)) {
				close(fd);
				return kb_err(err, "CONNECT", EPROTO, "%s: the answer to \"CONNECT %u\" is not a line of "
					      "\"OK <port>\": is it a kvmbox-vmm --vsock uds= socket? (for "
					      "kvmbox-agent --listen, connect with port 0)", path, port);
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int left = deadline < 0 ? -1 : (int)(deadline > kb_now_ms() ? deadline - kb_now_ms() : 0);
			int ev = poll_one(fd, POLLIN, left);
			if (ev > 0)
				continue;
			close(fd);
			*retry = true;
			return kb_err(err, "CONNECT", ETIMEDOUT, "%s: no answer to \"CONNECT %u\": is the VM's "
				      "monitor (kvmbox-vmm) hung?", path, port);
		}
		int e = n < 0 ? errno : 0;
		close(fd);
		*retry = true;
		return kb_err(err, "CONNECT", e ? e : ECONNREFUSED, "%s: the VM refused \"CONNECT %u\": is kvmbox-agent "
			      "running in the guest (is it still booting?)", path, port);
	}
	ans[al] = 0;
	char *end;
	if (strncmp(ans, "OK ", 3) || strtoul(ans + 3, &end, 10) == 0 || *end) {
		close(fd);
		return kb_err(err, "CONNECT", EPROTO, "%s: the answer to \"CONNECT %u\" was \"%.32s\", not \"OK <port>\"",
			      path, port, ans);
	}
	return fd;
}

int kvmbox_agent_connect(const char *uds_path, unsigned port, int timeout_ms, kvmbox_agent **out,
			 struct kvmbox_error *err)
{
	if (out)
		*out = NULL;
	if (!uds_path || !out)
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_agent_connect: uds_path and out are required");
	struct sockaddr_un sa;
	if (!uds_path[0] || strlen(uds_path) >= sizeof(sa.sun_path))
		return kb_err(err, "EINVAL", EINVAL, "connect to \"%.64s\": a Unix socket path must have 1 to %zu bytes",
			      uds_path, sizeof(sa.sun_path) - 1);
	struct kvmbox_agent *a = calloc(1, sizeof(*a));
	if (a)
		a->rbuf = malloc(RBUF_INITIAL);
	if (!a || !a->rbuf) {
		if (a)
			free(a);
		return kb_err(err, "ENOMEM", ENOMEM, "connect to %s: no memory", uds_path);
	}
	a->rcap = RBUF_INITIAL;
	a->fd = -1;
	if (port)
		snprintf(a->where, sizeof(a->where), "the agent at %.100s (vsock port %u)", uds_path, port);
	else
		snprintf(a->where, sizeof(a->where), "the agent at %.100s", uds_path);

	int64_t start = kb_now_ms();
	int64_t deadline = timeout_ms < 0 ? -1 : start + (timeout_ms ? timeout_ms : CONNECT_ONCE_MS);
	int backoff = RETRY_MIN_MS;
	struct kvmbox_error prev = { .errnum = 0 };
	for (;;) {
		bool retry;
		a->fd = try_connect(uds_path, port, deadline, &retry, err);
		if (a->fd >= 0)
			break;
		int64_t now = kb_now_ms();
		if (!retry || timeout_ms == 0 || (deadline >= 0 && now >= deadline)) {
			/* The deadline cut the last attempt short: the one before says why it failed. */
			if (retry && err && err->errnum == ETIMEDOUT && prev.errnum && prev.errnum != ETIMEDOUT)
				*err = prev;
			if (retry && timeout_ms > 0 && err) { /* say how long it tried */
				size_t l = strlen(err->message);
				snprintf(err->message + l, sizeof(err->message) - l, " (gave up after %d ms)", timeout_ms);
			}
			free(a->rbuf);
			free(a);
			return -1;
		}
		if (err)
			prev = *err;
		int wait = backoff;
		if (deadline >= 0 && deadline - now < wait)
			wait = (int)(deadline - now);
		struct timespec ts = { .tv_sec = wait / 1000, .tv_nsec = (long)(wait % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
	}
	*out = a;
	return 0;
}

void kvmbox_agent_close(kvmbox_agent *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	free(a->rbuf);
	free(a);
}

void kvmbox_agent_set_timeout(kvmbox_agent *a, int timeout_ms)
{
	if (a)
		a->io_timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

int kb_await(struct kvmbox_agent *a, uint32_t id, kb_frame_fn on_frame, void *ctx, json_t **result,
	     struct kvmbox_error *err)
{
	for (;;) {
		struct kb_frame f;
		if (kb_recv(a, id, &f, err))
			return -1;
		int ret = f.type == FRAME_RESPONSE ? kb_response(a, f.json, result, err)
			  : on_frame && on_frame(ctx, &f, err) ? -1 : 0;
		bool done = f.type == FRAME_RESPONSE || ret;
		json_decref(f.json);
		if (done)
			return ret;
	}
}
