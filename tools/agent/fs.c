/* File operations of the agent (fs.h): node:fs/promises semantics over plain system calls. Every error
 * is the errno Linux gave, with node's name for the call ("scandir" for readdir, "copyfile", ...) and the
 * path(s), so that a client can rethrow it as node would. Nothing here keeps state between calls.
 *
 * Choices where node and Linux leave room:
 *  - names and paths that are not valid UTF-8 (JSON strings must be) are sent with each bad byte
 *    replaced by U+FFFD, as node does when it decodes them;
 *  - exists is false for any error (ENOENT, but also EACCES on a parent, ELOOP, ...), never an error;
 *  - rm refuses "." and ".." (EINVAL) and "/" (EBUSY) before deleting anything: those are what the last
 *    rmdir would report, after having emptied the folder;
 *  - readFile/copyFile open non-blocking, so that a FIFO without a writer does not hang the agent, and
 *    then clear O_NONBLOCK; files that report no size (/proc, pipes, devices) are read to their end. */
/* fs.h uses struct stat without including its header */
#include <sys/stat.h>

#include "tools/agent/fs.h"
#include "tools/agent/utf8.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define READDIR_JSON_LIMIT (900u * 1024) /* under FRAME_MAX_JSON, with room for the response around it */
#define COPY_CHUNK         (1u << 20)
#define RM_PASSES          4             /* rmdir retries when entries appeared while emptying a folder */

static int oom(struct agent_error *err)
{
	return agent_error_set(err, AGENT_E_INTERNAL, "out of memory");
}

/* ---- JSON values ---- */

/* A JSON string of a name or path from the file system: Linux allows any bytes, JSON only UTF-8. */
static json_t *fs_string(const char *s)
{
	return json_string_lossy(s, strlen(s));
}

/* An upper bound of the bytes s takes in a dumped JSON string, quotes included, whatever the flags:
 * control characters as \u00XX, '"' and '\\' escaped, any byte >= 0x80 at most 3 (U+FFFD for a bad byte,
 * or \uXXXX / a surrogate pair per character under JSON_ENSURE_ASCII). */
static size_t json_cost(const char *s)
{
	size_t n = 2;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += *p < 0x20 ? 6 : *p == '"' || *p == '\\' ? 2 : *p >= 0x80 ? 3 : 1;
	return n;
}

/* Counts above INT64_MAX (inode numbers on some file systems) become reals, like node's numbers. */
static json_t *json_u64(uint64_t v)
{
	return v > INT64_MAX ? json_real((double)v) : json_integer((json_int_t)v);
}

/* Milliseconds since the epoch, with the nanoseconds as a fraction when there are any. */
static json_t *json_ms(const struct timespec *ts)
{
	if (ts->tv_nsec % 1000000 == 0)
		return json_integer((json_int_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000);
	return json_real((double)ts->tv_sec * 1000.0 + (double)ts->tv_nsec / 1e6);
}

static const char *mode_type(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "file";
	case S_IFDIR: return "directory";
	case S_IFLNK: return "symlink";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	case S_IFCHR: return "char";
	case S_IFBLK: return "block";
	}
	return "unknown";
}

static const char *dirent_type(unsigned char t)
{
	switch (t) {
	case DT_REG: return "file";
	case DT_DIR: return "directory";
	case DT_LNK: return "symlink";
	case DT_FIFO: return "fifo";
	case DT_SOCK: return "socket";
	case DT_CHR: return "char";
	case DT_BLK: return "block";
	}
	return NULL;
}

/* Sets key to v (consumed); -1 when v is NULL or the set failed (out of memory). */
static int set(json_t *o, const char *key, json_t *v)
{
	if (!v)
		return -1;
	return json_object_set_new(o, key, v);
}

