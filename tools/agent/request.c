/* Request parsing (request.h): one table of fields, one table of ops saying which fields each takes and
 * which it needs. Unknown ops and fields, wrong types and out-of-range values are BAD_REQUEST. */
#include "tools/agent/request.h"
#include "tools/agent/utf8.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <ctype.h>

enum field_type { T_STRING, T_PATH, T_BOOL, T_INT, T_ARGS, T_ENV, T_SIGNAL };

struct field_spec {
	const char *name;
	enum field_type type;
	size_t member;     /* offsetof into struct agent_request */
	int64_t min, max;  /* T_INT bounds */
};

#define MEMBER(m) offsetof(struct agent_request, m)
#define I64MAX INT64_MAX
static const struct field_spec fields[AGENT_F_COUNT] = {
	[AGENT_F_PATH] = {"path", T_PATH, MEMBER(path), 0, 0},
	[AGENT_F_OLD_PATH] = {"oldPath", T_PATH, MEMBER(path), 0, 0},
	[AGENT_F_NEW_PATH] = {"newPath", T_PATH, MEMBER(path2), 0, 0},
	[AGENT_F_SRC] = {"src", T_PATH, MEMBER(path), 0, 0},
	[AGENT_F_DEST] = {"dest", T_PATH, MEMBER(path2), 0, 0},
	[AGENT_F_TARGET] = {"target", T_PATH, MEMBER(path2), 0, 0},
	[AGENT_F_CMD] = {"cmd", T_PATH, MEMBER(cmd), 0, 0},
	[AGENT_F_ARGS] = {"args", T_ARGS, MEMBER(args), 0, 0},
	[AGENT_F_CWD] = {"cwd", T_PATH, MEMBER(cwd), 0, 0},
	[AGENT_F_ENV] = {"env", T_ENV, MEMBER(env), 0, 0},
	[AGENT_F_USER] = {"user", T_STRING, MEMBER(user), 0, 0},
	[AGENT_F_SUDO] = {"sudo", T_BOOL, MEMBER(sudo), 0, 0},
	[AGENT_F_STDIN] = {"stdin", T_BOOL, MEMBER(stdin_open), 0, 0},
	[AGENT_F_DETACHED] = {"detached", T_BOOL, MEMBER(detached), 0, 0},
	[AGENT_F_TIMEOUT_MS] = {"timeoutMs", T_INT, MEMBER(timeout_ms), 0, 365ll * 24 * 3600 * 1000},
	[AGENT_F_OUTPUT_BUFFER] = {"outputBufferBytes", T_INT, MEMBER(output_buffer), AGENT_OUTPUT_BUFFER_MIN,
				   AGENT_OUTPUT_BUFFER_MAX},
	[AGENT_F_ID] = {"id", T_STRING, MEMBER(id), 0, 0},
	[AGENT_F_FROM_OFFSET] = {"fromOffset", T_INT, MEMBER(offset), 0, I64MAX},
	[AGENT_F_FOLLOW] = {"follow", T_BOOL, MEMBER(follow), 0, 0},
	[AGENT_F_OUTPUT] = {"output", T_BOOL, MEMBER(output), 0, 0},
	[AGENT_F_EOF] = {"eof", T_BOOL, MEMBER(eof), 0, 0},
	[AGENT_F_SIGNAL] = {"signal", T_SIGNAL, MEMBER(signal), 0, 0},
	[AGENT_F_VERSION] = {"version", T_INT, MEMBER(version), 1, 1 << 30},
	[AGENT_F_HOSTNAME] = {"hostname", T_STRING, MEMBER(hostname), 0, 0},
	[AGENT_F_OFFSET] = {"offset", T_INT, MEMBER(offset), 0, I64MAX},
	[AGENT_F_LENGTH] = {"length", T_INT, MEMBER(length), 0, I64MAX},
	[AGENT_F_LEN] = {"len", T_INT, MEMBER(length), 0, I64MAX},
	[AGENT_F_MODE] = {"mode", T_INT, MEMBER(mode), 0, 07777},
	[AGENT_F_RECURSIVE] = {"recursive", T_BOOL, MEMBER(recursive), 0, 0},
	[AGENT_F_FORCE] = {"force", T_BOOL, MEMBER(force), 0, 0},
	[AGENT_F_EXCLUSIVE] = {"exclusive", T_BOOL, MEMBER(exclusive), 0, 0},
	[AGENT_F_PRESERVE] = {"preserve", T_BOOL, MEMBER(preserve), 0, 0},
	[AGENT_F_WITH_FILE_TYPES] = {"withFileTypes", T_BOOL, MEMBER(with_file_types), 0, 0},
	[AGENT_F_PREFIX] = {"prefix", T_PATH, MEMBER(prefix), 0, 0},
	[AGENT_F_UID] = {"uid", T_INT, MEMBER(uid), -1, 0xfffffffell},
	[AGENT_F_GID] = {"gid", T_INT, MEMBER(gid), -1, 0xfffffffell},
};

