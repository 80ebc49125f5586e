/* The agent's file operations (tools/agent/fs.c): requests parsed from JSON, as the agent gets them, run
 * in a fresh temporary folder that is each test's cwd (relative paths resolve against it). Every op's
 * result and its errors with the exact code, errno, syscall and path(s). Tests may run as root: EACCES
 * cases root would pass are skipped then, and a few owner checks need root. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "tools/agent/fs.h"
#include "tools/agent/request.h"

UNIT_SUITE(agent_fs);

static char tmp[PATH_MAX];   /* the test's folder, also its cwd */
static char rtmp[PATH_MAX];  /* the same, symlinks resolved (/tmp may be one) */
static json_t *res;
static struct agent_error err;

/* Folders a test locked are opened up first (pre-order), then everything removed (post-order). */
static int unlock_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)f;
	if (flag == FTW_D || flag == FTW_DNR || (st && S_ISDIR(st->st_mode)))
		chmod(p, 0700);
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

static void setup(void)
{
	umask(022);
	snprintf(tmp, sizeof(tmp), "/tmp/kvmbox-agent-fs-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	cr_assert_not_null(realpath(tmp, rtmp));
	cr_assert_eq(chdir(tmp), 0);
}

static void teardown(void)
{
	json_decref(res);
	res = NULL;
	cr_assert_eq(chdir("/"), 0);
	nftw(tmp, unlock_one, 16, FTW_PHYS);
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	struct stat st;
	cr_assert(lstat(tmp, &st) && errno == ENOENT, "temporary folder %s left behind", tmp);
}

/* Parse the request (it must be valid) and run it: 0 with res set, or -1 with err set. */
static int call(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *json;
	cr_assert_geq(vasprintf(&json, fmt, ap), 0);
	va_end(ap);
	struct agent_request r;
	int prc = agent_request_parse(json, strlen(json), &r, &err);
	cr_assert_eq(prc, 0, "request %s refused: %s", json, err.message);
	free(json);
	json_decref(res);
	res = (json_t *)0x1; /* must be overwritten */
	memset(&err, 0, sizeof(err));
	int rc = agent_fs_call(&r, &res, &err);
	agent_request_free(&r);
	if (rc == 0) {
		cr_assert(json_is_object(res));
	} else {
		cr_assert_eq(rc, -1);
		cr_assert_null(res);
		cr_assert(err.code[0]);
	}
	return rc;
}

#define OK(...) cr_assert_eq(call(__VA_ARGS__), 0, "%s failed: %s", #__VA_ARGS__, err.message)
#define FAILS(...) cr_assert_eq(call(__VA_ARGS__), -1, "%s succeeded", #__VA_ARGS__)

/* err is exactly this errno-coded error. */
static void check_err(int errnum, const char *syscall, const char *path, const char *dest)
{
	cr_assert_str_eq(err.code, strerrorname_np(errnum), "code %s (%s), expected %s", err.code, err.message,
			 strerrorname_np(errnum));
	cr_assert_eq(err.errnum, errnum);
	cr_assert_str_eq(err.syscall, syscall);
	cr_assert_str_eq(err.path, path);
	cr_assert_str_eq(err.dest, dest ? dest : "");
}

static void expect_empty(void)
{
	cr_assert_eq(json_object_size(res), 0, "result not {}: %s", json_dumps(res, 0));
}

static const char *res_str(const char *key)
{
	json_t *v = json_object_get(res, key);
	cr_assert(json_is_string(v), "result has no string '%s'", key);
	return json_string_value(v);
}

static void put_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	size_t n = strlen(text);
	cr_assert_eq(write(fd, text, n), (ssize_t)n);
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* The file's contents (up to 4 KiB) as a static string. */
static const char *file_text(const char *path)
{
	static char buf[4097];
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	close(fd);
	return buf;
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0, "%s: %s", path, strerror(errno));
	return st.st_mode;
}

static bool missing(const char *path)
{
	struct stat st;
	return lstat(path, &st) && errno == ENOENT;
}

/* A skipped test gets no .fini: remove the (still empty) folder here. */
static void skip_if_root(const char *why)
{
	if (geteuid() != 0)
		return;
	cr_assert_eq(chdir("/"), 0);
	rmdir(tmp);
	cr_skip_test("%s", why);
}

#define T(name, ...) Test(agent_fs, name, .init = setup, .fini = teardown, ##__VA_ARGS__)

/* ---- mkdir ---- */

T(mkdir_plain)
{
	OK("{\"op\":\"mkdir\",\"path\":\"a\"}");
	expect_empty();
	cr_assert_eq(mode_of("a"), S_IFDIR | 0755);
	OK("{\"op\":\"mkdir\",\"path\":\"b\",\"mode\":448}");
	cr_assert_eq(mode_of("b"), S_IFDIR | 0700);
	OK("{\"op\":\"mkdir\",\"path\":\"c\",\"mode\":null}"); /* null = absent */
	cr_assert_eq(mode_of("c"), S_IFDIR | 0755);
}

T(mkdir_errors)
{
	OK("{\"op\":\"mkdir\",\"path\":\"a\"}");
	FAILS("{\"op\":\"mkdir\",\"path\":\"a\"}");
	check_err(EEXIST, "mkdir", "a", NULL);
	cr_assert_str_eq(err.message, "EEXIST: file exists, mkdir 'a'");
	FAILS("{\"op\":\"mkdir\",\"path\":\"x/y\"}");
	check_err(ENOENT, "mkdir", "x/y", NULL);
	cr_assert_str_eq(err.message, "ENOENT: no such file or directory, mkdir 'x/y'");
	put_file("f", "", 0644);
	FAILS("{\"op\":\"mkdir\",\"path\":\"f/y\"}");
	check_err(ENOTDIR, "mkdir", "f/y", NULL);
}

