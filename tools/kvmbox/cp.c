/* kvmbox cp (docs/cli.md): one file into or out of a sandbox, streamed both ways (GET/PUT .../files), never
 * whole in memory. One side is ID:PATH; `-` is stdin or stdout. */
#include "tools/kvmbox/kvmbox.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cp_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox cp ID:PATH LOCAL|-\n"
		     "       kvmbox cp LOCAL|- ID:PATH\n\n"
		     "Copies one file out of a sandbox (to LOCAL, or stdout with -) or into it (from LOCAL, or stdin\n"
		     "with -). A folder as the destination gets the file under its source's name; an upload keeps\n"
		     "the local file's mode. A local name with a ':' is written ./a:b. Folders are not copied:\n"
		     "use `kvmbox exec ID -- tar c DIR | tar x` (and `tar c DIR | kvmbox exec -i ID -- tar x`).\n\n"
		     "options:\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               after an upload, print the API's answer ({\"size\": N})\n"
		     "  --help               show this help\n\n"
		     "exit status: 0, 1 kvmboxd or the guest refused (ENOENT, EISDIR ...), 2 usage, 125 unreachable.\n");
}

/* "ID:PATH" with ID in a sandbox name's alphabet: *id and *path point into a copy (free *id). */
static bool remote(const char *s, char **id, const char **path)
{
	const char *colon = strchr(s, ':');
	if (!colon || colon == s || colon - s > 63)
		return false;
	for (const char *p = s; p < colon; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", *p))
			return false;
	*id = strndup(s, (size_t)(colon - s));
	*path = colon + 1;
	return *id != NULL;
}

/* POST .../fs {"op": "stat"}: the stat object, or NULL (a->code says why: ENOENT ...). Quiet. */
static json_t *remote_stat(struct api *a, const char *id, const char *path)
{
	char *p = cli_sandbox_path(a, id, "/fs");
	json_t *req = json_pack("{s:s,s:s}", "op", "stat", "path", path), *st = NULL;
	bool quiet = a->quiet;
	a->quiet = true;
	if (api_json(a, "POST", p, req, &st)) {
		json_decref(st);
		st = NULL;
	}
	a->quiet = quiet;
	json_decref(req);
	free(p);
	return st;
}

static char *join(const char *dir, const char *base)
{
	char *p;
	size_t n = strlen(dir);
	if (asprintf(&p, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", base) < 0) {
		fprintf(stderr, "kvmbox cp: out of memory\n");
		exit(KVMBOX_EXIT_TOOL);
	}
	return p;
}

static char *base_name(const char *path)
{
	char *copy = strdup(path);
	char *b = strdup(basename(copy));
	free(copy);
	return b;
}

/* ---- download ---- */

struct sink_file {
	const char *path;  /* NULL: stdout */
	mode_t mode;
	int fd;
	int err;           /* errno of a failed open or write */
};

static int sink_open(struct sink_file *s)
{
	if (s->fd >= 0)
		return 0;
	s->fd = s->path ? open(s->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, s->mode) : STDOUT_FILENO;
	if (s->fd < 0) {
		s->err = errno;
		return -1;
	}
	return 0;
}

/* Opened at the first byte of a 2xx answer: an error answer leaves no empty file behind. */
static int file_sink(void *ctx, const char *data, size_t n)
{
	struct sink_file *s = ctx;
	if (sink_open(s))
		return -1;
	if (write_all(s->fd, data, n)) {
		s->err = errno;
		return -1;
	}
	return 0;
}

static int download(struct api *a, const char *id, const char *rpath, const char *local)
{
	/* The stat first: a folder is refused before any local file is made, and the mode is kept. Its error
	 * (ENOENT ...) is the one the download would give. */
	json_t *st = remote_stat(a, id, rpath);
	if (!st)
		return api_report(a);
	const char *type = json_string_value(json_object_get(st, "type"));
	json_int_t mode = json_integer_value(json_object_get(st, "mode"));
	if (type && !strcmp(type, "directory")) {
		fprintf(stderr, "kvmbox cp: %s:%s is a folder; cp copies files: use `kvmbox exec %s -- tar c -C %s . "
			"| tar x`\n", id, rpath, id, rpath);
		json_decref(st);
		return KVMBOX_EXIT_API;
	}
	json_decref(st);

	char *dst = NULL;
	struct stat ls;
	if (strcmp(local, "-")) {
		if (!stat(local, &ls) && S_ISDIR(ls.st_mode)) {
			char *b = base_name(rpath);
			dst = join(local, b);
			free(b);
		} else {
			dst = strdup(local);
		}
	}
	struct sink_file s = { .path = dst, .mode = mode ? (mode_t)(mode & 0777) : 0644, .fd = -1 };
	char *q = api_escape(a, rpath), *suffix, *path;
	if (asprintf(&suffix, "/files?path=%s", q) < 0)
		exit(KVMBOX_EXIT_TOOL);
	path = cli_sandbox_path(a, id, suffix);
	free(suffix);
	free(q);
	int rc = api_request(a, "GET", path, NULL, file_sink, &s, NULL);
	free(path);
	if (!rc && sink_open(&s)) /* an empty file: no byte opened it */
		rc = KVMBOX_EXIT_API;
	if (s.err) {
		fprintf(stderr, "kvmbox cp: writing %s: %s\n", dst ? dst : "stdout", strerror(s.err));
		rc = KVMBOX_EXIT_API;
	}
	if (s.fd > STDERR_FILENO && close(s.fd) && !rc) {
		fprintf(stderr, "kvmbox cp: writing %s: %s\n", dst, strerror(errno));
		rc = KVMBOX_EXIT_API;
	}
	free(dst);
	return rc;
}

/* ---- upload ---- */

struct source_file {
	int fd;
	const char *name;
	int err;
};

static ssize_t file_source(void *ctx, char *buf, size_t n)
{
	struct source_file *s = ctx;
	for (;;) {
		ssize_t k = read(s->fd, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			s->err = errno;
		return k;
	}
}

static int upload(struct api *a, const char *local, const char *id, const char *rpath)
{
	struct source_file s = { .fd = STDIN_FILENO, .name = "stdin" };
	struct stat st;
	int64_t len = -1;
	int mode = -1;
	if (strcmp(local, "-")) {
		s.fd = open(local, O_RDONLY | O_CLOEXEC);
		s.name = local;
		if (s.fd < 0 || fstat(s.fd, &st)) {
			fprintf(stderr, "kvmbox cp: cannot read %s: %s\n", local, strerror(errno));
			return KVMBOX_EXIT_API;
		}
		if (S_ISDIR(st.st_mode)) {
			fprintf(stderr, "kvmbox cp: %s is a folder; cp copies files: use `tar c -C %s . | kvmbox exec "
				"-i %s -- tar x -C DIR`\n", local, local, id);
			close(s.fd);
			return KVMBOX_EXIT_API;
		}
		if (S_ISREG(st.st_mode))
			len = st.st_size;
		mode = (int)(st.st_mode & 07777);
	}

	/* Into a folder (a trailing '/', or one that exists): under the source's name. */
	char *dst = NULL;
	size_t n = strlen(rpath);
	bool into_dir = n && rpath[n - 1] == '/';
	if (!into_dir) {
		json_t *rst = remote_stat(a, id, rpath);
		const char *type = json_string_value(json_object_get(rst, "type"));
		into_dir = type && !strcmp(type, "directory");
		json_decref(rst);
		if (!rst && !a->status) {
			if (s.fd != STDIN_FILENO)
				close(s.fd);
			return api_report(a);
		}
	}
	if (into_dir) {
		if (!strcmp(local, "-")) {
			fprintf(stderr, "kvmbox cp: %s:%s is a folder; from stdin, give the file's name\n", id, rpath);
			return KVMBOX_EXIT_USAGE;
		}
		char *b = base_name(local);
		dst = join(rpath, b);
		free(b);
	} else {
		dst = strdup(rpath);
	}

	char *q = api_escape(a, dst), *suffix, *path, modebuf[16] = "";
	if (mode >= 0)
		snprintf(modebuf, sizeof(modebuf), "&mode=%04o", mode);
	if (asprintf(&suffix, "/files?path=%s%s", q, modebuf) < 0)
		exit(KVMBOX_EXIT_TOOL);
	path = cli_sandbox_path(a, id, suffix);
	free(suffix);
	free(q);
	struct api_body body = { .source = file_source, .source_ctx = &s, .source_len = len,
				 .type = "application/octet-stream" };
	json_t *ans = NULL;
	int rc = api_request(a, "PUT", path, &body, NULL, NULL, &ans);
	free(path);
	if (s.err) {
		fprintf(stderr, "kvmbox cp: reading %s: %s\n", s.name, strerror(s.err));
		rc = KVMBOX_EXIT_API;
	} else if (!rc && kvmbox_json) {
		json_dumpf(ans, stdout, JSON_INDENT(2));
		putchar('\n');
	}
	json_decref(ans);
	free(dst);
	if (s.fd != STDIN_FILENO)
		close(s.fd);
	return rc;
}

int cmd_cp(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_LONG_OPTS, { NULL, 0, NULL, 0 } };
	int c;
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (cli_common_opt(c, optarg))
			continue;
		if (c == 'h' || c == OPT_HELP) {
			cp_usage(stdout);
			return 0;
		}
		return cli_getopt_error("cp", c, argv);
	}
	if (argc - optind != 2)
		return cli_usage_error("cp", "wants SRC DST, one of them ID:PATH");
	const char *src = argv[optind], *dst = argv[optind + 1], *spath = NULL, *dpath = NULL;
	char *sid = NULL, *did = NULL;
	bool rs = remote(src, &sid, &spath), rd = remote(dst, &did, &dpath);
	int rc;
	if (rs == rd) {
		rc = cli_usage_error("cp", rs ? "both sides are in sandboxes (%s, %s): copy through a local file"
					      : "neither %s nor %s is ID:PATH (a file in a sandbox)", src, dst);
	} else if ((rs && !*spath) || (rd && !*dpath)) {
		rc = cli_usage_error("cp", "ID:PATH wants a PATH after the ':'");
	} else {
		struct api a;
		if (api_open(&a, "cp")) {
			rc = KVMBOX_EXIT_TOOL;
		} else {
			rc = rs ? download(&a, sid, spath, dst) : upload(&a, src, did, dpath);
			api_close(&a);
		}
	}
	free(sid);
	free(did);
	return rc;
}
