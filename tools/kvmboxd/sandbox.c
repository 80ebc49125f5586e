/* kvmboxd's sandboxes (sandbox.h): the registry, each sandbox's life cycle, and the monitor thread that
 * watches every VMM (a pidfd each) and the nearest deadline (a timerfd).
 *
 * Locking: the registry's lock (list, workers) is taken before a sandbox's lock, never after. A sandbox's
 * status only moves forward; the monitor thread alone ends a sandbox whose VMM ran (it reaps it, frees
 * its tap, socket, disk and keys, then publishes the final status), the start path ends one that never
 * got a VMM. Waiters sleep on the sandbox's condition variable. */
#include "tools/kvmboxd/sandbox_internal.h"
#include "kvmbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_kill(int pidfd)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
}

static bool ended(enum sandbox_status st)
{
	return st >= SANDBOX_FINISHED;
}

static void sb_get(struct sandbox *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void sandbox_put(struct sandbox *s)
{
	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL))
		return;
	sandbox_fields_free(s);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

static struct sandbox *sb_alloc(struct registry *r)
{
	struct sandbox *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->reg = r;
	s->refs = 1;
	s->pidfd = -1;
	s->exit_code = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	return s;
}

static void wake_monitor(struct registry *r)
{
	uint64_t one = 1;
	if (write(r->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		fprintf(stderr, "kvmboxd: waking the monitor thread: %s\n", strerror(errno));
}

/* sandbox.json, atomically; caller holds s->lock (which orders the writes). */
static void persist(struct sandbox *s)
{
	if (s->removed)
		return;
	json_t *o = sandbox_to_json(s, true);
	char *text = o ? json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/sandbox.json", s->dir);
	if (!text || write_file_atomic(path, text, strlen(text)))
		fprintf(stderr, "kvmboxd: cannot write %s: %s: the sandbox's state will be lost at a restart; check "
			"the state folder's free space and permissions\n", path, text ? strerror(errno) : "out of memory");
	free(text);
}

static void set_status(struct sandbox *s, enum sandbox_status st)
{
	s->status = st;
	persist(s);
	pthread_cond_broadcast(&s->cond);
}

/* Wait (s->lock held) until the sandbox ended, or until deadline (CLOCK_MONOTONIC ms, 0: none). */
static bool wait_ended(struct sandbox *s, int64_t deadline)
{
	while (!ended(s->status)) {
		if (!deadline) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		struct timespec ts = { .tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000 };
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
			return ended(s->status);
	}
	return true;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Free what a sandbox holds on the host once its VMM is gone: tap, vsock socket, disk, keys. The folder
 * with sandbox.json and console.log stays until DELETE. Idempotent. */
static void release_host(struct sandbox *s)
{
	struct registry *r = s->reg;
	pthread_mutex_lock(&s->lock);
	char tap[16], vsock[sizeof(s->vsock)], id[sizeof(s->id)];
	memcpy(tap, s->tap, sizeof(tap));
	memcpy(vsock, s->vsock, sizeof(vsock));
	memcpy(id, s->id, sizeof(id));
	json_t *names = json_incref(s->secret_names);
	tap_read_counters(s->tap, &s->ingress_bytes, &s->egress_bytes);
	pthread_mutex_unlock(&s->lock);

	if (tap[0]) {
		char *out = NULL;
		struct api_error e;
		const char *argv[] = { r->cfg.net_tool, "teardown", tap, NULL };
		int rc = host_run(r, argv, &out, &e);
		/* "nothing to tear down" is fine: the tap went away with a failed setup. */
		if (rc < 0)
			fprintf(stderr, "kvmboxd: %s: tap %s left behind: %s\n", id, tap, e.message);
		else if (rc > 0 && !(out && strstr(out, "nothing to tear down")))
			fprintf(stderr, "kvmboxd: %s: %s teardown %s exited with %d: %s\n", id, r->cfg.net_tool, tap,
				rc, out ? out : "");
		free(out);
	}
	if (vsock[0] && unlink(vsock) && errno != ENOENT)
		fprintf(stderr, "kvmboxd: %s: removing %s: %s\n", id, vsock, strerror(errno));
	char disk[PATH_MAX + 16];
	snprintf(disk, sizeof(disk), "%s/disk.ext4", s->dir);
	if (unlink(disk) && errno != ENOENT)
		fprintf(stderr, "kvmboxd: %s: removing %s: %s\n", id, disk, strerror(errno));
	secrets_drop(r, id, names);
	json_decref(names);

	pthread_mutex_lock(&s->lock);
	s->tap[0] = 0;
	s->vsock[0] = 0;
	persist(s);
	pthread_mutex_unlock(&s->lock);
}

/* The VMM exited: reap it, free its resources, publish the final status. Monitor thread only. */
static void on_vmm_exit(struct sandbox *s)
{
	struct registry *r = s->reg;
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, s->pidfd, NULL);
	siginfo_t si;
	struct rusage ru;
	memset(&si, 0, sizeof(si));
	memset(&ru, 0, sizeof(ru));
	bool known = false;
	if (s->our_child && syscall(SYS_waitid, P_PIDFD, s->pidfd, &si, WEXITED, &ru) == 0)
		known = true;
	pthread_mutex_lock(&s->lock);
	close(s->pidfd);
	s->pidfd = -1;
	s->exited = true;
	if (known)
		s->cpu_ms = ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
			    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
	pid_t pid = s->pid;
	pthread_mutex_unlock(&s->lock);

	release_host(s);
	char *tail = console_tail(s->dir);

	pthread_mutex_lock(&s->lock);
	enum sandbox_status st;
	char msg[1024] = "";
	int code = known && si.si_code == CLD_EXITED ? si.si_status : -1;
	int sig = known && si.si_code != CLD_EXITED ? si.si_status : 0;
	if (s->timed_out) {
		st = SANDBOX_CANCELLED;
		snprintf(msg, sizeof(msg), "timeout of %d minute%s lapsed: the VM was killed", s->timeout_min,
			 s->timeout_min == 1 ? "" : "s");
	} else if (s->start_error) {
		st = SANDBOX_FAILED;
		if (s->kill_requested || sig == SIGKILL || !known)
			snprintf(msg, sizeof(msg), "%s%s%s", s->start_error, tail[0] ? "; last console lines: " : "",
				 tail);
		else if (code >= 0)
			snprintf(msg, sizeof(msg), "the monitor exited with code %d (%s) while the sandbox was "
				 "starting%s%s", code, vmm_exit_meaning(code), tail[0] ? "; last console lines: " : "",
				 tail);
		else
			snprintf(msg, sizeof(msg), "the monitor was killed by signal %d while the sandbox was starting%s%s",
				 sig, tail[0] ? "; last console lines: " : "", tail);
	} else if (s->kill_requested) {
		st = SANDBOX_CANCELLED;
		if (s->kill_note)
			snprintf(msg, sizeof(msg), "%s", s->kill_note);
	} else if (known ? code == 0 : (s->stop_requested || strstr(tail, "guest ended:"))) {
		st = SANDBOX_FINISHED; /* the guest powered off: asked to (stop) or by itself */
	} else {
		st = SANDBOX_FAILED;
		const char *when = s->status == SANDBOX_RUNNING ? "" : " while the sandbox was starting";
		if (!known)
			snprintf(msg, sizeof(msg), "the VMM (pid %d), re-adopted after a kvmboxd restart, exited%s; its "
				 "exit code is unknown (it is not kvmboxd's child)", (int)pid, when);
		else if (code >= 0)
			snprintf(msg, sizeof(msg), "the monitor exited with code %d (%s)%s", code, vmm_exit_meaning(code),
				 when);
		else
			snprintf(msg, sizeof(msg), "the monitor was killed by signal %d (%s)%s", sig, strsignal(sig), when);
		if (tail[0]) {
			size_t n = strlen(msg);
			snprintf(msg + n, sizeof(msg) - n, "; last console lines: %s", tail);
		}
	}
	free(tail);
	s->exit_code = code;
	free(s->error_message);
	s->error_message = msg[0] ? strdup(msg) : NULL;
	s->stopped_at = now_ms();
	s->pid = 0;
	set_status(s, st);
	pthread_mutex_unlock(&s->lock);
	sandbox_put(s); /* the monitor's reference */
}

/* Kill the sandboxes whose deadline passed. */
static void on_deadlines(struct registry *r)
{
	int64_t now = now_ms();
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n; i++) {
		struct sandbox *s = r->list[i];
		pthread_mutex_lock(&s->lock);
		if (s->status == SANDBOX_RUNNING && s->expires_at && s->expires_at <= now && !s->exited &&
		    !s->kill_requested && s->pidfd >= 0) {
			s->timed_out = s->kill_requested = true;
			if (pidfd_kill(s->pidfd))
				fprintf(stderr, "kvmboxd: %s: killing the VMM at its timeout: %s\n", s->id, strerror(errno));
		}
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&r->lock);
}

static void arm_timer(struct registry *r)
{
	int64_t next = 0;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n; i++) {
		struct sandbox *s = r->list[i];
		pthread_mutex_lock(&s->lock);
		if (s->status == SANDBOX_RUNNING && !s->kill_requested && s->expires_at &&
		    (!next || s->expires_at < next))
			next = s->expires_at;
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&r->lock);
	struct itimerspec its = { 0 };
	if (next) {
		if (next < 1)
			next = 1;
		its.it_value.tv_sec = next / 1000;
		its.it_value.tv_nsec = (next % 1000) * 1000000;
	}
	timerfd_settime(r->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void *monitor_main(void *arg)
{
	struct registry *r = arg;
	for (;;) {
		arm_timer(r);
		struct epoll_event ev[16];
		int n = epoll_wait(r->epfd, ev, 16, -1);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "kvmboxd: the monitor thread's epoll_wait failed: %s: VMM exits and timeouts are "
				"no longer seen; restart kvmboxd\n", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			void *p = ev[i].data.ptr;
			uint64_t v;
			if (p == &r->wakefd) {
				if (read(r->wakefd, &v, sizeof(v)) < 0)
					(void)0;
				pthread_mutex_lock(&r->lock);
				bool quit = r->quit;
				pthread_mutex_unlock(&r->lock);
				if (quit)
					return NULL;
			} else if (p == &r->timerfd) {
				if (read(r->timerfd, &v, sizeof(v)) < 0)
					(void)0;
				on_deadlines(r);
			} else {
				on_vmm_exit(p);
			}
		}
	}
}

/* Watch s's VMM (s->lock held, s->pidfd set): the monitor holds a reference until it exits. */
static int watch_vmm(struct sandbox *s)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
	sb_get(s);
	if (epoll_ctl(s->reg->epfd, EPOLL_CTL_ADD, s->pidfd, &ev)) {
		int err = errno;
		__atomic_sub_fetch(&s->refs, 1, __ATOMIC_RELAXED); /* the caller still holds one */
		errno = err;
		return -1;
	}
	return 0;
}

