/* Requests of the agent protocol (docs/agent-protocol.md): the JSON of a REQUEST frame, checked against
 * one table of ops and fields and turned into a typed struct before anything runs. No side effects, so
 * it is fuzzed (tests/fuzz/fuzz_agent_request.c). Errors (agent_error) are errno-coded for file
 * operations, exactly as node:fs reports them, and named codes for the rest. */
#ifndef KVMBOX_AGENT_REQUEST_H
#define KVMBOX_AGENT_REQUEST_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#define AGENT_OPS(X) \
	X(HELLO, "hello") X(CONFIGURE, "configure") X(SHUTDOWN, "shutdown") \
	X(RUN, "run") X(ATTACH, "attach") X(STDIN, "stdin") X(SIGNAL, "signal") X(GET, "get") X(LIST, "list") \
	X(READ_FILE, "readFile") X(WRITE_FILE, "writeFile") X(APPEND_FILE, "appendFile") X(MKDIR, "mkdir") \
	X(READDIR, "readdir") X(MKDTEMP, "mkdtemp") X(STAT, "stat") X(LSTAT, "lstat") X(REALPATH, "realpath") \
	X(RENAME, "rename") X(COPY_FILE, "copyFile") X(UNLINK, "unlink") X(RM, "rm") X(RMDIR, "rmdir") \
	X(TRUNCATE, "truncate") X(CHMOD, "chmod") X(CHOWN, "chown") X(SYMLINK, "symlink") \
	X(READLINK, "readlink") X(ACCESS, "access") X(EXISTS, "exists")

enum agent_op {
#define AGENT_OP_ENUM(e, name) AGENT_OP_##e,
	AGENT_OPS(AGENT_OP_ENUM)
#undef AGENT_OP_ENUM
	AGENT_OP_COUNT
};

/* Error codes that are not errno names. */
#define AGENT_E_BAD_REQUEST   "BAD_REQUEST"   /* malformed JSON, unknown op or field, wrong type, bad value */
#define AGENT_E_NOT_FOUND     "NOT_FOUND"     /* no command with that id */
#define AGENT_E_NOT_RUNNING   "NOT_RUNNING"   /* signal or stdin for a command that has ended */
#define AGENT_E_STDIN_CLOSED  "STDIN_CLOSED"  /* stdin for a command started without stdin, or after eof */
#define AGENT_E_SLOW_CONSUMER "SLOW_CONSUMER" /* a reader fell behind the command's output buffer */
#define AGENT_E_OUTPUT_GONE   "OUTPUT_GONE"   /* replay asked for bytes the buffer no longer holds */
#define AGENT_E_LIMIT         "LIMIT"         /* too many commands, connections or streams */
#define AGENT_E_INTERNAL      "INTERNAL"      /* the agent failed (out of memory, ...) */

struct agent_error {
	char code[24];         /* "ENOENT", ... or one of AGENT_E_* */
	int errnum;            /* the errno for errno codes, else 0 */
	char syscall[24];      /* the system call that failed ("" when none) */
	char path[PATH_MAX];   /* "" when none */
	char dest[PATH_MAX];   /* rename/copyFile/symlink's second path, "" when none */
	char message[512];     /* node-style: "ENOENT: no such file or directory, open '/x'" */
};

/* Fill e from an errno, the way node:fs does; returns -1. path/dest may be NULL. */
int agent_error_errno(struct agent_error *e, int errnum, const char *syscall, const char *path, const char *dest);
/* Fill e with a named code and a formatted message; returns -1. */
int agent_error_set(struct agent_error *e, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* {"code", "message", and "errno", "syscall", "path", "dest" when set}; NULL only without memory. */
json_t *agent_error_json(const struct agent_error *e);

struct agent_request {
	enum agent_op op;
	json_t *root;          /* owns the strings and values below; agent_request_free drops it */
	uint64_t given;        /* bit (1 << AGENT_F_*) for each field the request carried */
	/* strings (NULL when absent); checked: no NUL byte, paths at most PATH_MAX - 1 bytes, not empty */
	const char *path;      /* path, oldPath (rename), src (copyFile) */
	const char *path2;     /* newPath (rename), dest (copyFile), target (symlink) */
	const char *cmd, *cwd, *user, *id, *prefix, *hostname;
	json_t *args;          /* array of strings, or NULL */
	json_t *env;           /* object of strings (names without '='), or NULL */
	bool recursive, force, sudo, stdin_open, detached, eof, with_file_types, follow, output, preserve,
		exclusive;
	int64_t mode;          /* -1 when absent */
	int64_t uid, gid;      /* -1 when absent (chown: leave unchanged) */
	int64_t offset;        /* readFile's offset, attach's fromOffset; 0 when absent */
	int64_t length;        /* readFile's length, truncate's len; -1 when absent */
	int64_t timeout_ms;    /* 0 when absent: none */
	int64_t output_buffer; /* run's outputBufferBytes; 0 when absent: the agent's default */
	int64_t version;
	int signal;            /* a signal number, from a number or a name ("SIGTERM", "TERM") */
};

enum agent_field {
	AGENT_F_PATH, AGENT_F_OLD_PATH, AGENT_F_NEW_PATH, AGENT_F_SRC, AGENT_F_DEST, AGENT_F_TARGET,
	AGENT_F_CMD, AGENT_F_ARGS, AGENT_F_CWD, AGENT_F_ENV, AGENT_F_USER, AGENT_F_SUDO, AGENT_F_STDIN,
	AGENT_F_DETACHED, AGENT_F_TIMEOUT_MS, AGENT_F_OUTPUT_BUFFER, AGENT_F_ID, AGENT_F_FROM_OFFSET,
	AGENT_F_FOLLOW, AGENT_F_OUTPUT, AGENT_F_EOF, AGENT_F_SIGNAL, AGENT_F_VERSION, AGENT_F_HOSTNAME,
	AGENT_F_OFFSET, AGENT_F_LENGTH, AGENT_F_LEN, AGENT_F_MODE, AGENT_F_RECURSIVE, AGENT_F_FORCE,
	AGENT_F_EXCLUSIVE, AGENT_F_PRESERVE, AGENT_F_WITH_FILE_TYPES, AGENT_F_PREFIX, AGENT_F_UID, AGENT_F_GID,
	AGENT_F_COUNT
};

#define AGENT_OUTPUT_BUFFER_DEFAULT (16ll << 20)
#define AGENT_OUTPUT_BUFFER_MIN     4096ll
#define AGENT_OUTPUT_BUFFER_MAX     (256ll << 20)

/* Parse and check one request. On failure fills err (code BAD_REQUEST, the message names the field) and
 * returns -1; req then holds nothing to free. */
int agent_request_parse(const char *json, size_t len, struct agent_request *req, struct agent_error *err);
void agent_request_free(struct agent_request *req);

const char *agent_op_name(enum agent_op op);
/* Signal number from "SIGTERM", "TERM" or "15"; -1 when unknown. */
int agent_signal_parse(const char *name);
/* "SIGTERM" for 15; NULL for numbers without a name. */
const char *agent_signal_name(int sig);

#endif