T(mkdir_recursive)
{
	OK("{\"op\":\"mkdir\",\"path\":\"a/b/c\",\"recursive\":true}");
	cr_assert_str_eq(res_str("path"), "a");
	cr_assert_eq(mode_of("a/b/c"), S_IFDIR | 0755);
	OK("{\"op\":\"mkdir\",\"path\":\"a/b/c\",\"recursive\":true}");
	cr_assert(json_is_null(json_object_get(res, "path")), "nothing created: path null");
	OK("{\"op\":\"mkdir\",\"path\":\"a/b/d/e\",\"recursive\":true,\"mode\":448}");
	cr_assert_str_eq(res_str("path"), "a/b/d");
	cr_assert_eq(mode_of("a/b/d"), S_IFDIR | 0700);
	cr_assert_eq(mode_of("a/b/d/e"), S_IFDIR | 0700);
	OK("{\"op\":\"mkdir\",\"path\":\"t//u/\",\"recursive\":true}");
	cr_assert_str_eq(res_str("path"), "t");
	cr_assert_eq(mode_of("t/u"), S_IFDIR | 0755);
	OK("{\"op\":\"mkdir\",\"path\":\"v\",\"recursive\":true}");
	cr_assert_str_eq(res_str("path"), "v");

	/* absolute, and through a symlink to a folder */
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s/abs/x", tmp);
	OK("{\"op\":\"mkdir\",\"path\":\"%s\",\"recursive\":true}", p);
	snprintf(p, sizeof(p), "%s/abs", tmp);
	cr_assert_str_eq(res_str("path"), p);
	cr_assert_eq(symlink("a", "link"), 0);
	OK("{\"op\":\"mkdir\",\"path\":\"link\",\"recursive\":true}");
	cr_assert(json_is_null(json_object_get(res, "path")));
	OK("{\"op\":\"mkdir\",\"path\":\"link/n\",\"recursive\":true}");
	cr_assert_str_eq(res_str("path"), "link/n");
	cr_assert_eq(mode_of("a/n"), S_IFDIR | 0755);
	OK("{\"op\":\"mkdir\",\"path\":\"/\",\"recursive\":true}");
	cr_assert(json_is_null(json_object_get(res, "path")));
}

T(mkdir_recursive_errors)
{
	put_file("f", "", 0644);
	FAILS("{\"op\":\"mkdir\",\"path\":\"f\",\"recursive\":true}");
	check_err(EEXIST, "mkdir", "f", NULL);
	FAILS("{\"op\":\"mkdir\",\"path\":\"f/a/b\",\"recursive\":true}");
	check_err(ENOTDIR, "mkdir", "f/a/b", NULL);
	cr_assert_eq(mkdir("d", 0755), 0);
	cr_assert_eq(rename("f", "d/f"), 0);
	FAILS("{\"op\":\"mkdir\",\"path\":\"d/f/a/b\",\"recursive\":true}");
	check_err(ENOTDIR, "mkdir", "d/f/a/b", NULL);
	/* a dangling symlink as a parent: its target's parent is missing */
	cr_assert_eq(symlink("nowhere/x", "dangling"), 0);
	FAILS("{\"op\":\"mkdir\",\"path\":\"dangling/a\",\"recursive\":true}");
	cr_assert_str_eq(err.syscall, "mkdir");
	cr_assert_str_eq(err.path, "dangling/a");
}

T(mkdir_eacces)
{
	skip_if_root("root may write anywhere");
	cr_assert_eq(mkdir("ro", 0555), 0);
	FAILS("{\"op\":\"mkdir\",\"path\":\"ro/x\"}");
	check_err(EACCES, "mkdir", "ro/x", NULL);
	FAILS("{\"op\":\"mkdir\",\"path\":\"ro/x/y\",\"recursive\":true}");
	check_err(EACCES, "mkdir", "ro/x/y", NULL);
}

T(mkdir_deep_and_rm)
{
	/* a path of PATH_MAX - 1 bytes: 2047 levels */
	char p[PATH_MAX];
	size_t n = 0;
	while (n + 2 < sizeof(p) - 1) {
		p[n++] = 'd';
		p[n++] = '/';
	}
	p[n++] = 'd';
	p[n] = '\0';
	cr_assert_eq(n, PATH_MAX - 1);
	OK("{\"op\":\"mkdir\",\"path\":\"%s\",\"recursive\":true}", p);
	cr_assert_str_eq(res_str("path"), "d");
	cr_assert_eq(mode_of(p), S_IFDIR | 0755);
	OK("{\"op\":\"rm\",\"path\":\"d\",\"recursive\":true}");
	cr_assert(missing("d"));
}

/* ---- readdir ---- */

T(readdir_sorted)
{
	OK("{\"op\":\"readdir\",\"path\":\".\"}");
	cr_assert_eq(json_array_size(json_object_get(res, "entries")), 0);
	const char *names[] = { "b", "a1", "C", ".hidden", "a", "a b" };
	for (size_t i = 0; i < 6; i++)
		put_file(names[i], "", 0644);
	OK("{\"op\":\"readdir\",\"path\":\".\"}");
	char *s = json_dumps(res, JSON_COMPACT);
	cr_assert_str_eq(s, "{\"entries\":[\".hidden\",\"C\",\"a\",\"a b\",\"a1\",\"b\"]}");
	free(s);
	OK("{\"op\":\"readdir\",\"path\":\"%s\",\"withFileTypes\":false}", tmp);
	cr_assert_eq(json_array_size(json_object_get(res, "entries")), 6);
}

T(readdir_types)
{
	put_file("file", "x", 0644);
	cr_assert_eq(mkdir("dir", 0755), 0);
	cr_assert_eq(symlink("dir", "link"), 0);
	cr_assert_eq(mkfifo("fifo", 0644), 0);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, "sock", 5); /* relative: the cwd is tmp */
	cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	OK("{\"op\":\"readdir\",\"path\":\".\",\"withFileTypes\":true}");
	char *j = json_dumps(res, JSON_COMPACT);
	cr_assert_str_eq(j, "{\"entries\":[{\"name\":\"dir\",\"type\":\"directory\"},"
			    "{\"name\":\"fifo\",\"type\":\"fifo\"},{\"name\":\"file\",\"type\":\"file\"},"
			    "{\"name\":\"link\",\"type\":\"symlink\"},{\"name\":\"sock\",\"type\":\"socket\"}]}");
	free(j);
	OK("{\"op\":\"readdir\",\"path\":\"/dev\",\"withFileTypes\":true}");
	json_t *e;
	size_t i;
	bool chr = false;
	json_array_foreach(json_object_get(res, "entries"), i, e)
		if (strcmp(json_string_value(json_object_get(e, "name")), "null") == 0)
			chr = strcmp(json_string_value(json_object_get(e, "type")), "char") == 0;
	cr_assert(chr, "/dev/null is a char device");
}

T(readdir_not_utf8)
{
	put_file("ok\xff", "", 0644);
	put_file("\xc3\xa9t\xc3\xa9", "", 0644);
	OK("{\"op\":\"readdir\",\"path\":\".\"}");
	char *j = json_dumps(res, JSON_COMPACT);
	cr_assert_str_eq(j, "{\"entries\":[\"ok\xef\xbf\xbd\",\"\xc3\xa9t\xc3\xa9\"]}");
	free(j);
}

