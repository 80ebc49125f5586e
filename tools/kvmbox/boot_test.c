/* kvmbox boot-test: boot a kernel on kvmbox-vmm with the console on a pipe, keep the console in a log,
 * and judge the boot: pass (the expected output appeared, or the guest ended cleanly), fail, panic,
 * timeout or vmm-error. Manual: docs/boot-test.md.
 *
 * One process, one poll() loop over the console pipe, the monitor's stderr pipe and a self-pipe that the
 * signal handlers (SIGCHLD, SIGINT, SIGTERM, SIGHUP) write to. Every wait has a deadline, and the
 * monitor is stopped on every path: SIGTERM after a pass, SIGKILL on a timeout, PR_SET_PDEATHSIG in case
 * boot-test itself dies, and a --timeout of its own as the last backstop. */
#include "tools/kvmbox/kvmbox.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit codes of kvmbox-vmm (docs/kvmbox-vmm.md). */
enum { VMM_OK = 0, VMM_BAD_INPUT = 1, VMM_HOST = 2, VMM_TRIPLE_FAULT = 3, VMM_KVM_ERROR = 4, VMM_TIMEOUT = 5,
       VMM_PANIC = 6 };

enum verdict { V_NONE, V_PASS, V_FAIL, V_VMM_ERROR, V_PANIC, V_TIMEOUT, V_INTERRUPTED };
static const char *const verdict_names[] = { "none", "pass", "fail", "vmm-error", "panic", "timeout",
					     "interrupted" };
static const int verdict_exit[] = { 2, 0, 1, 2, 3, 4, 130 };

#define PANIC_TEXT "Kernel panic - not syncing"
#define MARKER_TEXT "boot marker: the guest reached it "
#define TERM_GRACE_S 2.0   /* after SIGTERM, before SIGKILL */
#define KILL_WAIT_S 5.0    /* after SIGKILL, before giving up on the monitor */
#define DRAIN_S 1.0        /* after the monitor exited, for the rest of its output */
#define PANIC_GRACE_S 2.0  /* after a panic line, for the monitor to end by itself (panic=-1) */
#define BACKSTOP_S 10.0    /* the monitor's own --timeout is ours plus this */
#define LINE_MAX_BYTES 65536
#define PARTIAL_MAX_BYTES 4096
#define WHOLE_MAX_BYTES (8u << 20)

struct options {
	const char *kernel, *initrd, *rootfs, *cmdline, *cpus, *memory, *expect, *log, *vmm;
	double timeout;
	bool allow_emulated, json, quiet, rootfs_rw;
	const char **extra;
	size_t n_extra;
};

/* A growable byte buffer. */
struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *data, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (b->len + n + 1 > cap)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			fprintf(stderr, "boot-test: out of memory\n");
			exit(2);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_drop_front(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	b->p[b->len] = '\0';
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- signals: the handlers only write the signal number to a non-blocking self-pipe ---- */
static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;
	if (write(sig_pipe[1], &c, 1) < 0) {
		/* the pipe is full: the loop wakes up anyway */
	}
	errno = saved;
}

static const int caught_signals[] = { SIGCHLD, SIGINT, SIGTERM, SIGHUP };

static int install_signals(void)
{
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK))
		return -1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(caught_signals) / sizeof(caught_signals[0]); i++)
		if (sigaction(caught_signals[i], &sa, NULL))
			return -1;
	signal(SIGPIPE, SIG_IGN); /* a closed stdout must not kill us while the monitor runs */
	return 0;
}

/* ---- the run: everything the loop learns ---- */
struct run {
	const struct options *o;
	regex_t line_re, whole_re;
	bool have_re, multiline;
	int log_fd;
	bool echo_console, echo_log, stdout_ok;
	bool echo_mid_line; /* the echoed console does not end with a newline */
	char *log_path;
	char *vmm;        /* the monitor's path */
	const char **av;  /* its argv */

	pid_t pid;
	double t0, deadline;
	bool reaped;
	int status;
	double reaped_at;

	struct buf line;   /* the console's current line, \r and NULs dropped */
	struct buf whole;  /* the whole console with \r and NULs dropped (multi-line patterns only) */
	struct buf errline; /* the monitor's current stderr line */
	char last_err[512]; /* its last non-empty stderr line, without the timestamp */
	bool matched, panic_seen;
	double matched_at, panic_at;
	double marker_ms;   /* as the monitor logged it: ms after its own start; < 0: none */

