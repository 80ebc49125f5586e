/* Commands (docs/agent-protocol.md, "Commands"): spawn with argv and a merged environment in a session
 * of their own, collect stdout and stderr into one ring buffer per command, feed stdin, signal, time out,
 * and stream output to any number of readers (attach streams), each at its own offset. */
#include "tools/agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum cmd_status { CMD_PENDING, CMD_RUNNING, CMD_FINISHED, CMD_KILLED, CMD_FAILED };
static const char *const status_names[] = {"pending", "running", "finished", "killed", "failed"};

/* One read of one stream: the bytes from off up to the next segment's off. */
struct seg {
	uint64_t off;
	int64_t ts;
	uint8_t stream; /* 1 stdout, 2 stderr */
};

/* The output ring: bytes [start, end) of the command's combined output, byte o at buf[o % cap]. The buffer
 * grows by doubling up to max, so a command that prints little costs little. */
struct ring {
	uint8_t *buf;
	size_t cap, max;
	uint64_t start, end;
	struct seg *segs; /* a circular deque of segments, oldest first */
	size_t seg_head, seg_count, seg_cap, seg_max;
};

struct cmd {
	char id[24];
	json_t *argv_json;      /* [cmd, args...] as given */
	char cwd[PATH_MAX];
	char user[64];
	pid_t pid;
	enum cmd_status status;
	int exit_code, term_signal;
	bool timed_out, stdin_requested, detached;
	int64_t started_at, finished_at, deadline; /* deadline: monotonic ms, 0 for none */
	json_t *error;          /* failed: the error object */
	int out_fd[2];          /* stdout, stderr read ends; -1 once closed */
	struct agent_fd out_tag[2];
	int in_fd;              /* stdin write end; -1 when none or closed */
	struct agent_fd in_tag;
	bool in_watched;
	uint8_t *in_buf;        /* stdin bytes not written yet */
	size_t in_len, in_cap;
	uint64_t in_queued, in_written;
	bool in_eof;            /* close stdin once in_buf is empty */
	struct ring ring;
	struct stream *subs;    /* attach streams */
	struct stream *stdins;  /* stdin streams waiting for their bytes to be written */
	struct cmd *next;
};

struct cmd_table {
	struct agent *ag;
	_Alignas(16) uint8_t child_stack[64 * 1024]; /* the spawned child's, until it execs */
	struct cmd *head, *tail;
	int count;
	uint64_t next_seq;
};

struct user_info {
	bool found;
	uid_t uid;
	gid_t gid;
	char name[64];
	char home[PATH_MAX];
};

/* ---- the ring ---- */

static void ring_copy_out(const struct ring *r, uint64_t off, uint8_t *dst, size_t n)
{
	size_t pos = off % r->cap, first = r->cap - pos < n ? r->cap - pos : n;
	memcpy(dst, r->buf + pos, first);
	memcpy(dst + first, r->buf, n - first);
}

static struct seg *seg_at(const struct ring *r, size_t i)
{
	return &r->segs[(r->seg_head + i) % r->seg_cap];
}

static void seg_pop(struct ring *r)
{
	r->seg_head = (r->seg_head + 1) % r->seg_cap;
	r->seg_count--;
}

/* Drop bytes from the front so that start >= new_start, and the segments that end before it. */
static void ring_drop_to(struct ring *r, uint64_t new_start)
{
	if (new_start > r->start)
		r->start = new_start;
	while (r->seg_count > 1 && seg_at(r, 1)->off <= r->start)
		seg_pop(r);
	if (r->seg_count == 1 && r->start == r->end)
		seg_pop(r);
}

static int ring_grow(struct ring *r, size_t need)
{
	size_t ncap = r->cap ? r->cap : 4096;
	while (ncap < need && ncap < r->max)
		ncap *= 2;
	if (ncap > r->max)
		ncap = r->max;
	if (ncap == r->cap)
		return 0;
	uint8_t *nb = malloc(ncap);
	if (!nb)
		return -1;
	for (uint64_t o = r->start; o < r->end;) { /* re-lay the live bytes at o % ncap */
		size_t n = r->end - o;
		size_t pos = o % ncap;
		if (n > ncap - pos)
			n = ncap - pos;
		ring_copy_out(r, o, nb + pos, n);
		o += n;
	}
	free(r->buf);
	r->buf = nb;
	r->cap = ncap;
	return 0;
}