/* ---- Starting ---- */

/* The start failed before any VMM ran: free what was made, failed (or cancelled when asked to). */
static int fail_early(struct sandbox *s, const char *msg)
{
	release_host(s);
	pthread_mutex_lock(&s->lock);
	free(s->error_message);
	s->error_message = NULL;
	enum sandbox_status st = SANDBOX_FAILED;
	if (s->kill_requested || s->stop_requested) {
		st = SANDBOX_CANCELLED;
		if (s->kill_note)
			s->error_message = strdup(s->kill_note);
	} else {
		s->error_message = strdup(msg);
	}
	s->stopped_at = now_ms();
	set_status(s, st);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* The start failed with a VMM running: kill it; the monitor then ends the sandbox with msg. */
static int fail_running(struct sandbox *s, const char *msg)
{
	pthread_mutex_lock(&s->lock);
	if (!s->exited && !s->start_error && !s->kill_requested) {
		/* A stop or kill while starting cancels it; anything else is a failed start. */
		if (s->stop_requested)
			s->kill_requested = true;
		else
			s->start_error = strdup(msg);
		if (s->pidfd >= 0)
			pidfd_kill(s->pidfd);
	}
	wait_ended(s, 0);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static bool abort_requested(struct sandbox *s)
{
	pthread_mutex_lock(&s->lock);
	bool a = s->kill_requested || s->stop_requested;
	pthread_mutex_unlock(&s->lock);
	return a;
}

static int net_setup(struct sandbox *s, char *ip_arg, size_t len, struct api_error *e)
{
	struct registry *r = s->reg;
	char tap[16];
	sandbox_tap_name(s->id, tap);
	pthread_mutex_lock(&s->lock);
	memcpy(s->tap, tap, sizeof(tap)); /* before setup: a failure half-way is torn down too */
	persist(s);
	pthread_mutex_unlock(&s->lock);
	char *out = NULL;
	const char *argv[] = { r->cfg.net_tool, "setup", tap, "--policy",
			       s->net == SANDBOX_NET_ALL ? "all" : "none", NULL };
	int rc = host_run(r, argv, &out, e);
	if (rc > 0)
		api_error_set(e, 500, "INTERNAL", "%s setup %s exited with %d: %.300s: check iproute2/nftables and "
			      "that kvmboxd runs as root", r->cfg.net_tool, tap, rc, out ? out : "");
	else if (rc == 0 && net_parse_setup_output(out ? out : "", ip_arg, len))
		api_error_set(e, 500, "INTERNAL", "%s setup %s printed no guest ip= argument: %.200s", r->cfg.net_tool,
			      tap, out ? out : "");
	free(out);
	if (rc || !ip_arg[0])
		return -1;
	if (s->net != SANDBOX_NET_ALLOW)
		return 0;
	size_t n = json_array_size(s->allow);
	const char **pv = calloc(n + 5, sizeof(*pv));
	if (!pv)
		return api_error_set(e, 500, "INTERNAL", "out of memory");
	pv[0] = r->cfg.net_tool;
	pv[1] = "policy";
	pv[2] = tap;
	pv[3] = "allow";
	for (size_t i = 0; i < n; i++)
		pv[4 + i] = json_string_value(json_array_get(s->allow, i));
	rc = host_run(r, pv, &out, e);
	free(pv);
	if (rc > 0)
		api_error_set(e, 400, "BAD_REQUEST", "%s policy %s allow ... exited with %d: %.300s", r->cfg.net_tool,
			      tap, rc, out ? out : "");
	free(out);
	return rc ? -1 : 0;
}

/* Connect to the agent, retrying in short slices so that a VMM that dies ends the wait at once. */
static kvmbox_agent *agent_wait(struct sandbox *s, int timeout_ms, struct kvmbox_error *err)
{
	int64_t deadline = mono_ms() + timeout_ms;
	for (;;) {
		kvmbox_agent *a = NULL;
		int64_t left = deadline - mono_ms();
		int slice = left > 500 ? 500 : left < 1 ? 1 : (int)left;
		if (kvmbox_agent_connect(s->vsock, KVMBOX_AGENT_PORT, slice, &a, err) == 0)
			return a;
		pthread_mutex_lock(&s->lock);
		bool gone = s->exited || s->kill_requested || s->stop_requested;
		pthread_mutex_unlock(&s->lock);
		if (gone || mono_ms() >= deadline)
			return NULL;
	}
}

static int agent_configure(struct sandbox *s, kvmbox_agent *a, struct api_error *e)
{
	char host[80];
	sandbox_hostname(s->name, host, sizeof(host));
	json_t *env = json_deep_copy(s->env ? s->env : json_object());
	/* Secrets win over env; the request is never logged (it holds them). */
	if (!env || secrets_load(s->reg, s->id, s->secret_names, env, e)) {
		json_decref(env);
		return env ? -1 : api_error_set(e, 500, "INTERNAL", "out of memory");
	}
	json_t *req = json_pack("{s:s, s:o, s:s}", "op", "configure", "env", env, "hostname", host);
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!text)
		return api_error_set(e, 500, "INTERNAL", "out of memory");
	struct kvmbox_error err;
	kvmbox_agent_set_timeout(a, 10000);
	int rc = kvmbox_agent_call(a, text, NULL, &err);
	explicit_bzero(text, strlen(text));
	free(text);
	if (rc)
		return api_error_set(e, 502, "AGENT", "configuring the guest's agent failed: %s (%s)", err.message,
				     err.code);
	return 0;
}

static int sandbox_start(struct sandbox *s)
{
	struct registry *r = s->reg;
	const struct daemon_config *cfg = &r->cfg;
	struct api_error e = { 0 };
	char img[PATH_MAX], disk[PATH_MAX + 16], console[PATH_MAX + 16], kernel[PATH_MAX];

	pthread_mutex_lock(&s->lock);
	bool give_up = s->kill_requested || s->stop_requested;
	if (!give_up)
		set_status(s, SANDBOX_STARTING);
	pthread_mutex_unlock(&s->lock);
	if (give_up)
		return fail_early(s, "");

	snprintf(img, sizeof(img), "%s/%s/rootfs.ext4", cfg->images_dir, s->image);
	snprintf(kernel, sizeof(kernel), "%s/%s/vmlinux", cfg->images_dir, s->image);
	snprintf(disk, sizeof(disk), "%s/disk.ext4", s->dir);
	snprintf(console, sizeof(console), "%s/console.log", s->dir);
	if (disk_create(r, img, disk, s->disk_gb, &e))
		return fail_early(s, e.message);

	char ip_arg[160] = "", dns[64] = "", cmdline[1024], host[80];
	if (s->net != SANDBOX_NET_NONE) {
		if (abort_requested(s))
			return fail_early(s, "");
		if (net_setup(s, ip_arg, sizeof(ip_arg), &e)) {
			char msg[600];
			snprintf(msg, sizeof(msg), "network set-up failed: %s", e.message);
			return fail_early(s, msg);
		}
		char rc[4096];
		if (read_small_file("/etc/resolv.conf", rc, sizeof(rc)) > 0)
			resolv_first_nameserver(rc, dns, sizeof(dns));
	}
	sandbox_hostname(s->name, host, sizeof(host));
	snprintf(cmdline, sizeof(cmdline), "root=/dev/vda rw quiet kvmbox.hostname=%s%s%s%s%s", host,
		 ip_arg[0] ? " " : "", ip_arg, dns[0] ? " kvmbox.dns=" : "", dns);
	char mem[16], cpus[16], vsock_opt[160], net_opt[32];
	snprintf(mem, sizeof(mem), "%d", s->memory_mb);
	snprintf(cpus, sizeof(cpus), "%d", s->vcpus);
	snprintf(vsock_opt, sizeof(vsock_opt), "cid=3,uds=%s", s->vsock);
	snprintf(net_opt, sizeof(net_opt), "tap=%s", s->tap);
	const char *argv[20] = { cfg->vmm_path, "--kernel", kernel, "--disk", disk, "--memory", mem, "--cpus", cpus,
				 "--vsock", vsock_opt, "--cmdline", cmdline };
	int argc = 13;
	if (s->net != SANDBOX_NET_NONE) {
		argv[argc++] = "--net";
		argv[argc++] = net_opt;
	}
	argv[argc] = NULL;

	pthread_mutex_lock(&s->lock);
	if (s->kill_requested || s->stop_requested) {
		pthread_mutex_unlock(&s->lock);
		return fail_early(s, "");
	}
	pid_t pid = vmm_spawn(r, argv, console, &e);
	int pidfd = pid > 0 ? pidfd_open_(pid) : -1;
	if (pid > 0 && pidfd < 0) {
		api_error_set(&e, 500, "INTERNAL", "pidfd_open of the monitor (pid %d): %s: kvmboxd needs Linux 5.3 "
			      "or later", (int)pid, strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (pidfd >= 0) {
		s->pid = pid;
		s->pidfd = pidfd;
		s->our_child = true;
		proc_read_stat(pid, NULL, &s->pid_start, NULL);
		if (watch_vmm(s)) {
			api_error_set(&e, 500, "INTERNAL", "epoll_ctl for the monitor's pidfd: %s", strerror(errno));
			pidfd_kill(pidfd);
			waitid(P_PIDFD, (id_t)pidfd, &(siginfo_t){ 0 }, WEXITED);
			close(pidfd);
			s->pidfd = -1;
			s->pid = 0;
			pidfd = -1;
		} else {
			persist(s);
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (pidfd < 0)
		return fail_early(s, e.message);

	struct kvmbox_error kerr;
	kvmbox_agent *a = agent_wait(s, cfg->agent_timeout_ms, &kerr);
	if (!a) {
		char msg[800];
		snprintf(msg, sizeof(msg), "the guest's agent did not answer within %d ms on %s: %s: check the "
			 "image (its /sbin/init must be kvmbox-agent; make images)", cfg->agent_timeout_ms, s->vsock,
			 kerr.message);
		return fail_running(s, msg);
	}
	int rc = agent_configure(s, a, &e);
	kvmbox_agent_close(a);
	if (rc)
		return fail_running(s, e.message);

	pthread_mutex_lock(&s->lock);
	if (s->status == SANDBOX_STARTING && !s->exited && !s->kill_requested && !s->stop_requested) {
		s->started_at = now_ms();
		s->expires_at = s->started_at + (int64_t)s->timeout_min * 60000;
		set_status(s, SANDBOX_RUNNING);
	} else if (s->stop_requested && !s->exited && !s->kill_requested) {
		/* A stop came while starting: nothing ran yet, so kill rather than wait for a power-off. */
		s->kill_requested = true;
		pidfd_kill(s->pidfd);
	}
	pthread_mutex_unlock(&s->lock);
	wake_monitor(r);
	return 0;
}

static void worker_begin(struct registry *r)
{
	pthread_mutex_lock(&r->lock);
	r->workers++;
	pthread_mutex_unlock(&r->lock);
}

static void worker_end(struct registry *r)
{
	pthread_mutex_lock(&r->lock);
	if (--r->workers == 0)
		pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void *start_thread(void *arg)
{
	struct sandbox *s = arg;
	struct registry *r = s->reg;
	sandbox_start(s);
	sandbox_put(s);
	worker_end(r);
	return NULL;
}

/* Runs fn(s) in a detached thread holding a reference and counted as a worker. */
static int spawn_worker(struct sandbox *s, void *(*fn)(void *), struct api_error *e)
{
	pthread_attr_t at;
	pthread_t t;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	sb_get(s);
	worker_begin(s->reg);
	int rc = pthread_create(&t, &at, fn, s);
	pthread_attr_destroy(&at);
	if (rc) {
		worker_end(s->reg);
		sandbox_put(s);
		return api_error_set(e, 500, "INTERNAL", "cannot start a thread: %s", strerror(rc));
	}
	return 0;
}

static int registry_add(struct registry *r, struct sandbox *s)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct sandbox **l = realloc(r->list, cap * sizeof(*l));
		if (!l)
			return -1;
		r->list = l;
		r->cap = cap;
	}
	r->list[r->n++] = s;
	return 0;
}

static void registry_del(struct registry *r, struct sandbox *s)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->list[i] == s) {
			r->list[i] = r->list[--r->n];
			return;
		}
}

static struct sandbox *find_locked(struct registry *r, const char *id_or_name)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->list[i]->id, id_or_name))
			return r->list[i];
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->list[i]->name, id_or_name))
			return r->list[i];
	return NULL;
}