T(readdir_errors)
{
	FAILS("{\"op\":\"readdir\",\"path\":\"nope\"}");
	check_err(ENOENT, "scandir", "nope", NULL);
	cr_assert_str_eq(err.message, "ENOENT: no such file or directory, scandir 'nope'");
	put_file("f", "", 0644);
	FAILS("{\"op\":\"readdir\",\"path\":\"f\",\"withFileTypes\":true}");
	check_err(ENOTDIR, "scandir", "f", NULL);
	if (geteuid() != 0) {
		cr_assert_eq(mkdir("locked", 0), 0);
		FAILS("{\"op\":\"readdir\",\"path\":\"locked\"}");
		check_err(EACCES, "scandir", "locked", NULL);
	}
}

T(readdir_too_big)
{
	/* ~3700 names of 250 bytes: over 900 KiB of JSON */
	cr_assert_eq(mkdir("big", 0755), 0);
	char name[300];
	for (int i = 0; i < 3700; i++) {
		snprintf(name, sizeof(name), "big/%05d%0245d", i, 0);
		int fd = open(name, O_WRONLY | O_CREAT, 0644);
		cr_assert_geq(fd, 0);
		close(fd);
	}
	FAILS("{\"op\":\"readdir\",\"path\":\"big\"}");
	cr_assert_str_eq(err.code, "LIMIT");
	cr_assert_eq(err.errnum, 0);
	cr_assert(strstr(err.message, "command"), "%s", err.message);
	cr_assert(strstr(err.message, "'big'"), "%s", err.message);
	/* 3000 fit */
	for (int i = 3000; i < 3700; i++) {
		snprintf(name, sizeof(name), "big/%05d%0245d", i, 0);
		cr_assert_eq(unlink(name), 0);
	}
	OK("{\"op\":\"readdir\",\"path\":\"big\"}");
	cr_assert_eq(json_array_size(json_object_get(res, "entries")), 3000);
	char *j = json_dumps(res, JSON_COMPACT);
	cr_assert_lt(strlen(j), 900 * 1024);
	free(j);
}

/* ---- mkdtemp ---- */

T(mkdtemp)
{
	OK("{\"op\":\"mkdtemp\",\"prefix\":\"t-\"}");
	const char *p = res_str("path");
	cr_assert_eq(strlen(p), 8);
	cr_assert_eq(strncmp(p, "t-", 2), 0);
	cr_assert_eq(mode_of(p), S_IFDIR | 0700);
	char first[16];
	snprintf(first, sizeof(first), "%s", p);
	OK("{\"op\":\"mkdtemp\",\"prefix\":\"t-\"}");
	cr_assert_str_neq(res_str("path"), first);
	FAILS("{\"op\":\"mkdtemp\",\"prefix\":\"nodir/t-\"}");
	check_err(ENOENT, "mkdtemp", "nodir/t-XXXXXX", NULL);
}

/* ---- stat, lstat ---- */

T(stat_file)
{
	put_file("f", "hello", 0640);
	struct timespec ts[2] = { { 1700000000, 0 }, { 1700000001, 123456789 } };
	cr_assert_eq(utimensat(AT_FDCWD, "f", ts, 0), 0);
	struct stat st;
	cr_assert_eq(stat("f", &st), 0);
	OK("{\"op\":\"stat\",\"path\":\"f\"}");
	cr_assert_str_eq(res_str("type"), "file");
	cr_assert_eq(json_integer_value(json_object_get(res, "mode")), S_IFREG | 0640);
	cr_assert_eq(json_integer_value(json_object_get(res, "size")), 5);
	cr_assert_eq(json_integer_value(json_object_get(res, "uid")), geteuid());
	cr_assert_eq(json_integer_value(json_object_get(res, "gid")), st.st_gid);
	cr_assert_eq(json_integer_value(json_object_get(res, "nlink")), 1);
	cr_assert_eq(json_integer_value(json_object_get(res, "ino")), (json_int_t)st.st_ino);
	cr_assert_eq(json_integer_value(json_object_get(res, "dev")), (json_int_t)st.st_dev);
	cr_assert_eq(json_integer_value(json_object_get(res, "rdev")), 0);
	cr_assert_eq(json_integer_value(json_object_get(res, "blksize")), st.st_blksize);
	cr_assert_eq(json_integer_value(json_object_get(res, "blocks")), st.st_blocks);
	/* whole milliseconds are integers, fractions reals */
	json_t *at = json_object_get(res, "atimeMs"), *mt = json_object_get(res, "mtimeMs");
	cr_assert(json_is_integer(at));
	cr_assert_eq(json_integer_value(at), 1700000000000ll);
	cr_assert(json_is_real(mt));
	cr_assert_lt(fabs(json_real_value(mt) - 1700000001123.456789), 0.001);
	cr_assert(json_is_number(json_object_get(res, "ctimeMs")));
	cr_assert_eq(json_object_size(res), 14);

	OK("{\"op\":\"stat\",\"path\":\".\"}");
	cr_assert_str_eq(res_str("type"), "directory");
}

T(stat_and_lstat_symlinks)
{
	put_file("f", "", 0644);
	cr_assert_eq(symlink("f", "l"), 0);
	cr_assert_eq(symlink("nowhere", "dangling"), 0);
	OK("{\"op\":\"stat\",\"path\":\"l\"}");
	cr_assert_str_eq(res_str("type"), "file");
	OK("{\"op\":\"lstat\",\"path\":\"l\"}");
	cr_assert_str_eq(res_str("type"), "symlink");
	cr_assert_eq(json_integer_value(json_object_get(res, "size")), 1);
	OK("{\"op\":\"lstat\",\"path\":\"dangling\"}");
	FAILS("{\"op\":\"stat\",\"path\":\"dangling\"}");
	check_err(ENOENT, "stat", "dangling", NULL);
	FAILS("{\"op\":\"lstat\",\"path\":\"nope\"}");
	check_err(ENOENT, "lstat", "nope", NULL);
	cr_assert_str_eq(err.message, "ENOENT: no such file or directory, lstat 'nope'");
	FAILS("{\"op\":\"stat\",\"path\":\"f/x\"}");
	check_err(ENOTDIR, "stat", "f/x", NULL);
	cr_assert_str_eq(err.message, "ENOTDIR: not a directory, stat 'f/x'");
}

T(stat_json_types)
{
	static const struct {
		mode_t m;
		const char *t;
	} types[] = {
		{ S_IFREG, "file" }, { S_IFDIR, "directory" }, { S_IFLNK, "symlink" }, { S_IFIFO, "fifo" },
		{ S_IFSOCK, "socket" }, { S_IFCHR, "char" }, { S_IFBLK, "block" },
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct stat st = { .st_mode = types[i].m | 0644, .st_ino = UINT64_MAX, .st_rdev = 0x0801 };
		json_t *j = agent_fs_stat_json(&st);
		cr_assert_str_eq(json_string_value(json_object_get(j, "type")), types[i].t);
		/* an inode number over INT64_MAX stays a (real) number */
		cr_assert(json_is_real(json_object_get(j, "ino")));
		cr_assert_eq(json_integer_value(json_object_get(j, "rdev")), 0x801);
		json_decref(j);
	}
}