static int ring_append(struct ring *r, uint8_t stream, int64_t ts, const uint8_t *data, size_t n)
{
	if (n > r->max) { /* one read bigger than the whole buffer: only its tail is kept */
		r->end += n - r->max;
		ring_drop_to(r, r->end);
		data += n - r->max;
		n = r->max;
	}
	if (r->end - r->start + n > r->max)
		ring_drop_to(r, r->end + n - r->max);
	if (r->end - r->start + n > r->cap && ring_grow(r, r->end - r->start + n)) {
		/* No memory for more: keep what fits by dropping older output. */
		ring_drop_to(r, r->end + n > r->cap ? r->end + n - r->cap : r->start);
		if (!r->cap)
			return -1;
	}
	struct seg *last = r->seg_count ? seg_at(r, r->seg_count - 1) : NULL;
	if (!last || last->stream != stream || last->ts != ts) {
		if (r->seg_count == r->seg_max) /* too many small reads: drop the oldest */
			ring_drop_to(r, seg_at(r, 1)->off);
		if (r->seg_count == r->seg_cap) {
			size_t ncap = r->seg_cap ? r->seg_cap * 2 : 64;
			struct seg *ns = malloc(ncap * sizeof(*ns));
			if (!ns)
				return -1;
			for (size_t i = 0; i < r->seg_count; i++)
				ns[i] = *seg_at(r, i);
			free(r->segs);
			r->segs = ns;
			r->seg_cap = ncap;
			r->seg_head = 0;
		}
		*seg_at(r, r->seg_count) = (struct seg){r->end, ts, stream};
		r->seg_count++;
	}
	for (size_t done = 0; done < n;) {
		size_t pos = (r->end + done) % r->cap, k = r->cap - pos < n - done ? r->cap - pos : n - done;
		memcpy(r->buf + pos, data + done, k);
		done += k;
	}
	r->end += n;
	return 0;
}

/* The segment holding offset off (start <= off < end). */
static const struct seg *ring_seg(const struct ring *r, uint64_t off, uint64_t *seg_end)
{
	size_t lo = 0, hi = r->seg_count;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (seg_at(r, mid)->off <= off)
			lo = mid;
		else
			hi = mid;
	}
	*seg_end = lo + 1 < r->seg_count ? seg_at(r, lo + 1)->off : r->end;
	return seg_at(r, lo);
}

/* ---- commands as JSON ---- */

static bool cmd_ended(const struct cmd *c)
{
	return c->status >= CMD_FINISHED;
}

static json_t *cmd_json(const struct cmd *c)
{
	json_t *args = json_array();
	for (size_t i = 1; i < json_array_size(c->argv_json); i++)
		json_array_append(args, json_array_get(c->argv_json, i));
	json_t *j = json_pack("{s:s, s:O, s:o, s:s, s:s, s:s, s:b, s:I, s:I, s:b, s:b, s:I}", "id", c->id, "cmd",
			      json_array_get(c->argv_json, 0), "args", args, "cwd", c->cwd, "user", c->user,
			      "status", status_names[c->status], "timedOut", c->timed_out, "outputBytes",
			      (json_int_t)c->ring.end, "bufferStart", (json_int_t)c->ring.start, "stdin",
			      c->stdin_requested, "detached", c->detached, "startedAt", (json_int_t)c->started_at);
	if (!j)
		return NULL;
	json_object_set_new(j, "pid", c->pid > 0 ? json_integer(c->pid) : json_null());
	json_object_set_new(j, "exitCode", cmd_ended(c) && c->status != CMD_FAILED ? json_integer(c->exit_code)
										  : json_null());
	const char *sig = c->status == CMD_KILLED ? agent_signal_name(c->term_signal) : NULL;
	json_object_set_new(j, "signal", sig ? json_string(sig) : json_null());
	json_object_set_new(j, "finishedAt", cmd_ended(c) ? json_integer(c->finished_at) : json_null());
	if (c->error)
		json_object_set(j, "error", c->error);
	return j;
}

/* ---- attach streams ---- */

static void sub_unlink(struct stream **list, struct stream *s)
{
	for (struct stream **p = list; *p; p = &(*p)->sub_next)
		if (*p == s) {
			*p = s->sub_next;
			return;
		}
}

static void attach_finish(struct stream *s, const struct agent_error *e, json_t *extra)
{
	if (e)
		conn_respond_error(s->conn, s->id, e, extra);
	else
		conn_respond_ok(s->conn, s->id, cmd_json(s->cmd));
	stream_end(s);
}