	enum verdict verdict;
	char message[1024];
	int interrupted_by;
	double term_sent, kill_sent; /* 0: not sent */
};

static void set_verdict(struct run *r, enum verdict v, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_verdict(struct run *r, enum verdict v, const char *fmt, ...)
{
	if (r->verdict != V_NONE)
		return;
	r->verdict = v;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

static void send_signal(struct run *r, int sig)
{
	if (r->reaped || r->pid <= 0)
		return;
	if (sig == SIGKILL) {
		if (!r->kill_sent)
			r->kill_sent = now_s();
	} else if (!r->term_sent) {
		r->term_sent = now_s();
	}
	kill(r->pid, sig);
}

static void reap(struct run *r, bool block)
{
	if (r->reaped || r->pid <= 0)
		return;
	int st;
	pid_t p;
	do
		p = waitpid(r->pid, &st, block ? 0 : WNOHANG);
	while (p < 0 && errno == EINTR);
	if (p == r->pid) {
		r->reaped = true;
		r->status = st;
		r->reaped_at = now_s();
	}
}

/* One console line (or the current partial line) to check. */
static void check_line(struct run *r, const char *text, bool partial)
{
	double t = now_s();
	if (r->have_re && !r->matched && !r->panic_seen &&
	    regexec(&r->line_re, text, 0, NULL, partial ? REG_NOTEOL : 0) == 0) {
		r->matched = true;
		r->matched_at = t;
	}
	if (!r->panic_seen && !r->matched && strstr(text, PANIC_TEXT)) {
		r->panic_seen = true;
		r->panic_at = t;
	}
}

static void console_data(struct run *r, const char *data, size_t n)
{
	if (r->log_fd >= 0 && write(r->log_fd, data, n) != (ssize_t)n) {
		fprintf(stderr, "boot-test: writing the console log %s: %s\n", r->log_path,
			errno ? strerror(errno) : "short write");
		close(r->log_fd);
		r->log_fd = -1;
	}
	if (r->echo_console && r->stdout_ok) {
		size_t off = 0;
		while (off < n) {
			ssize_t w = write(STDOUT_FILENO, data + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				r->stdout_ok = false;
				break;
			}
			off += (size_t)w;
		}
		if (n)
			r->echo_mid_line = data[n - 1] != '\n';
	}
	for (size_t i = 0; i < n; i++) {
		char c = data[i];
		if (c == '\n') {
			check_line(r, r->line.p ? r->line.p : "", false);
			r->line.len = 0;
			if (r->line.p)
				r->line.p[0] = '\0';
		} else if (c != '\r' && c != '\0') {
			if (r->line.len >= LINE_MAX_BYTES) { /* a runaway line: check it and start over */
				check_line(r, r->line.p, false);
				r->line.len = 0;
			}
			buf_add(&r->line, &c, 1);
		}
		if (r->multiline && c != '\r' && c != '\0')
			buf_add(&r->whole, &c, 1);
	}
	/* A prompt without a newline counts too ('$' does not match at the end of a partial line). */
	if (r->line.len && r->line.len <= PARTIAL_MAX_BYTES)
		check_line(r, r->line.p, true);
	if (r->multiline && !r->matched && !r->panic_seen) {
		if (r->whole.len > WHOLE_MAX_BYTES)
			buf_drop_front(&r->whole, r->whole.len - WHOLE_MAX_BYTES / 2);
		if (regexec(&r->whole_re, r->whole.p, 0, NULL, 0) == 0) {
			r->matched = true;
			r->matched_at = now_s();
		}
	}
}

static void stderr_line(struct run *r, char *text)
{
	const char *m = strstr(text, MARKER_TEXT);
	if (m) {
		char *end;
		double ms = strtod(m + strlen(MARKER_TEXT), &end);
		if (end != m + strlen(MARKER_TEXT) && ms >= 0)
			r->marker_ms = ms;
	}
	/* Keep the last non-empty line, without the "[  12.345] " timestamp. */
	const char *s = text;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close)
			s = close + 1;
	}
	while (*s == ' ')
		s++;
	if (*s)
		snprintf(r->last_err, sizeof(r->last_err), "%s", s);
}

