/* One error message per failed operation: what failed, on what, and what to do. */
#ifndef KVMBOX_ERROR_H
#define KVMBOX_ERROR_H

#include <stdbool.h>

struct error {
	char msg[512];
	bool user_input; /* the user's input is at fault (exit code 1), not the host */
};

/* Formats the message into e (if e is not NULL) and returns -1, so callers can `return error_set(...)`. */
int error_set(struct error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same, marking the error as the user's input (a bad path, a bad option value). */
int error_input(struct error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