void cmd_stream_pump(struct stream *s)
{
	static uint8_t buf[FRAME_MAX_DATA];
	struct cmd *c = s->cmd;
	const struct ring *r = &c->ring;
	bool ended = cmd_ended(c);
	uint64_t limit = s->follow ? r->end : s->stop_offset;
	while (s->output && s->out_offset < limit && conn_has_room(s->conn)) {
		if (s->out_offset < r->start) {
			struct agent_error e;
			agent_error_set(&e, AGENT_E_SLOW_CONSUMER,
					"this reader fell behind the command's %zu-byte output buffer: bytes up to "
					"offset %llu are gone; attach again from bufferStart %llu",
					r->max, (unsigned long long)r->start, (unsigned long long)r->start);
			attach_finish(s, &e, json_pack("{s:I}", "bufferStart", (json_int_t)r->start));
			return;
		}
		uint64_t seg_end;
		const struct seg *g = ring_seg(r, s->out_offset, &seg_end);
		uint64_t stop = seg_end < limit ? seg_end : limit;
		size_t n = stop - s->out_offset > sizeof(buf) ? sizeof(buf) : stop - s->out_offset;
		ring_copy_out(r, s->out_offset, buf, n);
		conn_send(s->conn, FRAME_DATA, s->id,
			  json_pack("{s:s, s:I, s:I}", "stream", g->stream == 1 ? "stdout" : "stderr", "byteOffset",
				    (json_int_t)s->out_offset, "timestamp", (json_int_t)g->ts),
			  buf, n);
		s->out_offset += n;
	}
	bool done = s->output ? (ended || !s->follow) && s->out_offset >= limit : ended || !s->follow;
	if (done && conn_has_room(s->conn))
		attach_finish(s, NULL, NULL);
}

static void pump_subs(struct cmd *c)
{
	for (struct stream *s = c->subs, *next; s; s = next) {
		next = s->sub_next;
		cmd_stream_pump(s);
	}
}

/* ---- stdin ---- */

static void stdin_close(struct cmd_table *t, struct cmd *c)
{
	if (c->in_fd < 0)
		return;
	if (c->in_watched)
		agent_unwatch(t->ag, c->in_fd);
	c->in_watched = false;
	close(c->in_fd);
	c->in_fd = -1;
}

/* Answer the stdin requests whose bytes are all written; fail them all when err is set. */
static void stdin_settle(struct cmd *c, const struct agent_error *err)
{
	for (struct stream *s = c->stdins, *next; s; s = next) {
		next = s->sub_next;
		if (err) {
			conn_respond_error(s->conn, s->id, err, NULL);
		} else if (s->upload_done && c->in_written >= s->stdin_mark) {
			conn_respond_ok(s->conn, s->id, NULL);
		} else {
			if (c->in_len < AGENT_STDIN_HIGH)
				conn_pause_input(s->conn, false);
			continue;
		}
		conn_pause_input(s->conn, false);
		if (!s->upload_done) { /* keep swallowing the client's remaining DATA frames */
			sub_unlink(&c->stdins, s);
			s->cmd = NULL;
			s->kind = STREAM_DISCARD;
			continue;
		}
		stream_end(s);
	}
}

static void stdin_flush(struct cmd_table *t, struct cmd *c)
{
	while (c->in_fd >= 0 && c->in_len) {
		ssize_t n = write(c->in_fd, c->in_buf, c->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			/* The command closed its stdin (EPIPE): what was queued cannot be delivered. */
			struct agent_error e;
			agent_error_errno(&e, errno, "write", "stdin", NULL);
			c->in_len = 0;
			stdin_close(t, c);
			stdin_settle(c, &e);
			return;
		}
		memmove(c->in_buf, c->in_buf + n, c->in_len - n);
		c->in_len -= n;
		c->in_written += n;
	}
	if (c->in_fd >= 0 && !c->in_len && c->in_eof)
		stdin_close(t, c);
	if (c->in_fd >= 0) {
		bool want = c->in_len > 0;
		if (want != c->in_watched) {
			if (want)
				agent_watch(t->ag, c->in_fd, EPOLLOUT, &c->in_tag);
			else
				agent_unwatch(t->ag, c->in_fd);
			c->in_watched = want;
		}
	}
	stdin_settle(c, NULL);
}

static int stdin_queue(struct cmd *c, const void *data, size_t len)
{
	if (c->in_len + len > c->in_cap) {
		size_t ncap = c->in_cap ? c->in_cap : 65536;
		while (ncap < c->in_len + len)
			ncap *= 2;
		uint8_t *nb = realloc(c->in_buf, ncap);
		if (!nb)
			return -1;
		c->in_buf = nb;
		c->in_cap = ncap;
	}
	memcpy(c->in_buf + c->in_len, data, len);
	c->in_len += len;
	c->in_queued += len;
	return 0;
}

void cmd_stdin_data(struct stream *s, const void *data, size_t len, bool last)
{
	struct cmd *c = s->cmd;
	struct cmd_table *t = agent_cmds(conn_agent(s->conn));
	if (stdin_queue(c, data, len)) {
		struct agent_error e;
		agent_error_set(&e, AGENT_E_INTERNAL, "out of memory queueing stdin");
		conn_respond_error(s->conn, s->id, &e, NULL);
		sub_unlink(&c->stdins, s);
		s->cmd = NULL;
		s->kind = STREAM_DISCARD;
		if (last)
			stream_end(s);
		return;
	}
	if (last) {
		s->upload_done = true;
		s->stdin_mark = c->in_queued;
		if (s->stdin_eof)
			c->in_eof = true;
	}
	if (c->in_len >= AGENT_STDIN_HIGH)
		conn_pause_input(s->conn, true);
	stdin_flush(t, c);
}