#define F(x) (1ull << AGENT_F_##x)
struct op_spec {
	const char *name;
	uint64_t allowed, required;
};
static const struct op_spec ops[AGENT_OP_COUNT] = {
	[AGENT_OP_HELLO] = {"hello", F(VERSION), F(VERSION)},
	[AGENT_OP_CONFIGURE] = {"configure", F(ENV) | F(CWD) | F(USER) | F(HOSTNAME), 0},
	[AGENT_OP_SHUTDOWN] = {"shutdown", 0, 0},
	[AGENT_OP_RUN] = {"run", F(CMD) | F(ARGS) | F(CWD) | F(ENV) | F(USER) | F(SUDO) | F(STDIN) | F(DETACHED) |
				 F(TIMEOUT_MS) | F(OUTPUT_BUFFER), F(CMD)},
	[AGENT_OP_ATTACH] = {"attach", F(ID) | F(FROM_OFFSET) | F(FOLLOW) | F(OUTPUT), F(ID)},
	[AGENT_OP_STDIN] = {"stdin", F(ID) | F(EOF), F(ID)},
	[AGENT_OP_SIGNAL] = {"signal", F(ID) | F(SIGNAL), F(ID) | F(SIGNAL)},
	[AGENT_OP_GET] = {"get", F(ID), F(ID)},
	[AGENT_OP_LIST] = {"list", 0, 0},
	[AGENT_OP_READ_FILE] = {"readFile", F(PATH) | F(OFFSET) | F(LENGTH), F(PATH)},
	[AGENT_OP_WRITE_FILE] = {"writeFile", F(PATH) | F(MODE) | F(RECURSIVE) | F(EXCLUSIVE), F(PATH)},
	[AGENT_OP_APPEND_FILE] = {"appendFile", F(PATH) | F(MODE) | F(RECURSIVE), F(PATH)},
	[AGENT_OP_MKDIR] = {"mkdir", F(PATH) | F(MODE) | F(RECURSIVE), F(PATH)},
	[AGENT_OP_READDIR] = {"readdir", F(PATH) | F(WITH_FILE_TYPES), F(PATH)},
	[AGENT_OP_MKDTEMP] = {"mkdtemp", F(PREFIX), F(PREFIX)},
	[AGENT_OP_STAT] = {"stat", F(PATH), F(PATH)},
	[AGENT_OP_LSTAT] = {"lstat", F(PATH), F(PATH)},
	[AGENT_OP_REALPATH] = {"realpath", F(PATH), F(PATH)},
	[AGENT_OP_RENAME] = {"rename", F(OLD_PATH) | F(NEW_PATH), F(OLD_PATH) | F(NEW_PATH)},
	[AGENT_OP_COPY_FILE] = {"copyFile", F(SRC) | F(DEST) | F(EXCLUSIVE) | F(PRESERVE), F(SRC) | F(DEST)},
	[AGENT_OP_UNLINK] = {"unlink", F(PATH), F(PATH)},
	[AGENT_OP_RM] = {"rm", F(PATH) | F(RECURSIVE) | F(FORCE), F(PATH)},
	[AGENT_OP_RMDIR] = {"rmdir", F(PATH), F(PATH)},
	[AGENT_OP_TRUNCATE] = {"truncate", F(PATH) | F(LEN), F(PATH)},
	[AGENT_OP_CHMOD] = {"chmod", F(PATH) | F(MODE), F(PATH) | F(MODE)},
	[AGENT_OP_CHOWN] = {"chown", F(PATH) | F(UID) | F(GID), F(PATH) | F(UID) | F(GID)},
	[AGENT_OP_SYMLINK] = {"symlink", F(TARGET) | F(PATH), F(TARGET) | F(PATH)},
	[AGENT_OP_READLINK] = {"readlink", F(PATH), F(PATH)},
	[AGENT_OP_ACCESS] = {"access", F(PATH) | F(MODE), F(PATH)},
	[AGENT_OP_EXISTS] = {"exists", F(PATH), F(PATH)},
};

