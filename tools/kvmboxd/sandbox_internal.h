/* kvmboxd's sandboxes, inside (sandbox.h is the interface): the structures shared by
 *   sandbox.c  the registry, the life cycle and the monitor thread,
 *   state.c    pure parts: status names, the sandbox object and sandbox.json, page tokens, clamps, names,
 *   host.c     what touches the host: tools (kvmbox-net, resize2fs), disks, the keyring, /proc, /sys.
 * Unit tests (tests/unit/test_kvmboxd_state.c) use the pure functions declared here. */
#ifndef KVMBOX_KVMBOXD_SANDBOX_INTERNAL_H
#define KVMBOX_KVMBOXD_SANDBOX_INTERNAL_H

#include "tools/kvmboxd/sandbox.h"

#include <limits.h>
#include <pthread.h>
#include <sys/types.h>

#define SANDBOX_ID_LEN 19        /* "sb-" + 16 hex digits */
#define SANDBOX_TAP_LEN 14       /* "kb" + 12 hex digits (IFNAMSIZ - 1 is 15) */
#define SANDBOX_STOP_WAIT_MS 10000
#define SANDBOX_SHUTDOWN_TIMEOUT_MS 3000
#define SANDBOX_CONSOLE_TAIL_LINES 8

struct sandbox {
	struct registry *reg;
	int refs;                /* atomic; the registry holds one while the sandbox is listed */
	pthread_mutex_t lock;    /* everything below */
	pthread_cond_t cond;     /* broadcast at every status change (CLOCK_MONOTONIC) */

	/* The sandbox object (docs/api.md). */
	char id[SANDBOX_ID_LEN + 1];
	char name[64];
	char image[64];
	int vcpus, memory_mb, disk_gb, timeout_min;
	json_t *env;             /* object of strings */
	enum sandbox_net net;
	json_t *allow;           /* array of CIDR strings, SANDBOX_NET_ALLOW only */
	json_t *secret_names;    /* array of names; values live in the keyring only */
	enum sandbox_status status;
	int64_t created_at, started_at, stopped_at, expires_at; /* ms since the epoch, 0: null */
	int exit_code;           /* -1: null */
	char *error_message;     /* NULL: null */
	int64_t cpu_ms;          /* last known (frozen once ended) */
	uint64_t ingress_bytes, egress_bytes;

	/* The VMM and what it holds on the host. */
	pid_t pid;               /* 0: none */
	int pidfd;               /* -1: none; registered with the monitor's epoll */
	uint64_t pid_start;      /* /proc/<pid>/stat field 22, to recognize it after a restart */
	bool our_child;          /* spawned by this daemon: waitid gives its exit code */
	char tap[16];            /* "" once torn down (or no network) */
	char vsock[108];         /* "" once removed */
	char dir[PATH_MAX];      /* <state_dir>/sandboxes/<id> */

	/* Requests, read by the monitor when the VMM exits. */
	bool stop_requested, kill_requested, timed_out, removed;
	bool exited;             /* the VMM is gone (its resources being freed); status changes after */
	const char *kill_note;   /* errorMessage of a kill that was not the user's (a constant) */
	char *start_error;       /* why the start gave up (the VMM was then killed) */
};

struct registry {
	struct daemon_config cfg;    /* strings point into the caller's config */
	pthread_mutex_t lock;        /* list, n, workers */
	pthread_cond_t cond;         /* workers reaching 0 */
	struct sandbox **list;
	size_t n, cap;
	int workers;                 /* start/stop threads still running */
	int epfd, timerfd, wakefd;   /* the monitor thread's */
	pthread_t monitor;
	bool monitor_started, quit;
	char **child_env;            /* environ with PATH + /usr/sbin:/sbin, for the tools and the VMM */
	int32_t keyring;             /* the "kvmbox" keyring in the user keyring; 0: not found yet */
	long clk_tck;
};

/* ---- state.c: pure ---- */
int64_t now_ms(void);
/* "sb-" + 16 hex digits from 8 random bytes. */
void sandbox_make_id(const uint8_t rnd[8], char out[SANDBOX_ID_LEN + 1]);
bool sandbox_id_valid(const char *id);
/* "kb" + the first 12 hex digits of the id. */
void sandbox_tap_name(const char *id, char out[16]);
/* The guest hostname for a sandbox name: '_' becomes '-', a leading '-' or '.' becomes 'x' (the agent
 * accepts letters, digits, '-' and '.'). */