static void stderr_data(struct run *r, const char *data, size_t n)
{
	/* After a pass the monitor only logs that it was stopped: not worth showing. */
	if (r->echo_log && r->verdict != V_PASS) {
		ssize_t w = write(STDERR_FILENO, data, n);
		(void)w;
	}
	for (size_t i = 0; i < n; i++) {
		if (data[i] == '\n' || r->errline.len >= 4096) {
			if (r->errline.len)
				stderr_line(r, r->errline.p);
			r->errline.len = 0;
			if (data[i] == '\n')
				continue;
		}
		if (data[i] != '\r' && data[i] != '\0')
			buf_add(&r->errline, &data[i], 1);
	}
}

/* ---- finding and starting the monitor ---- */
static char *search_path(const char *name)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char *copy = strdup(path), *save = NULL;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char cand[PATH_MAX];
		snprintf(cand, sizeof(cand), "%s/%s", *dir ? dir : ".", name);
		if (access(cand, X_OK) == 0) {
			free(copy);
			return strdup(cand);
		}
	}
	free(copy);
	return NULL;
}

/* --vmm PATH as given (a bare name is looked up in $PATH); else kvmbox-vmm next to this binary, then in
 * $PATH. NULL (with *where saying where we looked) when there is none. */
static char *find_vmm(const char *opt, char *where, size_t where_len)
{
	if (opt) {
		if (strchr(opt, '/'))
			return strdup(opt);
		char *p = search_path(opt);
		snprintf(where, where_len, "'%s' is not on $PATH", opt);
		return p;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char cand[PATH_MAX + 16];
		snprintf(cand, sizeof(cand), "%s/kvmbox-vmm", dirname(self));
		if (access(cand, X_OK) == 0)
			return strdup(cand);
		snprintf(where, where_len, "no kvmbox-vmm next to kvmbox (in %s) nor on $PATH", self);
	} else {
		snprintf(where, where_len, "no kvmbox-vmm on $PATH");
	}
	return search_path("kvmbox-vmm");
}

