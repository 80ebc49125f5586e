/* kvmbox run, exec and logs (docs/cli.md): start a command in a sandbox and stream its output live from
 * the logs endpoint (NDJSON, base64 data so that any bytes survive, resumed from the last byte seen when
 * kvmboxd says we fell behind), feed it our stdin with -i, and exit with its exit status.
 *
 * Signals: run and exec catch SIGINT/SIGTERM/SIGHUP into cli_signal and look at it from curl's progress
 * tick. run kills (and removes) its sandbox; exec forwards the first signal to the command's process group
 * and keeps following it (its exit status then tells), and stops following at the second. */
#include "tools/kvmbox/kvmbox.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RESUME_TRIES 5        /* a log stream that ends early (no exit line) is resumed this many times */
#define STDIN_CHUNK (1 << 20) /* read() returns what is there: no wait for a full chunk */

/* ---- base64 (the logs' data with encoding=base64) ---- */

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes into out (room for 3/4 of len); -1 on a bad character. */
static ssize_t b64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '=')
			break;
		int v = b64_value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return (ssize_t)n;
}

/* ---- the NDJSON log stream ---- */

struct logstream {
	struct api *a;
	bool raw;             /* --json: copy the lines to stdout as they are */
	char *line;
	size_t len, cap;
	int64_t offset;       /* the byteOffset after the last byte seen: where a resume starts */
	json_t *exit_cmd;     /* the "exit" line's command: the end */
	char err_code[32];    /* an "error" line (SLOW_CONSUMER ...) */
	char err_msg[512];
	bool epipe;           /* our stdout or stderr is closed */
	bool bad;             /* a line we could not make sense of */
};

static int log_line(struct logstream *ls, const char *text, size_t len)
{
	if (!len)
		return 0;
	json_t *j = json_loadb(text, len, 0, NULL);
	const char *type = json_string_value(json_object_get(j, "type"));
	if (!type) {
		fprintf(stderr, "kvmbox %s: kvmboxd sent a log line that is not a JSON object with a type: %.*s\n",
			ls->a->cmd, (int)(len > 200 ? 200 : len), text);
		json_decref(j);
		ls->bad = true;
		return -1;
	}
	if (ls->raw && strcmp(type, "error")) {
		/* The API's lines as they are (errors are ours to report, on stderr). */
		if (write_all(STDOUT_FILENO, text, len) || write_all(STDOUT_FILENO, "\n", 1)) {
			ls->epipe = true;
			json_decref(j);
			return -1;
		}
	}
	if (!strcmp(type, "output")) {
		const char *data = json_string_value(json_object_get(j, "data"));
		const char *stream = json_string_value(json_object_get(j, "stream"));
		json_t *off = json_object_get(j, "byteOffset");
		size_t dlen = data ? strlen(data) : 0;
		unsigned char *bytes = malloc(dlen / 4 * 3 + 4);
		ssize_t n = bytes && data ? b64_decode(data, dlen, bytes) : -1;
		if (n < 0 || !json_is_integer(off)) {
			fprintf(stderr, "kvmbox %s: kvmboxd sent an output line without base64 data or byteOffset\n",
				ls->a->cmd);
			free(bytes);
			json_decref(j);
			ls->bad = true;
			return -1;
		}
		int64_t start = json_integer_value(off);
		/* A resumed stream may repeat bytes we already wrote: skip them. */
		size_t skip = start < ls->offset ? (size_t)(ls->offset - start) : 0;
		if (skip < (size_t)n && !ls->raw) {
			int fd = stream && !strcmp(stream, "stderr") ? STDERR_FILENO : STDOUT_FILENO;
			if (write_all(fd, bytes + skip, (size_t)n - skip)) {
				ls->epipe = true;
				free(bytes);
				json_decref(j);
				return -1;
			}
		}
		if (start + n > ls->offset)
			ls->offset = start + n;
		free(bytes);
	} else if (!strcmp(type, "exit")) {
		json_decref(ls->exit_cmd);
		ls->exit_cmd = json_incref(json_object_get(j, "command"));
	} else if (!strcmp(type, "error")) {
		const char *code = json_string_value(json_object_get(j, "code"));
		const char *msg = json_string_value(json_object_get(j, "message"));
		snprintf(ls->err_code, sizeof(ls->err_code), "%s", code ? code : "ERROR");
		snprintf(ls->err_msg, sizeof(ls->err_msg), "%s", msg ? msg : "no message");
	}
	/* Unknown types are for newer daemons: skipped. */
	json_decref(j);
	return 0;
}