json_t *agent_fs_stat_json(const struct stat *st)
{
	json_t *j = json_object();
	if (!j)
		return NULL;
	if (set(j, "type", json_string(mode_type(st->st_mode))) ||
	    set(j, "mode", json_integer(st->st_mode)) ||
	    set(j, "size", json_integer(st->st_size)) ||
	    set(j, "uid", json_integer(st->st_uid)) ||
	    set(j, "gid", json_integer(st->st_gid)) ||
	    set(j, "nlink", json_u64(st->st_nlink)) ||
	    set(j, "dev", json_u64(st->st_dev)) ||
	    set(j, "ino", json_u64(st->st_ino)) ||
	    set(j, "rdev", json_u64(st->st_rdev)) ||
	    set(j, "blksize", json_integer(st->st_blksize)) ||
	    set(j, "blocks", json_integer(st->st_blocks)) ||
	    set(j, "atimeMs", json_ms(&st->st_atim)) ||
	    set(j, "mtimeMs", json_ms(&st->st_mtim)) ||
	    set(j, "ctimeMs", json_ms(&st->st_ctim))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* {key: string} or {key: null}, as the result. */
static int result_string(json_t **result, const char *key, const char *s, struct agent_error *err)
{
	json_t *j = json_object();
	if (!j || set(j, key, s ? fs_string(s) : json_null())) {
		json_decref(j);
		return oom(err);
	}
	*result = j;
	return 0;
}

static int result_empty(json_t **result, struct agent_error *err)
{
	*result = json_object();
	return *result ? 0 : oom(err);
}

/* ---- mkdir ---- */

/* 0 when path is a directory (following symlinks), else the errno to report for it. */
static int dir_check(const char *path)
{
	struct stat st;
	if (stat(path, &st))
		return errno;
	return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

/* mkdir -p. Returns 0 or an errno; *first is a malloc'ed copy of the first folder created, NULL when
 * the whole path existed. Like node: the last component existing as a non-folder is EEXIST, a parent
 * that is not a folder ENOTDIR (Linux reports that one itself when it is already there). */
static int mkdir_p(const char *path, mode_t mode, char **first)
{
	*first = NULL;
	char *p = strdup(path);
	if (!p)
		return ENOMEM;
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	if (mkdir(p, mode) == 0) {
		*first = p;
		return 0;
	}
	int e = errno;
	if (e == EEXIST) {
		e = dir_check(p) ? EEXIST : 0;
		free(p);
		return e;
	}
	if (e != ENOENT) {
		free(p);
		return e;
	}
	/* A parent is missing: walk down from the top, creating what is not there. */
	e = 0;
	for (char *s = p + 1; (s = strchr(s, '/')); s++) {
		if (s[-1] == '/')
			continue; /* "a//b" */
		*s = '\0';
		if (mkdir(p, mode) == 0) {
			if (!*first && !(*first = strdup(p)))
				e = ENOMEM;
		} else {
			e = errno == EEXIST ? dir_check(p) : errno;
		}
		*s = '/';
		if (e)
			goto out;
	}
	if (mkdir(p, mode) == 0) {
		if (!*first) {
			*first = p;
			p = NULL;
		}
	} else {
		e = errno;
		if (e == EEXIST && dir_check(p) == 0)
			e = 0;
	}
out:
	if (e) {
		free(*first);
		*first = NULL;
	}
	free(p);
	return e;
}

static int fs_mkdir(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	mode_t mode = r->mode >= 0 ? (mode_t)r->mode : 0777;
	if (!r->recursive) {
		if (mkdir(r->path, mode))
			return agent_error_errno(err, errno, "mkdir", r->path, NULL);
		return result_empty(result, err);
	}
	char *first;
	int e = mkdir_p(r->path, mode, &first);
	if (e == ENOMEM)
		return oom(err);
	if (e)
		return agent_error_errno(err, e, "mkdir", r->path, NULL);
	int rc = result_string(result, "path", first, err);
	free(first);
	return rc;
}

/* ---- readdir ---- */

struct entry {
	char *name;
	unsigned char type;
};

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static void entries_free(struct entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

static int fs_readdir(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	DIR *d = opendir(r->path);
	if (!d)
		return agent_error_errno(err, errno, "scandir", r->path, NULL);
	struct entry *v = NULL;
	size_t n = 0, cap = 0, cost = 0;
	int rc = -1;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno) {
				agent_error_errno(err, errno, "scandir", r->path, NULL);
				goto out;
			}
			break;
		}
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		/* Stop at the limit, not after reading a huge folder into memory. */
		cost += json_cost(name) + 1 + (r->with_file_types ? sizeof("{\"name\":,\"type\":\"directory\"}") : 0);
		if (cost > READDIR_JSON_LIMIT) {
			agent_error_set(err, AGENT_E_LIMIT,
					"readdir: '%.256s' has too many entries for one response (over %u KiB of "
					"JSON); list it with a command instead (run ls or find)",
					r->path, READDIR_JSON_LIMIT / 1024);
			goto out;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct entry *nv = realloc(v, ncap * sizeof(*v));
			if (!nv) {
				oom(err);
				goto out;
			}
			v = nv;
			cap = ncap;
		}
		unsigned char type = de->d_type;
		if (r->with_file_types && !dirent_type(type)) {
			/* Not every file system fills d_type. */
			struct stat st;
			type = fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? IFTODT(st.st_mode) : DT_UNKNOWN;
		}
		if (!(v[n].name = strdup(name))) {
			oom(err);
			goto out;
		}
		v[n++].type = type;
	}
	if (n)
		qsort(v, n, sizeof(*v), entry_cmp);

	json_t *list = json_array(), *res = json_object();
	if (!list || !res || json_object_set(res, "entries", list))
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		json_t *e;
		if (r->with_file_types) {
			const char *t = dirent_type(v[i].type);
			e = json_object();
			/* An entry gone before its lstat has no type left: "unknown", as node's Dirent. */
			if (!e || set(e, "name", fs_string(v[i].name)) || set(e, "type", json_string(t ? t : "unknown"))) {
				json_decref(e);
				goto nomem;
			}
		} else {
			e = fs_string(v[i].name);
		}
		if (!e || json_array_append_new(list, e))
			goto nomem;
	}
	json_decref(list);
	*result = res;
	rc = 0;
	goto out;
nomem:
	json_decref(list);
	json_decref(res);
	oom(err);
out:
	entries_free(v, n);
	closedir(d);
	return rc;
}

