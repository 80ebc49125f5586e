/* kvmboxd: the pure parts of the sandboxes (sandbox_internal.h): names, the sandbox object and its
 * sandbox.json form, page tokens, clamps, and the parsers of what the host tells us. No I/O here. */
#include "tools/kvmboxd/sandbox_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const status_names[SANDBOX_STATUS_COUNT] = {
	"created", "starting", "running", "finished", "cancelled", "failed",
};

int api_error_set(struct api_error *e, unsigned status, const char *code, const char *fmt, ...)
{
	if (!e)
		return -1;
	e->status = status;
	snprintf(e->code, sizeof(e->code), "%s", code);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

const char *sandbox_status_name(enum sandbox_status s)
{
	return (unsigned)s < SANDBOX_STATUS_COUNT ? status_names[s] : "unknown";
}

int sandbox_status_parse(const char *name)
{
	for (int i = 0; name && i < SANDBOX_STATUS_COUNT; i++)
		if (!strcmp(name, status_names[i]))
			return i;
	return -1;
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sandbox_make_id(const uint8_t rnd[8], char out[SANDBOX_ID_LEN + 1])
{
	memcpy(out, "sb-", 3);
	for (int i = 0; i < 8; i++)
		snprintf(out + 3 + 2 * i, 3, "%02x", rnd[i]);
}

bool sandbox_id_valid(const char *id)
{
	if (strlen(id) != SANDBOX_ID_LEN || strncmp(id, "sb-", 3))
		return false;
	for (int i = 3; i < SANDBOX_ID_LEN; i++)
		if (!isxdigit((unsigned char)id[i]) || isupper((unsigned char)id[i]))
			return false;
	return true;
}

void sandbox_tap_name(const char *id, char out[16])
{
	snprintf(out, 16, "kb%.12s", id + 3);
}

void sandbox_hostname(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s", name);
	for (char *p = out; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			*p = '-';
	if (out[0] == '-' || out[0] == '.')
		out[0] = 'x';
}

int64_t sandbox_clamp_expiry(int64_t now, int minutes, int64_t started_at, int max_lifetime_min)
{
	int64_t want = now + (int64_t)minutes * 60000;
	int64_t limit = started_at + (int64_t)max_lifetime_min * 60000;
	return want < limit ? want : limit;
}

int net_parse_setup_output(const char *text, char *out, size_t len)
{
	/* "guest kernel argument: ip=10.200.0.2::10.200.0.1:255.255.255.252::eth0:off" */
	for (const char *p = text; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);
		const char *ip = NULL;
		for (size_t i = 0; i + 3 <= n; i++)
			if (!strncmp(p + i, "ip=", 3) && (i == 0 || p[i - 1] == ' ')) {
				ip = p + i;
				break;
			}
		if (ip) {
			size_t m = 0;
			while (ip + m < p + n && !isspace((unsigned char)ip[m]))
				m++;
			if (m > 3 && m < len) {
				memcpy(out, ip, m);
				out[m] = 0;
				return 0;
			}
		}
		p = eol ? eol + 1 : NULL;
	}
	return -1;
}

static bool is_loopback(const char *a)
{
	struct in_addr v4;
	struct in6_addr v6;
	if (inet_pton(AF_INET, a, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, a, &v6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&v6) ||
		       (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
	return true; /* not an address: never use it */
}

int resolv_first_nameserver(const char *text, char *out, size_t len)
{
	for (const char *p = text; p && *p;) {
		const char *eol = strchr(p, '\n');
		char line[256];
		size_t n = eol ? (size_t)(eol - p) : strlen(p);
		snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) ? n : sizeof(line) - 1), p);
		char key[32], addr[128];
		if (sscanf(line, " %31s %127s", key, addr) == 2 && !strcmp(key, "nameserver")) {
			char *pct = strchr(addr, '%'); /* fe80::1%eth0: the zone means nothing in the guest */
			if (pct)
				*pct = 0;
			if (!is_loopback(addr) && strlen(addr) < len) {
				snprintf(out, len, "%s", addr);
				return 0;
			}
		}
		p = eol ? eol + 1 : NULL;
	}
	return -1;
}

const char *vmm_exit_meaning(int code)
{
	switch (code) {
	case 0: return "the guest powered off or rebooted";
	case 1: return "bad input: usage, configuration, or a kernel that cannot be loaded";
	case 2: return "host error: /dev/kvm missing or not usable, out of memory, or a KVM call failed";
	case 3: return "the guest triple-faulted";
	case 4: return "KVM internal error, emulation failure or failed VM entry";
	case 5: return "its --timeout lapsed";
	case 6: return "the guest kernel panicked";
	}
	if (code > 128 && code < 128 + 65)
		return "stopped by a signal";
	return "unknown exit code";
}

/* Page tokens: "p" + hex of "<createdAt>.<id>": opaque to clients, strict to parse. */
char *page_token_encode(int64_t created_at, const char *id)
{
	char plain[64];
	int n = snprintf(plain, sizeof(plain), "%" PRId64 ".%s", created_at, id);
	char *t = malloc(2 + 2 * (size_t)n);
	if (!t)
		return NULL;
	t[0] = 'p';
	for (int i = 0; i < n; i++)
		snprintf(t + 1 + 2 * i, 3, "%02x", (unsigned char)plain[i]);
	return t;
}

int page_token_decode(const char *token, int64_t *created_at, char id[SANDBOX_ID_LEN + 1])
{
	size_t len = token ? strlen(token) : 0;
	char plain[64];
	if (len < 3 || token[0] != 'p' || (len - 1) % 2 || (len - 1) / 2 >= sizeof(plain))
		return -1;
	size_t n = (len - 1) / 2;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		const char *h = token + 1 + 2 * i;
		if (!isxdigit((unsigned char)h[0]) || !isxdigit((unsigned char)h[1]) || sscanf(h, "%2x", &v) != 1)
			return -1;
		plain[i] = (char)v;
	}
	plain[n] = 0;
	char *dot = strchr(plain, '.');
	if (!dot || dot == plain || !sandbox_id_valid(dot + 1))
		return -1;
	*dot = 0;
	char *end;
	for (const char *p = plain; *p; p++)
		if (!isdigit((unsigned char)*p))
			return -1;
	long long v = strtoll(plain, &end, 10);
	if (*end || v < 0)
		return -1;
	*created_at = v;
	memcpy(id, dot + 1, SANDBOX_ID_LEN + 1);
	return 0;
}