static int log_sink(void *ctx, const char *data, size_t n)
{
	struct logstream *ls = ctx;
	for (size_t i = 0; i < n; i++) {
		if (data[i] == '\n') {
			int r = log_line(ls, ls->line ? ls->line : "", ls->len);
			ls->len = 0;
			if (r)
				return -1;
			continue;
		}
		if (ls->len + 2 > ls->cap) {
			size_t cap = ls->cap ? ls->cap * 2 : 65536;
			char *p = realloc(ls->line, cap);
			if (!p) {
				fprintf(stderr, "kvmbox %s: out of memory\n", ls->a->cmd);
				ls->bad = true;
				return -1;
			}
			ls->line = p;
			ls->cap = cap;
		}
		ls->line[ls->len++] = data[i];
	}
	return 0;
}

/* Follows .../commands/CMD/logs until the exit line (follow) or the end of what is there. Returns 0 with
 * ls->exit_cmd set when the command ended, 0 without it when !follow and it still runs; else an exit
 * status (the error printed), or -1 when the tick or a closed stdout stopped it (ls->epipe says which). */
static int follow_logs(struct api *a, struct logstream *ls, const char *cmd_path, bool follow)
{
	int tries = 0;
	for (;;) {
		char *path;
		ls->len = 0;
		ls->err_code[0] = '\0';
		if (asprintf(&path, "%s/logs?follow=%s&encoding=base64&fromOffset=%lld", cmd_path,
			     follow ? "true" : "false", (long long)ls->offset) < 0)
			return KVMBOX_EXIT_TOOL;
		int64_t before = ls->offset;
		int rc = api_request(a, "GET", path, NULL, log_sink, ls, NULL);
		free(path);
		if (a->aborted)
			return ls->bad ? KVMBOX_EXIT_TOOL : -1;
		if (rc)
			return rc;
		if (ls->len) /* the last line without its newline */
			if (log_line(ls, ls->line, ls->len))
				return ls->bad ? KVMBOX_EXIT_TOOL : -1;
		if (ls->exit_cmd)
			return 0;
		if (ls->err_code[0] && strcmp(ls->err_code, "SLOW_CONSUMER")) {
			fprintf(stderr, "kvmbox %s: the log stream failed: %s (%s)\n", a->cmd, ls->err_msg, ls->err_code);
			return a->api_exit;
		}
		if (!follow)
			return 0;
		/* We fell behind (SLOW_CONSUMER) or the stream ended early: resume where we are. */
		if (ls->offset == before && ++tries > RESUME_TRIES) {
			fprintf(stderr, "kvmbox %s: kvmboxd keeps ending the log stream before the command's end\n",
				a->cmd);
			return KVMBOX_EXIT_TOOL;
		}
	}
}

/* ---- stdin: a thread POSTs our stdin to the command in chunks, then eof ---- */

struct pump {
	char *path; /* .../commands/CMD/stdin */
	const char *cmd;
};

static void *pump_main(void *p)
{
	struct pump *pu = p;
	sigset_t set; /* signals are the main thread's */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct api a;
	if (api_open(&a, pu->cmd))
		return NULL;
	a.quiet = true;
	char *buf = malloc(STDIN_CHUNK), *eof_path = NULL;
	if (!buf || asprintf(&eof_path, "%s?eof=true", pu->path) < 0)
		goto out;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, STDIN_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		struct api_body b = { .data = buf, .len = n > 0 ? (size_t)n : 0, .type = "application/octet-stream" };
		if (n < 0)
			fprintf(stderr, "kvmbox %s: reading stdin: %s; closing the command's stdin\n", pu->cmd,
				strerror(errno));
		int rc = api_request(&a, "POST", n > 0 ? pu->path : eof_path, &b, NULL, NULL, NULL);
		if (rc) {
			/* NOT_RUNNING: the command ended before reading it all, as `head` does; not an error. */
			if (strcmp(a.code, "NOT_RUNNING"))
				fprintf(stderr, "kvmbox %s: feeding the command's stdin: %s%s%s%s\n", pu->cmd, a.message,
					a.code[0] ? " (" : "", a.code, a.code[0] ? ")" : "");
			break;
		}
		if (n <= 0)
			break;
	}