/* ---- single calls ---- */

static int fs_mkdtemp(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	size_t n = strlen(r->prefix);
	char *t = malloc(n + 7);
	if (!t)
		return oom(err);
	memcpy(t, r->prefix, n);
	memcpy(t + n, "XXXXXX", 7);
	int rc;
	if (!mkdtemp(t)) {
		int e = errno;
		memcpy(t + n, "XXXXXX", 7); /* glibc may have filled it in: report the template, as node */
		rc = agent_error_errno(err, e, "mkdtemp", t, NULL);
	}
	else
		rc = result_string(result, "path", t, err);
	free(t);
	return rc;
}

static int fs_stat(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	struct stat st;
	bool l = r->op == AGENT_OP_LSTAT;
	if (l ? lstat(r->path, &st) : stat(r->path, &st))
		return agent_error_errno(err, errno, l ? "lstat" : "stat", r->path, NULL);
	*result = agent_fs_stat_json(&st);
	return *result ? 0 : oom(err);
}

static int fs_realpath(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	char *p = realpath(r->path, NULL);
	if (!p)
		return agent_error_errno(err, errno, "realpath", r->path, NULL);
	int rc = result_string(result, "path", p, err);
	free(p);
	return rc;
}

static int fs_readlink(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	/* A link's target may be longer than PATH_MAX on some file systems: grow until it fits. */
	for (size_t cap = 256;; cap *= 2) {
		char *buf = malloc(cap);
		if (!buf)
			return oom(err);
		ssize_t n = readlink(r->path, buf, cap);
		if (n < 0) {
			int e = errno;
			free(buf);
			return agent_error_errno(err, e, "readlink", r->path, NULL);
		}
		if ((size_t)n < cap) {
			buf[n] = '\0';
			int rc = result_string(result, "target", buf, err);
			free(buf);
			return rc;
		}
		free(buf);
		if (cap >= (1u << 20))
			return agent_error_errno(err, ENAMETOOLONG, "readlink", r->path, NULL);
	}
}

/* ---- copyFile ---- */

static int clear_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copies in to out from their current offsets to in's end: copy_file_range (no copy through user space,
 * reflinks where the file system has them), read/write where it is not supported or the source has no
 * size to trust (/proc, pipes). Returns 0 or an errno. */
static int copy_data(int in, int out, const struct stat *st)
{
	bool cfr = S_ISREG(st->st_mode) && st->st_size > 0;
	while (cfr) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, COPY_CHUNK, 0);
		if (n > 0)
			continue;
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP && errno != EBADF)
			return errno;
		cfr = false; /* what was copied is behind both offsets: read/write goes on from there */
	}
	size_t cap = 64 * 1024;
	char *buf = malloc(cap);
	if (!buf)
		return ENOMEM;
	int e = 0;
	for (;;) {
		ssize_t n = read(in, buf, cap);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			break;
		}
		if (n == 0)
			break;
		if (write_all(out, buf, (size_t)n)) {
			e = errno;
			break;
		}
	}
	free(buf);
	return e;
}

