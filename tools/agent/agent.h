/* The agent's server: one epoll loop over its listening sockets, client connections, the pipes of the
 * commands it runs and a signalfd (docs/agent-protocol.md). Single-threaded; nothing blocks except the
 * file system calls themselves. agent.c owns connections and dispatch, cmd.c the commands, fs.c the
 * file operations. The same code runs as the guest's PID 1 and on the host (`--listen unix:PATH`), where
 * the unit tests drive it through socketpairs. */
#ifndef KVMBOX_AGENT_AGENT_H
#define KVMBOX_AGENT_AGENT_H

#include "tools/agent/frame.h"
#include "tools/agent/request.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_VERSION          "0.1"
#define AGENT_MAX_CONNS        64
#define AGENT_MAX_STREAMS      64          /* requests in flight per connection */
#define AGENT_MAX_COMMANDS     1024        /* commands kept, running or ended */
#define AGENT_OUT_HIGH         (1u << 20)  /* a connection's queued output above which producers wait */
#define AGENT_OUT_MAX          (64u << 20) /* above this the client is not reading: drop the connection */
#define AGENT_STDIN_HIGH       (1u << 20)  /* a command's unwritten stdin above which its writer's input waits */
#define AGENT_CHUNK            (64u * 1024)
#define AGENT_VSOCK_WINDOW     (2u << 20)  /* each connection's receive buffer (vsock credit) */

struct agent;
struct conn;
struct cmd;

struct agent_options {
	bool system;        /* PID 1 in a guest: may set the hostname, power off on shutdown */
	const char *log_prefix;
};

struct agent *agent_create(const struct agent_options *opts, struct agent_error *err);
void agent_destroy(struct agent *ag);
int agent_listen_vsock(struct agent *ag, unsigned port, struct agent_error *err);
int agent_listen_unix(struct agent *ag, const char *path, struct agent_error *err);
/* Serve a connected socket (tests: one end of a socketpair). Takes the fd. */
int agent_add_connection(struct agent *ag, int fd);
/* One loop iteration: waits up to timeout_ms (-1: until something happens or a command's timeout lapses). */
int agent_run_once(struct agent *ag, int timeout_ms);
/* A shutdown request or a terminating signal arrived. */
bool agent_stopping(const struct agent *ag);
/* Send what is queued for the clients, for up to timeout_ms (before powering off). */
void agent_flush(struct agent *ag, int timeout_ms);
/* Kill every running command's process group (SIGKILL) and reap them (host-mode exit, tests). */
void agent_kill_commands(struct agent *ag);

/* ---- between agent.c and cmd.c ---- */

/* An active request on a connection: one that did not get its RESPONSE with the REQUEST. */
enum stream_kind { STREAM_READ_FILE, STREAM_WRITE_FILE, STREAM_STDIN, STREAM_ATTACH, STREAM_DISCARD };

struct stream {
	enum stream_kind kind;
	uint32_t id;
	struct conn *conn;
	struct stream *next;          /* in conn's list */
	/* STREAM_READ_FILE */
	int fd;
	int64_t offset, remaining, sent;
	/* STREAM_WRITE_FILE */
	int64_t written;
	char *path;
	/* STREAM_STDIN: the bytes up to stdin_mark must be written before the response */
	struct cmd *cmd;
	uint64_t stdin_mark;
	bool upload_done;             /* the client's last frame (no MORE) arrived */
	bool stdin_eof;               /* close the command's stdin after this upload */
	/* STREAM_ATTACH */
	struct stream *sub_next;      /* in cmd's subscriber list */
	uint64_t out_offset;          /* next byte to send */
	uint64_t stop_offset;         /* follow=false: stop here */
	bool follow, output, started_event;
};

/* Queue a frame on a connection (meta is taken, may be NULL; data copied). Never blocks. */
void conn_send(struct conn *c, uint8_t type, uint32_t id, json_t *meta, const void *data, size_t len);
void conn_respond_ok(struct conn *c, uint32_t id, json_t *result);           /* result taken, may be NULL */
void conn_respond_error(struct conn *c, uint32_t id, const struct agent_error *e, json_t *extra);
bool conn_has_room(const struct conn *c);
/* Pause or resume reading requests from c (stdin backpressure). */
void conn_pause_input(struct conn *c, bool pause);
/* Start an active request on c (NULL without memory). */
struct stream *agent_stream_new(struct conn *c, uint32_t id, enum stream_kind kind);
/* The agent a connection belongs to. */
struct agent *conn_agent(const struct conn *c);
/* End an active request (after its RESPONSE was queued): unlink and free. */
void stream_end(struct stream *s);

/* The agent's loop, for cmd.c's pipes. */
enum agent_fd_kind { FD_LISTEN, FD_CONN, FD_SIGNAL, FD_CMD_STDOUT, FD_CMD_STDERR, FD_CMD_STDIN };
struct agent_fd {
	enum agent_fd_kind kind;
	void *obj;
};
int agent_watch(struct agent *ag, int fd, uint32_t events, struct agent_fd *tag);
void agent_unwatch(struct agent *ag, int fd);
int agent_rewatch(struct agent *ag, int fd, uint32_t events, struct agent_fd *tag);
struct cmd_table *agent_cmds(struct agent *ag);
int64_t agent_now_ms(void);       /* wall clock, for timestamps */
int64_t agent_mono_ms(void);      /* monotonic, for timeouts */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The sandbox's settings (configure). */
struct agent_settings {
	json_t *env;        /* object of strings */
	char cwd[PATH_MAX];
	char user[64];
	char hostname[65];
};
const struct agent_settings *agent_settings(const struct agent *ag);

/* ---- cmd.c ---- */
struct cmd_table *cmd_table_create(struct agent *ag);
void cmd_table_destroy(struct cmd_table *t);
/* The command ops: run, attach, stdin, signal, get, list. data/len is the REQUEST's data part (stdin). */
void cmd_request(struct cmd_table *t, struct conn *c, uint32_t id, const struct agent_request *r, uint8_t flags,
		 const void *data, size_t len);
/* A DATA frame for an active STREAM_STDIN. */
void cmd_stdin_data(struct stream *s, const void *data, size_t len, bool last);
/* The connection of s went away (s is about to be freed). */
void cmd_stream_gone(struct stream *s);
/* The connection has room again: let its attach streams send. */
void cmd_stream_pump(struct stream *s);
/* An fd of a command is ready. */
void cmd_fd_ready(struct cmd_table *t, struct agent_fd *tag, uint32_t events);
/* A child exited (from waitpid); returns false when pid is none of the commands. */
bool cmd_reaped(struct cmd_table *t, pid_t pid, int status);
/* Milliseconds until the nearest command timeout (-1: none); kills the commands whose timeout lapsed. */
int cmd_timeouts(struct cmd_table *t);
void cmd_kill_all(struct cmd_table *t);

#endif
