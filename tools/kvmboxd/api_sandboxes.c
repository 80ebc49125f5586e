/* The sandbox routes of the API (docs/api.md, "Sandboxes" and "Daemon"): check the request, call the
 * registry (sandbox.h), answer. */
#include "tools/kvmboxd/http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '.' || *s == '-'))
			return false;
	return true;
}

/* An environment variable name as shells take it. */
static bool env_name_ok(const char *s)
{
	if (!*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static bool cidr_ok(const char *s)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(addr))
		return false;
	memcpy(addr, s, n);
	addr[n] = 0;
	unsigned char buf[16];
	int max = inet_pton(AF_INET, addr, buf) == 1 ? 32 : inet_pton(AF_INET6, addr, buf) == 1 ? 128 : -1;
	if (max < 0)
		return false;
	if (!slash)
		return true;
	char *end;
	long p = strtol(slash + 1, &end, 10);
	return slash[1] && !*end && p >= 0 && p <= max;
}

/* An object of strings whose names are environment variable names. */
static bool env_object_ok(struct http_req *r, json_t *v, const char *field)
{
	if (!json_is_object(v)) {
		http_error(r, 400, "BAD_REQUEST", "'%s' must be an object of strings", field);
		return false;
	}
	const char *k;
	json_t *x;
	json_object_foreach(v, k, x) {
		if (!env_name_ok(k)) {
			http_error(r, 400, "BAD_REQUEST", "'%s': '%.64s' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
				   field, k);
			return false;
		}
		if (!json_is_string(x) || strlen(json_string_value(x)) != json_string_length(x)) {
			http_error(r, 400, "BAD_REQUEST", "'%s': the value of '%.64s' must be a string without NUL bytes",
				   field, k);
			return false;
		}
	}
	return true;
}

static bool get_int(struct http_req *r, json_t *o, const char *key, int64_t min, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		http_error(r, 400, "BAD_REQUEST", "'%s' must be an integer in %lld..%lld", key, (long long)min,
			   (long long)max);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

static bool get_string(struct http_req *r, json_t *o, const char *key, char *out, size_t outlen, bool image)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return true;
	if (!json_is_string(v) || !name_ok(json_string_value(v), image ? 63 : 63)) {
		http_error(r, 400, "BAD_REQUEST", "'%s' must be 1-63 characters of [A-Za-z0-9_.-]", key);
		return false;
	}
	snprintf(out, outlen, "%s", json_string_value(v));
	return true;
}

static enum MHD_Result create(struct http_req *r)
{
	static const char *const allowed[] = {"name", "image", "resources", "env", "timeoutMinutes", "network",
					      "secrets", NULL};
	static const char *const res_allowed[] = {"vcpus", "memoryMb", "diskGb", NULL};
	static const char *const q_allowed[] = {"wait", NULL};
	const struct daemon_config *cfg = r->d->cfg;
	bool wait;
	if (!http_query_only(r, q_allowed) || !http_query_bool(r, "wait", true, &wait))
		return MHD_YES;
	json_t *o = http_body_object(r);
	if (!o)
		return MHD_YES;
	/* The default timeout never outlives the daemon's maximum lifetime. */
	struct sandbox_spec spec = {.vcpus = 1, .memory_mb = 256, .disk_gb = 1,
				    .timeout_min = cfg->max_lifetime_min < 120 ? cfg->max_lifetime_min : 120};
	snprintf(spec.image, sizeof(spec.image), "default");
	int64_t v;
	json_t *res = json_object_get(o, "resources");
	json_t *net = json_object_get(o, "network");
	enum MHD_Result ret = MHD_YES;
	if (!http_fields_only(r, o, allowed) || !get_string(r, o, "name", spec.name, sizeof(spec.name), false) ||
	    !get_string(r, o, "image", spec.image, sizeof(spec.image), true))
		goto out;
	if (res && !json_is_null(res)) {
		if (!json_is_object(res)) {
			http_error(r, 400, "BAD_REQUEST", "'resources' must be an object {vcpus, memoryMb, diskGb}");
			goto out;
		}
		if (!http_fields_only(r, res, res_allowed))
			goto out;
		v = spec.vcpus;
		if (!get_int(r, res, "vcpus", 1, cfg->host_cpus, &v))
			goto out;
		spec.vcpus = v;
		v = spec.memory_mb;
		if (!get_int(r, res, "memoryMb", 64, cfg->host_mem_mb, &v))
			goto out;
		spec.memory_mb = v;
		v = spec.disk_gb;
		if (!get_int(r, res, "diskGb", 1, 1024, &v))
			goto out;
		spec.disk_gb = v;
	}
	v = spec.timeout_min;
	if (!get_int(r, o, "timeoutMinutes", 1, cfg->max_lifetime_min, &v))
		goto out;
	spec.timeout_min = v;
	json_t *env = json_object_get(o, "env"), *secrets = json_object_get(o, "secrets");
	if (env && !json_is_null(env) && !env_object_ok(r, env, "env"))
		goto out;
	if (secrets && !json_is_null(secrets) && !env_object_ok(r, secrets, "secrets"))
		goto out;
	spec.env = env && !json_is_null(env) ? env : NULL;
	spec.secrets = secrets && !json_is_null(secrets) ? secrets : NULL;
	spec.net = SANDBOX_NET_NONE;
	if (net && !json_is_null(net)) {
		if (json_is_string(net) && strcmp(json_string_value(net), "none") == 0) {
			spec.net = SANDBOX_NET_NONE;
		} else if (json_is_string(net) && strcmp(json_string_value(net), "all") == 0) {
			spec.net = SANDBOX_NET_ALL;
		} else if (json_is_object(net) && json_object_size(net) == 1 &&
			   json_is_array(json_object_get(net, "allow"))) {
			json_t *allow = json_object_get(net, "allow"), *c;
			size_t i;
			if (json_array_size(allow) > 64) {
				http_error(r, 400, "BAD_REQUEST", "'network.allow' takes at most 64 networks");
				goto out;
			}
			json_array_foreach(allow, i, c) {
				if (!json_is_string(c) || !cidr_ok(json_string_value(c))) {
					http_error(r, 400, "BAD_REQUEST",
						   "'network.allow' entry %zu is not an IPv4 or IPv6 network like 10.0.0.0/8", i);
					goto out;
				}
			}
			spec.net = SANDBOX_NET_ALLOW;
			spec.allow = allow;
		} else {
			http_error(r, 400, "BAD_REQUEST",
				   "'network' must be \"none\", \"all\" or {\"allow\": [\"10.0.0.0/8\", ...]}");
			goto out;
		}
	}
	struct sandbox *s;
	struct api_error e;
	if (sandbox_create(r->d->reg, &spec, wait, &s, &e)) {
		ret = http_api_error(r, &e);
		goto out;
	}
	ret = http_json(r, wait ? 201 : 202, sandbox_json(s));
	sandbox_put(s);
out:
	json_decref(o);
	return ret;
}