static int fs_copy_file(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	const char *src = r->path, *dest = r->path2;
	int in = -1, out = -1, e = 0;
	struct stat st, dst;
	in = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (in < 0 || clear_nonblock(in) || fstat(in, &st)) {
		e = errno;
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		e = EISDIR;
		goto fail;
	}
	/* No O_TRUNC yet: dest may be src itself (or a link to it), which truncating would destroy. */
	mode_t mode = r->preserve ? st.st_mode & 07777 : 0666;
	out = open(dest, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (r->exclusive ? O_EXCL : 0), mode);
	if (out < 0) {
		e = errno;
		goto fail;
	}
	if (clear_nonblock(out) || fstat(out, &dst)) {
		e = errno;
		goto fail;
	}
	if (dst.st_dev == st.st_dev && dst.st_ino == st.st_ino)
		goto done; /* copying a file onto itself: nothing to do, as libuv does */
	if (S_ISREG(dst.st_mode) && ftruncate(out, 0)) {
		e = errno;
		goto fail_created;
	}
	if ((e = copy_data(in, out, &st)))
		goto fail_created;
	if (r->preserve) {
		/* Owner before mode (chown clears set-id bits), times last (the writes moved mtime). Only root
		 * may give a file away: others keep their copy as their own, like cp -p. */
		if (fchown(out, st.st_uid, st.st_gid) && (errno != EPERM || geteuid() == 0)) {
			e = errno;
			goto fail_created;
		}
		struct timespec times[2] = { st.st_atim, st.st_mtim };
		if (fchmod(out, st.st_mode & 07777) || futimens(out, times)) {
			e = errno;
			goto fail_created;
		}
	}
done:
	if (close(out)) {
		out = -1;
		e = errno;
		goto fail_created;
	}
	close(in);
	return result_empty(result, err);
fail_created:
	/* Like libuv: a copy that failed half-way is removed rather than left looking complete (only a
	 * regular file: never a device given as dest). */
	if (out >= 0)
		close(out);
	out = -1;
	if (S_ISREG(dst.st_mode))
		unlink(dest);
fail:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (e == ENOMEM)
		return oom(err);
	return agent_error_errno(err, e, "copyfile", src, dest);
}

/* ---- rm ---- */

/* The path of the entry being removed, for errors: it grows past PATH_MAX in deep trees, which openat
 * does not mind. */
struct pathbuf {
	char *s;
	size_t len, cap;
};

static int pb_push(struct pathbuf *pb, const char *name)
{
	size_t n = strlen(name), need = pb->len + 1 + n + 1;
	if (need > pb->cap) {
		size_t cap = pb->cap ? pb->cap : 256;
		while (cap < need)
			cap *= 2;
		char *s = realloc(pb->s, cap);
		if (!s)
			return -1;
		pb->s = s;
		pb->cap = cap;
	}
	if (pb->len && pb->s[pb->len - 1] != '/')
		pb->s[pb->len++] = '/';
	memcpy(pb->s + pb->len, name, n + 1);
	pb->len += n;
	return 0;
}

static int rm_dir_at(int parent, const char *name, struct pathbuf *pb, bool force, struct agent_error *err);

/* Removes everything in the folder open as fd (closed here), without following symlinks. Entries that
 * vanish meanwhile are not errors: they are gone, which is what was asked. */
static int rm_children(int fd, struct pathbuf *pb, struct agent_error *err)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return agent_error_errno(err, e, "scandir", pb->s, NULL);
	}
	int rc = 0;
	while (!rc) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				rc = agent_error_errno(err, errno, "scandir", pb->s, NULL);
			break;
		}
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		size_t mark = pb->len;
		if (pb_push(pb, name)) {
			rc = oom(err);
			break;
		}
		bool dir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0)
				dir = S_ISDIR(st.st_mode);
			else if (errno != ENOENT)
				rc = agent_error_errno(err, errno, "lstat", pb->s, NULL);
		}
		/* Linux's unlink says EISDIR for a folder: a stale d_type is caught there. */
		if (!rc && !dir && unlinkat(dirfd(d), name, 0)) {
			if (errno == EISDIR)
				dir = true;
			else if (errno != ENOENT)
				rc = agent_error_errno(err, errno, "unlink", pb->s, NULL);
		}
		if (!rc && dir)
			rc = rm_dir_at(dirfd(d), name, pb, true, err);
		pb->s[pb->len = mark] = '\0';
	}
	closedir(d);
	return rc;
}