int sandbox_create(struct registry *r, const struct sandbox_spec *spec, bool wait, struct sandbox **out,
		   struct api_error *e)
{
	const struct daemon_config *cfg = &r->cfg;
	*out = NULL;
	for (int i = 0; i < 2; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s/%s", cfg->images_dir, spec->image, i ? "rootfs.ext4" : "vmlinux");
		if (access(path, R_OK))
			return api_error_set(e, 400, "BAD_REQUEST", "image %s: %s: %s: build the images (make images, or "
					     "tools/setup) or pick another image", spec->image, path, strerror(errno));
	}
	struct sandbox *s = sb_alloc(r);
	if (!s)
		return api_error_set(e, 500, "INTERNAL", "out of memory");
	uint8_t rnd[8];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		sandbox_put(s);
		return api_error_set(e, 500, "INTERNAL", "getrandom: %s", strerror(errno));
	}
	sandbox_make_id(rnd, s->id);
	snprintf(s->name, sizeof(s->name), "%s", spec->name[0] ? spec->name : s->id);
	snprintf(s->image, sizeof(s->image), "%s", spec->image);
	s->vcpus = spec->vcpus;
	s->memory_mb = spec->memory_mb;
	s->disk_gb = spec->disk_gb;
	s->timeout_min = spec->timeout_min;
	s->env = spec->env ? json_deep_copy(spec->env) : json_object();
	s->net = spec->net;
	s->allow = spec->net == SANDBOX_NET_ALLOW && spec->allow ? json_deep_copy(spec->allow) : NULL;
	s->secret_names = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(spec->secrets, k, v)
		json_array_append_new(s->secret_names, json_string(k));
	s->status = SANDBOX_CREATED;
	s->created_at = now_ms();
	snprintf(s->dir, sizeof(s->dir), "%s/sandboxes/%s", cfg->state_dir, s->id);
	if ((size_t)snprintf(s->vsock, sizeof(s->vsock), "%s/%s.vsock", cfg->run_dir, s->id) > 96) {
		sandbox_put(s);
		return api_error_set(e, 500, "INTERNAL", "the vsock socket path %s/%s.vsock is longer than the "
				     "monitor's 96 bytes: give kvmboxd a shorter --run-dir", cfg->run_dir, "sb-...");
	}
	if (!s->env || !s->secret_names || (s->net == SANDBOX_NET_ALLOW && !s->allow)) {
		sandbox_put(s);
		return api_error_set(e, 500, "INTERNAL", "out of memory");
	}

	/* Reserve the name and a slot. */
	pthread_mutex_lock(&r->lock);
	int live = 0;
	bool taken = false;
	for (size_t i = 0; i < r->n; i++) {
		struct sandbox *o = r->list[i];
		pthread_mutex_lock(&o->lock);
		live += !ended(o->status);
		taken |= !strcmp(o->name, s->name) || !strcmp(o->id, s->name);
		pthread_mutex_unlock(&o->lock);
	}
	int rc = 0;
	if (taken)
		rc = api_error_set(e, 409, "CONFLICT", "a sandbox named %s exists already: pick another name or "
				   "remove it (DELETE /v1/sandboxes/%s)", s->name, s->name);
	else if (cfg->max_sandboxes > 0 && live >= cfg->max_sandboxes)
		rc = api_error_set(e, 429, "LIMIT", "%d sandboxes are not ended, the daemon's limit "
				   "(--max-sandboxes): stop or kill one first", live);
	else if (registry_add(r, s))
		rc = api_error_set(e, 500, "INTERNAL", "out of memory");
	pthread_mutex_unlock(&r->lock);
	if (rc) {
		sandbox_put(s);
		return -1;
	}

	if (mkdir(s->dir, 0700)) {
		api_error_set(e, 500, "INTERNAL", "mkdir %s: %s: check the state folder (--state-dir)", s->dir,
			      strerror(errno));
		goto undo;
	}
	if (secrets_store(r, s->id, spec->secrets, e))
		goto undo;
	pthread_mutex_lock(&s->lock);
	persist(s);
	pthread_mutex_unlock(&s->lock);

	if (wait) {
		sandbox_start(s);
	} else {
		if (spawn_worker(s, start_thread, e))
			goto undo;
		/* Answer once it is starting (or already ended). */
		pthread_mutex_lock(&s->lock);
		while (s->status == SANDBOX_CREATED)
			pthread_cond_wait(&s->cond, &s->lock);
		pthread_mutex_unlock(&s->lock);
	}
	sb_get(s);
	*out = s;
	return 0;