/* ---- realpath, readlink, symlink ---- */

T(realpath)
{
	cr_assert_eq(mkdir("a", 0755), 0);
	put_file("a/f", "", 0644);
	cr_assert_eq(symlink("a", "l"), 0);
	OK("{\"op\":\"realpath\",\"path\":\"l/../a/./f\"}");
	char want[PATH_MAX + 8];
	snprintf(want, sizeof(want), "%s/a/f", rtmp);
	cr_assert_str_eq(res_str("path"), want);
	OK("{\"op\":\"realpath\",\"path\":\".\"}");
	cr_assert_str_eq(res_str("path"), rtmp);
	FAILS("{\"op\":\"realpath\",\"path\":\"a/nope\"}");
	check_err(ENOENT, "realpath", "a/nope", NULL);
	cr_assert_eq(symlink("loop2", "loop1"), 0);
	cr_assert_eq(symlink("loop1", "loop2"), 0);
	FAILS("{\"op\":\"realpath\",\"path\":\"loop1\"}");
	check_err(ELOOP, "realpath", "loop1", NULL);
}

T(symlink_and_readlink)
{
	OK("{\"op\":\"symlink\",\"target\":\"some/where\",\"path\":\"l\"}");
	expect_empty();
	cr_assert_eq(mode_of("l") & S_IFMT, S_IFLNK);
	OK("{\"op\":\"readlink\",\"path\":\"l\"}");
	cr_assert_str_eq(res_str("target"), "some/where");
	cr_assert_eq(json_object_size(res), 1);

	/* node reports the target as the path and the link as the dest */
	FAILS("{\"op\":\"symlink\",\"target\":\"t\",\"path\":\"l\"}");
	check_err(EEXIST, "symlink", "t", "l");
	cr_assert_str_eq(err.message, "EEXIST: file exists, symlink 't' -> 'l'");
	FAILS("{\"op\":\"symlink\",\"path\":\"no/l\",\"target\":\"t\"}");
	check_err(ENOENT, "symlink", "t", "no/l");

	put_file("f", "", 0644);
	FAILS("{\"op\":\"readlink\",\"path\":\"f\"}");
	check_err(EINVAL, "readlink", "f", NULL);
	cr_assert_str_eq(err.message, "EINVAL: invalid argument, readlink 'f'");
	FAILS("{\"op\":\"readlink\",\"path\":\"nope\"}");
	check_err(ENOENT, "readlink", "nope", NULL);

	/* a target longer than the first buffer, and one of the longest a request may hold */
	static char target[PATH_MAX];
	memset(target, 'x', PATH_MAX - 1);
	target[PATH_MAX - 1] = '\0';
	target[300] = '\0';
	OK("{\"op\":\"symlink\",\"target\":\"%s\",\"path\":\"l300\"}", target);
	OK("{\"op\":\"readlink\",\"path\":\"l300\"}");
	cr_assert_str_eq(res_str("target"), target);
	target[300] = 'x';
	OK("{\"op\":\"symlink\",\"target\":\"%s\",\"path\":\"lmax\"}", target);
	OK("{\"op\":\"readlink\",\"path\":\"lmax\"}");
	cr_assert_eq(strlen(res_str("target")), PATH_MAX - 1);
}

/* ---- rename ---- */

T(rename)
{
	put_file("a", "A", 0644);
	OK("{\"op\":\"rename\",\"oldPath\":\"a\",\"newPath\":\"b\"}");
	expect_empty();
	cr_assert(missing("a"));
	cr_assert_str_eq(file_text("b"), "A");
	FAILS("{\"op\":\"rename\",\"oldPath\":\"a\",\"newPath\":\"c\"}");
	check_err(ENOENT, "rename", "a", "c");
	cr_assert_str_eq(err.message, "ENOENT: no such file or directory, rename 'a' -> 'c'");
	cr_assert_eq(mkdir("d", 0755), 0);
	put_file("d/x", "", 0644);
	cr_assert_eq(mkdir("e", 0755), 0);
	FAILS("{\"op\":\"rename\",\"oldPath\":\"b\",\"newPath\":\"d\"}");
	check_err(EISDIR, "rename", "b", "d");
	FAILS("{\"op\":\"rename\",\"oldPath\":\"e\",\"newPath\":\"d\"}");
	check_err(ENOTEMPTY, "rename", "e", "d");
	FAILS("{\"op\":\"rename\",\"oldPath\":\"d\",\"newPath\":\"b\"}");
	check_err(ENOTDIR, "rename", "d", "b");
	FAILS("{\"op\":\"rename\",\"oldPath\":\"d\",\"newPath\":\"d/sub\"}");
	check_err(EINVAL, "rename", "d", "d/sub");
}

/* ---- copyFile ---- */

T(copy_file_preserves)
{
	put_file("src", "some data", 0751);
	struct timespec ts[2] = { { 1600000000, 111000000 }, { 1600000100, 222333444 } };
	cr_assert_eq(utimensat(AT_FDCWD, "src", ts, 0), 0);
	if (geteuid() == 0)
		cr_assert_eq(chown("src", 1234, 5678), 0);
	OK("{\"op\":\"copyFile\",\"src\":\"src\",\"dest\":\"dst\"}");
	expect_empty();
	struct stat s, d;
	cr_assert_eq(stat("src", &s), 0);
	cr_assert_eq(stat("dst", &d), 0); /* before reading it moves its atime */
	cr_assert_str_eq(file_text("dst"), "some data");
	cr_assert_neq(s.st_ino, d.st_ino);
	cr_assert_eq(d.st_mode, S_IFREG | 0751);
	cr_assert_eq(d.st_mtim.tv_sec, 1600000100);
	cr_assert_eq(d.st_mtim.tv_nsec, 222333444);
	cr_assert_eq(d.st_atim.tv_sec, 1600000000);
	cr_assert_eq(d.st_uid, s.st_uid);
	cr_assert_eq(d.st_gid, s.st_gid);

	/* preserve:false: a new file of the agent's, mode 0666 less the umask */
	OK("{\"op\":\"copyFile\",\"src\":\"src\",\"dest\":\"plain\",\"preserve\":false}");
	cr_assert_eq(stat("plain", &d), 0);
	cr_assert_eq(d.st_mode, S_IFREG | 0644);
	cr_assert_gt(d.st_mtim.tv_sec, 1600000100);
	cr_assert_eq(d.st_uid, geteuid());
	cr_assert_str_eq(file_text("plain"), "some data");
}

