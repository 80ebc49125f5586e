/* libkvmbox internals (include/kvmbox.h): the connection, its frame reader and writer (conn.c), and the
 * helpers the request files (call.c, cmd.c, file.c) share. */
#ifndef KVMBOX_LIB_H
#define KVMBOX_LIB_H

#include "kvmbox.h"
#include "tools/agent/frame.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct kvmbox_agent {
	int fd;                 /* non-blocking: every wait is a poll() bounded by io_timeout_ms */
	uint32_t next_id;       /* request ids increase per handle; 0 is reserved */
	int io_timeout_ms;      /* <= 0: none */
	uint8_t *rbuf;          /* what the agent sent: frames from rpos to rlen; grows to one whole frame */
	size_t rpos, rlen, rcap;
	char where[160];        /* "the agent at /tmp/vm.vsock", for messages */
	char op[32];            /* the request in progress, for messages */
	char dead[256];         /* non-empty: the stream is unusable (why); every later call fails CLOSED */
};

/* One frame for the current request, as kb_recv returns it: data points into the read buffer and stays
 * valid until the next kb_* call on the handle; json (an object or NULL) is the caller's to decref. */
struct kb_frame {
	uint8_t type, flags;
	json_t *json;
	const uint8_t *data;
	size_t len;
};

/* ---- errors ---- */
int kb_err(struct kvmbox_error *err, const char *code, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* An errno of the caller's side: code is its name ("EPIPE"), message "<what>: <strerror>". */
int kb_errno(struct kvmbox_error *err, int errnum, const char *syscall, const char *what);
/* The agent's {"ok": false, "error": {...}} into err; returns -1. */
int kb_agent_error(struct kvmbox_agent *a, json_t *response, struct kvmbox_error *err);

/* ---- requests ---- */
/* Check a and start a request named op: fails when a is NULL or dead. Returns the new request id. */
int kb_begin(struct kvmbox_agent *a, const char *op, uint32_t *id, struct kvmbox_error *err);
/* Send one frame (req: the JSON object, or NULL). */
int kb_send(struct kvmbox_agent *a, uint8_t type, uint8_t flags, uint32_t id, json_t *req, const void *data,
	    size_t len, struct kvmbox_error *err);
/* Wait for the next frame of request id; frames of other ids (earlier requests given up) are skipped. */
int kb_recv(struct kvmbox_agent *a, uint32_t id, struct kb_frame *f, struct kvmbox_error *err);
/* Without waiting: is a frame for id at the front (1), not yet (0), or an error (-1)? */
int kb_peek(struct kvmbox_agent *a, uint32_t id, struct kvmbox_error *err);
/* Mark the handle unusable (a frame half sent, garbage received): later calls fail with CLOSED. */
void kb_kill(struct kvmbox_agent *a, const char *why);
/* A RESPONSE: 0 with *result (the object without "ok", a new reference; result may be NULL) when ok,
 * else -1 with err from the agent's error. */
int kb_response(struct kvmbox_agent *a, json_t *resp, json_t **result, struct kvmbox_error *err);
/* A protocol error: the handle is killed. */
int kb_protocol(struct kvmbox_agent *a, struct kvmbox_error *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Receive the frames of request id until its RESPONSE: each EVENT and DATA frame goes to on_frame (may
 * be NULL: they are skipped), whose non-zero return ends the wait with -1 (it fills err); then the
 * RESPONSE as kb_response does. */
typedef int (*kb_frame_fn)(void *ctx, const struct kb_frame *f, struct kvmbox_error *err);
int kb_await(struct kvmbox_agent *a, uint32_t id, kb_frame_fn on_frame, void *ctx, json_t **result,
	     struct kvmbox_error *err);

/* Send req (taken) and upload bytes from src as its data: the REQUEST carries the first chunk, DATA
 * frames with MORE the rest. src fills buf with up to cap bytes and sets *eof once nothing follows;
 * returns the count or -1 (err filled). Then waits for the RESPONSE (EVENT and DATA skipped). */
typedef ssize_t (*kb_source_fn)(void *ctx, void *buf, size_t cap, bool *eof, struct kvmbox_error *err);
int kb_upload(struct kvmbox_agent *a, uint32_t id, json_t *req, kb_source_fn src, void *ctx, json_t **result,
	      struct kvmbox_error *err);

/* Send req (taken) as a REQUEST without data and wait for its RESPONSE (EVENT and DATA skipped). */
int kb_call_json(struct kvmbox_agent *a, uint32_t id, json_t *req, json_t **result, struct kvmbox_error *err);

/* A kb_source_fn over a buffer. */
struct kb_mem_source {
	const uint8_t *p;
	size_t left;
};
ssize_t kb_mem_read(void *ctx, void *buf, size_t cap, bool *eof, struct kvmbox_error *err);

/* ---- JSON helpers ---- */
/* Set o[key] to a string; false when value is not valid UTF-8 (JSON cannot carry it) or without memory. */
bool kb_set_str(json_t *o, const char *key, const char *value);
bool kb_set_int(json_t *o, const char *key, json_int_t v);
bool kb_set_bool(json_t *o, const char *key, bool v);
/* Copy a JSON string member into dst (truncated); "" when absent or not a string. */
void kb_get_str(json_t *o, const char *key, char *dst, size_t size);
/* An integer member, or def when absent, null or not an integer. */
int64_t kb_get_int(json_t *o, const char *key, int64_t def);

int64_t kb_now_ms(void); /* monotonic */

#endif