const char *agent_op_name(enum agent_op op)
{
	return (unsigned)op < AGENT_OP_COUNT ? ops[op].name : "?";
}

int agent_error_set(struct agent_error *e, const char *code, const char *fmt, ...)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->code, sizeof(e->code), "%s", code);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

int agent_error_errno(struct agent_error *e, int errnum, const char *syscall, const char *path, const char *dest)
{
	memset(e, 0, sizeof(*e));
	const char *name = strerrorname_np(errnum);
	if (name)
		snprintf(e->code, sizeof(e->code), "%s", name);
	else
		snprintf(e->code, sizeof(e->code), "E%d", errnum);
	e->errnum = errnum;
	snprintf(e->syscall, sizeof(e->syscall), "%s", syscall ? syscall : "");
	snprintf(e->path, sizeof(e->path), "%s", path ? path : "");
	snprintf(e->dest, sizeof(e->dest), "%s", dest ? dest : "");
	/* node's shape: "<CODE>: <description>, <syscall> '<path>' -> '<dest>'" with a lower-case description */
	char desc[128];
	snprintf(desc, sizeof(desc), "%s", strerror(errnum));
	if (desc[0] && isupper((unsigned char)desc[0]) && !isupper((unsigned char)desc[1]))
		desc[0] = (char)tolower((unsigned char)desc[0]);
	int n = snprintf(e->message, sizeof(e->message), "%s: %s", e->code, desc);
	if (syscall && n >= 0 && (size_t)n < sizeof(e->message))
		n += snprintf(e->message + n, sizeof(e->message) - n, ", %s", syscall);
	if (path && n >= 0 && (size_t)n < sizeof(e->message))
		n += snprintf(e->message + n, sizeof(e->message) - n, " '%s'", path);
	if (dest && n >= 0 && (size_t)n < sizeof(e->message))
		snprintf(e->message + n, sizeof(e->message) - n, " -> '%s'", dest);
	return -1;
}

/* Message text can quote a client's raw bytes (jansson's error text), be cut inside a character at its
 * size, or carry a path from the file system: bad bytes become U+FFFD. */
static int set_lossy(json_t *j, const char *key, const char *s, size_t size)
{
	json_t *v = json_string_lossy(s, strnlen(s, size));
	return v ? json_object_set_new(j, key, v) : -1;
}