/* The sandbox named by the first path argument; NULL after answering 404. */
static struct sandbox *find(struct http_req *r)
{
	struct sandbox *s = sandbox_find(r->d->reg, r->arg[0]);
	if (!s)
		http_error(r, 404, "NOT_FOUND", "no sandbox '%.80s' (kvmbox ls -a lists them)", r->arg[0]);
	return s;
}

static bool no_query(struct http_req *r)
{
	static const char *const none[] = {NULL};
	return http_query_only(r, none);
}

static enum MHD_Result get_one(struct http_req *r)
{
	if (!no_query(r))
		return MHD_YES;
	struct sandbox *s = find(r);
	if (!s)
		return MHD_YES;
	enum MHD_Result ret = http_json(r, 200, sandbox_json(s));
	sandbox_put(s);
	return ret;
}

static enum MHD_Result list(struct http_req *r)
{
	static const char *const q_allowed[] = {"status", "createdAfter", "createdBefore", "limit", "pageToken", NULL};
	struct sandbox_query q = {0};
	int64_t limit;
	if (!http_query_only(r, q_allowed) || !http_query_int(r, "createdAfter", 0, INT64_MAX, 0, &q.created_after) ||
	    !http_query_int(r, "createdBefore", 0, INT64_MAX, 0, &q.created_before) ||
	    !http_query_int(r, "limit", 1, 500, 50, &limit))
		return MHD_YES;
	q.limit = limit;
	q.page_token = http_query(r, "pageToken");
	const char *st = http_query(r, "status");
	if (st && *st) {
		char buf[256];
		snprintf(buf, sizeof(buf), "%s", st);
		for (char *save, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
			int s = sandbox_status_parse(w);
			if (s < 0)
				return http_error(r, 400, "BAD_REQUEST",
						  "status '%.32s' is none of created, starting, running, finished, "
						  "cancelled, failed", w);
			q.status_mask |= 1u << s;
		}
	}
	json_t *arr;
	char *next = NULL;
	struct api_error e;
	if (sandbox_list(r->d->reg, &q, &arr, &next, &e))
		return http_api_error(r, &e);
	json_t *body = json_pack("{s:o}", "sandboxes", arr);
	json_object_set_new(body, "nextPageToken", next ? json_string(next) : json_null());
	free(next);
	return http_json(r, 200, body);
}

