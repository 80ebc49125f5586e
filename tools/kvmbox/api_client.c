/* kvmbox's client of kvmboxd's API (docs/api.md): HTTP/1.1 over the daemon's Unix socket with libcurl, one
 * easy handle per struct api (connections are kept between requests). JSON answers are buffered (they are
 * small); streams (logs, file downloads and uploads) go through a sink or a source, never whole in memory.
 * Error answers ({"code", "message"}) are kept in the struct api for the caller and printed as
 * "kvmbox CMD: message (CODE)". */
#include "tools/kvmbox/kvmbox.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_BYTES (64u << 20) /* an answer bigger than this is not one of kvmboxd's */
#define CONNECT_TIMEOUT_S 10L

static bool curl_ready;

int api_open(struct api *a, const char *cmd)
{
	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->api_exit = KVMBOX_EXIT_API;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
			fprintf(stderr, "kvmbox %s: cannot initialise libcurl\n", cmd);
			return -1;
		}
		curl_ready = true;
	}
	a->curl = curl_easy_init();
	if (!a->curl) {
		fprintf(stderr, "kvmbox %s: cannot initialise libcurl (out of memory?)\n", cmd);
		return -1;
	}
	return 0;
}

void api_close(struct api *a)
{
	if (a->curl)
		curl_easy_cleanup(a->curl);
	a->curl = NULL;
}

char *api_escape(struct api *a, const char *s)
{
	char *e = curl_easy_escape(a->curl, s, 0);
	char *copy = e ? strdup(e) : NULL;
	curl_free(e);
	if (!copy) {
		fprintf(stderr, "kvmbox %s: out of memory\n", a->cmd);
		exit(KVMBOX_EXIT_TOOL);
	}
	return copy;
}

/* One request in flight. */
struct xfer {
	struct api *a;
	api_sink sink;
	void *sink_ctx;
	bool checked, ok;  /* the status was looked at once the first body bytes came; ok: 2xx */
	char *buf;         /* the body when it is not for the sink (JSON, or an error) */
	size_t len, cap;
	bool too_big;
	const struct api_body *body;
	size_t body_off;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *p)
{
	struct xfer *x = p;
	size_t n = size * nmemb;
	if (!x->checked) {
		long st = 0;
		curl_easy_getinfo(x->a->curl, CURLINFO_RESPONSE_CODE, &st);
		x->ok = st >= 200 && st < 300;
		x->checked = true;
	}
	if (x->ok && x->sink) {
		if (x->sink(x->sink_ctx, data, n)) {
			x->a->aborted = true;
			return 0; /* curl stops with CURLE_WRITE_ERROR */
		}
		return n;
	}
	if (x->len + n + 1 > JSON_MAX_BYTES) {
		x->too_big = true;
		return 0;
	}
	if (x->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		while (cap < x->len + n + 1)
			cap *= 2;
		char *b = realloc(x->buf, cap);
		if (!b) {
			x->too_big = true;
			return 0;
		}
		x->buf = b;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, data, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *p)
{
	struct xfer *x = p;
	size_t n = size * nmemb;
	const struct api_body *b = x->body;
	if (b->source) {
		ssize_t k = b->source(b->source_ctx, buf, n);
		if (k < 0) {
			x->a->aborted = true;
			return CURL_READFUNC_ABORT;
		}
		return (size_t)k;
	}
	size_t left = b->len - x->body_off;
	if (n > left)
		n = left;
	memcpy(buf, b->data + x->body_off, n);
	x->body_off += n;
	return n;
}

static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	struct api *a = p;
	if (a->tick && a->tick(a->tick_ctx)) {
		a->aborted = true;
		return 1;
	}
	return 0;
}

static void set_error(struct api *a, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(struct api *a, const char *code, const char *fmt, ...)
{
	snprintf(a->code, sizeof(a->code), "%s", code);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->message, sizeof(a->message), fmt, ap);
	va_end(ap);
}

/* The daemon's {"code", "message", "syscall"...} error object, or a description of what came instead. */
static void take_error(struct api *a, const char *body, size_t len)
{
	json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
	const char *code = j ? json_string_value(json_object_get(j, "code")) : NULL;
	const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
	const char *sc = j ? json_string_value(json_object_get(j, "syscall")) : NULL;
	if (code && msg)
		set_error(a, code, "%s", msg);
	else
		set_error(a, "", "kvmboxd answered HTTP %ld without an error object; is %s really kvmboxd's socket?",
			  a->status, kvmbox_socket);
	snprintf(a->syscall, sizeof(a->syscall), "%s", sc ? sc : "");
	json_decref(j);
}