out:
	free(buf);
	free(eof_path);
	api_close(&a);
	return NULL;
}

/* ---- starting and following a command: shared by run and exec ---- */

struct follow_ctx {
	struct api *ctl;       /* a second connection, for the signal while the logs stream on the first */
	const char *cmd_path;
	bool forward;          /* exec: forward the first signal to the command */
	int forwarded;
	int stopped_by;        /* the signal that made us stop following */
};

static int follow_tick(void *p)
{
	struct follow_ctx *f = p;
	int sig = cli_signal;
	if (!sig)
		return 0;
	cli_signal = 0;
	if (!f->forward || f->forwarded) {
		f->stopped_by = sig;
		return 1;
	}
	f->forwarded = sig;
	char *path;
	if (asprintf(&path, "%s/signal", f->cmd_path) >= 0) {
		json_t *body = json_pack("{s:i}", "signal", sig);
		api_json(f->ctl, "POST", path, body, NULL); /* an ended command: NOT_RUNNING, printed, harmless */
		json_decref(body);
		free(path);
	}
	return 0;
}

/* The exit status a command's start error means: 127 not found, 126 cannot run, 125 anything else. */
static int start_error_status(const struct api *a)
{
	if (!a->status)
		return KVMBOX_EXIT_TOOL;
	bool exec_call = !strcmp(a->syscall, "execve") || !strcmp(a->syscall, "execvp");
	if (exec_call && !strcmp(a->code, "ENOENT"))
		return KVMBOX_EXIT_NOT_FOUND;
	if (a->syscall[0] && a->code[0] == 'E')
		return KVMBOX_EXIT_CANNOT_RUN;
	return KVMBOX_EXIT_TOOL;
}

/* The command object's exit status (killed: 128 + signal, as the agent reports it). */
static int command_status(const char *cmdname, json_t *c)
{
	const char *status = json_string_value(json_object_get(c, "status"));
	json_t *code = json_object_get(c, "exitCode");
	if (json_is_true(json_object_get(c, "timedOut")))
		fprintf(stderr, "kvmbox %s: the command timed out (--timeout-ms) and was killed\n", cmdname);
	if (json_is_integer(code))
		return (int)json_integer_value(code);
	if (status && !strcmp(status, "failed")) {
		json_t *err = json_object_get(c, "error");
		const char *msg = json_string_value(json_object_get(err, "message"));
		fprintf(stderr, "kvmbox %s: the command failed to start: %s\n", cmdname, msg ? msg : "no reason given");
		return KVMBOX_EXIT_CANNOT_RUN;
	}
	fprintf(stderr, "kvmbox %s: the command ended (%s) without an exit code\n", cmdname, status ? status : "?");
	return KVMBOX_EXIT_TOOL;
}

/* Starts body in sandbox sb and follows it to its end. *stopped_by: the signal (or SIGPIPE) that made us
 * stop following before the end, 0 otherwise. Returns the exit status. */
