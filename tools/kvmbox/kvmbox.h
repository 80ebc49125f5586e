/* kvmbox: the user-facing command-line tool. Each subcommand is one function taking its own argv
 * (argv[0] is the subcommand's name) and returning the process exit status. Manual: docs/cli.md. */
#ifndef KVMBOX_TOOLS_KVMBOX_H
#define KVMBOX_TOOLS_KVMBOX_H

#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#ifndef KVMBOX_VERSION
#define KVMBOX_VERSION "0.1.0"
#endif

/* Exit status for a command line kvmbox cannot make sense of (every subcommand uses it too). */
#define KVMBOX_EXIT_USAGE 2
/* An API error answered by kvmboxd (the sandbox commands other than run and exec). */
#define KVMBOX_EXIT_API 1
/* kvmbox's own failures: kvmboxd unreachable or broken, and any failure of run/exec that is not the
 * command's (Docker's convention: 125 the tool, 126 cannot invoke, 127 not found). */
#define KVMBOX_EXIT_TOOL 125
#define KVMBOX_EXIT_CANNOT_RUN 126
#define KVMBOX_EXIT_NOT_FOUND 127

#define KVMBOX_DEFAULT_SOCKET "/run/kvmbox/kvmbox.sock"

/* kvmbox boot-test: boot a kernel on kvmbox-vmm and judge the boot by its console (tools/kvmbox/boot_test.c). */
int cmd_boot_test(int argc, char **argv);
void boot_test_usage(FILE *out);

/* ---- the sandbox commands (docs/cli.md), clients of kvmboxd's API (docs/api.md) ---- */

/* Global options, given before the subcommand or among its own options (main.c). */
extern const char *kvmbox_socket; /* --socket, else $KVMBOX_SOCKET, else KVMBOX_DEFAULT_SOCKET */
extern bool kvmbox_json;          /* --json: the API's JSON on stdout instead of tables and ids */

/* Options every sandbox command takes; their getopt values, handled by cli_common_opt(). */
enum { OPT_SOCKET = 0x1000, OPT_JSON, OPT_HELP, OPT_CMD_BASE };
#define CLI_COMMON_LONG_OPTS                                   \
	{ "socket", required_argument, NULL, OPT_SOCKET },     \
	{ "json", no_argument, NULL, OPT_JSON },               \
	{ "help", no_argument, NULL, OPT_HELP }
/* true when c was --socket or --json (and applied). */
bool cli_common_opt(int c, const char *arg);
/* Prints "kvmbox CMD: message" and the --help hint; returns KVMBOX_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The getopt error for ':' (a missing value) and '?' (an unknown option); returns KVMBOX_EXIT_USAGE. */
int cli_getopt_error(const char *cmd, int c, char **argv);
bool cli_parse_int(const char *s, long min, long max, long *out);
/* write() until done; -1 with errno on failure (EPIPE included: SIGPIPE is ignored while curl runs). */
int write_all(int fd, const void *data, size_t n);

/* The signal (SIGINT, SIGTERM, SIGHUP) that interrupted a streaming command, 0 if none; set by the handler
 * that cli_catch_signals() installs. */
extern volatile sig_atomic_t cli_signal;
void cli_catch_signals(void);

/* One connection to kvmboxd (api_client.c): HTTP/1.1 over its Unix socket with libcurl. */
typedef int (*api_sink)(void *ctx, const char *data, size_t n);   /* body of a 2xx answer; -1 aborts */
typedef ssize_t (*api_source)(void *ctx, char *buf, size_t n);    /* upload: bytes, 0 at the end, -1 error */
typedef int (*api_tick)(void *ctx);                               /* about every 100 ms; non-zero aborts */

struct api {
	const char *cmd;       /* "ls": the prefix of every message */
	void *curl;            /* CURL * */
	bool quiet;            /* do not print API errors: the caller looks at status/code/message */
	int api_exit;          /* the exit status of an API error: KVMBOX_EXIT_API, or TOOL for run/exec */
	api_tick tick;         /* while a request is in flight (signals, timers); NULL: none */
	void *tick_ctx;
	/* The last answer. */
	long status;           /* HTTP status; 0: no answer (transport failure) */
	char code[32];         /* the error's code ("NOT_FOUND"); "" on success */
	char message[1024];    /* the error's message */
	char syscall[32];      /* file and command errors: the guest's failed system call */
	bool aborted;          /* a sink, source or tick stopped the transfer */
};

/* A request body: JSON, bytes in memory, or a streamed source (unknown length: chunked). */
struct api_body {
	const char *data;
	size_t len;
	api_source source;
	void *source_ctx;
	int64_t source_len;    /* -1: unknown */
	const char *type;      /* Content-Type; default application/json */
};

