/* kvmboxd's HTTP layer (http.h). */
#include "tools/kvmboxd/http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum MHD_Result http_json(struct http_req *r, unsigned status, json_t *body)
{
	if (r->deferring) {
		/* libmicrohttpd cannot answer an upload before its body is read: keep it for the end. */
		json_decref(r->deferred_body);
		r->deferred_body = body;
		r->deferred_status = status;
		r->answered = true;
		return MHD_YES;
	}
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		text = strdup("{\"code\":\"INTERNAL\",\"message\":\"out of memory encoding the answer\"}");
	size_t len = text ? strlen(text) : 0;
	/* One line per answer: curl output ends with a newline. */
	char *line = text ? realloc(text, len + 2) : NULL;
	if (!line) {
		free(text);
		return MHD_NO;
	}
	line[len++] = '\n';
	line[len] = 0;
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, line, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(line);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	r->answered = true;
	return ret;
}

enum MHD_Result http_empty(struct http_req *r, unsigned status)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	r->answered = true;
	return ret;
}

static json_t *error_body(const char *code, const char *message)
{
	return json_pack("{s:s, s:s}", "code", code, "message", message);
}

enum MHD_Result http_error(struct http_req *r, unsigned status, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return http_json(r, status, error_body(code, msg));
}

enum MHD_Result http_api_error(struct http_req *r, const struct api_error *e)
{
	return http_json(r, e->status ? e->status : 500, error_body(e->code[0] ? e->code : "INTERNAL", e->message));
}

unsigned http_status_for_agent_code(const char *code, int errnum)
{
	static const struct {
		const char *code;
		unsigned status;
	} map[] = {
		{"ENOENT", 404}, {"EEXIST", 409}, {"ENOTEMPTY", 409}, {"EACCES", 403}, {"EPERM", 403},
		{"BAD_REQUEST", 400}, {"NOT_FOUND", 404}, {"NOT_RUNNING", 409}, {"STDIN_CLOSED", 409},
		{"SLOW_CONSUMER", 409}, {"OUTPUT_GONE", 409}, {"LIMIT", 429}, {"INTERNAL", 500},
		{"CONNECT", 502}, {"PROTOCOL", 502}, {"CLOSED", 502}, {"TIMEOUT", 504}, {"CALLBACK", 500},
		{"EINVAL", 400}, {"ENOMEM", 500},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(code, map[i].code) == 0)
			return map[i].status;
	return errnum ? 400 : 500;
}

enum MHD_Result http_agent_error(struct http_req *r, const struct kvmbox_error *e)
{
	unsigned status = http_status_for_agent_code(e->code, e->errnum);
	bool transport = status == 502 || status == 504;
	json_t *b = error_body(transport ? "AGENT" : e->code, e->message);
	if (!transport && e->errnum) {
		json_object_set_new(b, "errno", json_integer(e->errnum));
		if (e->syscall[0])
			json_object_set_new(b, "syscall", json_string(e->syscall));
		if (e->path[0])
			json_object_set_new(b, "path", json_string(e->path));
		if (e->dest[0])
			json_object_set_new(b, "dest", json_string(e->dest));
	}
	return http_json(r, status, b);
}

const char *http_query(struct http_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct query_check {
	const char *const *allowed;
	const char *bad;
};

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct query_check *q = cls;
	(void)kind;
	(void)value;
	for (const char *const *a = q->allowed; *a; a++)
		if (strcmp(*a, key) == 0)
			return MHD_YES;
	q->bad = key;
	return MHD_NO;
}

bool http_query_only(struct http_req *r, const char *const *allowed)
{
	struct query_check q = {allowed, NULL};
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_iter, &q);
	if (!q.bad)
		return true;
	http_error(r, 400, "BAD_REQUEST", "unknown query parameter '%.64s'", q.bad);
	return false;
}

bool http_query_bool(struct http_req *r, const char *name, bool def, bool *out)
{
	const char *v = http_query(r, name);
	if (!v) {
		*out = def;
		return true;
	}
	if (!strcmp(v, "true") || !strcmp(v, "1") || !*v) {
		*out = true;
		return true;
	}
	if (!strcmp(v, "false") || !strcmp(v, "0")) {
		*out = false;
		return true;
	}
	http_error(r, 400, "BAD_REQUEST", "query parameter '%s' must be true or false", name);
	return false;
}

bool http_query_int(struct http_req *r, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out)
{
	const char *v = http_query(r, name);
	if (!v) {
		*out = def;
		return true;
	}
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < min || x > max) {
		http_error(r, 400, "BAD_REQUEST", "query parameter '%s' must be an integer in %lld..%lld", name,
			   (long long)min, (long long)max);
		return false;
	}
	*out = x;
	return true;
}

json_t *http_body_object(struct http_req *r)
{
	if (r->body_too_large) {
		http_error(r, 413, "TOO_LARGE", "the request body is over %u bytes", HTTP_MAX_BODY);
		return NULL;
	}
	if (!r->body_len)
		return json_object();
	json_error_t je;
	json_t *o = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		http_error(r, 400, "BAD_REQUEST", "the body is not valid JSON: %s (line %d, column %d)", je.text,
			   je.line, je.column);
		return NULL;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		http_error(r, 400, "BAD_REQUEST", "the body must be a JSON object");
		return NULL;
	}
	return o;
}