void cmd_stream_gone(struct stream *s)
{
	if (!s->cmd)
		return;
	sub_unlink(s->kind == STREAM_ATTACH ? &s->cmd->subs : &s->cmd->stdins, s);
	s->cmd = NULL;
}

/* ---- output pipes ---- */

static void out_close(struct cmd_table *t, struct cmd *c, int i)
{
	if (c->out_fd[i] < 0)
		return;
	agent_unwatch(t->ag, c->out_fd[i]);
	close(c->out_fd[i]);
	c->out_fd[i] = -1;
}

/* Read what a pipe holds, at most max_reads times (fairness between commands). Returns -1 at EOF, 0 when
 * the pipe is empty for now, 1 when it stopped at max_reads. */
static int out_read(struct cmd_table *t, struct cmd *c, int i, int max_reads)
{
	static uint8_t buf[AGENT_CHUNK];
	int ret = 1;
	while (max_reads > 0) {
		if (c->out_fd[i] < 0) {
			ret = -1;
			break;
		}
		/* Never more than the ring holds: a reader that keeps up must be able to see every byte. */
		ssize_t n = read(c->out_fd[i], buf, sizeof(buf) < c->ring.max ? sizeof(buf) : c->ring.max);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			ret = 0;
			break;
		}
		if (n <= 0) {
			out_close(t, c, i);
			ret = -1;
			break;
		}
		ring_append(&c->ring, (uint8_t)(i + 1), agent_now_ms(), buf, n);
		pump_subs(c); /* before the next read can overwrite what a reader has not been sent */
		max_reads--;
	}
	return ret;
}

void cmd_fd_ready(struct cmd_table *t, struct agent_fd *tag, uint32_t events)
{
	struct cmd *c = tag->obj;
	(void)events;
	if (tag->kind == FD_CMD_STDOUT)
		out_read(t, c, 0, 4);
	else if (tag->kind == FD_CMD_STDERR)
		out_read(t, c, 1, 4);
	else if (tag->kind == FD_CMD_STDIN)
		stdin_flush(t, c);
}

/* ---- lifecycle ---- */