static enum MHD_Result stop(struct http_req *r)
{
	static const char *const allowed[] = {"blocking", NULL};
	if (!no_query(r))
		return MHD_YES;
	json_t *o = http_body_object(r);
	if (!o)
		return MHD_YES;
	json_t *b = json_object_get(o, "blocking");
	if (!http_fields_only(r, o, allowed) || (b && !json_is_null(b) && !json_is_boolean(b))) {
		if (!r->answered)
			http_error(r, 400, "BAD_REQUEST", "'blocking' must be true or false");
		json_decref(o);
		return MHD_YES;
	}
	bool blocking = !b || json_is_null(b) || json_is_true(b);
	json_decref(o);
	struct sandbox *s = find(r);
	if (!s)
		return MHD_YES;
	struct api_error e;
	enum MHD_Result ret = sandbox_stop(s, blocking, &e) ? http_api_error(r, &e)
							 : http_json(r, blocking ? 200 : 202, sandbox_json(s));
	sandbox_put(s);
	return ret;
}

static enum MHD_Result kill_route(struct http_req *r)
{
	if (!no_query(r))
		return MHD_YES;
	json_t *o = http_body_object(r);
	if (!o)
		return MHD_YES;
	static const char *const none[] = {NULL};
	bool ok = http_fields_only(r, o, none);
	json_decref(o);
	if (!ok)
		return MHD_YES;
	struct sandbox *s = find(r);
	if (!s)
		return MHD_YES;
	struct api_error e;
	enum MHD_Result ret = sandbox_kill(s, &e) ? http_api_error(r, &e) : http_json(r, 200, sandbox_json(s));
	sandbox_put(s);
	return ret;
}

static enum MHD_Result set_timeout(struct http_req *r)
{
	static const char *const allowed[] = {"timeoutMinutes", NULL};
	if (!no_query(r))
		return MHD_YES;
	json_t *o = http_body_object(r);
	if (!o)
		return MHD_YES;
	int64_t minutes = -1;
	bool ok = http_fields_only(r, o, allowed) && get_int(r, o, "timeoutMinutes", 1, r->d->cfg->max_lifetime_min,
							       &minutes);
	json_decref(o);
	if (!ok)
		return MHD_YES;
	if (minutes < 0)
		return http_error(r, 400, "BAD_REQUEST", "'timeoutMinutes' is required");
	struct sandbox *s = find(r);
	if (!s)
		return MHD_YES;
	struct api_error e;
	enum MHD_Result ret = sandbox_set_timeout(s, (int)minutes, &e) ? http_api_error(r, &e)
								       : http_json(r, 200, sandbox_json(s));
	sandbox_put(s);
	return ret;
}

static enum MHD_Result remove_route(struct http_req *r)
{
	static const char *const q_allowed[] = {"force", NULL};
	bool force;
	if (!http_query_only(r, q_allowed) || !http_query_bool(r, "force", false, &force))
		return MHD_YES;
	if (r->body_len)
		return http_error(r, 400, "BAD_REQUEST", "DELETE takes no body");
	struct sandbox *s = find(r);
	if (!s)
		return MHD_YES;
	struct api_error e;
	enum MHD_Result ret = sandbox_remove(r->d->reg, s, force, &e) ? http_api_error(r, &e) : http_empty(r, 204);
	sandbox_put(s);
	return ret;
}

static enum MHD_Result health(struct http_req *r)
{
	if (!no_query(r))
		return MHD_YES;
	/* The images: folders holding both a kernel and a root file system. */
	json_t *images = json_array();
	DIR *dir = opendir(r->d->cfg->images_dir);
	for (struct dirent *de; dir && (de = readdir(dir));) {
		char k[PATH_MAX], f[PATH_MAX];
		if (de->d_name[0] == '.')
			continue;
		snprintf(k, sizeof(k), "%s/%s/vmlinux", r->d->cfg->images_dir, de->d_name);
		snprintf(f, sizeof(f), "%s/%s/rootfs.ext4", r->d->cfg->images_dir, de->d_name);
		if (access(k, R_OK) == 0 && access(f, R_OK) == 0)
			json_array_append_new(images, json_string(de->d_name));
	}
	if (dir)
		closedir(dir);
	return http_json(r, 200, json_pack("{s:s, s:o, s:o}", "version", KVMBOXD_VERSION, "sandboxes",
					   registry_counts(r->d->reg), "images", images));
}

const struct route api_sandbox_routes[] = {
	{"GET", "v1/health", health, NULL},
	{"POST", "v1/sandboxes", create, NULL},
	{"GET", "v1/sandboxes", list, NULL},
	{"GET", "v1/sandboxes/*", get_one, NULL},
	{"DELETE", "v1/sandboxes/*", remove_route, NULL},
	{"POST", "v1/sandboxes/*/stop", stop, NULL},
	{"POST", "v1/sandboxes/*/kill", kill_route, NULL},
	{"POST", "v1/sandboxes/*/timeout", set_timeout, NULL},
	{NULL, NULL, NULL, NULL},
};