static int start_and_follow(struct api *a, const char *sb, json_t *body, bool interactive, bool forward,
			    int *stopped_by)
{
	*stopped_by = 0;
	char *commands = cli_sandbox_path(a, sb, "/commands"), *cmd_path = NULL;
	json_t *command = NULL;
	a->quiet = true;
	int rc = api_json(a, "POST", commands, body, &command);
	a->quiet = false;
	free(commands);
	if (rc) {
		api_report(a);
		return start_error_status(a);
	}
	const char *cid = json_string_value(json_object_get(command, "id"));
	if (!cid) {
		fprintf(stderr, "kvmbox %s: kvmboxd answered the command's start without its id\n", a->cmd);
		json_decref(command);
		return KVMBOX_EXIT_TOOL;
	}
	char *cid_esc = api_escape(a, cid), *suffix;
	if (asprintf(&suffix, "/commands/%s", cid_esc) < 0)
		exit(KVMBOX_EXIT_TOOL);
	cmd_path = cli_sandbox_path(a, sb, suffix);
	free(suffix);
	free(cid_esc);
	json_decref(command);

	if (interactive) {
		static struct pump pu;
		pthread_t t;
		if (asprintf(&pu.path, "%s/stdin", cmd_path) < 0)
			exit(KVMBOX_EXIT_TOOL);
		pu.cmd = a->cmd;
		/* Detached: it may sit in read() after the command ended; exit() ends it. */
		if (pthread_create(&t, NULL, pump_main, &pu) || pthread_detach(t))
			fprintf(stderr, "kvmbox %s: cannot start the stdin thread; the command gets no input\n", a->cmd);
	}

	struct api ctl;
	if (api_open(&ctl, a->cmd)) {
		free(cmd_path);
		return KVMBOX_EXIT_TOOL;
	}
	ctl.api_exit = KVMBOX_EXIT_TOOL;
	struct follow_ctx f = { .ctl = &ctl, .cmd_path = cmd_path, .forward = forward };
	struct logstream ls = { .a = a, .raw = kvmbox_json };
	a->tick = follow_tick;
	a->tick_ctx = &f;
	rc = follow_logs(a, &ls, cmd_path, true);
	a->tick = NULL;
	if (rc < 0) {
		if (ls.epipe) {
			/* Our reader went away: what a local pipeline does to its writer, done to the command. */
			f.stopped_by = SIGPIPE;
			if (forward) {
				char *path;
				if (asprintf(&path, "%s/signal", cmd_path) >= 0) {
					json_t *sig = json_pack("{s:s}", "signal", "SIGPIPE");
					ctl.quiet = true;
					api_json(&ctl, "POST", path, sig, NULL);
					json_decref(sig);
					free(path);
				}
			}
		}
		*stopped_by = f.stopped_by;
		rc = 128 + f.stopped_by;
	} else if (!rc) {
		rc = command_status(a->cmd, ls.exit_cmd);
	}
	json_decref(ls.exit_cmd);
	free(ls.line);
	free(cmd_path);
	api_close(&ctl);
	return rc;
}

/* Splits argv at the first "--": *n_opts words for getopt (argv[0] included), the command after it. No
 * "--": every word goes to getopt, which stops at the first operand ('+'), as `docker run IMAGE CMD`. */
static void split_dashdash(int argc, char **argv, int *n_opts, bool *has_dd)
{
	*n_opts = argc;
	*has_dd = false;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--")) {
			*n_opts = i;
			*has_dd = true;
			return;
		}
}

/* The command's body: cmd, args, and what the caller adds. */
static json_t *command_body(int argc, char **argv)
{
	json_t *args = json_array();
	for (int i = 1; i < argc; i++)
		json_array_append_new(args, json_string(argv[i]));
	return json_pack("{s:s,s:o}", "cmd", argv[0], "args", args);
}

/* ---- run ---- */

void run_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox run [options] [IMAGE] -- CMD [ARG...]\n"
		     "       kvmbox run [options] IMAGE CMD [ARG...]\n\n"
		     "Creates a sandbox, runs CMD in it with its output streamed live (stdout to stdout, stderr to\n"
		     "stderr), removes the sandbox, and exits with CMD's exit status. Ctrl-C kills and removes it.\n\n"
		     "options:\n" CLI_SPEC_HELP
		     "  --keep               keep the sandbox (running) after CMD ends; its id goes to stderr\n"
		     "  -w, --workdir DIR    CMD's working directory\n"
		     "  -u, --user USER      run CMD as USER (default root)\n"
		     "  -i, --interactive    feed our stdin to CMD (default: CMD's stdin is /dev/null)\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               print the API's log lines (NDJSON, data in base64) instead of the output\n"
		     "  --help               show this help\n\n"
		     "exit status: CMD's; 125 kvmbox or kvmboxd failed (the sandbox could not be created or\n"
		     "started), 126 CMD cannot run, 127 CMD not found, 128+N stopped by signal N (130: Ctrl-C).\n");
}