int sandbox_order(int64_t ca, const char *ida, int64_t cb, const char *idb)
{
	if (ca != cb)
		return ca > cb ? -1 : 1;
	return -strcmp(ida, idb);
}

int proc_stat_parse(const char *text, uint64_t *ticks, uint64_t *start, char *state)
{
	/* "pid (comm) state ppid ...": comm may hold spaces and ')', so fields count from the last ')'. */
	const char *p = strrchr(text, ')');
	if (!p)
		return -1;
	p++;
	while (*p == ' ')
		p++;
	if (state)
		*state = *p;
	uint64_t utime = 0, stime = 0, st = 0;
	/* After ')': field 3 is state; utime is 14, stime 15, starttime 22. */
	int field = 2;
	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		field++;
		char *end;
		if (field == 14 || field == 15 || field == 22) {
			unsigned long long v = strtoull(p, &end, 10);
			if (end == p)
				return -1;
			if (field == 14)
				utime = v;
			else if (field == 15)
				stime = v;
			else
				st = v;
		}
		while (*p && *p != ' ')
			p++;
		if (field == 22)
			break;
	}
	if (field < 22)
		return -1;
	if (ticks)
		*ticks = utime + stime;
	if (start)
		*start = st;
	return 0;
}

static json_t *time_or_null(int64_t t)
{
	return t ? json_integer(t) : json_null();
}

json_t *sandbox_to_json(const struct sandbox *s, bool persist)
{
	json_t *net;
	if (s->net == SANDBOX_NET_ALLOW)
		net = json_pack("{s:O}", "allow", s->allow ? s->allow : json_array());
	else
		net = json_string(s->net == SANDBOX_NET_ALL ? "all" : "none");
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:{s:i, s:i, s:i}, s:O, s:o, s:O, s:i}",
			      "id", s->id, "name", s->name, "image", s->image,
			      "status", sandbox_status_name(s->status),
			      "resources", "vcpus", s->vcpus, "memoryMb", s->memory_mb, "diskGb", s->disk_gb,
			      "env", s->env ? s->env : json_object(), "network", net,
			      "secrets", s->secret_names ? s->secret_names : json_array(),
			      "timeoutMinutes", s->timeout_min);
	if (!o)
		return NULL;
	json_object_set_new(o, "createdAt", time_or_null(s->created_at));
	json_object_set_new(o, "startedAt", time_or_null(s->started_at));
	json_object_set_new(o, "stoppedAt", time_or_null(s->stopped_at));
	json_object_set_new(o, "expiresAt", time_or_null(s->expires_at));
	json_object_set_new(o, "exitCode", s->exit_code >= 0 ? json_integer(s->exit_code) : json_null());
	json_object_set_new(o, "errorMessage", s->error_message ? json_string(s->error_message) : json_null());
	json_object_set_new(o, "activeCpuUsageMs", json_integer(s->cpu_ms));
	json_object_set_new(o, "networkUsage", json_pack("{s:I, s:I}", "ingressBytes", (json_int_t)s->ingress_bytes,
							 "egressBytes", (json_int_t)s->egress_bytes));
	if (persist) {
		json_object_set_new(o, "pid", json_integer(s->pid));
		json_object_set_new(o, "vmmStartTime", json_integer((json_int_t)s->pid_start));
		json_object_set_new(o, "tap", json_string(s->tap));
		json_object_set_new(o, "vsock", json_string(s->vsock));
	}
	return o;
}