undo:
	secrets_drop(r, s->id, s->secret_names);
	rm_tree(s->dir);
	pthread_mutex_lock(&r->lock);
	registry_del(r, s);
	pthread_mutex_unlock(&r->lock);
	sandbox_put(s);
	return -1;
}

struct sandbox *sandbox_find(struct registry *r, const char *id_or_name)
{
	pthread_mutex_lock(&r->lock);
	struct sandbox *s = id_or_name ? find_locked(r, id_or_name) : NULL;
	if (s)
		sb_get(s);
	pthread_mutex_unlock(&r->lock);
	return s;
}

/* Usage counters read now (s->lock held). */
static void refresh_usage(struct sandbox *s)
{
	if (s->pid > 0 && !s->exited) {
		uint64_t ticks, start;
		/* The start time guards against a recycled pid. */
		if (proc_read_stat(s->pid, &ticks, &start, NULL) == 0 && start == s->pid_start && s->reg->clk_tck > 0)
			s->cpu_ms = (int64_t)(ticks * 1000 / (uint64_t)s->reg->clk_tck);
	}
	if (!ended(s->status))
		tap_read_counters(s->tap, &s->ingress_bytes, &s->egress_bytes);
}

json_t *sandbox_json(struct sandbox *s)
{
	pthread_mutex_lock(&s->lock);
	refresh_usage(s);
	json_t *o = sandbox_to_json(s, false);
	pthread_mutex_unlock(&s->lock);
	return o;
}

