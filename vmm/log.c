#include "vmm/log.h"
#include "vmm/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = { "error", "warn", "info", "debug" };

uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void log_init(struct log *log, enum log_level level)
{
	log->level = level;
	log->start_ns = monotonic_ns();
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

double log_elapsed_ms(const struct log *log)
{
	return (double)(monotonic_ns() - log->start_ns) / 1e6;
}

void log_msg(const struct log *log, enum log_level level, const char *fmt, ...)
{
	if (level > log->level)
		return;
	char line[1024];
	int n = snprintf(line, sizeof(line), "[%9.3f] kvmbox-vmm: %s%s", log_elapsed_ms(log),
			 level <= LOG_WARN ? level_names[level] : "", level <= LOG_WARN ? ": " : "");
	va_list ap;
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line so lines from vCPU threads never interleave. */
	ssize_t r = write(STDERR_FILENO, line, (size_t)n);
	(void)r;
}

int error_set(struct error *e, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		e->user_input = false;
	}
	return -1;
}

int error_input(struct error *e, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		e->user_input = true;
	}
	return -1;
}