/* Waits for a sandbox created with wait=false to leave created/starting. NULL on error or signal. */
static json_t *wait_started(struct api *a, const char *id, int *rc)
{
	char *path = cli_sandbox_path(a, id, NULL);
	long delay_ms = 20;
	json_t *sb = NULL;
	for (;;) {
		*rc = api_json(a, "GET", path, NULL, &sb);
		if (*rc)
			break;
		const char *st = json_string_value(json_object_get(sb, "status"));
		if (!st || (strcmp(st, "created") && strcmp(st, "starting")))
			break;
		json_decref(sb);
		sb = NULL;
		if (cli_signal)
			break;
		struct timespec ts = { 0, delay_ms * 1000000 };
		nanosleep(&ts, NULL); /* a signal cuts it short */
		if (delay_ms < 200)
			delay_ms *= 2;
	}
	free(path);
	return sb;
}

/* The end of a run: remove the sandbox (unless --keep), or just kill a kept one after a signal. */
static void run_cleanup(struct api *a, const char *id, bool keep, bool killed)
{
	a->tick = NULL;
	a->quiet = false;
	if (keep && !killed) {
		fprintf(stderr, "kvmbox run: kept sandbox %s (remove it with `kvmbox rm -f %s`)\n", id, id);
		return;
	}
	char *path = cli_sandbox_path(a, id, keep ? "/kill" : "?force=true");
	json_t *body = keep ? json_object() : NULL;
	api_json(a, keep ? "POST" : "DELETE", path, body, NULL);
	json_decref(body);
	free(path);
	if (keep)
		fprintf(stderr, "kvmbox run: killed sandbox %s, kept (remove it with `kvmbox rm %s`)\n", id, id);
}

