/* kvmboxd's HTTP layer on libmicrohttpd: one thread per connection (handlers may block on the agent),
 * a route table, JSON bodies of at most 1 MiB, streamed uploads and downloads, JSON errors
 * {code, message} (docs/api.md). */
#ifndef KVMBOX_KVMBOXD_HTTP_H
#define KVMBOX_KVMBOXD_HTTP_H

#include "tools/kvmboxd/sandbox.h"
#include "kvmbox.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>

#define KVMBOXD_VERSION   "0.1"
#define HTTP_MAX_BODY     (1u << 20)
#define HTTP_MAX_PARTS    8

struct daemon {
	struct registry *reg;
	const struct daemon_config *cfg;
};

struct http_req;
typedef enum MHD_Result (*http_handler)(struct http_req *r);
/* A streamed upload: begin once the headers are in (may answer at once, e.g. 404), data per chunk, end
 * with the whole body seen. */
struct http_upload_ops {
	enum MHD_Result (*begin)(struct http_req *r);
	void (*data)(struct http_req *r, const char *buf, size_t len);
	enum MHD_Result (*end)(struct http_req *r);
};

struct route {
	const char *method;
	const char *pattern;              /* segments split by '/'; a segment '*' matches any one */
	http_handler handler;             /* JSON-body or body-less routes */
	const struct http_upload_ops *upload; /* streamed-body routes */
};

struct http_req {
	struct MHD_Connection *conn;
	struct daemon *d;
	const char *method;
	char *url_copy;
	char *parts[HTTP_MAX_PARTS];
	int nparts;
	const char *arg[4];               /* the segments '*' matched, in order */
	const struct route *route;
	bool method_mismatch;             /* no route: but the path has one for another method */
	char *body;
	size_t body_len;
	bool body_too_large, answered, began;
	bool deferring;                   /* in an upload's begin: hold an answer until the body is read */
	unsigned deferred_status;
	json_t *deferred_body;
	void *upload_state;               /* the upload route's own */
	void (*upload_free)(struct http_req *r);
};

/* Responses (each queues one and returns MHD's result). */
enum MHD_Result http_json(struct http_req *r, unsigned status, json_t *body); /* body taken */
enum MHD_Result http_error(struct http_req *r, unsigned status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
enum MHD_Result http_api_error(struct http_req *r, const struct api_error *e);
/* An agent (libkvmbox) error: errno codes → 404/409/403/400 with errno, syscall, path, dest; agent codes;
 * connection failures → 502 AGENT. */
enum MHD_Result http_agent_error(struct http_req *r, const struct kvmbox_error *e);
unsigned http_status_for_agent_code(const char *code, int errnum);
enum MHD_Result http_empty(struct http_req *r, unsigned status);

/* Request helpers. */
const char *http_query(struct http_req *r, const char *name);
/* 400 unless every query parameter is one of allowed (NULL-terminated); returns false after answering. */
bool http_query_only(struct http_req *r, const char *const *allowed);
/* The query parameter as a bool ("true"/"false"/"1"/"0"), or def when absent; false + 400 when bad. */
bool http_query_bool(struct http_req *r, const char *name, bool def, bool *out);
bool http_query_int(struct http_req *r, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out);
/* The body as a JSON object (an empty body is {}); NULL after answering 400/413. */
json_t *http_body_object(struct http_req *r);
/* 400 unless every key of o is in allowed (NULL-terminated); returns false after answering. */
bool http_fields_only(struct http_req *r, json_t *o, const char *const *allowed);

struct MHD_Daemon *http_start(struct daemon *d, int listen_fd, char *err, size_t errlen);

/* The route tables of the API files. */
extern const struct route api_sandbox_routes[];
extern const struct route api_agent_routes[];

#endif