static int64_t get_time(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

static int copy_str(json_t *o, const char *key, char *out, size_t len, bool required)
{
	json_t *v = json_object_get(o, key);
	if (!v && !required) {
		out[0] = 0;
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) >= len)
		return -1;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static bool strings_only(json_t *v, bool object)
{
	if (object ? !json_is_object(v) : !json_is_array(v))
		return false;
	const char *k;
	json_t *x;
	size_t i;
	if (object) {
		json_object_foreach(v, k, x)
			if (!json_is_string(x))
				return false;
	} else {
		json_array_foreach(v, i, x)
			if (!json_is_string(x))
				return false;
	}
	return true;
}

int sandbox_from_json(struct sandbox *s, json_t *o, char *why, size_t len)
{
#define BAD(...) do { snprintf(why, len, __VA_ARGS__); sandbox_fields_free(s); return -1; } while (0)
	s->exit_code = -1;
	s->pidfd = -1;
	if (!json_is_object(o))
		BAD("not a JSON object");
	if (copy_str(o, "id", s->id, sizeof(s->id), true) || !sandbox_id_valid(s->id))
		BAD("\"id\" missing or not sb- and 16 hex digits");
	if (copy_str(o, "name", s->name, sizeof(s->name), true) || !s->name[0])
		BAD("\"name\" missing or too long");
	if (copy_str(o, "image", s->image, sizeof(s->image), true))
		BAD("\"image\" missing or too long");
	json_t *st = json_object_get(o, "status");
	int status = sandbox_status_parse(json_string_value(st));
	if (status < 0)
		BAD("\"status\" missing or unknown");
	s->status = status;
	json_t *res = json_object_get(o, "resources");
	if (json_unpack(res, "{s:i, s:i, s:i}", "vcpus", &s->vcpus, "memoryMb", &s->memory_mb, "diskGb",
			&s->disk_gb))
		BAD("\"resources\" missing or without vcpus, memoryMb, diskGb");
	json_t *env = json_object_get(o, "env");
	if (!strings_only(env, true))
		BAD("\"env\" is not an object of strings");
	s->env = json_deep_copy(env);
	json_t *net = json_object_get(o, "network");
	if (json_is_string(net) && !strcmp(json_string_value(net), "none")) {
		s->net = SANDBOX_NET_NONE;
	} else if (json_is_string(net) && !strcmp(json_string_value(net), "all")) {
		s->net = SANDBOX_NET_ALL;
	} else if (json_is_object(net) && strings_only(json_object_get(net, "allow"), false)) {
		s->net = SANDBOX_NET_ALLOW;
		s->allow = json_deep_copy(json_object_get(net, "allow"));
	} else {
		BAD("\"network\" is not \"none\", \"all\" or {\"allow\": [...]}");
	}
	json_t *sec = json_object_get(o, "secrets");
	if (!strings_only(sec, false))
		BAD("\"secrets\" is not an array of names");
	s->secret_names = json_deep_copy(sec);
	json_t *tm = json_object_get(o, "timeoutMinutes");
	if (!json_is_integer(tm))
		BAD("\"timeoutMinutes\" missing");
	s->timeout_min = (int)json_integer_value(tm);
	s->created_at = get_time(o, "createdAt");
	s->started_at = get_time(o, "startedAt");
	s->stopped_at = get_time(o, "stoppedAt");
	s->expires_at = get_time(o, "expiresAt");
	json_t *ec = json_object_get(o, "exitCode");
	s->exit_code = json_is_integer(ec) ? (int)json_integer_value(ec) : -1;
	json_t *em = json_object_get(o, "errorMessage");
	if (json_is_string(em))
		s->error_message = strdup(json_string_value(em));
	s->cpu_ms = get_time(o, "activeCpuUsageMs");
	json_t *nu = json_object_get(o, "networkUsage");
	s->ingress_bytes = (uint64_t)get_time(nu, "ingressBytes");
	s->egress_bytes = (uint64_t)get_time(nu, "egressBytes");
	s->pid = (pid_t)get_time(o, "pid");
	s->pid_start = (uint64_t)get_time(o, "vmmStartTime");
	if (copy_str(o, "tap", s->tap, sizeof(s->tap), false) ||
	    copy_str(o, "vsock", s->vsock, sizeof(s->vsock), false))
		BAD("\"tap\" or \"vsock\" too long");
	if (!s->created_at)
		BAD("\"createdAt\" missing");
	return 0;
#undef BAD
}

void sandbox_fields_free(struct sandbox *s)
{
	json_decref(s->env);
	json_decref(s->allow);
	json_decref(s->secret_names);
	free(s->error_message);
	free(s->start_error);
	s->env = s->allow = s->secret_names = NULL;
	s->error_message = s->start_error = NULL;
}

const char *text_last_lines(const char *text, size_t len, int n)
{
	size_t end = len;
	while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r'))
		end--;
	size_t i = end;
	int lines = 0;
	while (i > 0) {
		if (text[i - 1] == '\n' && ++lines == n)
			break;
		i--;
	}
	return text + i;
}
