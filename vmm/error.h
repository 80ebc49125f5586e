/* One error message per failed operation: what failed, on what, and what to do. */
#ifndef KVMBOX_ERROR_H
#define KVMBOX_ERROR_H

struct error {
	char msg[512];
};

/* Formats the message into e (if e is not NULL) and returns -1, so callers can `return error_set(...)`. */
int error_set(struct error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
