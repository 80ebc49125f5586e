/* Helpers shared by the sandbox commands: the global options, usage errors, number parsing, signals. */
#include "tools/kvmbox/kvmbox.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *kvmbox_socket = KVMBOX_DEFAULT_SOCKET;
bool kvmbox_json;
volatile sig_atomic_t cli_signal;

bool cli_common_opt(int c, const char *arg)
{
	switch (c) {
	case OPT_SOCKET: kvmbox_socket = arg; return true;
	case OPT_JSON: kvmbox_json = true; return true;
	default: return false;
	}
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "kvmbox %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see `kvmbox %s --help`)\n", cmd);
	return KVMBOX_EXIT_USAGE;
}

int cli_getopt_error(const char *cmd, int c, char **argv)
{
	/* getopt_long leaves optind past the offending word, or on it for a glued short option. */
	const char *word = argv[optind - 1];
	if (c == ':')
		return cli_usage_error(cmd, "%s needs a value", word);
	if (optopt && optopt < 0x100)
		return cli_usage_error(cmd, "unknown option '-%c'", optopt);
	return cli_usage_error(cmd, "unknown option '%s'", word);
}

bool cli_parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void on_signal(int sig)
{
	cli_signal = sig;
}

/* SIGINT/SIGTERM/SIGHUP only set cli_signal: the transfer in flight sees it in its tick (at most about a
 * second later, curl's idle progress interval) and the command cleans up. No SA_RESTART, so a blocking
 * read() of stdin returns EINTR. SIGPIPE is ignored: a closed stdout is an EPIPE the caller handles. */
void cli_catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}