int api_open(struct api *a, const char *cmd);
void api_close(struct api *a);
/* A JSON request: body may be NULL; *out (if out) gets the answer's JSON (NULL for 204). Returns 0 on a
 * 2xx answer; else the exit status (a->api_exit for an API error, KVMBOX_EXIT_TOOL when kvmboxd could not be
 * reached or answered nonsense), after printing the error unless a->quiet. */
int api_json(struct api *a, const char *method, const char *path, json_t *body, json_t **out);
/* The general request: a 2xx answer's body goes to sink (NULL: parsed as JSON into *out). */
int api_request(struct api *a, const char *method, const char *path, const struct api_body *body, api_sink sink,
		void *sink_ctx, json_t **out);
/* Print the last error (as api_json does) and return its exit status. */
int api_report(struct api *a);
/* A path segment or query value, %-escaped; free() it. */
char *api_escape(struct api *a, const char *s);

/* The create options that run and create share (sandbox_cmds.c): they fill a POST /v1/sandboxes body. */
enum { OPT_CPUS = OPT_CMD_BASE, OPT_MEMORY, OPT_DISK, OPT_ENV, OPT_SECRET, OPT_TIMEOUT, OPT_NET, OPT_NAME,
       OPT_IMAGE, OPT_SPEC_END };
#define CLI_SPEC_LONG_OPTS                                     \
	{ "cpus", required_argument, NULL, OPT_CPUS },         \
	{ "memory", required_argument, NULL, OPT_MEMORY },     \
	{ "disk", required_argument, NULL, OPT_DISK },         \
	{ "env", required_argument, NULL, OPT_ENV },           \
	{ "secret", required_argument, NULL, OPT_SECRET },     \
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },   \
	{ "net", required_argument, NULL, OPT_NET },           \
	{ "name", required_argument, NULL, OPT_NAME },         \
	{ "image", required_argument, NULL, OPT_IMAGE }
#define CLI_SPEC_HELP                                                                                        \
	"  --cpus N             vCPUs (default 1)\n"                                                          \
	"  --memory MB          guest RAM in MiB (default 256)\n"                                             \
	"  --disk GB            the sandbox's disk in GiB (default 1)\n"                                      \
	"  -e, --env K=V        environment of every command (repeatable; K alone: take K's value from here)\n" \
	"  --secret K=V         a secret, seen by commands as $K, kept in kvmboxd's keyring, never shown\n"    \
	"                       (repeatable; K alone: take K's value from here, so it stays out of `ps`)\n"    \
	"  --timeout MIN        lifetime in minutes before the sandbox is killed (default 120)\n"             \
	"  --net none|all|CIDR[,CIDR...]  no network (default), NAT to anywhere, or only to these networks\n" \
	"  --name NAME          a unique name, usable instead of the id (1-63 of [A-Za-z0-9_.-])\n"          \
	"  --image IMAGE        the image (a folder under kvmboxd's --images; default \"default\")\n"
/* 0: c was a spec option, applied to req; 1: it is not one; else a usage error's exit status. */
int cli_spec_opt(const char *cmd, json_t *req, int c, const char *arg);
/* The positional IMAGE of run and create (a conflict with --image is a usage error). */
int cli_spec_image(const char *cmd, json_t *req, const char *image);
/* "K=V" (or "K", valued from our environment) into obj; 0, or a usage error's exit status. */
int cli_env_opt(const char *cmd, const char *opt, json_t *obj, const char *arg);
/* Human-readable "5 minutes" for a number of seconds. */
void cli_human_duration(char *buf, size_t n, int64_t secs);
int64_t cli_now_ms(void);
/* The API path of a sandbox ("/v1/sandboxes/<escaped id>" + suffix); free() it. */
char *cli_sandbox_path(struct api *a, const char *id, const char *suffix);
/* POST /v1/sandboxes (?wait=false when !wait); the sandbox or NULL (the error printed). */
json_t *cli_create_sandbox(struct api *a, json_t *req, bool wait, int *rc);

/* The commands. */
int cmd_run(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_timeout(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_cp(int argc, char **argv);
void run_usage(FILE *out);
void create_usage(FILE *out);
void ls_usage(FILE *out);
void inspect_usage(FILE *out);
void exec_usage(FILE *out);
void logs_usage(FILE *out);
void stop_usage(FILE *out);
void kill_usage(FILE *out);
void timeout_usage(FILE *out);
void rm_usage(FILE *out);
void cp_usage(FILE *out);

#endif