T(copy_file_overwrites_and_self)
{
	put_file("src", "short", 0644);
	put_file("dst", "a much longer old content", 0600);
	OK("{\"op\":\"copyFile\",\"src\":\"src\",\"dest\":\"dst\"}");
	cr_assert_str_eq(file_text("dst"), "short");
	cr_assert_eq(mode_of("dst"), S_IFREG | 0644);
	/* onto itself, directly or through a link: nothing changes */
	OK("{\"op\":\"copyFile\",\"src\":\"src\",\"dest\":\"src\"}");
	cr_assert_str_eq(file_text("src"), "short");
	cr_assert_eq(link("src", "hard"), 0);
	OK("{\"op\":\"copyFile\",\"src\":\"hard\",\"dest\":\"src\"}");
	cr_assert_str_eq(file_text("src"), "short");
	/* an empty file */
	put_file("empty", "", 0644);
	OK("{\"op\":\"copyFile\",\"src\":\"empty\",\"dest\":\"dst\"}");
	cr_assert_str_eq(file_text("dst"), "");
}

T(copy_file_big_and_proc)
{
	/* 3 MiB + 1: several copy_file_range rounds */
	size_t n = 3 * 1024 * 1024 + 1;
	char *buf = malloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(i * 31 + i / 4096);
	int fd = open("big", O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(write(fd, buf, n), (ssize_t)n);
	close(fd);
	OK("{\"op\":\"copyFile\",\"src\":\"big\",\"dest\":\"big2\"}");
	char *back = malloc(n + 1);
	fd = open("big2", O_RDONLY);
	size_t got = 0;
	ssize_t r;
	while ((r = read(fd, back + got, n + 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	cr_assert_eq(got, n);
	cr_assert_eq(memcmp(buf, back, n), 0);
	free(buf);
	free(back);
	/* a /proc file reports size 0 but has contents */
	OK("{\"op\":\"copyFile\",\"src\":\"/proc/self/status\",\"dest\":\"status\",\"preserve\":false}");
	cr_assert(strstr(file_text("status"), "Pid:"), "copied /proc/self/status");
}

T(copy_file_errors)
{
	put_file("src", "x", 0644);
	put_file("dst", "old", 0644);
	FAILS("{\"op\":\"copyFile\",\"src\":\"src\",\"dest\":\"dst\",\"exclusive\":true}");
	check_err(EEXIST, "copyfile", "src", "dst");
	cr_assert_str_eq(err.message, "EEXIST: file exists, copyfile 'src' -> 'dst'");
	cr_assert_str_eq(file_text("dst"), "old");
	OK("{\"op\":\"copyFile\",\"src\":\"src\",\"dest\":\"new\",\"exclusive\":true}");
	cr_assert_str_eq(file_text("new"), "x");
	FAILS("{\"op\":\"copyFile\",\"src\":\"nope\",\"dest\":\"d2\"}");
	check_err(ENOENT, "copyfile", "nope", "d2");
	cr_assert_str_eq(err.message, "ENOENT: no such file or directory, copyfile 'nope' -> 'd2'");
	cr_assert(missing("d2"));
	cr_assert_eq(mkdir("dir", 0755), 0);
	FAILS("{\"op\":\"copyFile\",\"src\":\"dir\",\"dest\":\"d2\"}");
	check_err(EISDIR, "copyfile", "dir", "d2");
	cr_assert(missing("d2"));
	FAILS("{\"op\":\"copyFile\",\"src\":\"src\",\"dest\":\"dir\"}");
	check_err(EISDIR, "copyfile", "src", "dir");
	FAILS("{\"op\":\"copyFile\",\"src\":\"src\",\"dest\":\"no/d\"}");
	check_err(ENOENT, "copyfile", "src", "no/d");
	if (geteuid() != 0) {
		put_file("secret", "s", 0);
		FAILS("{\"op\":\"copyFile\",\"src\":\"secret\",\"dest\":\"d3\"}");
		check_err(EACCES, "copyfile", "secret", "d3");
	}
}

/* ---- unlink, rmdir ---- */

T(unlink)
{
	put_file("f", "", 0644);
	cr_assert_eq(symlink("f", "l"), 0);
	OK("{\"op\":\"unlink\",\"path\":\"l\"}");
	expect_empty();
	cr_assert(missing("l"));
	cr_assert(!missing("f"));
	OK("{\"op\":\"unlink\",\"path\":\"f\"}");
	cr_assert(missing("f"));
	FAILS("{\"op\":\"unlink\",\"path\":\"f\"}");
	check_err(ENOENT, "unlink", "f", NULL);
	cr_assert_str_eq(err.message, "ENOENT: no such file or directory, unlink 'f'");
	cr_assert_eq(mkdir("d", 0755), 0);
	FAILS("{\"op\":\"unlink\",\"path\":\"d\"}");
	check_err(EISDIR, "unlink", "d", NULL);
}

T(rmdir)
{
	cr_assert_eq(mkdir("d", 0755), 0);
	OK("{\"op\":\"rmdir\",\"path\":\"d\"}");
	expect_empty();
	cr_assert(missing("d"));
	FAILS("{\"op\":\"rmdir\",\"path\":\"d\"}");
	check_err(ENOENT, "rmdir", "d", NULL);
	cr_assert_eq(mkdir("d", 0755), 0);
	put_file("d/f", "", 0644);
	FAILS("{\"op\":\"rmdir\",\"path\":\"d\"}");
	check_err(ENOTEMPTY, "rmdir", "d", NULL);
	cr_assert_str_eq(err.message, "ENOTEMPTY: directory not empty, rmdir 'd'");
	FAILS("{\"op\":\"rmdir\",\"path\":\"d/f\"}");
	check_err(ENOTDIR, "rmdir", "d/f", NULL);
}

/* ---- rm ---- */

T(rm_file_and_missing)
{
	put_file("f", "", 0644);
	OK("{\"op\":\"rm\",\"path\":\"f\"}");
	expect_empty();
	cr_assert(missing("f"));
	FAILS("{\"op\":\"rm\",\"path\":\"f\"}");
	check_err(ENOENT, "lstat", "f", NULL);
	OK("{\"op\":\"rm\",\"path\":\"f\",\"force\":true}");
	OK("{\"op\":\"rm\",\"path\":\"f/g/h\",\"force\":true,\"recursive\":true}");
	put_file("f", "", 0644);
	FAILS("{\"op\":\"rm\",\"path\":\"f/g\",\"force\":true}");
	check_err(ENOTDIR, "lstat", "f/g", NULL);
}

T(rm_directory_needs_recursive)
{
	cr_assert_eq(mkdir("d", 0755), 0);
	FAILS("{\"op\":\"rm\",\"path\":\"d\"}");
	check_err(EISDIR, "rm", "d", NULL);
	cr_assert_str_eq(err.message, "EISDIR: is a directory, rm 'd'");
	FAILS("{\"op\":\"rm\",\"path\":\"d\",\"force\":true}");
	check_err(EISDIR, "rm", "d", NULL);
	cr_assert(!missing("d"));
	OK("{\"op\":\"rm\",\"path\":\"d\",\"recursive\":true}");
	cr_assert(missing("d"));
}

T(rm_recursive_tree)
{
	cr_assert_eq(mkdir("keep", 0755), 0);
	put_file("keep/precious", "p", 0644);
	cr_assert_eq(mkdir("t", 0755), 0);
	cr_assert_eq(mkdir("t/a", 0755), 0);
	cr_assert_eq(mkdir("t/a/b", 0755), 0);
	put_file("t/a/b/f", "x", 0444); /* read-only files go too, as with rm -f */
	put_file("t/a/g", "x", 0644);
	cr_assert_eq(mkdir("t/empty", 0755), 0);
	cr_assert_eq(mkfifo("t/fifo", 0644), 0);
	cr_assert_eq(symlink("../keep", "t/a/to_keep"), 0);     /* must not be followed */
	cr_assert_eq(symlink("../../keep/precious", "t/a/b/l"), 0);
	cr_assert_eq(symlink("nowhere", "t/dangling"), 0);
	OK("{\"op\":\"rm\",\"path\":\"t\",\"recursive\":true}");
	expect_empty();
	cr_assert(missing("t"));
	cr_assert_str_eq(file_text("keep/precious"), "p");
	/* a symlink to a folder is removed itself, even recursively */
	cr_assert_eq(symlink("keep", "lk"), 0);
	OK("{\"op\":\"rm\",\"path\":\"lk\",\"recursive\":true}");
	cr_assert(missing("lk"));
	cr_assert_str_eq(file_text("keep/precious"), "p");
	/* trailing slash, absolute path */
	char p[PATH_MAX + 8];
	snprintf(p, sizeof(p), "%s/keep/", tmp);
	OK("{\"op\":\"rm\",\"path\":\"%s\",\"recursive\":true,\"force\":true}", p);
	cr_assert(missing("keep"));
}

T(rm_refuses_dot)
{
	cr_assert_eq(mkdir("d", 0755), 0);
	put_file("d/f", "", 0644);
	FAILS("{\"op\":\"rm\",\"path\":\".\",\"recursive\":true}");
	check_err(EINVAL, "rm", ".", NULL);
	FAILS("{\"op\":\"rm\",\"path\":\"d/..\",\"recursive\":true,\"force\":true}");
	check_err(EINVAL, "rm", "d/..", NULL);
	FAILS("{\"op\":\"rm\",\"path\":\"d/./\",\"recursive\":true}");
	check_err(EINVAL, "rm", "d/./", NULL);
	cr_assert(!missing("d/f"), "nothing was removed");
	/* not recursive: "/" is just a folder */
	FAILS("{\"op\":\"rm\",\"path\":\"/\"}");
	check_err(EISDIR, "rm", "/", NULL);
}

T(rm_names_the_failing_entry)
{
	skip_if_root("root may remove anything");
	cr_assert_eq(mkdir("t", 0755), 0);
	cr_assert_eq(mkdir("t/sub", 0755), 0);
	put_file("t/sub/f", "", 0644);
	cr_assert_eq(chmod("t/sub", 0555), 0);
	FAILS("{\"op\":\"rm\",\"path\":\"t\",\"recursive\":true}");
	check_err(EACCES, "unlink", "t/sub/f", NULL);
	cr_assert_eq(chmod("t/sub", 0), 0);
	FAILS("{\"op\":\"rm\",\"path\":\"t\",\"recursive\":true}");
	check_err(EACCES, "scandir", "t/sub", NULL);
}

/* ---- truncate, chmod, chown ---- */

T(truncate)
{
	put_file("f", "hello world", 0644);
	OK("{\"op\":\"truncate\",\"path\":\"f\",\"len\":5}");
	expect_empty();
	cr_assert_str_eq(file_text("f"), "hello");
	OK("{\"op\":\"truncate\",\"path\":\"f\",\"len\":8}");
	struct stat st;
	cr_assert_eq(stat("f", &st), 0);
	cr_assert_eq(st.st_size, 8);
	OK("{\"op\":\"truncate\",\"path\":\"f\"}");
	cr_assert_eq(stat("f", &st), 0);
	cr_assert_eq(st.st_size, 0);
	FAILS("{\"op\":\"truncate\",\"path\":\"nope\"}");
	check_err(ENOENT, "truncate", "nope", NULL);
	cr_assert_eq(mkdir("d", 0755), 0);
	FAILS("{\"op\":\"truncate\",\"path\":\"d\",\"len\":1}");
	check_err(EISDIR, "truncate", "d", NULL);
	FAILS("{\"op\":\"truncate\",\"path\":\"f\",\"len\":9223372036854775807}");
	cr_assert(err.errnum == EFBIG || err.errnum == EINVAL, "%s", err.message);
	cr_assert_str_eq(err.syscall, "truncate");
}

T(chmod)
{
	put_file("f", "", 0644);
	OK("{\"op\":\"chmod\",\"path\":\"f\",\"mode\":%d}", 04711);
	expect_empty();
	cr_assert_eq(mode_of("f"), S_IFREG | 04711);
	cr_assert_eq(symlink("f", "l"), 0);
	OK("{\"op\":\"chmod\",\"path\":\"l\",\"mode\":%d}", 0600);
	cr_assert_eq(mode_of("f"), S_IFREG | 0600);
	FAILS("{\"op\":\"chmod\",\"path\":\"nope\",\"mode\":420}");
	check_err(ENOENT, "chmod", "nope", NULL);
	cr_assert_str_eq(err.message, "ENOENT: no such file or directory, chmod 'nope'");
}

T(chown)
{
	put_file("f", "", 0644);
	struct stat st;
	cr_assert_eq(stat("f", &st), 0);
	/* to the owner it already has: allowed to anyone */
	OK("{\"op\":\"chown\",\"path\":\"f\",\"uid\":%u,\"gid\":%u}", st.st_uid, st.st_gid);
	expect_empty();
	OK("{\"op\":\"chown\",\"path\":\"f\",\"uid\":-1,\"gid\":-1}");
	FAILS("{\"op\":\"chown\",\"path\":\"nope\",\"uid\":0,\"gid\":0}");
	check_err(ENOENT, "chown", "nope", NULL);
	if (geteuid() != 0) {
		FAILS("{\"op\":\"chown\",\"path\":\"f\",\"uid\":0,\"gid\":-1}");
		check_err(EPERM, "chown", "f", NULL);
		cr_assert_str_eq(err.message, "EPERM: operation not permitted, chown 'f'");
		return;
	}
	gid_t gid = st.st_gid;
	OK("{\"op\":\"chown\",\"path\":\"f\",\"uid\":1000,\"gid\":-1}");
	cr_assert_eq(stat("f", &st), 0);
	cr_assert_eq(st.st_uid, 1000);
	cr_assert_eq(st.st_gid, gid);
	OK("{\"op\":\"chown\",\"path\":\"f\",\"uid\":-1,\"gid\":2000}");
	cr_assert_eq(stat("f", &st), 0);
	cr_assert_eq(st.st_uid, 1000);
	cr_assert_eq(st.st_gid, 2000);
	/* follows symlinks, like chown(2) */
	cr_assert_eq(symlink("f", "l"), 0);
	OK("{\"op\":\"chown\",\"path\":\"l\",\"uid\":3000,\"gid\":3000}");
	cr_assert_eq(stat("f", &st), 0);
	cr_assert_eq(st.st_uid, 3000);
	cr_assert_eq(lstat("l", &st), 0);
	cr_assert_eq(st.st_uid, 0);
}

/* ---- access, exists ---- */

T(access)
{
	put_file("f", "", 0644);
	OK("{\"op\":\"access\",\"path\":\"f\"}");
	expect_empty();
	OK("{\"op\":\"access\",\"path\":\"f\",\"mode\":%d}", R_OK | W_OK);
	FAILS("{\"op\":\"access\",\"path\":\"nope\"}");
	check_err(ENOENT, "access", "nope", NULL);
	/* even root may not execute a file without an x bit */
	FAILS("{\"op\":\"access\",\"path\":\"f\",\"mode\":%d}", X_OK);
	check_err(EACCES, "access", "f", NULL);
	cr_assert_str_eq(err.message, "EACCES: permission denied, access 'f'");
	FAILS("{\"op\":\"access\",\"path\":\"f\",\"mode\":64}");
	check_err(EINVAL, "access", "f", NULL);
	if (geteuid() != 0) {
		put_file("ro", "", 0444);
		FAILS("{\"op\":\"access\",\"path\":\"ro\",\"mode\":%d}", W_OK);
		check_err(EACCES, "access", "ro", NULL);
	}
}

T(exists)
{
	put_file("f", "", 0644);
	cr_assert_eq(symlink("nowhere", "dangling"), 0);
	OK("{\"op\":\"exists\",\"path\":\"f\"}");
	cr_assert(json_is_true(json_object_get(res, "exists")));
	cr_assert_eq(json_object_size(res), 1);
	OK("{\"op\":\"exists\",\"path\":\".\"}");
	cr_assert(json_is_true(json_object_get(res, "exists")));
	OK("{\"op\":\"exists\",\"path\":\"nope\"}");
	cr_assert(json_is_false(json_object_get(res, "exists")));
	OK("{\"op\":\"exists\",\"path\":\"dangling\"}");
	cr_assert(json_is_false(json_object_get(res, "exists")));
	OK("{\"op\":\"exists\",\"path\":\"f/x\"}");
	cr_assert(json_is_false(json_object_get(res, "exists")));
}

/* ---- no crash on odd paths the parser accepts ---- */

T(odd_paths_never_crash)
{
	static const char *const ops[] = { "mkdir", "readdir", "stat", "lstat", "realpath", "unlink",
					   "rmdir", "truncate", "readlink", "access", "exists" };
	static char longp[PATH_MAX];
	memset(longp, 'n', PATH_MAX - 1);
	const char *paths[] = { "..", "d/..", "//", "\\u00e9\\u00ff", "a\\nb", longp, "nope/", "f/" };
	put_file("f", "", 0644);
	cr_assert_eq(mkdir("d", 0755), 0);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		for (size_t j = 0; j < sizeof(paths) / sizeof(paths[0]); j++)
			call("{\"op\":\"%s\",\"path\":\"%s\"}", ops[i], paths[j]);
	FAILS("{\"op\":\"stat\",\"path\":\"%s\"}", longp);
	check_err(ENAMETOOLONG, "stat", longp, NULL);
	call("{\"op\":\"mkdtemp\",\"prefix\":\"%s\"}", longp);
	cr_assert_eq(err.errnum, ENAMETOOLONG);
	call("{\"op\":\"copyFile\",\"src\":\"%s\",\"dest\":\"%s\"}", longp, longp);
	call("{\"op\":\"rename\",\"oldPath\":\"f/\",\"newPath\":\"%s\"}", longp);
}

T(not_a_file_op)
{
	struct agent_request r;
	const char *j = "{\"op\":\"list\"}";
	cr_assert_eq(agent_request_parse(j, strlen(j), &r, &err), 0);
	json_t *out = NULL;
	cr_assert_eq(agent_fs_call(&r, &out, &err), -1);
	cr_assert_null(out);
	cr_assert_str_eq(err.code, "INTERNAL");
	agent_request_free(&r);
}

/* ---- readFile, writeFile, appendFile: the streaming helpers ---- */

static struct agent_request sreq;

static void parse_stream(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *json;
	cr_assert_geq(vasprintf(&json, fmt, ap), 0);
	va_end(ap);
	cr_assert_eq(agent_request_parse(json, strlen(json), &sreq, &err), 0, "%s: %s", json, err.message);
	free(json);
}

static int open_read(int64_t *size)
{
	int fd = -2;
	int rc = agent_fs_open_read(&sreq, &fd, size, &err);
	agent_request_free(&sreq);
	if (rc == 0) {
		cr_assert_geq(fd, 0);
		cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
		return fd;
	}
	cr_assert_eq(rc, -1);
	cr_assert_eq(fd, -1);
	return -1;
}

#define READ_REQ(size, ...) (parse_stream(__VA_ARGS__), open_read(size))

static int open_write(void)
{
	int fd = -2;
	int rc = agent_fs_open_write(&sreq, &fd, &err);
	agent_request_free(&sreq);
	if (rc == 0) {
		cr_assert_geq(fd, 0);
		cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
		return fd;
	}
	cr_assert_eq(rc, -1);
	cr_assert_eq(fd, -1);
	return -1;
}

#define WRITE_REQ(...) (parse_stream(__VA_ARGS__), open_write())

static void read_expect(int fd, const char *want)
{
	char buf[64] = { 0 };
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	cr_assert_geq(n, 0);
	cr_assert_str_eq(buf, want);
}

T(open_read)
{
	put_file("f", "hello world", 0644);
	int64_t size;
	int fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"f\"}");
	cr_assert_eq(size, 11);
	read_expect(fd, "hello world");
	close(fd);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"f\",\"offset\":6}");
	cr_assert_eq(size, 5);
	read_expect(fd, "world");
	close(fd);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"f\",\"offset\":2,\"length\":3}");
	cr_assert_eq(size, 3);
	close(fd);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"f\",\"length\":100}");
	cr_assert_eq(size, 11);
	close(fd);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"f\",\"length\":0}");
	cr_assert_eq(size, 0);
	close(fd);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"f\",\"offset\":11}");
	cr_assert_eq(size, 0);
	close(fd);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"f\",\"offset\":9223372036854775807}");
	cr_assert_eq(size, 0);
	close(fd);
	put_file("empty", "", 0644);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"empty\",\"length\":0}");
	cr_assert_eq(size, 0);
	close(fd);
}