int cmd_run(int argc, char **argv)
{
	enum { O_KEEP = OPT_SPEC_END, O_WORKDIR, O_USER, O_INTERACTIVE };
	static const struct option opts[] = {
		CLI_COMMON_LONG_OPTS,
		CLI_SPEC_LONG_OPTS,
		{ "keep", no_argument, NULL, O_KEEP },
		{ "workdir", required_argument, NULL, O_WORKDIR },
		{ "user", required_argument, NULL, O_USER },
		{ "interactive", no_argument, NULL, O_INTERACTIVE },
		{ NULL, 0, NULL, 0 },
	};
	int n_opts, c, rc = 0;
	bool has_dd, keep = false, interactive = false;
	const char *workdir = NULL, *user = NULL;
	split_dashdash(argc, argv, &n_opts, &has_dd);
	json_t *req = json_object();
	opterr = 0;
	optind = 0;
	/* With "--", options and IMAGE may mix before it; without, the first operand ends the options. */
	while (!rc && (c = getopt_long(n_opts, argv, has_dd ? ":he:w:u:i" : "+:he:w:u:i", opts, NULL)) != -1) {
		if (cli_common_opt(c, optarg))
			continue;
		switch (c) {
		case 'h':
		case OPT_HELP: run_usage(stdout); json_decref(req); return 0;
		case O_KEEP: keep = true; break;
		case 'w':
		case O_WORKDIR: workdir = optarg; break;
		case 'u':
		case O_USER: user = optarg; break;
		case 'i':
		case O_INTERACTIVE: interactive = true; break;
		default:
			rc = cli_spec_opt("run", req, c == 'e' ? OPT_ENV : c, optarg);
			if (rc == 1)
				rc = cli_getopt_error("run", c, argv);
		}
	}
	char **cmd = NULL;
	int n_cmd = 0;
	if (!rc) {
		int n_pos = n_opts - optind; /* operands before "--" (all of them without one) */
		if (has_dd) {
			if (n_pos > 1)
				rc = cli_usage_error("run", "one IMAGE at most before --, not '%s' and '%s'",
						     argv[optind], argv[optind + 1]);
			else if (n_pos == 1)
				rc = cli_spec_image("run", req, argv[optind]);
			cmd = argv + n_opts + 1;
			n_cmd = argc - n_opts - 1;
		} else if (n_pos >= 1) {
			rc = cli_spec_image("run", req, argv[optind]);
			cmd = argv + optind + 1;
			n_cmd = n_pos - 1;
		}
		if (!rc && n_cmd < 1)
			rc = cli_usage_error("run", "which command? give it after --: kvmbox run [IMAGE] -- CMD [ARG...]");
	}
	if (rc) {
		json_decref(req);
		return rc;
	}

	struct api a;
	if (api_open(&a, "run")) {
		json_decref(req);
		return KVMBOX_EXIT_TOOL;
	}
	a.api_exit = KVMBOX_EXIT_TOOL; /* our exit status is the command's: any failure of ours is 125 */
	cli_catch_signals();
	/* wait=false: we learn the id at once, so that a Ctrl-C while the VM boots can still remove it. */
	json_t *sb = cli_create_sandbox(&a, req, false, &rc);
	json_decref(req);
	if (!sb) {
		api_close(&a);
		return rc;
	}
	char *id = strdup(json_string_value(json_object_get(sb, "id")) ?: "");
	json_decref(sb);
	if (!*id) {
		fprintf(stderr, "kvmbox run: kvmboxd answered the create without an id\n");
		free(id);
		api_close(&a);
		return KVMBOX_EXIT_TOOL;
	}
	sb = wait_started(&a, id, &rc);
	if (cli_signal) {
		int sig = cli_signal;
		json_decref(sb);
		run_cleanup(&a, id, keep, true);
		free(id);
		api_close(&a);
		return 128 + sig;
	}
	const char *status = json_string_value(json_object_get(sb, "status"));
	if (!rc && (!status || strcmp(status, "running"))) {
		const char *why = json_string_value(json_object_get(sb, "errorMessage"));
		fprintf(stderr, "kvmbox run: sandbox %s did not start (%s): %s\n", id, status ? status : "?",
			why ? why : "no reason given");
		rc = KVMBOX_EXIT_TOOL;
	}
	json_decref(sb);
	if (rc) {
		if (rc != KVMBOX_EXIT_TOOL || a.status) /* not when kvmboxd is gone */
			run_cleanup(&a, id, keep, false);
		free(id);
		api_close(&a);
		return rc;
	}

	json_t *body = command_body(n_cmd, cmd);
	if (workdir)
		json_object_set_new(body, "cwd", json_string(workdir));
	if (user)
		json_object_set_new(body, "user", json_string(user));
	if (interactive)
		json_object_set_new(body, "stdin", json_true());
	int stopped_by;
	rc = start_and_follow(&a, id, body, interactive, false, &stopped_by);
	json_decref(body);
	if (!a.status && a.message[0] && !stopped_by)
		/* kvmboxd went away: a DELETE would only fail the same way. */
		fprintf(stderr, "kvmbox run: sandbox %s may still exist: `kvmbox rm -f %s` once kvmboxd is back\n",
			id, id);
	else
		run_cleanup(&a, id, keep, stopped_by != 0);
	free(id);
	api_close(&a);
	return rc;
}

/* ---- exec ---- */

