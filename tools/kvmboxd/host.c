/* kvmboxd: what the sandboxes do on the host (sandbox_internal.h): run tools, copy disks, spawn the VMM,
 * read /proc and /sys, keep secrets in the kernel keyring, write files atomically. */
#include "tools/kvmboxd/sandbox_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <keyutils.h>
#include <linux/fs.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define TOOL_OUTPUT_MAX (64 * 1024)

char **child_env_make(void)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (!env)
		return NULL;
	size_t j = 0;
	const char *path = getenv("PATH");
	/* The tools (resize2fs, ip, nft, sysctl) live in the sbin folders, which a service's PATH may lack. */
	if (asprintf(&env[j++], "PATH=%s%s/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "", path ? ":" : "") < 0) {
		free(env);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "PATH=", 5) && !(env[j++] = strdup(environ[i]))) {
			child_env_free(env);
			return NULL;
		}
	return env;
}

void child_env_free(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

/* argv0 itself when it has a '/', else the first executable of that name in the child's PATH. */
static int find_exec(char **env, const char *argv0, char *out, size_t len)
{
	if (strchr(argv0, '/')) {
		snprintf(out, len, "%s", argv0);
		return access(out, X_OK);
	}
	const char *path = env[0] + 5;
	while (*path) {
		const char *colon = strchrnul(path, ':');
		snprintf(out, len, "%.*s/%s", (int)(colon - path), path, argv0);
		if (colon > path && access(out, X_OK) == 0)
			return 0;
		path = *colon ? colon + 1 : colon;
	}
	return -1;
}

static int spawn_attrs(posix_spawnattr_t *attr, bool setsid)
{
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	if (setsid)
		flags |= POSIX_SPAWN_SETSID;
	if (posix_spawnattr_init(attr))
		return -1;
	/* Children start with default signal handling and nothing blocked, whatever the daemon set. */
	posix_spawnattr_setsigmask(attr, &none);
	posix_spawnattr_setsigdefault(attr, &all);
	posix_spawnattr_setflags(attr, flags);
	return 0;
}

int host_run(struct registry *r, const char *const argv[], char **out, struct api_error *e)
{
	char exe[PATH_MAX];
	if (out)
		*out = NULL;
	if (find_exec(r->child_env, argv[0], exe, sizeof(exe)))
		return api_error_set(e, 500, "INTERNAL", "cannot run %s: not found or not executable (PATH, /usr/sbin, "
				     "/sbin): install it (tools/setup) or fix the daemon's configuration", argv[0]);
	int p[2];
	if (pipe2(p, O_CLOEXEC))
		return api_error_set(e, 500, "INTERNAL", "pipe for %s: %s", argv[0], strerror(errno));
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	spawn_attrs(&attr, false);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	pid_t pid;
	int rc = posix_spawn(&pid, exe, &fa, &attr, (char *const *)argv, r->child_env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[1]);
	if (rc) {
		close(p[0]);
		return api_error_set(e, 500, "INTERNAL", "cannot run %s: %s", exe, strerror(rc));
	}
	char *buf = malloc(TOOL_OUTPUT_MAX + 1);
	size_t len = 0;
	for (;;) {
		char tmp[4096];
		ssize_t n = read(p[0], tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t keep = buf ? TOOL_OUTPUT_MAX - len : 0;
		if ((size_t)n < keep)
			keep = (size_t)n;
		if (keep)
			memcpy(buf + len, tmp, keep);
		len += keep;
	}
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (buf)
		buf[len] = 0;
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A sparse copy: only the data extents (SEEK_DATA/SEEK_HOLE), in the kernel (copy_file_range). */
static int sparse_copy(int in, int out, off_t size)
{
	if (ftruncate(out, size))
		return -1;
	off_t pos = 0;
	while (pos < size) {
		off_t data = lseek(in, pos, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : -1;
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -1;
		loff_t ioff = data, ooff = data;
		while (ioff < hole) {
			ssize_t n = copy_file_range(in, &ioff, out, &ooff, (size_t)(hole - ioff), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n < 0 ? -1 : (errno = EIO, -1);
		}
		pos = hole;
	}
	return 0;
}

int disk_create(struct registry *r, const char *src, const char *dst, int gb, struct api_error *e)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return api_error_set(e, 500, "INTERNAL", "open %s: %s: check the image (make images)", src,
				     strerror(errno));
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		int err = errno;
		close(in);
		return api_error_set(e, 500, "INTERNAL", "create %s: %s: check the state folder", dst, strerror(err));
	}
	struct stat st;
	int rc = fstat(in, &st);
	/* A reflink shares the blocks until either side writes (btrfs, XFS); ext4 answers EOPNOTSUPP. */
	if (rc == 0 && ioctl(out, FICLONE, in) != 0)
		rc = sparse_copy(in, out, st.st_size);
	int err = errno;
	off_t want = (off_t)gb << 30;
	if (rc == 0 && st.st_size < want && ftruncate(out, want))
		rc = -1, err = errno;
	if (rc == 0 && fsync(out))
		rc = -1, err = errno;
	close(in);
	close(out);
	if (rc) {
		unlink(dst);
		return api_error_set(e, 500, "INTERNAL", "copying %s to %s: %s: check the free space of the state folder",
				     src, dst, strerror(err));
	}
	if (st.st_size >= want)
		return 0; /* the image is already that large: nothing to grow */
	char *text = NULL;
	const char *argv[] = { "resize2fs", "-f", dst, NULL };
	rc = host_run(r, argv, &text, e);
	if (rc > 0) {
		api_error_set(e, 500, "INTERNAL", "resize2fs -f %s exited with %d: %.300s: is the image's rootfs.ext4 "
			      "an ext4 file system?", dst, rc, text ? text : "");
		rc = -1;
	}
	free(text);
	if (rc)
		unlink(dst);
	return rc ? -1 : 0;
}

pid_t vmm_spawn(struct registry *r, const char *const argv[], const char *console, struct api_error *e)
{
	char exe[PATH_MAX];
	if (find_exec(r->child_env, argv[0], exe, sizeof(exe)))
		return api_error_set(e, 500, "INTERNAL", "the monitor %s is missing or not executable: build it "
				     "(make) or give kvmboxd the right --vmm", argv[0]);
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	/* Its own session: the VMM outlives a daemon restart and gets none of the daemon's terminal signals. */
	spawn_attrs(&attr, true);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, console, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	/* Everything is O_CLOEXEC here, but other code in the process (the HTTP library) may not be. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	pid_t pid;
	int rc = posix_spawn(&pid, exe, &fa, &attr, (char *const *)argv, r->child_env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc)
		return api_error_set(e, 500, "INTERNAL", "cannot start the monitor %s: %s", exe, strerror(rc));
	return pid;
}

int read_small_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	while (got + 1 < len) {
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = 0;
	return (int)got;
}

int proc_read_stat(pid_t pid, uint64_t *ticks, uint64_t *start, char *state)
{
	char path[64], text[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (pid <= 0 || read_small_file(path, text, sizeof(text)) <= 0)
		return -1;
	return proc_stat_parse(text, ticks, start, state);
}

static uint64_t read_counter(const char *tap, const char *name)
{
	char path[128], text[64];
	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", tap, name);
	if (read_small_file(path, text, sizeof(text)) <= 0)
		return 0;
	return strtoull(text, NULL, 10);
}

void tap_read_counters(const char *tap, uint64_t *ingress, uint64_t *egress)
{
	if (!tap[0])
		return;
	/* The tap's transmit is what goes into the guest, its receive what the guest sent. */
	uint64_t tx = read_counter(tap, "tx_bytes"), rx = read_counter(tap, "rx_bytes");
	/* Counters vanish with the tap: keep the last value seen. */
	if (tx > *ingress)
		*ingress = tx;
	if (rx > *egress)
		*egress = rx;
}

char *console_tail(const char *dir)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/console.log", dir);
	char buf[2048];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = 0;
	if (fd >= 0) {
		off_t end = lseek(fd, 0, SEEK_END);
		off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
		n = pread(fd, buf, sizeof(buf) - 1, from);
		close(fd);
	}
	if (n <= 0)
		return strdup("");
	buf[n] = 0;
	const char *tail = text_last_lines(buf, (size_t)n, SANDBOX_CONSOLE_TAIL_LINES);
	size_t len = strlen(tail);
	while (len && (tail[len - 1] == '\n' || tail[len - 1] == '\r'))
		len--;
	char *s = strndup(tail, len);
	/* One line for an error message: "a | b | c", control characters as spaces. */
	for (char *p = s; p && *p; p++)
		if (*p == '\n')
			*p = '|';
		else if ((unsigned char)*p < 0x20)
			*p = ' ';
	return s;
}

/* ---- Secrets: the "kvmbox" keyring in the user keyring, one "user" key per secret. ---- */

/* Callers hold no lock: this takes the registry's, so that two first uses cannot create two keyrings
 * (the second add_key would unlink the first, and its keys with it). */
static int keyring_get(struct registry *r, struct api_error *e)
{
	pthread_mutex_lock(&r->lock);
	long k = r->keyring;
	if (k <= 0) {
		k = keyctl_search(KEY_SPEC_USER_KEYRING, "keyring", "kvmbox", 0);
		if (k < 0)
			k = add_key("keyring", "kvmbox", NULL, 0, KEY_SPEC_USER_KEYRING);
		/* The owner may search and read without possessing it: a daemon started from another session
		 * still finds the keys its predecessor stored. */
		if (k > 0) {
			keyctl_setperm(k, KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH | KEY_USR_WRITE);
			r->keyring = (int32_t)k;
		}
	}
	int err = errno;
	pthread_mutex_unlock(&r->lock);
	if (k <= 0)
		return api_error_set(e, 500, "INTERNAL", "cannot find or create the \"kvmbox\" keyring in the user "
				     "keyring: %s: check the kernel's key support (CONFIG_KEYS) and quotas",
				     strerror(err));
	return 0;
}

static void key_desc(char *buf, size_t len, const char *id, const char *name)
{
	snprintf(buf, len, "kvmbox:%s:%s", id, name);
}

int secrets_store(struct registry *r, const char *id, json_t *secrets, struct api_error *e)
{
	if (!secrets || !json_object_size(secrets))
		return 0;
	if (keyring_get(r, e))
		return -1;
	const char *name;
	json_t *v;
	json_object_foreach(secrets, name, v) {
		char desc[256];
		key_desc(desc, sizeof(desc), id, name);
		const char *val = json_string_value(v);
		long k = add_key("user", desc, val ? val : "", val ? json_string_length(v) : 0, r->keyring);
		if (k < 0) {
			int err = errno;
			secrets_drop(r, id, NULL);
			/* Name only, never the value. */
			return api_error_set(e, err == EDQUOT || err == EINVAL ? 400 : 500,
					     err == EDQUOT || err == EINVAL ? "BAD_REQUEST" : "INTERNAL",
					     "cannot store secret %s in the kernel keyring: %s%s", name, strerror(err),
					     err == EDQUOT ? ": the keyring quota is full (kernel.keys.maxbytes)" :
					     err == EINVAL ? ": a value must be under 32 KiB" : "");
		}
		keyctl_setperm(k, KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH);
	}
	return 0;
}

int secrets_load(struct registry *r, const char *id, json_t *names, json_t *obj, struct api_error *e)
{
	size_t i;
	json_t *v;
	if (!json_array_size(names))
		return 0;
	if (keyring_get(r, e))
		return -1;
	json_array_foreach(names, i, v) {
		const char *name = json_string_value(v);
		char desc[256];
		key_desc(desc, sizeof(desc), id, name);
		long k = keyctl_search(r->keyring, "user", desc, 0);
		void *val = NULL;
		int n = k < 0 ? -1 : keyctl_read_alloc(k, &val);
		if (n < 0)
			return api_error_set(e, 500, "INTERNAL", "secret %s is missing from the \"kvmbox\" keyring (%s): "
					     "create the sandbox again", name, strerror(errno));
		json_t *s = json_stringn(val, (size_t)n);
		explicit_bzero(val, (size_t)n);
		free(val);
		if (!s)
			return api_error_set(e, 500, "INTERNAL", "secret %s is not valid UTF-8", name);
		json_object_set_new(obj, name, s);
	}
	return 0;
}

void secrets_drop(struct registry *r, const char *id, json_t *names)
{
	size_t i;
	json_t *v;
	if ((names && !json_array_size(names)) || keyring_get(r, NULL))
		return;
	if (names) {
		json_array_foreach(names, i, v) {
			char desc[256];
			key_desc(desc, sizeof(desc), id, json_string_value(v));
			long k = keyctl_search(r->keyring, "user", desc, 0);
			if (k >= 0 && keyctl_invalidate(k) < 0)
				keyctl_unlink(k, r->keyring);
		}
		return;
	}
	/* No names (a failed store): every key of this sandbox, found by its description. */
	void *buf = NULL;
	int n = keyctl_read_alloc(r->keyring, &buf);
	char prefix[64];
	int plen = snprintf(prefix, sizeof(prefix), "kvmbox:%s:", id);
	for (int j = 0; n > 0 && j < n / (int)sizeof(key_serial_t); j++) {
		key_serial_t k = ((key_serial_t *)buf)[j];
		char *desc = NULL;
		if (keyctl_describe_alloc(k, &desc) >= 0) {
			/* "user;uid;gid;perm;description" */
			char *d = desc;
			for (int f = 0; f < 4 && d; f++)
				d = strchr(d, ';') ? strchr(d, ';') + 1 : NULL;
			if (d && !strncmp(desc, "user;", 5) && !strncmp(d, prefix, (size_t)plen) &&
			    keyctl_invalidate(k) < 0)
				keyctl_unlink(k, r->keyring);
		}
		free(desc);
	}
	free(buf);
}

int write_file_atomic(const char *path, const char *data, size_t len)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	int err = done == len ? 0 : errno ? errno : EIO;
	if (!err && fsync(fd))
		err = errno;
	close(fd);
	if (!err && rename(tmp, path))
		err = errno;
	if (err) {
		unlink(tmp);
		errno = err;
		return -1;
	}
	return 0;
}

int rm_tree(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -1;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (de->d_type == DT_DIR)
			rc |= rm_tree(sub);
		else if (unlink(sub) && errno != ENOENT)
			rc = -1;
	}
	closedir(d);
	if (rmdir(path) && errno != ENOENT)
		rc = -1;
	return rc;
}
