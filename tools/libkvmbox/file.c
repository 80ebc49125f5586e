/* libkvmbox: readFile, writeFile and appendFile, streamed in chunks of at most one frame's data
 * (256 KiB) both ways, so that no file is ever held whole. */
#include "tools/libkvmbox/lib.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct read_sink {
	kvmbox_data_fn fn;
	void *ctx;
	const char *path;
};

static int read_chunk(void *ctx, const struct kb_frame *f, struct kvmbox_error *err)
{
	struct read_sink *r = ctx;
	int stop;
	if (f->type == FRAME_DATA && f->len && r->fn && (stop = r->fn(r->ctx, f->data, f->len)) != 0)
		/* The rest of the file still comes: the handle's next request skips it. */
		return kb_err(err, "CALLBACK", stop, "the data callback stopped readFile of %.200s", r->path);
	return 0;
}

static int read_file(kvmbox_agent *a, const char *path, kvmbox_data_fn fn, void *ctx, struct kvmbox_error *err)
{
	uint32_t id;
	if (!path)
		return kb_err(err, "EINVAL", EINVAL, "readFile: no path");
	if (kb_begin(a, "readFile", &id, err))
		return -1;
	json_t *req = json_object();
	if (!req || !kb_set_str(req, "op", "readFile") || !kb_set_str(req, "path", path)) {
		json_decref(req);
		return kb_err(err, "EINVAL", EINVAL, "readFile: the path is not valid UTF-8 (or no memory)");
	}
	int ret = kb_send(a, FRAME_REQUEST, 0, id, req, NULL, 0, err);
	json_decref(req);
	struct read_sink sink = {fn, ctx, path};
	return ret ? -1 : kb_await(a, id, read_chunk, &sink, NULL, err);
}

int kvmbox_read_file(kvmbox_agent *a, const char *path, kvmbox_data_fn fn, void *ctx, struct kvmbox_error *err)
{
	return read_file(a, path, fn, ctx, err);
}

struct fd_sink {
	int fd;
	int errnum; /* what write() failed with */
};

/* write() all of it, through EINTR, short writes and a non-blocking fd. SIGPIPE is blocked around the
 * write and a pending one taken back, so that a closed pipe is an EPIPE error, not the end of the
 * caller's process. */
static int fd_write(void *ctx, const void *data, size_t len)
{
	struct fd_sink *s = ctx;
	sigset_t pipe_set, old, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	bool was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	const uint8_t *p = data;
	while (len) {
		ssize_t n = write(s->fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pf = { .fd = s->fd, .events = POLLOUT };
			if (poll(&pf, 1, -1) >= 0 || errno == EINTR)
				continue;
		}
		s->errnum = n < 0 ? errno : EIO;
		break;
	}
	if (s->errnum == EPIPE && !was_pending) {
		struct timespec zero = { 0 };
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return s->errnum ? -1 : 0;
}

int kvmbox_read_file_to_fd(kvmbox_agent *a, const char *path, int fd, struct kvmbox_error *err)
{
	struct fd_sink s = { fd, 0 };
	if (fd < 0)
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_read_file_to_fd: fd %d", fd);
	int ret = read_file(a, path, fd_write, &s, err);
	if (ret && s.errnum) {
		char what[256];
		snprintf(what, sizeof(what), "readFile %.200s: write to fd %d", path, fd);
		kb_errno(err, s.errnum, "write", what);
	}
	return ret;
}

/* The writeFile/appendFile request, or NULL (err filled). */
static json_t *write_request(kvmbox_agent *a, const char *path, int mode, unsigned flags, uint32_t *id,
			     struct kvmbox_error *err)
{
	const char *op = flags & KVMBOX_WRITE_APPEND ? "appendFile" : "writeFile";
	if (!path) {
		kb_err(err, "EINVAL", EINVAL, "%s: no path", op);
		return NULL;
	}
	if ((flags & KVMBOX_WRITE_APPEND) && (flags & KVMBOX_WRITE_EXCLUSIVE)) {
		kb_err(err, "EINVAL", EINVAL, "appendFile %.200s: KVMBOX_WRITE_EXCLUSIVE only goes with writeFile", path);
		return NULL;
	}
	if (flags & ~(KVMBOX_WRITE_APPEND | KVMBOX_WRITE_RECURSIVE | KVMBOX_WRITE_EXCLUSIVE)) {
		kb_err(err, "EINVAL", EINVAL, "%s %.200s: unknown flags %#x", op, path, flags);
		return NULL;
	}
	if (mode < -1 || mode > 07777) {
		kb_err(err, "EINVAL", EINVAL, "%s %.200s: mode %#o is not -1 or 0..07777", op, path, (unsigned)mode);
		return NULL;
	}
	if (kb_begin(a, op, id, err))
		return NULL;
	json_t *req = json_object();
	bool ok = req && kb_set_str(req, "op", op);
	if (ok && !kb_set_str(req, "path", path)) {
		json_decref(req);
		kb_err(err, "EINVAL", EINVAL, "%s: the path is not valid UTF-8 (or no memory)", op);
		return NULL;
	}
	if (ok && mode >= 0)
		ok = kb_set_int(req, "mode", mode);
	if (ok && (flags & KVMBOX_WRITE_RECURSIVE))
		ok = kb_set_bool(req, "recursive", true);
	if (ok && (flags & KVMBOX_WRITE_EXCLUSIVE))
		ok = kb_set_bool(req, "exclusive", true);
	if (!ok) {
		json_decref(req);
		kb_err(err, "ENOMEM", ENOMEM, "%s: no memory", op);
		return NULL;
	}
	return req;
}

int kvmbox_write_file(kvmbox_agent *a, const char *path, int mode, unsigned flags, const void *data, size_t len,
		      struct kvmbox_error *err)
{
	if (len && !data)
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_write_file: %zu bytes but no data", len);
	uint32_t id;
	json_t *req = write_request(a, path, mode, flags, &id, err);
	if (!req)
		return -1;
	struct kb_mem_source src = { data, len };
	return kb_upload(a, id, req, kb_mem_read, &src, NULL, err);
}

struct fd_source {
	int fd;
};

/* Fill the chunk from fd to its end; a pipe's short reads are gathered. */
static ssize_t fd_read(void *ctx, void *buf, size_t cap, bool *eof, struct kvmbox_error *err)
{
	struct fd_source *s = ctx;
	size_t got = 0;
	while (got < cap) {
		ssize_t n = read(s->fd, (uint8_t *)buf + got, cap - got);
		if (n > 0) {
			got += (size_t)n;
		} else if (n == 0) {
			*eof = true;
			break;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd pf = { .fd = s->fd, .events = POLLIN };
			if (poll(&pf, 1, -1) < 0 && errno != EINTR)
				goto fail;
		} else {
			goto fail;
		}
	}
	return (ssize_t)got;
fail:;
	char what[64];
	snprintf(what, sizeof(what), "read from fd %d", s->fd);
	return kb_errno(err, errno, "read", what);
}

int kvmbox_write_file_from_fd(kvmbox_agent *a, const char *path, int mode, unsigned flags, int fd,
			      struct kvmbox_error *err)
{
	if (fd < 0)
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_write_file_from_fd: fd %d", fd);
	uint32_t id;
	json_t *req = write_request(a, path, mode, flags, &id, err);
	if (!req)
		return -1;
	struct fd_source src = { fd };
	return kb_upload(a, id, req, fd_read, &src, NULL, err);
}