void exec_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox exec [options] ID -- CMD [ARG...]\n"
		     "       kvmbox exec [options] ID CMD [ARG...]\n\n"
		     "Runs CMD in a running sandbox (id or name), streams its output live and exits with its\n"
		     "exit status. Ctrl-C sends SIGINT to CMD's process group; a second one stops waiting.\n\n"
		     "options:\n"
		     "  -d, --detach         print the command's id (`kvmbox logs` follows it) and return at once\n"
		     "  -e, --env K=V        environment for CMD, over the sandbox's (repeatable; K alone: our $K)\n"
		     "  -w, --workdir DIR    CMD's working directory\n"
		     "  -u, --user USER      run CMD as USER\n"
		     "  --sudo               run CMD as root whatever --user says\n"
		     "  -i, --interactive    feed our stdin to CMD (default: CMD's stdin is /dev/null)\n"
		     "  --timeout-ms N       kill CMD's process group after N ms (default: no limit)\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               -d: print the command as JSON; else print the API's log lines (NDJSON,\n"
		     "                       data in base64) instead of the output\n"
		     "  --help               show this help\n\n"
		     "exit status: CMD's (0 with -d); 125 kvmbox or kvmboxd failed (unknown or stopped sandbox ...),\n"
		     "126 CMD cannot run, 127 CMD not found, 128+N stopped by signal N (130: Ctrl-C).\n");
}

int cmd_exec(int argc, char **argv)
{
	enum { O_DETACH = OPT_CMD_BASE, O_ENV, O_WORKDIR, O_USER, O_SUDO, O_INTERACTIVE, O_TIMEOUT_MS };
	static const struct option opts[] = {
		CLI_COMMON_LONG_OPTS,
		{ "detach", no_argument, NULL, O_DETACH },
		{ "env", required_argument, NULL, O_ENV },
		{ "workdir", required_argument, NULL, O_WORKDIR },
		{ "user", required_argument, NULL, O_USER },
		{ "sudo", no_argument, NULL, O_SUDO },
		{ "interactive", no_argument, NULL, O_INTERACTIVE },
		{ "timeout-ms", required_argument, NULL, O_TIMEOUT_MS },
		{ NULL, 0, NULL, 0 },
	};
	int n_opts, c, rc = 0;
	bool has_dd, detach = false, interactive = false, sudo = false;
	const char *workdir = NULL, *user = NULL;
	long timeout_ms = -1;
	json_t *env = json_object();
	split_dashdash(argc, argv, &n_opts, &has_dd);
	opterr = 0;
	optind = 0;
	while (!rc && (c = getopt_long(n_opts, argv, has_dd ? ":hde:w:u:i" : "+:hde:w:u:i", opts, NULL)) != -1) {
		if (cli_common_opt(c, optarg))
			continue;
		switch (c) {
		case 'h':
		case OPT_HELP: exec_usage(stdout); json_decref(env); return 0;
		case 'd':
		case O_DETACH: detach = true; break;
		case 'e':
		case O_ENV: rc = cli_env_opt("exec", "--env", env, optarg); break;
		case 'w':
		case O_WORKDIR: workdir = optarg; break;
		case 'u':
		case O_USER: user = optarg; break;
		case O_SUDO: sudo = true; break;
		case 'i':
		case O_INTERACTIVE: interactive = true; break;
		case O_TIMEOUT_MS:
			if (!cli_parse_int(optarg, 0, LONG_MAX, &timeout_ms))
				rc = cli_usage_error("exec", "--timeout-ms wants a whole number of ms (0: none), not '%s'",
						     optarg);
			break;
		default: rc = cli_getopt_error("exec", c, argv);
		}
	}
	const char *sb = NULL;
	char **cmd = NULL;
	int n_cmd = 0;
	if (!rc) {
		int n_pos = n_opts - optind;
		if (n_pos < 1)
			rc = cli_usage_error("exec", "which sandbox? kvmbox exec ID -- CMD [ARG...]");
		else if (has_dd && n_pos > 1)
			rc = cli_usage_error("exec", "one sandbox before --, not '%s' and '%s'", argv[optind],
					     argv[optind + 1]);
		else {
			sb = argv[optind];
			cmd = has_dd ? argv + n_opts + 1 : argv + optind + 1;
			n_cmd = has_dd ? argc - n_opts - 1 : n_pos - 1;
			if (n_cmd < 1)
				rc = cli_usage_error("exec", "which command? kvmbox exec ID -- CMD [ARG...]");
		}
	}
	if (!rc && detach && interactive)
		rc = cli_usage_error("exec", "-d and -i: a detached command cannot read our stdin; give one");
	if (rc) {
		json_decref(env);
		return rc;
	}

	json_t *body = command_body(n_cmd, cmd);
	if (json_object_size(env))
		json_object_set(body, "env", env);
	json_decref(env);
	if (workdir)
		json_object_set_new(body, "cwd", json_string(workdir));
	if (user)
		json_object_set_new(body, "user", json_string(user));
	if (sudo)
		json_object_set_new(body, "sudo", json_true());
	if (interactive)
		json_object_set_new(body, "stdin", json_true());
	if (timeout_ms >= 0)
		json_object_set_new(body, "timeoutMs", json_integer(timeout_ms));

	struct api a;
	if (api_open(&a, "exec")) {
		json_decref(body);
		return KVMBOX_EXIT_TOOL;
	}
	a.api_exit = KVMBOX_EXIT_TOOL;
	if (detach) {
		char *path = cli_sandbox_path(&a, sb, "/commands");
		json_t *command = NULL;
		a.quiet = true;
		rc = api_json(&a, "POST", path, body, &command);
		free(path);
		if (rc) {
			api_report(&a);
			rc = start_error_status(&a);
		} else if (kvmbox_json) {
			json_dumpf(command, stdout, JSON_INDENT(2));
			putchar('\n');
		} else {
			printf("%s\n", json_string_value(json_object_get(command, "id")) ?: "?");
		}
		json_decref(command);
	} else {
		int stopped_by;
		cli_catch_signals();
		rc = start_and_follow(&a, sb, body, interactive, true, &stopped_by);
	}
	json_decref(body);
	api_close(&a);
	return rc;
}