T(open_read_unsized)
{
	/* no size to trust: read to the end */
	int64_t size;
	int fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"/proc/self/status\"}");
	cr_assert_eq(size, INT64_MAX);
	close(fd);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"/dev/zero\",\"length\":4096}");
	cr_assert_eq(size, 4096);
	close(fd);
	/* a FIFO without a writer does not block the open; reading it gives its end at once */
	cr_assert_eq(mkfifo("fifo", 0644), 0);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"fifo\"}");
	cr_assert_geq(fd, 0);
	char c;
	cr_assert_eq(read(fd, &c, 1), 0);
	close(fd);
	fd = READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"fifo\",\"offset\":1}");
	cr_assert_eq(fd, -1);
	check_err(ESPIPE, "read", "fifo", NULL);
}

T(open_read_errors)
{
	int64_t size;
	cr_assert_eq(READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"nope\"}"), -1);
	check_err(ENOENT, "open", "nope", NULL);
	cr_assert_str_eq(err.message, "ENOENT: no such file or directory, open 'nope'");
	cr_assert_eq(mkdir("d", 0755), 0);
	cr_assert_eq(READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"d\"}"), -1);
	check_err(EISDIR, "read", "d", NULL);
	cr_assert_str_eq(err.message, "EISDIR: is a directory, read 'd'");
	if (geteuid() != 0) {
		put_file("secret", "", 0);
		cr_assert_eq(READ_REQ(&size, "{\"op\":\"readFile\",\"path\":\"secret\"}"), -1);
		check_err(EACCES, "open", "secret", NULL);
	}
}