static struct cmd *cmd_find(struct cmd_table *t, const char *id)
{
	for (struct cmd *c = t->head; c; c = c->next)
		if (strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

static void cmd_free(struct cmd_table *t, struct cmd *c)
{
	out_close(t, c, 0);
	out_close(t, c, 1);
	stdin_close(t, c);
	json_decref(c->argv_json);
	json_decref(c->error);
	free(c->in_buf);
	free(c->ring.buf);
	free(c->ring.segs);
	free(c);
}

/* Make room for one more command: evict the oldest ended one nobody is reading. */
static int cmd_make_room(struct cmd_table *t)
{
	if (t->count < AGENT_MAX_COMMANDS)
		return 0;
	for (struct cmd **p = &t->head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
		struct cmd *c = *p;
		if (cmd_ended(c) && !c->subs && !c->stdins) {
			*p = c->next;
			if (t->tail == c)
				t->tail = prev;
			t->count--;
			cmd_free(t, c);
			return 0;
		}
	}
	return -1;
}

static void cmd_ended_now(struct cmd_table *t, struct cmd *c)
{
	c->finished_at = agent_now_ms();
	out_close(t, c, 0);
	out_close(t, c, 1);
	c->in_len = 0;
	stdin_close(t, c);
	struct agent_error e;
	agent_error_set(&e, AGENT_E_NOT_RUNNING, "command %s ended before its stdin was written", c->id);
	stdin_settle(c, &e);
	pump_subs(c);
}

bool cmd_reaped(struct cmd_table *t, pid_t pid, int status)
{
	struct cmd *c;
	for (c = t->head; c; c = c->next)
		if (c->pid == pid && c->status == CMD_RUNNING)
			break;
	if (!c)
		return false;
	/* What the process wrote before it exited is in the pipes: read all of it first. Later output of
	 * processes it left behind is not collected (docs/agent-protocol.md). */
	for (int i = 0; i < 2; i++)
		while (out_read(t, c, i, 64) == 1)
			;
	if (WIFSIGNALED(status)) {
		c->status = CMD_KILLED;
		c->term_signal = WTERMSIG(status);
		c->exit_code = 128 + c->term_signal;
	} else {
		c->status = CMD_FINISHED;
		c->exit_code = WEXITSTATUS(status);
	}
	cmd_ended_now(t, c);
	return true;
}

int cmd_timeouts(struct cmd_table *t)
{
	int64_t now = agent_mono_ms(), next = -1;
	for (struct cmd *c = t->head; c; c = c->next) {
		if (c->status != CMD_RUNNING || !c->deadline || c->timed_out)
			continue;
		if (now >= c->deadline) {
			c->timed_out = true;
			kill(-c->pid, SIGKILL);
			continue;
		}
		if (next < 0 || c->deadline - now < next)
			next = c->deadline - now;
	}
	return next > INT32_MAX ? INT32_MAX : (int)next;
}

void cmd_kill_all(struct cmd_table *t)
{
	for (struct cmd *c = t->head; c; c = c->next) {
		if (c->status != CMD_RUNNING)
			continue;
		kill(-c->pid, SIGKILL);
		int status;
		while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
			;
		cmd_reaped(t, c->pid, status);
	}
}

/* ---- spawning ---- */

/* Look a user up in /etc/passwd by name (or by uid when name is NULL). Parsed here: a static binary cannot
 * use glibc's NSS. */
static void user_lookup(const char *name, uid_t uid, struct user_info *u)
{
	memset(u, 0, sizeof(*u));
	FILE *f = fopen("/etc/passwd", "re");
	if (!f)
		return;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		char *fields[7] = {0}, *p = line;
		int n = 0;
		line[strcspn(line, "\n")] = 0;
		while (n < 7 && p) {
			fields[n++] = p;
			p = strchr(p, ':');
			if (p)
				*p++ = 0;
		}
		if (n < 6)
			continue;
		char *end;
		unsigned long fu = strtoul(fields[2], &end, 10);
		if (*end || !*fields[2])
			continue;
		unsigned long fg = strtoul(fields[3], &end, 10);
		if (*end || !*fields[3])
			continue;
		if (name ? strcmp(fields[0], name) != 0 : fu != uid)
			continue;
		u->found = true;
		u->uid = fu;
		u->gid = fg;
		snprintf(u->name, sizeof(u->name), "%s", fields[0]);
		snprintf(u->home, sizeof(u->home), "%s", fields[5]);
		break;
	}
	fclose(f);
}

/* cmd without '/' is looked up in PATH (the merged environment's) like execvp, before forking. */
static int resolve_exec(const char *cmd, const char *path_env, char *out, size_t outsz)
{
	if (strchr(cmd, '/')) {
		snprintf(out, outsz, "%s", cmd);
		return 0;
	}
	const char *p = path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
	int err = ENOENT;
	while (*p) {
		size_t n = strcspn(p, ":");
		int w = snprintf(out, outsz, "%.*s%s%s", (int)n, n ? p : ".", "/", cmd);
		if (w > 0 && (size_t)w < outsz) {
			struct stat st;
			if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
				if (access(out, X_OK) == 0)
					return 0;
				err = EACCES;
			}
		}
		p += n;
		if (*p == ':')
			p++;
	}
	return -err;
}

struct spawn_failure {
	int stage; /* 1 chdir, 2 setuid, 3 execve, 4 dup2 */
	int err;
};

static const char *const stage_names[] = {"", "chdir", "setuid", "execve", "dup2"};

static char **env_array(json_t *env)
{
	size_t n = json_object_size(env), i = 0;
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	const char *k;
	json_t *val;
	json_object_foreach(env, k, val) {
		if (asprintf(&v[i], "%s=%s", k, json_string_value(val)) < 0) {
			v[i] = NULL;
			break;
		}
		i++;
	}
	return v;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* What the child needs; it runs on the parent's memory (CLONE_VM) until it execs. */
struct spawn_args {
	int in, out, err;
	const char *cwd;
	const struct user_info *u;
	bool switch_user;
	const char *path;
	char **argv, **envp;
	struct spawn_failure failure; /* written by the child when it cannot exec */
};

/* The child, between clone and exec. It shares the parent's memory (the parent is suspended until it execs
 * or exits, like vfork), so it writes nothing but its own stack and a->failure, and changes credentials
 * with raw system calls: glibc's setuid() would signal the parent's threads to change theirs too. Sharing
 * the memory spares the copy-on-write faults a fork would cost, which are expensive in a VM. */
/* Not instrumented by ASan: its fake stack frames would be pushed on the parent's (shared) state and never
 * popped, since this function never returns. */
__attribute__((no_sanitize_address)) static int spawn_child(void *arg)
{
	struct spawn_args *a = arg;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL); /* the agent ignores it; exec keeps ignored signals ignored */
	setsid();
	if (dup2(a->in, 0) < 0 || dup2(a->out, 1) < 0 || dup2(a->err, 2) < 0) {
		a->failure = (struct spawn_failure){4, errno};
		_exit(127);
	}
	if (chdir(a->cwd)) {
		a->failure = (struct spawn_failure){1, errno};
		_exit(127);
	}
	if (a->switch_user) {
		gid_t g = a->u->gid;
		if (syscall(SYS_setgroups, 1, &g) || syscall(SYS_setresgid, g, g, g) ||
		    syscall(SYS_setresuid, a->u->uid, a->u->uid, a->u->uid)) {
			a->failure = (struct spawn_failure){2, errno};
			_exit(127);
		}
	}
	execve(a->path, a->argv, a->envp);
	a->failure = (struct spawn_failure){3, errno};
	_exit(127);
}