/* A transport failure: kvmboxd is not there, refused us, or went away mid-answer. */
static void take_curl_error(struct api *a, CURLcode res, const char *errbuf)
{
	long os_errno = 0;
	curl_easy_getinfo(a->curl, CURLINFO_OS_ERRNO, &os_errno);
	if (res == CURLE_COULDNT_CONNECT || (res == CURLE_OPERATION_TIMEDOUT && a->status == 0 && os_errno)) {
		const char *hint = "start it with `systemctl start kvmboxd` or `kvmboxd &`";
		if (os_errno == EACCES || os_errno == EPERM)
			hint = "run kvmbox as root or as the user kvmboxd's --socket-owner names";
		else if (os_errno == ECONNREFUSED)
			hint = "kvmboxd is not running (a stale socket): start it with `systemctl start kvmboxd` "
			       "or `kvmboxd &`";
		set_error(a, "", "cannot reach kvmboxd at %s: %s: %s", kvmbox_socket,
			  os_errno ? strerror((int)os_errno) : (errbuf[0] ? errbuf : curl_easy_strerror(res)), hint);
		return;
	}
	set_error(a, "", "lost the connection to kvmboxd at %s: %s (is the daemon still running? "
		  "`systemctl status kvmboxd`)", kvmbox_socket, errbuf[0] ? errbuf : curl_easy_strerror(res));
}

int api_report(struct api *a)
{
	if (a->status == 0) {
		fprintf(stderr, "kvmbox %s: %s\n", a->cmd, a->message);
		return KVMBOX_EXIT_TOOL;
	}
	if (a->code[0])
		fprintf(stderr, "kvmbox %s: %s (%s)\n", a->cmd, a->message, a->code);
	else
		fprintf(stderr, "kvmbox %s: %s\n", a->cmd, a->message);
	return a->code[0] ? a->api_exit : KVMBOX_EXIT_TOOL;
}

int api_request(struct api *a, const char *method, const char *path, const struct api_body *body, api_sink sink,
		void *sink_ctx, json_t **out)
{
	CURL *c = a->curl;
	struct xfer x = { .a = a, .sink = sink, .sink_ctx = sink_ctx, .body = body };
	char url[8192], errbuf[CURL_ERROR_SIZE] = "", ctype[128];
	struct curl_slist *headers = NULL;

	if (out)
		*out = NULL;
	a->status = 0;
	a->code[0] = a->message[0] = a->syscall[0] = '\0';
	a->aborted = false;
	snprintf(url, sizeof(url), "http://kvmbox%s", path);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, kvmbox_socket);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	/* SIGPIPE is ignored process-wide (the stdin thread runs a second handle): no signal games in curl. */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, a);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "kvmbox/" KVMBOX_VERSION);
	headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip before uploads */
	if (body) {
		snprintf(ctype, sizeof(ctype), "Content-Type: %s", body->type ? body->type : "application/json");
		headers = curl_slist_append(headers, ctype);
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, &x);
		int64_t len = body->source ? body->source_len : (int64_t)body->len;
		if (len >= 0)
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
		/* else: unknown length, curl sends it chunked */
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	if (strcmp(method, "GET") || body)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);

	CURLcode res = curl_easy_perform(c);
	curl_slist_free_all(headers);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	int rc = 0;
	if (a->aborted) {
		/* The caller's sink, source or tick said stop: it knows why, nothing to print. */
		rc = KVMBOX_EXIT_TOOL;
	} else if (x.too_big) {
		set_error(a, "", "kvmboxd's answer to %s %s is too big (over %u MiB); is %s really kvmboxd's socket?",
			  method, path, JSON_MAX_BYTES >> 20, kvmbox_socket);
		a->status = 0;
		rc = KVMBOX_EXIT_TOOL;
	} else if (res != CURLE_OK) {
		a->status = 0;
		take_curl_error(a, res, errbuf);
		rc = KVMBOX_EXIT_TOOL;
	} else if (a->status < 200 || a->status >= 300) {
		take_error(a, x.buf, x.len);
		rc = a->code[0] ? a->api_exit : KVMBOX_EXIT_TOOL;
	} else if (!sink && out && x.len) {
		json_error_t jerr;
		*out = json_loadb(x.buf, x.len, 0, &jerr);
		if (!*out) {
			set_error(a, "", "kvmboxd's answer to %s %s is not JSON (%s); is %s really kvmboxd's socket?",
				  method, path, jerr.text, kvmbox_socket);
			a->status = 0;
			rc = KVMBOX_EXIT_TOOL;
		}
	}
	free(x.buf);
	if (rc && !a->aborted && !a->quiet)
		api_report(a);
	return rc;
}

int api_json(struct api *a, const char *method, const char *path, json_t *body, json_t **out)
{
	struct api_body b = { .type = "application/json" };
	char *text = NULL;
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text) {
			fprintf(stderr, "kvmbox %s: out of memory\n", a->cmd);
			return KVMBOX_EXIT_TOOL;
		}
		b.data = text;
		b.len = strlen(text);
	}
	int rc = api_request(a, method, path, body ? &b : NULL, NULL, NULL, out);
	free(text);
	return rc;
}