T(open_write)
{
	int fd = WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"f\"}");
	cr_assert_eq(write(fd, "first", 5), 5);
	close(fd);
	cr_assert_eq(mode_of("f"), S_IFREG | 0644);
	fd = WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"f\"}");
	cr_assert_eq(write(fd, "2nd", 3), 3);
	close(fd);
	cr_assert_str_eq(file_text("f"), "2nd");
	fd = WRITE_REQ("{\"op\":\"appendFile\",\"path\":\"f\"}");
	cr_assert(fcntl(fd, F_GETFL) & O_APPEND);
	cr_assert_eq(write(fd, "+more", 5), 5);
	close(fd);
	cr_assert_str_eq(file_text("f"), "2nd+more");
	fd = WRITE_REQ("{\"op\":\"appendFile\",\"path\":\"g\",\"mode\":%d}", 0600);
	close(fd);
	cr_assert_eq(mode_of("g"), S_IFREG | 0600);
	fd = WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"x\",\"mode\":%d,\"exclusive\":true}", 0751);
	close(fd);
	cr_assert_eq(mode_of("x"), S_IFREG | 0751) /* no bit the umask takes */;
	/* an existing file keeps its mode */
	fd = WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"g\",\"mode\":%d}", 0777);
	close(fd);
	cr_assert_eq(mode_of("g"), S_IFREG | 0600);
}