bool http_fields_only(struct http_req *r, json_t *o, const char *const *allowed)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		const char *const *a;
		for (a = allowed; *a; a++)
			if (strcmp(*a, k) == 0)
				break;
		if (!*a) {
			http_error(r, 400, "BAD_REQUEST", "unknown field '%.64s'", k);
			return false;
		}
	}
	return true;
}

/* ---- routing ---- */

static const struct route *const route_tables[] = {api_sandbox_routes, api_agent_routes};

/* Find the route; *method_mismatch when the path matched a route of another method. */
static const struct route *route_find(struct http_req *r, bool *method_mismatch)
{
	*method_mismatch = false;
	for (size_t t = 0; t < sizeof(route_tables) / sizeof(route_tables[0]); t++) {
		for (const struct route *rt = route_tables[t]; rt->pattern; rt++) {
			char pat[128];
			snprintf(pat, sizeof(pat), "%s", rt->pattern);
			int n = 0, na = 0;
			const char *args[4];
			bool ok = true;
			for (char *save, *seg = strtok_r(pat, "/", &save); seg; seg = strtok_r(NULL, "/", &save), n++) {
				if (n >= r->nparts) {
					ok = false;
					break;
				}
				if (strcmp(seg, "*") == 0) {
					if (na < 4)
						args[na++] = r->parts[n];
				} else if (strcmp(seg, r->parts[n]) != 0) {
					ok = false;
					break;
				}
			}
			if (!ok || n != r->nparts)
				continue;
			if (strcmp(rt->method, r->method) != 0) {
				*method_mismatch = true;
				continue;
			}
			memcpy(r->arg, args, sizeof(args[0]) * na);
			return rt;
		}
	}
	return NULL;
}

static void split_url(struct http_req *r, const char *url)
{
	r->url_copy = strdup(url);
	r->nparts = 0;
	if (!r->url_copy)
		return;
	for (char *save, *seg = strtok_r(r->url_copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
		if (r->nparts == HTTP_MAX_PARTS) {
			r->nparts = HTTP_MAX_PARTS + 1; /* matches nothing */
			return;
		}
		r->parts[r->nparts++] = seg;
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct daemon *d = cls;
	struct http_req *r = *con_cls;
	(void)version;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->conn = conn;
		r->d = d;
		r->method = method;
		split_url(r, url);
		*con_cls = r;
		/* No route: answered once the body is in (MHD wants the upload consumed first). */
		r->route = route_find(r, &r->method_mismatch);
		return MHD_YES;
	}
	if (!r->route) {
		if (*upload_data_size) {
			*upload_data_size = 0;
			return MHD_YES;
		}
		if (r->method_mismatch)
			return http_error(r, 405, "METHOD_NOT_ALLOWED", "%s is not allowed on %s", method, url);
		return http_error(r, 404, "NOT_FOUND", "no such route: %s %s (see docs/api.md)", method, url);
	}
	if (r->route->upload) {
		if (!r->began) {
			r->began = true;
			r->deferring = true;
			enum MHD_Result res = r->route->upload->begin(r);
			r->deferring = false;
			if (res != MHD_YES)
				return res;
		}
		if (*upload_data_size) {
			if (!r->answered)
				r->route->upload->data(r, upload_data, *upload_data_size);
			*upload_data_size = 0;
			return MHD_YES;
		}
		if (r->deferred_body) { /* refused in begin; the body has been read and dropped */
			json_t *body = r->deferred_body;
			r->deferred_body = NULL;
			return http_json(r, r->deferred_status, body);
		}
		if (r->answered)
			return MHD_YES;
		return r->route->upload->end(r);
	}
	if (*upload_data_size) {
		if (r->body_len + *upload_data_size > HTTP_MAX_BODY) {
			r->body_too_large = true;
		} else {
			char *nb = realloc(r->body, r->body_len + *upload_data_size + 1);
			if (!nb)
				return MHD_NO;
			r->body = nb;
			memcpy(r->body + r->body_len, upload_data, *upload_data_size);
			r->body_len += *upload_data_size;
			r->body[r->body_len] = 0;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->answered)
		return MHD_YES;
	return r->route->handler(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http_req *r = *con_cls;
	(void)cls;
	(void)conn;
	(void)toe;
	if (!r)
		return;
	if (r->upload_free)
		r->upload_free(r);
	json_decref(r->deferred_body);
	free(r->body);
	free(r->url_copy);
	free(r);
	*con_cls = NULL;
}

struct MHD_Daemon *http_start(struct daemon *d, int listen_fd, char *err, size_t errlen)
{
	struct MHD_Daemon *mhd = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
		on_request, d, MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
		MHD_OPTION_END);
	if (!mhd)
		snprintf(err, errlen, "libmicrohttpd did not start on the socket (see the messages above)");
	return mhd;
}