struct list_item {
	int64_t created_at;
	struct sandbox *s;
};

static int list_cmp(const void *a, const void *b)
{
	const struct list_item *x = a, *y = b;
	return sandbox_order(x->created_at, x->s->id, y->created_at, y->s->id);
}

int sandbox_list(struct registry *r, const struct sandbox_query *q, json_t **out, char **next_token,
		 struct api_error *e)
{
	int64_t tok_at = 0;
	char tok_id[SANDBOX_ID_LEN + 1] = "";
	*out = NULL;
	*next_token = NULL;
	if (q->page_token && page_token_decode(q->page_token, &tok_at, tok_id))
		return api_error_set(e, 400, "BAD_REQUEST", "pageToken %.60s is not one this daemon gave: use the "
				     "nextPageToken of the previous page, or none for the first page", q->page_token);
	pthread_mutex_lock(&r->lock);
	struct list_item *items = calloc(r->n ? r->n : 1, sizeof(*items));
	size_t n = 0;
	for (size_t i = 0; items && i < r->n; i++) {
		struct sandbox *s = r->list[i];
		pthread_mutex_lock(&s->lock);
		bool match = (!q->status_mask || (q->status_mask & (1u << s->status))) &&
			     (!q->created_after || s->created_at > q->created_after) &&
			     (!q->created_before || s->created_at < q->created_before) &&
			     (!q->page_token || sandbox_order(s->created_at, s->id, tok_at, tok_id) > 0);
		pthread_mutex_unlock(&s->lock);
		if (match) {
			sb_get(s);
			items[n++] = (struct list_item){ s->created_at, s };
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (!items)
		return api_error_set(e, 500, "INTERNAL", "out of memory");
	qsort(items, n, sizeof(*items), list_cmp);
	size_t limit = q->limit > 0 ? (size_t)q->limit : 50;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		if (i < limit)
			json_array_append_new(arr, sandbox_json(items[i].s));
		if (i + 1 == limit && n > limit)
			*next_token = page_token_encode(items[i].created_at, items[i].s->id);
		sandbox_put(items[i].s);
	}
	free(items);
	*out = arr;
	return 0;
}

/* Stop: the agent's shutdown, up to 10 s for the power-off, then SIGKILL. Holds a reference. */
static void stop_work(struct sandbox *s)
{
	struct kvmbox_error err;
	kvmbox_agent *a = NULL;
	char vsock[sizeof(s->vsock)];
	pthread_mutex_lock(&s->lock);
	memcpy(vsock, s->vsock, sizeof(vsock));
	pthread_mutex_unlock(&s->lock);
	int rc = vsock[0] ? kvmbox_agent_connect(vsock, KVMBOX_AGENT_PORT, 2000, &a, &err) : -1;
	if (rc == 0) {
		kvmbox_agent_set_timeout(a, SANDBOX_SHUTDOWN_TIMEOUT_MS);
		rc = kvmbox_agent_call(a, "{\"op\":\"shutdown\"}", NULL, &err);
		/* The agent may go down before it answers: that is a power-off too. */
		if (rc && !strcmp(err.code, "CLOSED"))
			rc = 0;
		kvmbox_agent_close(a);
	}
	pthread_mutex_lock(&s->lock);
	bool done = rc == 0 && wait_ended(s, mono_ms() + SANDBOX_STOP_WAIT_MS);
	if (!done && !s->exited && !s->kill_requested) {
		s->kill_requested = true;
		s->kill_note = rc ? "the guest's agent did not take the stop request: the VM was killed" :
			       "the guest did not power off within 10 s of the stop request: the VM was killed";
		if (s->pidfd >= 0)
			pidfd_kill(s->pidfd);
	}
	wait_ended(s, 0);
	pthread_mutex_unlock(&s->lock);
}

static void *stop_thread(void *arg)
{
	struct sandbox *s = arg;
	struct registry *r = s->reg;
	stop_work(s);
	sandbox_put(s);
	worker_end(r);
	return NULL;
}

int sandbox_stop(struct sandbox *s, bool blocking, struct api_error *e)
{
	pthread_mutex_lock(&s->lock);
	if (ended(s->status)) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (s->status != SANDBOX_RUNNING || s->stop_requested || s->kill_requested) {
		/* Not up yet (the start gives up and the sandbox is cancelled), or already going. */
		if (s->status != SANDBOX_RUNNING && !s->stop_requested && !s->kill_requested) {
			s->stop_requested = true;
			s->kill_note = "stopped while it was starting";
		}
		if (blocking)
			wait_ended(s, 0);
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	s->stop_requested = true;
	pthread_mutex_unlock(&s->lock);
	if (!blocking)
		return spawn_worker(s, stop_thread, e);
	stop_work(s);
	return 0;
}

int sandbox_kill(struct sandbox *s, struct api_error *e)
{
	(void)e;
	pthread_mutex_lock(&s->lock);
	if (!ended(s->status)) {
		if (!s->kill_requested) {
			s->kill_requested = true;
			if (s->status != SANDBOX_RUNNING)
				s->kill_note = "killed while it was starting";
		}
		if (s->pidfd >= 0 && !s->exited)
			pidfd_kill(s->pidfd);
		wait_ended(s, 0);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int sandbox_set_timeout(struct sandbox *s, int minutes, struct api_error *e)
{
	pthread_mutex_lock(&s->lock);
	if (s->status != SANDBOX_RUNNING || s->kill_requested) {
		enum sandbox_status st = s->status;
		pthread_mutex_unlock(&s->lock);
		return api_error_set(e, 409, "NOT_RUNNING", "sandbox %s is %s, not running: a timeout applies to a "
				     "running sandbox only", s->id, sandbox_status_name(st));
	}
	s->expires_at = sandbox_clamp_expiry(now_ms(), minutes, s->started_at, s->reg->cfg.max_lifetime_min);
	s->timeout_min = minutes;
	persist(s);
	pthread_mutex_unlock(&s->lock);
	wake_monitor(s->reg);
	return 0;
}

int sandbox_remove(struct registry *r, struct sandbox *s, bool force, struct api_error *e)
{
	pthread_mutex_lock(&s->lock);
	bool running = !ended(s->status);
	pthread_mutex_unlock(&s->lock);
	if (running) {
		if (!force)
			return api_error_set(e, 409, "CONFLICT", "sandbox %s is not ended: stop or kill it first, or "
					     "DELETE with ?force=true", s->id);
		sandbox_kill(s, e);
	}
	pthread_mutex_lock(&r->lock);
	pthread_mutex_lock(&s->lock);
	bool gone = s->removed;
	s->removed = true;
	pthread_mutex_unlock(&s->lock);
	if (!gone)
		registry_del(r, s);
	pthread_mutex_unlock(&r->lock);
	if (gone)
		return api_error_set(e, 404, "NOT_FOUND", "sandbox %s was removed already", s->id);
	if (rm_tree(s->dir))
		fprintf(stderr, "kvmboxd: %s: removing %s: %s: remove it by hand\n", s->id, s->dir, strerror(errno));
	sandbox_put(s); /* the registry's reference */
	return 0;
}

int sandbox_agent_path(struct sandbox *s, char *buf, size_t len, struct api_error *e)
{
	pthread_mutex_lock(&s->lock);
	int rc = 0;
	if (s->status != SANDBOX_RUNNING || s->exited)
		rc = api_error_set(e, 409, "NOT_RUNNING", "sandbox %s is %s, not running: start a new one", s->id,
				   sandbox_status_name(s->status));
	else if ((size_t)snprintf(buf, len, "%s", s->vsock) >= len)
		rc = api_error_set(e, 500, "INTERNAL", "the agent socket path %s does not fit", s->vsock);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

json_t *registry_counts(struct registry *r)
{
	int count[SANDBOX_STATUS_COUNT] = { 0 };
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n; i++) {
		pthread_mutex_lock(&r->list[i]->lock);
		count[r->list[i]->status]++;
		pthread_mutex_unlock(&r->list[i]->lock);
	}
	pthread_mutex_unlock(&r->lock);
	json_t *o = json_object();
	for (int i = 0; i < SANDBOX_STATUS_COUNT; i++)
		json_object_set_new(o, sandbox_status_name(i), json_integer(count[i]));
	return o;
}

/* ---- Opening: load sandbox.json files, re-adopt live VMMs ---- */

int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, 0755) && errno != EEXIST)
				return -1;
			*p = '/';
		}
	return mkdir(tmp, mode) && errno != EEXIST ? -1 : 0;
}