T(open_write_recursive)
{
	int fd = WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"a/b/c/f\",\"recursive\":true}");
	cr_assert_eq(write(fd, "deep", 4), 4);
	close(fd);
	cr_assert_str_eq(file_text("a/b/c/f"), "deep");
	cr_assert_eq(mode_of("a/b"), S_IFDIR | 0755);
	fd = WRITE_REQ("{\"op\":\"appendFile\",\"path\":\"a/b/g\",\"recursive\":true}");
	close(fd);
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/abs/f", tmp);
	fd = WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"%s\",\"recursive\":true}", p);
	close(fd);
	cr_assert(!missing("abs/f"));
	put_file("file", "", 0644);
	cr_assert_eq(WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"file/x/y\",\"recursive\":true}"), -1);
	check_err(ENOTDIR, "open", "file/x/y", NULL);
	cr_assert_eq(symlink("file", "lf"), 0);
	cr_assert_eq(symlink("nowhere/deeper", "dangling"), 0);
	cr_assert_eq(WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"dangling/x\",\"recursive\":true}"), -1);
	cr_assert_str_eq(err.syscall, "mkdir");
	cr_assert_str_eq(err.path, "dangling");
}

T(open_write_errors)
{
	cr_assert_eq(WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"no/f\"}"), -1);
	check_err(ENOENT, "open", "no/f", NULL);
	cr_assert(missing("no"));
	put_file("f", "keep", 0644);
	cr_assert_eq(WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"f\",\"exclusive\":true}"), -1);
	check_err(EEXIST, "open", "f", NULL);
	cr_assert_str_eq(err.message, "EEXIST: file exists, open 'f'");
	cr_assert_str_eq(file_text("f"), "keep");
	cr_assert_eq(mkdir("d", 0755), 0);
	cr_assert_eq(WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"d\"}"), -1);
	check_err(EISDIR, "open", "d", NULL);
	cr_assert_eq(WRITE_REQ("{\"op\":\"appendFile\",\"path\":\"d\",\"recursive\":true}"), -1);
	check_err(EISDIR, "open", "d", NULL);
	/* a FIFO nobody reads: an error at once rather than a hung agent */
	cr_assert_eq(mkfifo("fifo", 0644), 0);
	cr_assert_eq(WRITE_REQ("{\"op\":\"writeFile\",\"path\":\"fifo\"}"), -1);
	check_err(ENXIO, "open", "fifo", NULL);
	if (geteuid() != 0) {
		put_file("ro", "", 0444);
		cr_assert_eq(WRITE_REQ("{\"op\":\"appendFile\",\"path\":\"ro\"}"), -1);
		check_err(EACCES, "open", "ro", NULL);
	}
}