static int set_nonblock(int fd)
{
	return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Start c as the request says; on failure fills e (and c->error) and returns -1. */
static int cmd_spawn(struct cmd_table *t, struct cmd *c, const struct agent_request *r, struct agent_error *e)
{
	const struct agent_settings *st = agent_settings(t->ag);
	struct user_info u;
	bool switch_user = false;
	const char *uname = r->sudo ? "root" : r->user ? r->user : st->user[0] ? st->user : NULL;
	if (uname) {
		user_lookup(uname, 0, &u);
		if (!u.found) {
			agent_error_errno(e, ENOENT, "getpwnam", uname, NULL);
			snprintf(e->message, sizeof(e->message), "ENOENT: no user '%s' in /etc/passwd, getpwnam", uname);
			return -1;
		}
		switch_user = u.uid != geteuid() || u.gid != getegid();
	} else {
		user_lookup(NULL, geteuid(), &u);
		if (!u.found) {
			snprintf(u.name, sizeof(u.name), "%u", (unsigned)geteuid());
			snprintf(u.home, sizeof(u.home), "/");
		}
	}
	snprintf(c->user, sizeof(c->user), "%s", u.name);
	/* cwd: absolute, or relative to the sandbox's cwd (the agent's own cwd). */
	const char *cwd = r->cwd ? r->cwd : st->cwd;
	int w = cwd[0] == '/' ? snprintf(c->cwd, sizeof(c->cwd), "%s", cwd)
			      : snprintf(c->cwd, sizeof(c->cwd), "%.*s/%s", (int)strnlen(st->cwd, PATH_MAX - 2),
					 strcmp(st->cwd, "/") ? st->cwd : "", cwd);
	if (w < 0 || (size_t)w >= sizeof(c->cwd))
		return agent_error_errno(e, ENAMETOOLONG, "chdir", cwd, NULL);

	/* Environment: defaults < the sandbox's env < the command's env. */
	json_t *env = json_pack("{s:s, s:s, s:s, s:s}", "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"HOME", u.home[0] ? u.home : "/", "USER", u.name, "LOGNAME", u.name);
	if (!env)
		return agent_error_set(e, AGENT_E_INTERNAL, "out of memory");
	json_object_update(env, st->env);
	if (r->env)
		json_object_update(env, r->env);
	char path[PATH_MAX];
	int rc = resolve_exec(r->cmd, json_string_value(json_object_get(env, "PATH")), path, sizeof(path));
	if (rc) {
		json_decref(env);
		return agent_error_errno(e, -rc, "execve", r->cmd, NULL);
	}
	char **envp = env_array(env);
	json_decref(env);
	size_t nargs = json_array_size(c->argv_json);
	char **argv = calloc(nargs + 1, sizeof(*argv));
	if (!envp || !argv) {
		strv_free(envp);
		free(argv);
		return agent_error_set(e, AGENT_E_INTERNAL, "out of memory");
	}
	for (size_t i = 0; i < nargs; i++)
		argv[i] = (char *)json_string_value(json_array_get(c->argv_json, i));

	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1};
	int ret = -1;
	if (pipe2(outp, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) ||
	    (c->stdin_requested ? pipe2(inp, O_CLOEXEC) : (inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)) {
		agent_error_errno(e, errno, "pipe", NULL, NULL);
		goto out;
	}
	struct spawn_args sa = {.in = inp[0], .out = outp[1], .err = errp[1], .cwd = c->cwd, .u = &u,
				.switch_user = switch_user, .path = path, .argv = argv, .envp = envp};
	int saved_errno = errno;
	pid_t pid = clone(spawn_child, t->child_stack + sizeof(t->child_stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &sa);
	if (pid < 0) {
		agent_error_errno(e, errno, "clone", r->cmd, NULL);
		goto out;
	}
	errno = saved_errno; /* the child shared our errno */
	if (sa.failure.stage) { /* exec failed: the child is gone, reap it here */
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		struct spawn_failure f = sa.failure;
		const char *stage = f.stage > 0 && f.stage < 5 ? stage_names[f.stage] : "spawn";
		const char *what = f.stage == 1 ? c->cwd : f.stage == 2 ? u.name : r->cmd;
		agent_error_errno(e, f.err, stage, what, NULL);
		goto out;
	}
	c->pid = pid;
	c->status = CMD_RUNNING;
	c->out_fd[0] = outp[0];
	c->out_fd[1] = errp[0];
	outp[0] = errp[0] = -1;
	for (int i = 0; i < 2; i++) {
		set_nonblock(c->out_fd[i]);
		c->out_tag[i] = (struct agent_fd){i ? FD_CMD_STDERR : FD_CMD_STDOUT, c};
		agent_watch(t->ag, c->out_fd[i], EPOLLIN, &c->out_tag[i]);
	}
	if (c->stdin_requested) {
		c->in_fd = inp[1];
		inp[1] = -1;
		set_nonblock(c->in_fd);
		c->in_tag = (struct agent_fd){FD_CMD_STDIN, c};
	}
	if (r->timeout_ms)
		c->deadline = agent_mono_ms() + r->timeout_ms;
	ret = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
		if (inp[i] >= 0)
			close(inp[i]);
	}
	strv_free(envp);
	free(argv);
	return ret;
}

/* ---- requests ---- */

static struct stream *attach_stream(struct conn *conn, uint32_t id, struct cmd *c)
{
	struct stream *s = agent_stream_new(conn, id, STREAM_ATTACH);
	if (!s)
		return NULL;
	s->cmd = c;
	s->sub_next = c->subs;
	c->subs = s;
	return s;
}

static void do_run(struct cmd_table *t, struct conn *conn, uint32_t id, const struct agent_request *r)
{
	struct agent_error e;
	if (cmd_make_room(t)) {
		agent_error_set(&e, AGENT_E_LIMIT, "%d commands are running; wait for some to end", AGENT_MAX_COMMANDS);
		conn_respond_error(conn, id, &e, NULL);
		return;
	}
	struct cmd *c = calloc(1, sizeof(*c));
	json_t *argv = json_array();
	if (!c || !argv) {
		free(c);
		json_decref(argv);
		agent_error_set(&e, AGENT_E_INTERNAL, "out of memory");
		conn_respond_error(conn, id, &e, NULL);
		return;
	}
	json_array_append_new(argv, json_string(r->cmd));
	if (r->args)
		json_array_extend(argv, r->args);
	c->argv_json = argv;
	snprintf(c->id, sizeof(c->id), "cmd-%llu", (unsigned long long)++t->next_seq);
	c->out_fd[0] = c->out_fd[1] = c->in_fd = -1;
	c->status = CMD_PENDING;
	c->stdin_requested = r->stdin_open;
	c->detached = r->detached;
	c->ring.max = r->output_buffer ? (size_t)r->output_buffer : (size_t)AGENT_OUTPUT_BUFFER_DEFAULT;
	c->ring.seg_max = c->ring.max / 64 > 64 ? c->ring.max / 64 : 64;
	c->started_at = agent_now_ms();
	if (t->tail)
		t->tail->next = c;
	else
		t->head = c;
	t->tail = c;
	t->count++;
	if (cmd_spawn(t, c, r, &e)) {
		c->status = CMD_FAILED;
		c->finished_at = agent_now_ms();
		c->error = agent_error_json(&e);
		conn_respond_error(conn, id, &e, json_pack("{s:o}", "command", cmd_json(c)));
		return;
	}
	if (r->detached) {
		conn_respond_ok(conn, id, cmd_json(c));
		return;
	}
	struct stream *s = attach_stream(conn, id, c);
	if (!s) {
		agent_error_set(&e, AGENT_E_INTERNAL, "out of memory; the command %s runs detached", c->id);
		conn_respond_error(conn, id, &e, NULL);
		return;
	}
	s->follow = s->output = true;
	conn_send(conn, FRAME_EVENT, id, json_pack("{s:s, s:s, s:i}", "event", "started", "id", c->id, "pid", (int)c->pid),
		  NULL, 0);
	cmd_stream_pump(s);
}

static void do_attach(struct cmd_table *t, struct conn *conn, uint32_t id, const struct agent_request *r,
		      struct cmd *c)
{
	struct agent_error e;
	(void)t;
	uint64_t from = (uint64_t)r->offset;
	if (from > c->ring.end) {
		agent_error_set(&e, AGENT_E_BAD_REQUEST, "attach: fromOffset %llu is past the %llu bytes %s has written",
				(unsigned long long)from, (unsigned long long)c->ring.end, c->id);
		conn_respond_error(conn, id, &e, NULL);
		return;
	}
	if (r->output && from < c->ring.start) {
		agent_error_set(&e, AGENT_E_OUTPUT_GONE,
				"attach: bytes before offset %llu of %s are gone from its output buffer; attach from "
				"bufferStart %llu, or run it with a larger outputBufferBytes",
				(unsigned long long)c->ring.start, c->id, (unsigned long long)c->ring.start);
		conn_respond_error(conn, id, &e, json_pack("{s:I}", "bufferStart", (json_int_t)c->ring.start));
		return;
	}
	struct stream *s = attach_stream(conn, id, c);
	if (!s) {
		agent_error_set(&e, AGENT_E_INTERNAL, "out of memory");
		conn_respond_error(conn, id, &e, NULL);
		return;
	}
	s->follow = r->follow;
	s->output = r->output;
	s->out_offset = from;
	s->stop_offset = c->ring.end;
	cmd_stream_pump(s);
}

static void do_stdin(struct cmd_table *t, struct conn *conn, uint32_t id, const struct agent_request *r,
		     uint8_t flags, const void *data, size_t len, struct cmd *c)
{
	struct agent_error e;
	bool more = flags & FRAME_F_MORE;
	const char *code = NULL;
	if (c->status != CMD_RUNNING) {
		code = AGENT_E_NOT_RUNNING;
		agent_error_set(&e, code, "stdin: command %s is %s", c->id, status_names[c->status]);
	} else if (!c->stdin_requested || c->in_eof || c->in_fd < 0) {
		code = AGENT_E_STDIN_CLOSED;
		agent_error_set(&e, code, "stdin: command %s %s", c->id,
				c->stdin_requested ? "has had its stdin closed (eof)" : "was started without stdin: true");
	}
	struct stream *s = agent_stream_new(conn, id, code ? STREAM_DISCARD : STREAM_STDIN);
	if (!s) {
		agent_error_set(&e, AGENT_E_INTERNAL, "out of memory");
		conn_respond_error(conn, id, &e, NULL);
		return;
	}
	if (code) {
		conn_respond_error(conn, id, &e, NULL);
		if (!more)
			stream_end(s);
		return;
	}
	s->cmd = c;
	s->stdin_eof = r->eof;
	s->sub_next = c->stdins;
	c->stdins = s;
	(void)t;
	cmd_stdin_data(s, data, len, !more);
}

void cmd_request(struct cmd_table *t, struct conn *conn, uint32_t id, const struct agent_request *r, uint8_t flags,
		 const void *data, size_t len)
{
	struct agent_error e;
	if (r->op == AGENT_OP_RUN) {
		do_run(t, conn, id, r);
		return;
	}
	if (r->op == AGENT_OP_LIST) {
		json_t *list = json_array();
		for (struct cmd *c = t->head; c; c = c->next)
			json_array_append_new(list, cmd_json(c));
		conn_respond_ok(conn, id, json_pack("{s:o}", "commands", list));
		return;
	}
	struct cmd *c = cmd_find(t, r->id);
	if (!c) {
		agent_error_set(&e, AGENT_E_NOT_FOUND, "%s: no command '%.64s' (the agent keeps the %d most recent)",
				agent_op_name(r->op), r->id, AGENT_MAX_COMMANDS);
		conn_respond_error(conn, id, &e, NULL);
		if ((flags & FRAME_F_MORE) && r->op == AGENT_OP_STDIN) {
					agent_stream_new(conn, id, STREAM_DISCARD);
		}
		return;
	}
	switch (r->op) {
	case AGENT_OP_GET:
		conn_respond_ok(conn, id, cmd_json(c));
		break;
	case AGENT_OP_SIGNAL:
		if (c->status != CMD_RUNNING) {
			agent_error_set(&e, AGENT_E_NOT_RUNNING, "signal: command %s is %s", c->id,
					status_names[c->status]);
			conn_respond_error(conn, id, &e, NULL);
		} else if (kill(-c->pid, r->signal)) {
			agent_error_errno(&e, errno, "kill", c->id, NULL);
			conn_respond_error(conn, id, &e, NULL);
		} else {
			conn_respond_ok(conn, id, NULL);
		}
		break;
	case AGENT_OP_ATTACH:
		do_attach(t, conn, id, r, c);
		break;
	case AGENT_OP_STDIN:
		do_stdin(t, conn, id, r, flags, data, len, c);
		break;
	default:
		agent_error_set(&e, AGENT_E_INTERNAL, "%s is not a command op", agent_op_name(r->op));
		conn_respond_error(conn, id, &e, NULL);
	}
}

struct cmd_table *cmd_table_create(struct agent *ag)
{
	struct cmd_table *t = calloc(1, sizeof(*t));
	if (t)
		t->ag = ag;
	return t;
}

void cmd_table_destroy(struct cmd_table *t)
{
	cmd_kill_all(t);
	for (struct cmd *c = t->head, *n; c; c = n) {
		n = c->next;
		cmd_free(t, c);
	}
	free(t);
}