void sandbox_hostname(const char *name, char *out, size_t len);
/* expiresAt for setTimeout: now + minutes, never past startedAt + max_lifetime_min. */
int64_t sandbox_clamp_expiry(int64_t now, int minutes, int64_t started_at, int max_lifetime_min);
/* The "ip=..." argument in kvmbox-net setup's output; 0 and out filled, -1 when absent. */
int net_parse_setup_output(const char *text, char *out, size_t len);
/* The first nameserver of a resolv.conf text that is not a loopback address; 0 or -1. */
int resolv_first_nameserver(const char *text, char *out, size_t len);
/* What a monitor exit code means (docs/kvmbox-vmm.md, EXIT STATUS). */
const char *vmm_exit_meaning(int code);
/* Page tokens: an opaque string for (createdAt, id). */
char *page_token_encode(int64_t created_at, const char *id);
int page_token_decode(const char *token, int64_t *created_at, char id[SANDBOX_ID_LEN + 1]);
/* Order of the list: newest first (createdAt, then id, both descending); < 0 when a comes first. */
int sandbox_order(int64_t ca, const char *ida, int64_t cb, const char *idb);
/* utime + stime (ticks), the start time (field 22) and the state letter (field 3: 'Z' for a zombie) from
 * the text of /proc/<pid>/stat; each out may be NULL. */
int proc_stat_parse(const char *text, uint64_t *ticks, uint64_t *start, char *state);
/* The sandbox object (docs/api.md) of s's fields (caller holds s->lock); persist adds the daemon's own
 * fields (pid, VMM start time, tap, vsock) for sandbox.json. */
json_t *sandbox_to_json(const struct sandbox *s, bool persist);
/* Fills a zeroed sandbox (fields only, no lock/cond) from sandbox.json's object; -1 and why. */
int sandbox_from_json(struct sandbox *s, json_t *o, char *why, size_t len);
/* Frees the JSON fields and strings of s (not the lock). */
void sandbox_fields_free(struct sandbox *s);
/* The last n lines of text (a pointer into it). */
const char *text_last_lines(const char *text, size_t len, int n);

/* ---- host.c ---- */
char **child_env_make(void);
void child_env_free(char **env);
/* Runs argv[0] (found in PATH plus /usr/sbin:/sbin when it has no '/'), stdin /dev/null, stdout and
 * stderr captured into *out (malloc'ed, NUL-terminated, at most 64 KiB; may be NULL). Returns the exit
 * status (0..255, 128+N for a signal) or -1 with e filled when it could not be run. */
int host_run(struct registry *r, const char *const argv[], char **out, struct api_error *e);
/* The image's rootfs copied (reflink, else sparse copy) to dst, grown to gb GiB and resize2fs'ed. */
int disk_create(struct registry *r, const char *src, const char *dst, int gb, struct api_error *e);
/* Spawns the VMM in its own session, output appended to console; returns its pid. */
pid_t vmm_spawn(struct registry *r, const char *const argv[], const char *console, struct api_error *e);
int proc_read_stat(pid_t pid, uint64_t *ticks, uint64_t *start, char *state);
void tap_read_counters(const char *tap, uint64_t *ingress, uint64_t *egress);
/* The last lines of the console log, "" when none (malloc'ed). */
char *console_tail(const char *dir);
/* Secrets: one "user" key per secret in the "kvmbox" keyring. */
int secrets_store(struct registry *r, const char *id, json_t *secrets, struct api_error *e);
/* Adds the secrets of the sandbox (names) to obj as strings; -1 when one is missing. */
int secrets_load(struct registry *r, const char *id, json_t *names, json_t *obj, struct api_error *e);
void secrets_drop(struct registry *r, const char *id, json_t *names);
int read_small_file(const char *path, char *buf, size_t len);
int write_file_atomic(const char *path, const char *data, size_t len);
int rm_tree(const char *path);

#endif