/* Empties and removes the folder name in parent (pb holds its path). Retries when entries were added
 * while it was being emptied; force: a folder that is not there is not an error. */
static int rm_dir_at(int parent, const char *name, struct pathbuf *pb, bool force, struct agent_error *err)
{
	for (int pass = 0;; pass++) {
		int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT && force)
				return 0;
			return agent_error_errno(err, errno, "scandir", pb->s, NULL);
		}
		if (rm_children(fd, pb, err))
			return -1;
		if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || (errno == ENOENT && force))
			return 0;
		if (errno != ENOTEMPTY || pass + 1 == RM_PASSES)
			return agent_error_errno(err, errno, "rmdir", pb->s, NULL);
	}
}

/* The last component of path, ignoring trailing slashes; "" for a path of slashes only. */
static void last_component(const char *path, const char **start, size_t *len)
{
	size_t n = strlen(path);
	while (n && path[n - 1] == '/')
		n--;
	size_t b = n;
	while (b && path[b - 1] != '/')
		b--;
	*start = path + b;
	*len = n - b;
}

static int fs_rm(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	const char *path = r->path;
	struct stat st;
	if (lstat(path, &st)) {
		if (errno == ENOENT && r->force)
			return result_empty(result, err);
		return agent_error_errno(err, errno, "lstat", path, NULL);
	}
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) && !(errno == ENOENT && r->force))
			return agent_error_errno(err, errno, "unlink", path, NULL);
		return result_empty(result, err);
	}
	if (!r->recursive)
		return agent_error_errno(err, EISDIR, "rm", path, NULL);
	const char *base;
	size_t blen;
	last_component(path, &base, &blen);
	if (blen == 0)
		return agent_error_errno(err, EBUSY, "rm", path, NULL);
	if ((blen == 1 && base[0] == '.') || (blen == 2 && base[0] == '.' && base[1] == '.'))
		return agent_error_errno(err, EINVAL, "rm", path, NULL);
	struct pathbuf pb = { 0 };
	if (pb_push(&pb, path)) {
		free(pb.s);
		return oom(err);
	}
	int rc = rm_dir_at(AT_FDCWD, path, &pb, r->force, err);
	free(pb.s);
	return rc ? rc : result_empty(result, err);
}

/* ---- the dispatcher ---- */

int agent_fs_call(const struct agent_request *r, json_t **result, struct agent_error *err)
{
	*result = NULL;
	const char *p = r->path;
	switch (r->op) {
	case AGENT_OP_MKDIR:
		return fs_mkdir(r, result, err);
	case AGENT_OP_READDIR:
		return fs_readdir(r, result, err);
	case AGENT_OP_MKDTEMP:
		return fs_mkdtemp(r, result, err);
	case AGENT_OP_STAT:
	case AGENT_OP_LSTAT:
		return fs_stat(r, result, err);
	case AGENT_OP_REALPATH:
		return fs_realpath(r, result, err);
	case AGENT_OP_RENAME:
		if (rename(p, r->path2))
			return agent_error_errno(err, errno, "rename", p, r->path2);
		return result_empty(result, err);
	case AGENT_OP_COPY_FILE:
		return fs_copy_file(r, result, err);
	case AGENT_OP_UNLINK:
		if (unlink(p))
			return agent_error_errno(err, errno, "unlink", p, NULL);
		return result_empty(result, err);
	case AGENT_OP_RM:
		return fs_rm(r, result, err);
	case AGENT_OP_RMDIR:
		if (rmdir(p))
			return agent_error_errno(err, errno, "rmdir", p, NULL);
		return result_empty(result, err);
	case AGENT_OP_TRUNCATE:
		if (truncate(p, r->length >= 0 ? r->length : 0))
			return agent_error_errno(err, errno, "truncate", p, NULL);
		return result_empty(result, err);
	case AGENT_OP_CHMOD:
		if (chmod(p, (mode_t)r->mode))
			return agent_error_errno(err, errno, "chmod", p, NULL);
		return result_empty(result, err);
	case AGENT_OP_CHOWN:
		if (chown(p, (uid_t)r->uid, (gid_t)r->gid)) /* -1 is (uid_t)-1: unchanged */
			return agent_error_errno(err, errno, "chown", p, NULL);
		return result_empty(result, err);
	case AGENT_OP_SYMLINK:
		/* node names the target as the path and the link as the dest */
		if (symlink(r->path2, p))
			return agent_error_errno(err, errno, "symlink", r->path2, p);
		return result_empty(result, err);
	case AGENT_OP_READLINK:
		return fs_readlink(r, result, err);
	case AGENT_OP_ACCESS:
		if (access(p, r->mode >= 0 ? (int)r->mode : F_OK))
			return agent_error_errno(err, errno, "access", p, NULL);
		return result_empty(result, err);
	case AGENT_OP_EXISTS: {
		json_t *j = json_pack("{s:b}", "exists", access(p, F_OK) == 0);
		if (!j)
			return oom(err);
		*result = j;
		return 0;
	}
	default:
		return agent_error_set(err, AGENT_E_INTERNAL, "%s is not a file operation", agent_op_name(r->op));
	}
}