static pid_t spawn(char *const argv[], int con_w, int err_w, char *errbuf, size_t errlen)
{
	int ep[2];
	if (pipe2(ep, O_CLOEXEC)) {
		snprintf(errbuf, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0) {
		snprintf(errbuf, errlen, "/dev/null: %s", strerror(errno));
		close(ep[0]);
		close(ep[1]);
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(errbuf, errlen, "fork: %s", strerror(errno));
		close(ep[0]);
		close(ep[1]);
		close(devnull);
		return -1;
	}
	if (pid == 0) {
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		for (size_t i = 0; i < sizeof(caught_signals) / sizeof(caught_signals[0]); i++)
			sigaction(caught_signals[i], &dfl, NULL);
		sigaction(SIGPIPE, &dfl, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (dup2(devnull, STDIN_FILENO) < 0 || dup2(con_w, STDOUT_FILENO) < 0 ||
		    dup2(err_w, STDERR_FILENO) < 0)
			goto fail;
		execv(argv[0], argv);
fail:;
		int e = errno;
		ssize_t w = write(ep[1], &e, sizeof(e));
		(void)w;
		_exit(127);
	}
	close(ep[1]);
	close(devnull);
	int e = 0;
	ssize_t n;
	do
		n = read(ep[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == (ssize_t)sizeof(e)) {
		snprintf(errbuf, errlen, "cannot run the monitor %s: %s", argv[0], strerror(e));
		waitpid(pid, NULL, 0);
		return -1;
	}
	return pid;
}

/* ---- options ---- */
void boot_test_usage(FILE *out)
{
	fprintf(out,
		"usage: kvmbox boot-test --kernel PATH [--initrd PATH] [--cmdline STR] [--cpus N] [--memory MiB]\n"
		"                        [--expect REGEX] [--timeout SECONDS] [--log PATH] [--vmm PATH]\n"
		"                        [--allow-emulated] [--extra-vmm-arg ARG]... [--json] [--quiet]\n\n"
		"Boots a kernel on kvmbox-vmm, keeps its console in a log, and says whether the boot passed.\n\n"
		"options:\n"
		"  --kernel PATH          guest kernel (vmlinux ELF or bzImage); required\n"
		"  --initrd PATH          initial ramdisk (an initramfs with the userland to test)\n"
		"  --rootfs PATH          root filesystem image on virtio-blk /dev/vda (read-only: root=/dev/vda ro)\n"
		"  --rootfs-rw            attach --rootfs writable (root=/dev/vda rw): the guest may change it\n"
		"  --cmdline STR          kernel command line (after the monitor's defaults)\n"
		"  --cpus N               vCPUs (monitor default 1)\n"
		"  --memory MiB           guest RAM (monitor default 128)\n"
		"  --expect REGEX         pass when the console shows a match (POSIX extended regex, matched\n"
		"                         against each line; a pattern with a newline against the whole console);\n"
		"                         default: pass when the guest ends cleanly (monitor exit 0)\n"
		"  --timeout SECONDS      give up after this long (default 60)\n"
		"  --log PATH             keep the console log here (default $TMPDIR/kvmbox-boot-test-XXXXXX.log)\n"
		"  --vmm PATH             the monitor (default: kvmbox-vmm next to kvmbox, then $PATH)\n"
		"  --allow-emulated       let the monitor run a kernel that would run emulated on a PVM host\n"
		"  --extra-vmm-arg ARG    pass ARG to the monitor (repeatable)\n"
		"  --json                 print one JSON object on stdout instead of the console\n"
		"  --quiet                do not echo the console nor the monitor's log\n"
		"  --help                 show this help\n\n"
		"verdicts and exit status: 0 pass, 1 fail (the guest ended without the expected output),\n"
		"2 vmm-error (the monitor rejected the input or failed) or usage error, 3 panic (guest kernel\n"
		"panic), 4 timeout, 128+N interrupted by signal N. Manual: docs/boot-test.md\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "kvmbox boot-test: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see `kvmbox boot-test --help`)\n");
	return KVMBOX_EXIT_USAGE;
}

static bool positive_int(const char *s)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	return *s >= '0' && *s <= '9' && !*end && !errno && v > 0 && v <= INT_MAX;
}

enum { O_KERNEL = 256, O_INITRD, O_ROOTFS, O_CMDLINE, O_CPUS, O_MEMORY, O_EXPECT, O_TIMEOUT, O_LOG, O_VMM,
       O_ALLOW_EMULATED, O_EXTRA, O_JSON, O_QUIET, O_HELP, O_ROOTFS_RW };

static const struct option long_opts[] = {
	{ "kernel", required_argument, NULL, O_KERNEL },
	{ "initrd", required_argument, NULL, O_INITRD },
	{ "rootfs", required_argument, NULL, O_ROOTFS },
	{ "rootfs-rw", no_argument, NULL, O_ROOTFS_RW },
	{ "cmdline", required_argument, NULL, O_CMDLINE },
	{ "cpus", required_argument, NULL, O_CPUS },
	{ "memory", required_argument, NULL, O_MEMORY },
	{ "expect", required_argument, NULL, O_EXPECT },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "log", required_argument, NULL, O_LOG },
	{ "vmm", required_argument, NULL, O_VMM },
	{ "allow-emulated", no_argument, NULL, O_ALLOW_EMULATED },
	{ "extra-vmm-arg", required_argument, NULL, O_EXTRA },
	{ "json", no_argument, NULL, O_JSON },
	{ "quiet", no_argument, NULL, O_QUIET },
	{ "help", no_argument, NULL, O_HELP },
	{ NULL, 0, NULL, 0 },
};

/* 0: parsed; -1: --help was printed; else the exit status of a usage error. */
static int parse(struct options *o, int argc, char **argv)
{
	memset(o, 0, sizeof(*o));
	o->timeout = 60;
	o->extra = calloc((size_t)argc + 1, sizeof(*o->extra));
	if (!o->extra)
		return usage_error("out of memory");
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:h", long_opts, NULL)) != -1) {
		switch (c) {
		case O_KERNEL: o->kernel = optarg; break;
		case O_INITRD: o->initrd = optarg; break;
		case O_ROOTFS: o->rootfs = optarg; break;
		case O_ROOTFS_RW: o->rootfs_rw = true; break;
		case O_CMDLINE: o->cmdline = optarg; break;
		case O_CPUS:
			if (!positive_int(optarg))
				return usage_error("--cpus wants a positive whole number, not '%s'", optarg);
			o->cpus = optarg;
			break;
		case O_MEMORY:
			if (!positive_int(optarg))
				return usage_error("--memory wants a positive whole number of MiB, not '%s'", optarg);
			o->memory = optarg;
			break;
		case O_EXPECT: o->expect = optarg; break;
		case O_TIMEOUT: {
			char *end;
			errno = 0;
			double t = strtod(optarg, &end);
			if (end == optarg || *end || errno || !isfinite(t) || t <= 0 || t > 1e6)
				return usage_error("--timeout wants seconds (> 0, fractions allowed), not '%s'",
						   optarg);
			o->timeout = t;
			break;
		}
		case O_LOG: o->log = optarg; break;
		case O_VMM: o->vmm = optarg; break;
		case O_ALLOW_EMULATED: o->allow_emulated = true; break;
		case O_EXTRA: o->extra[o->n_extra++] = optarg; break;
		case O_JSON: o->json = true; break;
		case O_QUIET: o->quiet = true; break;
		case 'h':
		case O_HELP: boot_test_usage(stdout); return -1;
		case ':': return usage_error("%s needs a value", argv[optind - 1]);
		default: return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s' (options only)", argv[optind]);
	if (o->rootfs_rw && !o->rootfs)
		return usage_error("--rootfs-rw needs --rootfs PATH");
	if (!o->kernel)
		return usage_error("--kernel PATH is required");
	return 0;
}

/* ---- the verdict ---- */
static const char *vmm_exit_meaning(int code)
{
	switch (code) {
	case VMM_OK: return "the guest rebooted or powered off";
	case VMM_BAD_INPUT: return "bad input";
	case VMM_HOST: return "host error";
	case VMM_TRIPLE_FAULT: return "the guest triple-faulted";
	case VMM_KVM_ERROR: return "KVM internal or emulation error";
	case VMM_TIMEOUT: return "the monitor's own --timeout lapsed";
	case VMM_PANIC: return "guest kernel panic";
	default: return code > 128 ? "stopped by a signal" : "unknown exit status";
	}
}

/* The monitor's exit status as a shell would show it (128+N for a signal), -1 if it never ran. */
static int vmm_code(const struct run *r)
{
	if (!r->reaped)
		return -1;
	if (WIFEXITED(r->status))
		return WEXITSTATUS(r->status);
	if (WIFSIGNALED(r->status))
		return 128 + WTERMSIG(r->status);
	return -1;
}

static void decide_from_exit(struct run *r)
{
	const struct options *o = r->o;
	int code = vmm_code(r);
	char detail[700] = "";
	if (r->last_err[0])
		snprintf(detail, sizeof(detail), ": %s", r->last_err);
	if (r->panic_seen || code == VMM_PANIC) {
		set_verdict(r, V_PANIC, "the guest kernel panicked (%s; monitor exit %d)",
			    r->panic_seen ? "'" PANIC_TEXT "' on the console" : "detected by the monitor", code);
		return;
	}
	if (!r->reaped) {
		set_verdict(r, V_VMM_ERROR, "the monitor (pid %d) did not exit", (int)r->pid);
		return;
	}
	if (WIFSIGNALED(r->status)) {
		set_verdict(r, V_VMM_ERROR, "the monitor was killed by signal %d (%s)%s", WTERMSIG(r->status),
			    strsignal(WTERMSIG(r->status)), detail);
		return;
	}
	switch (code) {
	case VMM_OK:
		if (!o->expect)
			set_verdict(r, V_PASS, "the guest ended cleanly (monitor exit 0)");
		else
			set_verdict(r, V_FAIL, "%s (monitor exit 0) without printing output matching '%s'",
				    vmm_exit_meaning(code), o->expect);
		return;
	case VMM_TRIPLE_FAULT:
	case VMM_KVM_ERROR:
		if (o->expect)
			set_verdict(r, V_FAIL, "%s (monitor exit %d) before printing output matching '%s'%s",
				    vmm_exit_meaning(code), code, o->expect, detail);
		else
			set_verdict(r, V_FAIL, "%s (monitor exit %d)%s", vmm_exit_meaning(code), code, detail);
		return;
	case VMM_TIMEOUT:
		set_verdict(r, V_TIMEOUT, "%s (monitor exit 5)", vmm_exit_meaning(code));
		return;
	case VMM_BAD_INPUT:
	case VMM_HOST:
		set_verdict(r, V_VMM_ERROR, "the monitor failed (exit %d, %s)%s", code, vmm_exit_meaning(code),
			    detail);
		return;
	default:
		set_verdict(r, V_VMM_ERROR, "the monitor ended with exit status %d (%s)%s", code,
			    vmm_exit_meaning(code), detail);
		return;
	}
}

/* A JSON string even from bytes that are not UTF-8 (a path, a monitor log line): those become '?'. */
static json_t *json_str(const char *text)
{
	json_t *j = json_string(text);
	if (j)
		return j;
	char *copy = strdup(text);
	if (!copy)
		return json_null();
	for (char *c = copy; *c; c++)
		if ((unsigned char)*c >= 0x80)
			*c = '?';
	j = json_string(copy);
	free(copy);
	return j ? j : json_null();
}

static void report(struct run *r, double end)
{
	double elapsed = end - r->t0;
	int code = vmm_code(r);
	if (r->o->json) {
		json_t *j = json_object();
		json_object_set_new(j, "verdict", json_string(verdict_names[r->verdict]));
		json_object_set_new(j, "exitCode", code >= 0 ? json_integer(code) : json_null());
		json_object_set_new(j, "elapsedMs", json_real(round(elapsed * 1e6) / 1e3));
		json_object_set_new(j, "expectMatchedMs",
				    r->matched ? json_real(round((r->matched_at - r->t0) * 1e6) / 1e3) : json_null());
		json_object_set_new(j, "bootMarkerMs", r->marker_ms >= 0 ? json_real(r->marker_ms) : json_null());
		json_object_set_new(j, "consoleLog", r->log_path ? json_str(r->log_path) : json_null());
		json_object_set_new(j, "message", json_str(r->message));
		char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
		if (s) {
			printf("%s\n", s);
			free(s);
		}
		fflush(stdout);
		json_decref(j);
		return;
	}
	char times[200] = "";
	size_t n = 0;
	if (r->matched)
		n += (size_t)snprintf(times + n, sizeof(times) - n, "expected output at %.3f s",
				      r->matched_at - r->t0);
	if (r->marker_ms >= 0)
		n += (size_t)snprintf(times + n, sizeof(times) - n, "%sboot marker at %.3f s", n ? ", " : "",
				      r->marker_ms / 1e3);
	if (r->verdict == V_PASS)
		fprintf(stderr, "boot-test: pass in %.3f s (%s); console log: %s\n", elapsed,
			n ? times : r->message, r->log_path ? r->log_path : "(none)");
	else
		fprintf(stderr, "boot-test: %s in %.3f s: %s%s%s%s; console log: %s\n", verdict_names[r->verdict],
			elapsed, r->message, n ? " (" : "", times, n ? ")" : "", r->log_path ? r->log_path : "(none)");
}

/* ---- the loop ---- */
static void run_loop(struct run *r, int con_fd, int err_fd)
{
	char data[65536];
	bool con_open = true, err_open = true;
	for (;;) {
		double t = now_s();
		reap(r, false);

		/* What happened since the last turn. */
		if (r->verdict == V_NONE && r->matched) {
			set_verdict(r, V_PASS, "expected output seen");
			send_signal(r, SIGTERM);
		}
		if (r->verdict == V_NONE && r->panic_seen && !r->reaped && t - r->panic_at >= PANIC_GRACE_S) {
			set_verdict(r, V_PANIC, "the guest kernel panicked ('" PANIC_TEXT "' on the console); "
						"it did not end by itself, so it was stopped");
			send_signal(r, SIGTERM);
		}
		if (r->verdict == V_NONE && !r->reaped && t >= r->deadline) {
			if (r->o->expect)
				set_verdict(r, V_TIMEOUT, "no output matching '%s' within %g s: the monitor was killed",
					    r->o->expect, r->o->timeout);
			else
				set_verdict(r, V_TIMEOUT, "the guest did not end within %g s: the monitor was killed",
					    r->o->timeout);
			send_signal(r, SIGKILL);
		}
		if (r->term_sent && !r->kill_sent && t - r->term_sent >= TERM_GRACE_S)
			send_signal(r, SIGKILL);
		if (r->reaped && ((!con_open && !err_open) || t - r->reaped_at >= DRAIN_S))
			break;
		if (r->kill_sent && !r->reaped && t - r->kill_sent >= KILL_WAIT_S) {
			fprintf(stderr, "boot-test: the monitor (pid %d) did not die after SIGKILL; leaving it\n",
				(int)r->pid);
			break;
		}

		/* The next deadline. */
		double next = t + 3600;
		if (r->verdict == V_NONE && !r->reaped)
			next = fmin(next, r->deadline);
		if (r->panic_seen && r->verdict == V_NONE)
			next = fmin(next, r->panic_at + PANIC_GRACE_S);
		if (r->term_sent && !r->kill_sent)
			next = fmin(next, r->term_sent + TERM_GRACE_S);
		if (r->kill_sent)
			next = fmin(next, r->kill_sent + KILL_WAIT_S);
		if (r->reaped)
			next = fmin(next, r->reaped_at + DRAIN_S);
		int ms = (int)ceil((next - t) * 1e3);
		if (ms < 0)
			ms = 0;

		struct pollfd pfd[3] = {
			{ .fd = sig_pipe[0], .events = POLLIN },
			{ .fd = con_open ? con_fd : -1, .events = POLLIN },
			{ .fd = err_open ? err_fd : -1, .events = POLLIN },
		};
		int n = poll(pfd, 3, ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "boot-test: poll: %s\n", strerror(errno));
			send_signal(r, SIGKILL);
			reap(r, true);
			set_verdict(r, V_VMM_ERROR, "internal error: poll: %s", strerror(errno));
			return;
		}
		if (pfd[0].revents) {
			unsigned char sigs[64];
			ssize_t k = read(sig_pipe[0], sigs, sizeof(sigs));
			for (ssize_t i = 0; i < k; i++) {
				int sig = sigs[i];
				if (sig == SIGCHLD)
					continue; /* reaped at the top of the loop */
				if (r->verdict == V_NONE) {
					r->interrupted_by = sig;
					set_verdict(r, V_INTERRUPTED, "boot-test received %s; the monitor was stopped",
						    sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP");
					send_signal(r, SIGTERM);
				} else {
					send_signal(r, SIGKILL); /* a second signal: no more grace */
				}
			}
		}
		/* Console before stderr: output that raced the monitor's exit still counts. */
		if (pfd[1].revents) {
			ssize_t k = read(con_fd, data, sizeof(data));
			if (k > 0)
				console_data(r, data, (size_t)k);
			else if (k == 0 || (errno != EINTR && errno != EAGAIN))
				con_open = false;
		}
		if (pfd[2].revents) {
			ssize_t k = read(err_fd, data, sizeof(data));
			if (k > 0)
				stderr_data(r, data, (size_t)k);
			else if (k == 0 || (errno != EINTR && errno != EAGAIN))
				err_open = false;
		}
	}
	if (r->errline.len)
		stderr_line(r, r->errline.p);
}

/* Everything after the options; what it allocates is in r, freed by the caller (run_free). */
static int boot_test(const struct options *o, struct run *r)
{
	r->o = o;
	r->log_fd = -1;
	r->marker_ms = -1;
	r->echo_console = !o->quiet && !o->json;
	r->echo_log = !o->quiet;
	r->stdout_ok = true;

	if (o->expect) {
		int e = regcomp(&r->line_re, o->expect, REG_EXTENDED | REG_NOSUB);
		if (!e) {
			r->have_re = true;
			if (strchr(o->expect, '\n')) {
				e = regcomp(&r->whole_re, o->expect, REG_EXTENDED | REG_NOSUB | REG_NEWLINE);
				r->multiline = !e;
			}
		}
		if (e) {
			char msg[256];
			regerror(e, r->have_re ? &r->whole_re : &r->line_re, msg, sizeof(msg));
			return usage_error("--expect '%s' is not a valid extended regex: %s", o->expect, msg);
		}
	}

	/* Make sure 0, 1 and 2 are open, so no pipe lands on them. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
			return 2;

	char where[PATH_MAX + 100] = "";
	r->vmm = find_vmm(o->vmm, where, sizeof(where));
	if (!r->vmm) {
		fprintf(stderr, "kvmbox boot-test: cannot find the monitor: %s; give --vmm PATH\n", where);
		return KVMBOX_EXIT_USAGE;
	}

	/* The console log. */
	if (o->log) {
		r->log_path = strdup(o->log);
		r->log_fd = open(o->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	} else {
		const char *tmp = getenv("TMPDIR");
		if (!tmp || !*tmp)
			tmp = "/tmp";
		if (asprintf(&r->log_path, "%s/kvmbox-boot-test-XXXXXX.log", tmp) < 0) {
			r->log_path = NULL;
			return 2;
		}
		r->log_fd = mkostemps(r->log_path, 4, O_CLOEXEC);
	}
	if (r->log_fd < 0 || !r->log_path) {
		fprintf(stderr, "kvmbox boot-test: cannot create the console log %s: %s\n",
			r->log_path ? r->log_path : o->log, strerror(errno));
		return KVMBOX_EXIT_USAGE;
	}

	/* The monitor's command line. */
	char backstop[32];
	snprintf(backstop, sizeof(backstop), "%.3f", o->timeout + BACKSTOP_S);
	const char **av = r->av = calloc(32 + o->n_extra, sizeof(*av));
	if (!av) {
		fprintf(stderr, "kvmbox boot-test: out of memory\n");
		return 2;
	}
	size_t ac = 0;
	av[ac++] = r->vmm;
	av[ac++] = "--kernel";
	av[ac++] = o->kernel;
	if (o->initrd) {
		av[ac++] = "--initrd";
		av[ac++] = o->initrd;
	}
	/* A root disk: /dev/vda, read-only unless asked, and root= before the user's words (which win). */
	char disk_arg[PATH_MAX + 16], cmdline_arg[8192];
	const char *cmdline = o->cmdline;
	if (o->rootfs) {
		snprintf(disk_arg, sizeof(disk_arg), "%s%s", o->rootfs, o->rootfs_rw ? "" : ",readonly");
		snprintf(cmdline_arg, sizeof(cmdline_arg), "root=/dev/vda %s%s%s", o->rootfs_rw ? "rw" : "ro",
			 o->cmdline ? " " : "", o->cmdline ? o->cmdline : "");
		cmdline = cmdline_arg;
		av[ac++] = "--disk";
		av[ac++] = disk_arg;
	}
	if (cmdline) {
		av[ac++] = "--cmdline";
		av[ac++] = cmdline;
	}
	if (o->cpus) {
		av[ac++] = "--cpus";
		av[ac++] = o->cpus;
	}
	if (o->memory) {
		av[ac++] = "--memory";
		av[ac++] = o->memory;
	}
	av[ac++] = "--console";
	av[ac++] = "stdio";
	av[ac++] = "--timeout";
	av[ac++] = backstop;
	if (o->allow_emulated)
		av[ac++] = "--allow-emulated";
	for (size_t i = 0; i < o->n_extra; i++)
		av[ac++] = o->extra[i];
	av[ac] = NULL;

	int con[2], err[2];
	if (install_signals() || pipe2(con, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
		fprintf(stderr, "kvmbox boot-test: %s\n", strerror(errno));
		return 2;
	}
	r->t0 = now_s();
	r->deadline = r->t0 + o->timeout;
	char spawn_err[PATH_MAX + 200];
	r->pid = spawn((char *const *)av, con[1], err[1], spawn_err, sizeof(spawn_err));
	close(con[1]);
	close(err[1]);
	if (r->pid < 0) {
		set_verdict(r, V_VMM_ERROR, "%s", spawn_err);
	} else {
		run_loop(r, con[0], err[0]);
		if (r->verdict == V_NONE)
			decide_from_exit(r);
	}
	close(con[0]);
	close(err[0]);
	double end = now_s();
	if (r->echo_mid_line && r->stdout_ok) {
		ssize_t w = write(STDOUT_FILENO, "\n", 1);
		(void)w;
	}
	close(r->log_fd);
	r->log_fd = -1;
	report(r, end);
	if (r->verdict == V_INTERRUPTED)
		return 128 + r->interrupted_by;
	return verdict_exit[r->verdict];
}

static void run_free(struct run *r)
{
	if (r->have_re)
		regfree(&r->line_re);
	if (r->multiline)
		regfree(&r->whole_re);
	if (r->log_fd >= 0)
		close(r->log_fd);
	free(r->line.p);
	free(r->whole.p);
	free(r->errline.p);
	free(r->log_path);
	free(r->av);
	free(r->vmm);
}

int cmd_boot_test(int argc, char **argv)
{
	struct options o;
	int rc = parse(&o, argc, argv);
	if (rc == 0) {
		struct run r;
		memset(&r, 0, sizeof(r));
		rc = boot_test(&o, &r);
		run_free(&r);
	} else if (rc < 0) {
		rc = 0; /* --help */
	}
	free(o.extra);
	return rc;
}