/* A sandbox loaded from disk whose VMM is gone (or never ran): failed, and its host resources freed. */
static void load_dead(struct sandbox *s, const char *msg)
{
	release_host(s);
	pthread_mutex_lock(&s->lock);
	free(s->error_message);
	s->error_message = strdup(msg);
	s->stopped_at = now_ms();
	s->pid = 0;
	set_status(s, SANDBOX_FAILED);
	pthread_mutex_unlock(&s->lock);
}

static void load_one(struct registry *r, const char *name)
{
	char path[PATH_MAX], why[256];
	snprintf(path, sizeof(path), "%s/sandboxes/%s/sandbox.json", r->cfg.state_dir, name);
	json_error_t je;
	json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		fprintf(stderr, "kvmboxd: skipping %s: %s (line %d): fix or remove the folder\n", path, je.text,
			je.line);
		return;
	}
	struct sandbox *s = sb_alloc(r);
	if (!s) {
		json_decref(o);
		return;
	}
	int rc = sandbox_from_json(s, o, why, sizeof(why));
	json_decref(o);
	if (rc == 0 && strcmp(s->id, name)) {
		snprintf(why, sizeof(why), "its id %s is not the folder's name", s->id);
		rc = -1;
	}
	if (rc) {
		fprintf(stderr, "kvmboxd: skipping %s: %s: fix or remove the folder\n", path, why);
		sandbox_put(s);
		return;
	}
	snprintf(s->dir, sizeof(s->dir), "%s/sandboxes/%s", r->cfg.state_dir, s->id);
	pthread_mutex_lock(&r->lock);
	bool dup = find_locked(r, s->name) != NULL;
	if (!dup && registry_add(r, s))
		dup = true;
	pthread_mutex_unlock(&r->lock);
	if (dup) {
		fprintf(stderr, "kvmboxd: skipping %s: its name %s is taken by another sandbox\n", path, s->name);
		sandbox_put(s);
		return;
	}

	char msg[256];
	if (ended(s->status)) {
		char disk[PATH_MAX + 16];
		snprintf(disk, sizeof(disk), "%s/disk.ext4", s->dir);
		if (s->tap[0] || s->vsock[0] || access(disk, F_OK) == 0) /* kvmboxd died half-way through */
			release_host(s);
		return;
	}
	if (s->pid <= 0) {
		load_dead(s, "kvmboxd stopped before the sandbox's VMM started: create it again");
		return;
	}
	int pidfd = pidfd_open_(s->pid);
	uint64_t start = 0;
	char state = 0;
	/* The pidfd first, then the start time: a pid reused later cannot slip in between. A zombie (its
	 * new parent has not reaped it yet) is dead too. */
	if (pidfd < 0 || proc_read_stat(s->pid, NULL, &start, &state) || start != s->pid_start || state == 'Z' ||
	    state == 'X') {
		if (pidfd >= 0)
			close(pidfd);
		snprintf(msg, sizeof(msg), "the VMM (pid %d) died while kvmboxd was not running", (int)s->pid);
		load_dead(s, msg);
		return;
	}
	pthread_mutex_lock(&s->lock);
	s->pidfd = pidfd;
	s->our_child = false;
	if (watch_vmm(s)) {
		close(pidfd);
		s->pidfd = -1;
		pthread_mutex_unlock(&s->lock);
		snprintf(msg, sizeof(msg), "kvmboxd could not watch the VMM (pid %d) after a restart", (int)s->pid);
		load_dead(s, msg);
		return;
	}
	if (s->status != SANDBOX_RUNNING) {
		/* Its agent may never have been configured: not a sandbox to hand out. */
		s->start_error = strdup("kvmboxd restarted while the sandbox was starting: create it again");
		pidfd_kill(pidfd);
	}
	pthread_mutex_unlock(&s->lock);
}