/* ---- logs ---- */

void logs_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox logs [-f] [--from OFFSET] ID CMDID\n\n"
		     "Prints a command's output (stdout to stdout, stderr to stderr) as kvmboxd still holds it.\n\n"
		     "options:\n"
		     "  -f, --follow         then follow the live output until the command ends\n"
		     "  --from OFFSET        start at this byte of the command's combined output (default 0)\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               print the API's log lines (NDJSON, data in base64)\n"
		     "  --help               show this help\n\n"
		     "exit status: 0; 1 kvmboxd refused (unknown command, OUTPUT_GONE ...), 125 unreachable.\n");
}

int cmd_logs(int argc, char **argv)
{
	enum { O_FOLLOW = OPT_CMD_BASE, O_FROM };
	static const struct option opts[] = {
		CLI_COMMON_LONG_OPTS,
		{ "follow", no_argument, NULL, O_FOLLOW },
		{ "from", required_argument, NULL, O_FROM },
		{ NULL, 0, NULL, 0 },
	};
	bool follow = false;
	long from = 0;
	int c;
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":hf", opts, NULL)) != -1) {
		if (cli_common_opt(c, optarg))
			continue;
		switch (c) {
		case 'h':
		case OPT_HELP: logs_usage(stdout); return 0;
		case 'f':
		case O_FOLLOW: follow = true; break;
		case O_FROM:
			if (!cli_parse_int(optarg, 0, LONG_MAX, &from))
				return cli_usage_error("logs", "--from wants a byte offset (0 or more), not '%s'", optarg);
			break;
		default: return cli_getopt_error("logs", c, argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("logs", "wants ID CMDID (the sandbox, and the command's id from `exec -d`)");

	struct api a;
	if (api_open(&a, "logs"))
		return KVMBOX_EXIT_TOOL;
	char *cid = api_escape(&a, argv[optind + 1]), *suffix, *cmd_path;
	if (asprintf(&suffix, "/commands/%s", cid) < 0)
		return KVMBOX_EXIT_TOOL;
	cmd_path = cli_sandbox_path(&a, argv[optind], suffix);
	free(suffix);
	free(cid);
	struct logstream ls = { .a = &a, .raw = kvmbox_json, .offset = from };
	int rc = follow_logs(&a, &ls, cmd_path, follow);
	if (rc < 0)
		rc = ls.epipe ? 128 + SIGPIPE : KVMBOX_EXIT_TOOL;
	json_decref(ls.exit_cmd);
	free(ls.line);
	free(cmd_path);
	api_close(&a);
	return rc;
}
