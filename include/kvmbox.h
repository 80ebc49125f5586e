/* libkvmbox: the host side of the kvmbox agent protocol (docs/agent-protocol.md, docs/libkvmbox.md).
 *
 * A kvmbox_agent is one connection to the agent in a VM (through the monitor's --vsock uds= socket) or to
 * `kvmbox-agent --listen unix:PATH` on the host. A handle runs one request at a time: open one handle per
 * concurrent operation (e.g. feed stdin on a second handle while the first streams the output); handles
 * are cheap. A handle is not thread-safe; separate handles in separate threads are fine.
 *
 * Every function that can fail returns 0 or -1 and fills *err (err may be NULL). The library never writes
 * to stdout or stderr and never raises SIGPIPE. Link: -Iinclude build/libkvmbox.a -ljansson. */
#ifndef KVMBOX_H
#define KVMBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVMBOX_AGENT_PORT 1024 /* the vsock port the agent listens on in the guest */

/* What went wrong. code is one of:
 *  - the agent's codes: an errno name ("ENOENT", with errnum, syscall, path and dest as Linux reported
 *    them) or BAD_REQUEST, NOT_FOUND, NOT_RUNNING, STDIN_CLOSED, SLOW_CONSUMER, OUTPUT_GONE, LIMIT, INTERNAL;
 *  - the library's own: "CONNECT" (cannot reach the agent: the message says what to check), "PROTOCOL"
 *    (the agent sent a bad frame), "CLOSED" (the connection ended mid-request, or an earlier error
 *    closed this handle), "TIMEOUT", "CALLBACK" (a callback returned non-zero: errnum holds its value);
 *  - an errno name for the caller's side: "EINVAL" (a bad argument), "ENOMEM", or what a read or write
 *    on the caller's fd failed with (syscall "read"/"write"). */
struct kvmbox_error {
	char code[24];
	int errnum;
	char syscall[24];
	char path[4096];
	char dest[4096];
	char message[512];
};

typedef struct kvmbox_agent kvmbox_agent;

/* Connect to an agent. port > 0: uds_path is the monitor's --vsock uds= socket; the library writes
 * "CONNECT <port>\n" and expects "OK <n>\n" (port is KVMBOX_AGENT_PORT). port 0: uds_path is the agent's
 * own socket (kvmbox-agent --listen unix:PATH), no CONNECT line.
 * timeout_ms bounds connect + handshake; until it lapses a missing or refusing socket (ENOENT,
 * ECONNREFUSED) and a refused CONNECT are retried, since the guest may still be booting. 0 makes one
 * attempt (its handshake waits at most 1 s); < 0 retries without a limit. */
int kvmbox_agent_connect(const char *uds_path, unsigned port, int timeout_ms, kvmbox_agent **out,
			 struct kvmbox_error *err);

/* Close the connection and free the handle (NULL is fine). Commands keep running in the guest. */
void kvmbox_agent_close(kvmbox_agent *a);

/* Bound every wait of the later calls on this handle: a call fails with "TIMEOUT" when the agent sends
 * nothing (or takes nothing) for timeout_ms. <= 0: no bound (the default; a run or a followed attach
 * may be silent for as long as its command is). */
void kvmbox_agent_set_timeout(kvmbox_agent *a, int timeout_ms);

/* Generic request: request_json is a JSON object {"op": ..., fields}. On success *result_json (malloc'ed,
 * the caller frees it; result_json may be NULL) is the response object without "ok". For the ops that
 * do not stream: hello, configure, shutdown, get, list, signal, and every file op but readFile, writeFile
 * and appendFile. EVENT and DATA frames are skipped. */
int kvmbox_agent_call(kvmbox_agent *a, const char *request_json, char **result_json, struct kvmbox_error *err);

/* A command, as the agent reports it. Strings are truncated to fit. */
struct kvmbox_command {
	char id[32];            /* "cmd-7" */
	int pid;
	char status[16];        /* pending, running, finished, killed, failed */
	int exit_code;          /* -1 until finished; 128 + signal when killed */
	char signal[16];        /* "SIGKILL" when killed, else "" */
	bool timed_out;
	int64_t started_at_ms, finished_at_ms; /* ms since the epoch on the guest's clock; 0 when unknown */
	uint64_t output_bytes;  /* bytes of stdout + stderr so far */
	uint64_t buffer_start;  /* the oldest offset the output buffer still holds */
};

enum kvmbox_stream { KVMBOX_STDOUT = 1, KVMBOX_STDERR = 2 };

/* One chunk of a command's output; data is valid during the callback only. */
struct kvmbox_chunk {
	enum kvmbox_stream stream;
	const void *data;
	size_t len;
	uint64_t byte_offset;   /* of data[0] in the command's combined output */
	int64_t timestamp_ms;   /* when the agent read it (ms since the epoch), 0 when unknown */
};

