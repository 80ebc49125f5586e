/* The monitor's log: one line per event on stderr, prefixed with milliseconds since the monitor started. */
#ifndef KVMBOX_LOG_H
#define KVMBOX_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

struct log {
	enum log_level level;
	uint64_t start_ns; /* CLOCK_MONOTONIC at process start */
};

uint64_t monotonic_ns(void);
void log_init(struct log *log, enum log_level level);
int log_level_parse(const char *s, enum log_level *out);
double log_elapsed_ms(const struct log *log);
void log_msg(const struct log *log, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(l, ...) log_msg((l), LOG_ERROR, __VA_ARGS__)
#define log_warn(l, ...)  log_msg((l), LOG_WARN, __VA_ARGS__)
#define log_info(l, ...)  log_msg((l), LOG_INFO, __VA_ARGS__)
#define log_debug(l, ...) do { if ((l)->level >= LOG_DEBUG) log_msg((l), LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