struct registry *registry_open(const struct daemon_config *cfg, struct api_error *e)
{
	struct registry *r = calloc(1, sizeof(*r));
	if (!r) {
		api_error_set(e, 500, "INTERNAL", "out of memory");
		return NULL;
	}
	r->cfg = *cfg;
	r->epfd = r->timerfd = r->wakefd = -1;
	r->clk_tck = sysconf(_SC_CLK_TCK);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	char sbdir[PATH_MAX];
	snprintf(sbdir, sizeof(sbdir), "%s/sandboxes", cfg->state_dir);
	if (mkdir_p(sbdir, 0700)) {
		api_error_set(e, 500, "INTERNAL", "mkdir %s: %s: check --state-dir", sbdir, strerror(errno));
		goto fail;
	}
	if (mkdir_p(cfg->run_dir, 0700)) {
		api_error_set(e, 500, "INTERNAL", "mkdir %s: %s: check --run-dir", cfg->run_dir, strerror(errno));
		goto fail;
	}
	r->child_env = child_env_make();
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->timerfd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
	r->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!r->child_env || r->epfd < 0 || r->timerfd < 0 || r->wakefd < 0) {
		api_error_set(e, 500, "INTERNAL", "setting up the monitor thread (epoll, timerfd, eventfd): %s",
			      strerror(errno));
		goto fail;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &r->wakefd };
	epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->wakefd, &ev);
	ev.data.ptr = &r->timerfd;
	epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->timerfd, &ev);

	DIR *d = opendir(sbdir);
	if (!d) {
		api_error_set(e, 500, "INTERNAL", "opendir %s: %s", sbdir, strerror(errno));
		goto fail;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			if (sandbox_id_valid(de->d_name))
				load_one(r, de->d_name);
			else
				fprintf(stderr, "kvmboxd: ignoring %s/%s: not a sandbox folder\n", sbdir, de->d_name);
		}
	closedir(d);

	int rc = pthread_create(&r->monitor, NULL, monitor_main, r);
	if (rc) {
		api_error_set(e, 500, "INTERNAL", "cannot start the monitor thread: %s", strerror(rc));
		goto fail;
	}
	r->monitor_started = true;
	return r;
fail:
	registry_close(r);
	return NULL;
}

void registry_close(struct registry *r)
{
	if (!r)
		return;
	/* Start and stop threads first: they rely on the monitor to see their VMM end. */
	pthread_mutex_lock(&r->lock);
	while (r->workers)
		pthread_cond_wait(&r->cond, &r->lock);
	r->quit = true;
	pthread_mutex_unlock(&r->lock);
	if (r->monitor_started) {
		wake_monitor(r);
		pthread_join(r->monitor, NULL);
	}
	/* The VMMs keep running: the next kvmboxd re-adopts them. */
	for (size_t i = 0; i < r->n; i++) {
		struct sandbox *s = r->list[i];
		if (s->pidfd >= 0) {
			close(s->pidfd);
			s->pidfd = -1;
			sandbox_put(s); /* the monitor's */
		}
		sandbox_put(s);
	}
	free(r->list);
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->timerfd >= 0)
		close(r->timerfd);
	if (r->wakefd >= 0)
		close(r->wakefd);
	child_env_free(r->child_env);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}