/* ---- streaming: readFile, writeFile, appendFile ---- */

int agent_fs_open_read(const struct agent_request *r, int *fd, int64_t *size, struct agent_error *err)
{
	*fd = -1;
	*size = 0;
	/* Non-blocking open: a FIFO without a writer would otherwise block the agent in open(). */
	int f = open(r->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (f < 0)
		return agent_error_errno(err, errno, "open", r->path, NULL);
	struct stat st;
	if (clear_nonblock(f) || fstat(f, &st))
		goto fail_open;
	if (S_ISDIR(st.st_mode)) {
		close(f);
		return agent_error_errno(err, EISDIR, "read", r->path, NULL);
	}
	int64_t n;
	if (S_ISREG(st.st_mode) && st.st_size > 0) {
		n = st.st_size > r->offset ? st.st_size - r->offset : 0;
	} else {
		/* /proc files, pipes, devices: no size to trust, so up to the end of what reading gives. */
		n = INT64_MAX;
	}
	if (r->length >= 0 && r->length < n)
		n = r->length;
	if (r->offset > 0 && n > 0 && lseek(f, r->offset, SEEK_SET) < 0) {
		int e = errno;
		close(f);
		return agent_error_errno(err, e, "read", r->path, NULL);
	}
	*fd = f;
	*size = n;
	return 0;
fail_open:;
	int e = errno;
	close(f);
	return agent_error_errno(err, e, "open", r->path, NULL);
}

/* The folder part of path (malloc'ed), NULL when it has none ("name" or "/name"). */
static char *parent_of(const char *path)
{
	size_t n = strlen(path);
	while (n && path[n - 1] == '/')
		n--;
	while (n && path[n - 1] != '/')
		n--;
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n == 0 || (n == 1 && path[0] == '/'))
		return NULL;
	return strndup(path, n);
}

int agent_fs_open_write(const struct agent_request *r, int *fd, struct agent_error *err)
{
	*fd = -1;
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	flags |= r->op == AGENT_OP_APPEND_FILE ? O_APPEND : O_TRUNC;
	if (r->exclusive)
		flags |= O_EXCL;
	mode_t mode = r->mode >= 0 ? (mode_t)r->mode : 0666;
	/* Non-blocking open: a FIFO without a reader gives ENXIO instead of blocking the agent. */
	int f = open(r->path, flags, mode);
	if (f < 0 && errno == ENOENT && r->recursive) {
		char *parent = parent_of(r->path), *first = NULL;
		if (parent) {
			int e = mkdir_p(parent, 0777, &first);
			free(first);
			if (e) {
				int rc = e == ENOMEM ? oom(err) : agent_error_errno(err, e, "mkdir", parent, NULL);
				free(parent);
				return rc;
			}
			free(parent);
			f = open(r->path, flags, mode);
		} else {
			errno = ENOENT;
		}
	}
	if (f < 0)
		return agent_error_errno(err, errno, "open", r->path, NULL);
	if (clear_nonblock(f)) {
		int e = errno;
		close(f);
		return agent_error_errno(err, e, "open", r->path, NULL);
	}
	*fd = f;
	return 0;
}
