/* kvmboxd's sandboxes (docs/api.md): the registry of every sandbox the daemon knows, each one VM (one
 * kvmbox-vmm process) with its own disk, vsock socket and tap; their life cycle, persistence across daemon
 * restarts, timeouts, secrets (kernel keyring) and clean-up. Thread-safe: the HTTP layer (api_*.c) calls
 * in from one thread per connection; one monitor thread watches the VMMs (pidfds) and the deadlines. */
#ifndef KVMBOX_KVMBOXD_SANDBOX_H
#define KVMBOX_KVMBOXD_SANDBOX_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* An error for the API: HTTP status, code and message (docs/api.md, "Errors"). */
struct api_error {
	unsigned status;   /* 400, 404, 409, 429, 500, 502 ... */
	char code[24];     /* BAD_REQUEST, NOT_FOUND, NOT_RUNNING, CONFLICT, LIMIT, INTERNAL, AGENT, ... */
	char message[512];
};
int api_error_set(struct api_error *e, unsigned status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5))); /* returns -1 */

struct daemon_config {
	const char *state_dir;     /* /var/lib/kvmbox: sandboxes/<id>/{sandbox.json,disk.ext4,console.log} */
	const char *run_dir;       /* /run/kvmbox: the socket, and <id>.vsock per sandbox */
	const char *images_dir;    /* /var/lib/kvmbox/images: <image>/{vmlinux,rootfs.ext4} */
	const char *vmm_path;      /* kvmbox-vmm */
	const char *net_tool;      /* kvmbox-net (tools/net/kvmbox-net) */
	int max_lifetime_min;      /* 1440: setTimeout never extends a life past startedAt + this */
	int max_sandboxes;         /* sandboxes not ended at once (LIMIT beyond) */
	int host_cpus;             /* resources.vcpus upper bound */
	int64_t host_mem_mb;       /* resources.memoryMb upper bound */
	int agent_timeout_ms;      /* how long create waits for the guest's agent (30000) */
};

enum sandbox_net { SANDBOX_NET_NONE, SANDBOX_NET_ALL, SANDBOX_NET_ALLOW };

/* A create request, already checked by the API layer (types, ranges, name syntax). */
struct sandbox_spec {
	char name[64];             /* "" → the id */
	char image[64];            /* checked: [A-Za-z0-9_.-]+, not "." or ".." */
	int vcpus, memory_mb, disk_gb;
	json_t *env;               /* object of strings (borrowed) */
	int timeout_min;
	enum sandbox_net net;
	json_t *allow;             /* SANDBOX_NET_ALLOW: array of CIDR strings (borrowed, syntax checked) */
	json_t *secrets;           /* object of strings (borrowed): to the keyring, never to disk or logs */
};

struct sandbox_query {         /* GET /v1/sandboxes */
	unsigned status_mask;      /* bit per enum sandbox_status; 0: all */
	int64_t created_after, created_before; /* 0: no bound */
	int limit;                 /* 1..500 */
	const char *page_token;    /* NULL: the first page */
};

enum sandbox_status {
	SANDBOX_CREATED, SANDBOX_STARTING, SANDBOX_RUNNING, SANDBOX_FINISHED, SANDBOX_CANCELLED, SANDBOX_FAILED,
	SANDBOX_STATUS_COUNT
};
const char *sandbox_status_name(enum sandbox_status s);
int sandbox_status_parse(const char *name); /* -1 when unknown */

struct registry;
struct sandbox;

/* Load the sandboxes under state_dir: running ones whose VMM still lives are re-adopted, the others
 * marked failed (their tap, socket and disk freed); start the monitor thread. NULL with e filled. */
struct registry *registry_open(const struct daemon_config *cfg, struct api_error *e);
/* Stop the monitor thread and free the registry. Running VMMs keep running (a restarted daemon
 * re-adopts them). */
void registry_close(struct registry *r);

/* Create and start a sandbox. wait: return once it is running or failed (the agent answered, or the
 * start failed: the sandbox is then failed with its errorMessage, and 0 is still returned). !wait: return
 * once it is starting. -1 only when nothing was created (bad image, name taken, LIMIT ...). *out is a
 * reference (sandbox_put). */
int sandbox_create(struct registry *r, const struct sandbox_spec *spec, bool wait, struct sandbox **out,
		   struct api_error *e);
/* By id or name; a reference (sandbox_put), NULL when unknown. */
struct sandbox *sandbox_find(struct registry *r, const char *id_or_name);
void sandbox_put(struct sandbox *s);
/* The sandbox object of docs/api.md, current (usage counters read now). */
json_t *sandbox_json(struct sandbox *s);
/* One page of sandboxes, newest first: *out is a JSON array, *next_token malloc'ed or NULL. */
int sandbox_list(struct registry *r, const struct sandbox_query *q, json_t **out, char **next_token,
		 struct api_error *e);
/* Graceful power-off through the agent, SIGKILL after 10 s. blocking: return when it ended. */
int sandbox_stop(struct sandbox *s, bool blocking, struct api_error *e);
/* SIGKILL now; returns when it ended (cancelled). */
int sandbox_kill(struct sandbox *s, struct api_error *e);
/* expiresAt = now + minutes, clamped to startedAt + max_lifetime; 409 NOT_RUNNING when not running. */
int sandbox_set_timeout(struct sandbox *s, int minutes, struct api_error *e);
/* Forget an ended sandbox and delete its files; force kills a running one first (else 409 CONFLICT). */
int sandbox_remove(struct registry *r, struct sandbox *s, bool force, struct api_error *e);
/* The running sandbox's agent socket (the monitor's --vsock uds path; connect with port 1024), else
 * 409 NOT_RUNNING. */
int sandbox_agent_path(struct sandbox *s, char *buf, size_t len, struct api_error *e);
/* mkdir -p: the missing parents 0755, path itself with mode; 0, or -1 with errno. */
int mkdir_p(const char *path, mode_t mode);

/* Counts for GET /v1/health: a JSON object {status name: count}. */
json_t *registry_counts(struct registry *r);

#endif