json_t *agent_error_json(const struct agent_error *e)
{
	json_t *j = json_pack("{s:s}", "code", e->code[0] ? e->code : AGENT_E_INTERNAL);
	if (!j || set_lossy(j, "message", e->message, sizeof(e->message)) ||
	    (e->errnum && json_object_set_new(j, "errno", json_integer(e->errnum))) ||
	    (e->syscall[0] && set_lossy(j, "syscall", e->syscall, sizeof(e->syscall))) ||
	    (e->path[0] && set_lossy(j, "path", e->path, sizeof(e->path))) ||
	    (e->dest[0] && set_lossy(j, "dest", e->dest, sizeof(e->dest)))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL}, {"TRAP", SIGTRAP},
	{"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
	{"SEGV", SIGSEGV}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
	{"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},
	{"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
	{"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO}, {"PWR", SIGPWR},
	{"SYS", SIGSYS},
};

const char *agent_signal_name(int sig)
{
	static const char *const full[] = {
		[SIGHUP] = "SIGHUP", [SIGINT] = "SIGINT", [SIGQUIT] = "SIGQUIT", [SIGILL] = "SIGILL",
		[SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT", [SIGBUS] = "SIGBUS", [SIGFPE] = "SIGFPE",
		[SIGKILL] = "SIGKILL", [SIGUSR1] = "SIGUSR1", [SIGSEGV] = "SIGSEGV", [SIGUSR2] = "SIGUSR2",
		[SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM", [SIGSTKFLT] = "SIGSTKFLT",
		[SIGCHLD] = "SIGCHLD", [SIGCONT] = "SIGCONT", [SIGSTOP] = "SIGSTOP", [SIGTSTP] = "SIGTSTP",
		[SIGTTIN] = "SIGTTIN", [SIGTTOU] = "SIGTTOU", [SIGURG] = "SIGURG", [SIGXCPU] = "SIGXCPU",
		[SIGXFSZ] = "SIGXFSZ", [SIGVTALRM] = "SIGVTALRM", [SIGPROF] = "SIGPROF", [SIGWINCH] = "SIGWINCH",
		[SIGIO] = "SIGIO", [SIGPWR] = "SIGPWR", [SIGSYS] = "SIGSYS",
	};
	if (sig > 0 && (size_t)sig < sizeof(full) / sizeof(full[0]))
		return full[sig];
	return NULL;
}

int agent_signal_parse(const char *name)
{
	if (!name || !*name)
		return -1;
	if (isdigit((unsigned char)name[0])) {
		char *end;
		errno = 0;
		long v = strtol(name, &end, 10);
		if (errno || *end || v < 1 || v > SIGRTMAX)
			return -1;
		return (int)v;
	}
	const char *n = strncmp(name, "SIG", 3) == 0 ? name + 3 : name;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (strcmp(n, signals[i].name) == 0)
			return signals[i].sig;
	return -1;
}

static int bad(struct agent_error *err, const char *fmt, const char *a, const char *b)
{
	return agent_error_set(err, AGENT_E_BAD_REQUEST, fmt, a, b);
}

/* A string field: no NUL inside, not empty; paths shorter than PATH_MAX. */
static int check_string(json_t *v, const struct field_spec *f, const char *op, struct agent_error *err)
{
	if (!json_is_string(v))
		return bad(err, "%s: field '%s' must be a string", op, f->name);
	size_t n = json_string_length(v);
	if (n == 0)
		return bad(err, "%s: field '%s' must not be empty", op, f->name);
	if (strlen(json_string_value(v)) != n)
		return bad(err, "%s: field '%s' contains a NUL byte", op, f->name);
	if (f->type == T_PATH && n >= PATH_MAX)
		return bad(err, "%s: field '%s' is longer than PATH_MAX (4095 bytes)", op, f->name);
	return 0;
}

static int parse_field(struct agent_request *r, const struct field_spec *f, json_t *v, const char *op,
		       struct agent_error *err)
{
	char *base = (char *)r;
	switch (f->type) {
	case T_STRING:
	case T_PATH:
		if (check_string(v, f, op, err))
			return -1;
		*(const char **)(base + f->member) = json_string_value(v);
		return 0;
	case T_BOOL:
		if (!json_is_boolean(v))
			return bad(err, "%s: field '%s' must be true or false", op, f->name);
		*(bool *)(base + f->member) = json_is_true(v);
		return 0;
	case T_INT: {
		if (!json_is_integer(v))
			return bad(err, "%s: field '%s' must be an integer", op, f->name);
		json_int_t x = json_integer_value(v);
		if (x < f->min || x > f->max)
			return agent_error_set(err, AGENT_E_BAD_REQUEST, "%s: field '%s' must be in %lld..%lld", op,
					       f->name, (long long)f->min, (long long)f->max);
		*(int64_t *)(base + f->member) = x;
		return 0;
	}
	case T_SIGNAL: {
		int sig = -1;
		if (json_is_integer(v)) {
			json_int_t x = json_integer_value(v);
			sig = x >= 1 && x <= SIGRTMAX ? (int)x : -1;
		} else if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v)) {
			sig = agent_signal_parse(json_string_value(v));
		}
		if (sig < 0)
			return bad(err, "%s: field '%s' must be a signal number or name like \"SIGTERM\"", op,
				   f->name);
		r->signal = sig;
		return 0;
	}
	case T_ARGS: {
		if (!json_is_array(v))
			return bad(err, "%s: field '%s' must be an array of strings", op, f->name);
		size_t i;
		json_t *a;
		json_array_foreach(v, i, a) {
			if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
				return bad(err, "%s: field '%s' must be an array of strings without NUL bytes", op,
					   f->name);
		}
		r->args = v;
		return 0;
	}
	case T_ENV: {
		if (!json_is_object(v))
			return bad(err, "%s: field '%s' must be an object of strings", op, f->name);
		const char *k;
		json_t *val;
		json_object_foreach(v, k, val) {
			if (!*k || strchr(k, '='))
				return bad(err, "%s: field '%s': a variable name must be non-empty and without '='", op,
					   f->name);
			if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val))
				return bad(err, "%s: field '%s': every value must be a string without NUL bytes", op,
					   f->name);
		}
		r->env = v;
		return 0;
	}
	}
	return bad(err, "%s: field '%s' has an unknown type", op, f->name);
}

int agent_request_parse(const char *json, size_t len, struct agent_request *req, struct agent_error *err)
{
	memset(req, 0, sizeof(*req));
	json_error_t jerr;
	json_t *root = json ? json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!root)
		return agent_error_set(err, AGENT_E_BAD_REQUEST, "request is not valid JSON: %s",
				       json ? jerr.text : "empty");
	if (!json_is_object(root)) {
		json_decref(root);
		return agent_error_set(err, AGENT_E_BAD_REQUEST, "request must be a JSON object");
	}
	json_t *opv = json_object_get(root, "op");
	if (!json_is_string(opv)) {
		json_decref(root);
		return agent_error_set(err, AGENT_E_BAD_REQUEST, "request needs \"op\", a string");
	}
	const char *opname = json_string_value(opv);
	int op = -1;
	for (int i = 0; i < AGENT_OP_COUNT; i++)
		if (strcmp(ops[i].name, opname) == 0 && strlen(opname) == json_string_length(opv))
			op = i;
	if (op < 0) {
		agent_error_set(err, AGENT_E_BAD_REQUEST, "unknown op '%.64s'", opname);
		json_decref(root);
		return -1;
	}
	req->op = op;
	req->root = root;
	req->mode = req->uid = req->gid = req->length = -1;
	req->follow = req->output = req->preserve = true;
	const struct op_spec *spec = &ops[op];
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "op") == 0)
			continue;
		int fi = -1;
		for (int i = 0; i < AGENT_F_COUNT; i++)
			if (strcmp(fields[i].name, key) == 0 && (spec->allowed & (1ull << i)))
				fi = i;
		if (fi < 0) {
			agent_error_set(err, AGENT_E_BAD_REQUEST, "%s: unknown field '%.64s'", spec->name, key);
			goto fail;
		}
		if (json_is_null(v))
			continue; /* null means absent, as clients often send */
		if (parse_field(req, &fields[fi], v, spec->name, err))
			goto fail;
		req->given |= 1ull << fi;
	}
	uint64_t missing = spec->required & ~req->given;
	if (missing) {
		agent_error_set(err, AGENT_E_BAD_REQUEST, "%s: missing field '%s'", spec->name,
				fields[__builtin_ctzll(missing)].name);
		goto fail;
	}
	return 0;
fail:
	json_decref(root);
	memset(req, 0, sizeof(*req));
	return -1;
}

void agent_request_free(struct agent_request *req)
{
	json_decref(req->root);
	memset(req, 0, sizeof(*req));
}