/* Output callback: return 0 to go on; non-zero stops the call with "CALLBACK" (the command keeps
 * running; attach again later, e.g. from the next byte_offset). */
typedef int (*kvmbox_output_fn)(void *ctx, const struct kvmbox_chunk *c);

struct kvmbox_run {
	const char *cmd;                /* run as argv[0]; without '/': looked up in PATH */
	const char *const *args;        /* argv[1..], NULL-terminated; may be NULL */
	const char *cwd;                /* NULL: the sandbox's */
	const char *const *env;         /* "NAME=value", NULL-terminated, merged over the sandbox's; may be NULL */
	const char *user;               /* NULL: the sandbox's */
	bool sudo;                      /* run as root whatever user says */
	bool stdin_open;                /* stdin is a pipe fed by kvmbox_stdin (else /dev/null) */
	bool detached;
	int64_t timeout_ms;             /* > 0: SIGKILL the process group when it lapses */
	int64_t output_buffer_bytes;    /* > 0: the output ring buffer (4096 .. 256 MiB); 0: the agent's 16 MiB */
};

/* Run a command. detached: returns at once, *cmd is the running command (its id is what attach, wait,
 * stdin and signal take). Otherwise streams the output to fn (may be NULL) and returns the ended command:
 * a command that ran counts as success whatever its exit code. On "CALLBACK" *cmd holds the id and pid.
 * cmd may be NULL. */
int kvmbox_run(kvmbox_agent *a, const struct kvmbox_run *r, kvmbox_output_fn fn, void *ctx,
	       struct kvmbox_command *cmd, struct kvmbox_error *err);

/* Replay a command's output from from_offset (what the buffer still holds, else "OUTPUT_GONE") to fn,
 * then, with follow, its live output until it ends. Returns the command (ended, with follow). */
int kvmbox_attach(kvmbox_agent *a, const char *id, uint64_t from_offset, bool follow, kvmbox_output_fn fn,
		  void *ctx, struct kvmbox_command *cmd, struct kvmbox_error *err);

/* Wait for a command to end (attach without output). */
int kvmbox_wait(kvmbox_agent *a, const char *id, struct kvmbox_command *cmd, struct kvmbox_error *err);

/* Write len bytes to a command's stdin (run with stdin_open), then close it when eof. Returns once the
 * bytes are in the pipe: a command that does not read makes this wait. Sent in frames of at most
 * 256 KiB. */
int kvmbox_stdin(kvmbox_agent *a, const char *id, const void *data, size_t len, bool eof,
		 struct kvmbox_error *err);

/* Send signal sig (a number, e.g. SIGTERM) to the command's process group. */
int kvmbox_signal(kvmbox_agent *a, const char *id, int sig, struct kvmbox_error *err);

/* The command's current state. */
int kvmbox_command_get(kvmbox_agent *a, const char *id, struct kvmbox_command *cmd, struct kvmbox_error *err);

/* Files, streamed in chunks of at most 256 KiB, never buffered whole. Relative paths resolve against the
 * sandbox's cwd. */
typedef int (*kvmbox_data_fn)(void *ctx, const void *data, size_t len); /* non-zero: stop ("CALLBACK") */

/* Read a whole file: fn gets its bytes in order. */
int kvmbox_read_file(kvmbox_agent *a, const char *path, kvmbox_data_fn fn, void *ctx, struct kvmbox_error *err);
/* Read a whole file into fd (written at fd's position; partial writes and EINTR are handled). */
int kvmbox_read_file_to_fd(kvmbox_agent *a, const char *path, int fd, struct kvmbox_error *err);

#define KVMBOX_WRITE_APPEND    1u /* appendFile: add to the end instead of replacing */
#define KVMBOX_WRITE_RECURSIVE 2u /* create the missing parent folders */
#define KVMBOX_WRITE_EXCLUSIVE 4u /* fail with EEXIST when the file exists (not with APPEND) */

/* Write (or append) len bytes to a file, created with mode (-1: 0666 less the guest's umask). Returns
 * once the bytes are in the guest's file. */
int kvmbox_write_file(kvmbox_agent *a, const char *path, int mode, unsigned flags, const void *data, size_t len,
		      struct kvmbox_error *err);
/* The same with the bytes read from fd until its end. A read error on fd after the upload began closes
 * the handle (the protocol cannot cancel an upload) and may leave a partial file. */
int kvmbox_write_file_from_fd(kvmbox_agent *a, const char *path, int mode, unsigned flags, int fd,
			      struct kvmbox_error *err);

#ifdef __cplusplus
}
#endif

#endif
