/* kvmboxd's pure sandbox parts (tools/kvmboxd/state.c): status names, ids and tap names, the timeout
 * clamp, kvmbox-net's and resolv.conf's parsers, page tokens, /proc/<pid>/stat, and the sandbox.json
 * round trip (tolerant of nothing: a bad file is refused, never half-loaded). */
#include "unit.h"
#include "tools/kvmboxd/sandbox_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

UNIT_SUITE(kvmboxd_state);

Test(kvmboxd_state, status_names_round_trip)
{
	for (int i = 0; i < SANDBOX_STATUS_COUNT; i++)
		cr_expect_eq(sandbox_status_parse(sandbox_status_name(i)), i);
	cr_expect_str_eq(sandbox_status_name(SANDBOX_CANCELLED), "cancelled");
	cr_expect_eq(sandbox_status_parse("Running"), -1);
	cr_expect_eq(sandbox_status_parse(""), -1);
	cr_expect_eq(sandbox_status_parse(NULL), -1);
	cr_expect_str_eq(sandbox_status_name(SANDBOX_STATUS_COUNT), "unknown");
}

Test(kvmboxd_state, api_error_set_fills_and_returns_minus_one)
{
	struct api_error e;
	cr_expect_eq(api_error_set(&e, 409, "NOT_RUNNING", "sandbox %s is %s", "sb-1", "failed"), -1);
	cr_expect_eq(e.status, 409);
	cr_expect_str_eq(e.code, "NOT_RUNNING");
	cr_expect_str_eq(e.message, "sandbox sb-1 is failed");
	cr_expect_eq(api_error_set(NULL, 500, "INTERNAL", "x"), -1);
	char big[2000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	api_error_set(&e, 500, "A_CODE_MUCH_LONGER_THAN_THE_FIELD", "%s", big);
	cr_expect_eq(strlen(e.message), sizeof(e.message) - 1);
	cr_expect_eq(strlen(e.code), sizeof(e.code) - 1);
}

Test(kvmboxd_state, ids_and_tap_names)
{
	const uint8_t rnd[8] = { 0x3f, 0x2a, 0x9c, 0x0d, 0x11, 0xe8, 0x4b, 0x7a };
	char id[SANDBOX_ID_LEN + 1];
	sandbox_make_id(rnd, id);
	cr_expect_str_eq(id, "sb-3f2a9c0d11e84b7a");
	cr_expect(sandbox_id_valid(id));
	cr_expect_not(sandbox_id_valid("sb-3f2a9c0d11e84b7"));
	cr_expect_not(sandbox_id_valid("sb-3F2A9C0D11E84B7A"));
	cr_expect_not(sandbox_id_valid("sx-3f2a9c0d11e84b7a"));
	cr_expect_not(sandbox_id_valid("sb-3f2a9c0d11e84b7g"));
	cr_expect_not(sandbox_id_valid("../sandboxes"));
	char tap[16];
	sandbox_tap_name(id, tap);
	cr_expect_str_eq(tap, "kb3f2a9c0d11e8");
	cr_expect_eq(strlen(tap), SANDBOX_TAP_LEN);
}

Test(kvmboxd_state, hostname_from_name)
{
	char h[80];
	sandbox_hostname("demo", h, sizeof(h));
	cr_expect_str_eq(h, "demo");
	sandbox_hostname("my_box.1", h, sizeof(h));
	cr_expect_str_eq(h, "my-box.1");
	sandbox_hostname("_x", h, sizeof(h));
	cr_expect_str_eq(h, "xx");
	sandbox_hostname(".a", h, sizeof(h));
	cr_expect_str_eq(h, "xa");
	sandbox_hostname("sb-3f2a9c0d11e84b7a", h, sizeof(h));
	cr_expect_str_eq(h, "sb-3f2a9c0d11e84b7a");
}

Test(kvmboxd_state, timeout_clamp)
{
	int64_t started = 1000000;
	/* Within the lifetime: now + minutes. */
	cr_expect_eq(sandbox_clamp_expiry(started + 5000, 30, started, 1440), started + 5000 + 30 * 60000);
	/* Past it: startedAt + max lifetime. */
	cr_expect_eq(sandbox_clamp_expiry(started + 1430 * 60000ll, 30, started, 1440), started + 1440 * 60000ll);
	/* Exactly at it. */
	cr_expect_eq(sandbox_clamp_expiry(started + 60000, 1439, started, 1440), started + 1440 * 60000ll);
	/* A lifetime already spent: a deadline in the past (the monitor kills at once). */
	cr_expect_eq(sandbox_clamp_expiry(started + 100 * 60000ll, 5, started, 60), started + 60 * 60000ll);
}

Test(kvmboxd_state, net_setup_output)
{
	const char *out = "tap kb3f2a9c0d11e8: host 10.200.0.1/30, guest 10.200.0.2, egress policy all\n"
			  "monitor: kvmbox-vmm --net tap=kb3f2a9c0d11e8\n"
			  "guest kernel argument: ip=10.200.0.2::10.200.0.1:255.255.255.252::eth0:off\n";
	char ip[160];
	cr_assert_eq(net_parse_setup_output(out, ip, sizeof(ip)), 0);
	cr_expect_str_eq(ip, "ip=10.200.0.2::10.200.0.1:255.255.255.252::eth0:off");
	cr_expect_eq(net_parse_setup_output("tap x: host 10.200.0.1/30\n", ip, sizeof(ip)), -1);
	cr_expect_eq(net_parse_setup_output("", ip, sizeof(ip)), -1);
	cr_expect_eq(net_parse_setup_output("guest kernel argument: ip=\n", ip, sizeof(ip)), -1);
	/* "skip=" is not "ip=". */
	cr_expect_eq(net_parse_setup_output("skip=1\n", ip, sizeof(ip)), -1);
	/* No trailing newline; too small a buffer. */
	cr_expect_eq(net_parse_setup_output("ip=10.0.0.2::10.0.0.1:255.255.255.252::eth0:off", ip, sizeof(ip)), 0);
	cr_expect_eq(net_parse_setup_output(out, ip, 10), -1);
}

Test(kvmboxd_state, resolv_conf)
{
	char ns[64];
	cr_expect_eq(resolv_first_nameserver("# generated\nsearch example.org\nnameserver 127.0.0.53\n"
					     "nameserver ::1\nnameserver 10.255.255.53\nnameserver 1.1.1.1\n",
					     ns, sizeof(ns)), 0);
	cr_expect_str_eq(ns, "10.255.255.53");
	cr_expect_eq(resolv_first_nameserver("nameserver 127.0.0.53\noptions edns0\n", ns, sizeof(ns)), -1);
	cr_expect_eq(resolv_first_nameserver("", ns, sizeof(ns)), -1);
	cr_expect_eq(resolv_first_nameserver("nameserver\tfe80::1%eth0\n", ns, sizeof(ns)), 0);
	cr_expect_str_eq(ns, "fe80::1");
	cr_expect_eq(resolv_first_nameserver("nameserver not-an-address\nnameserver 2001:db8::53", ns, sizeof(ns)), 0);
	cr_expect_str_eq(ns, "2001:db8::53");
}

Test(kvmboxd_state, exit_meanings)
{
	cr_expect(strstr(vmm_exit_meaning(1), "bad input"));
	cr_expect(strstr(vmm_exit_meaning(2), "host error"));
	cr_expect(strstr(vmm_exit_meaning(3), "triple"));
	cr_expect(strstr(vmm_exit_meaning(6), "panicked"));
	cr_expect(strstr(vmm_exit_meaning(143), "signal"));
	cr_expect(strstr(vmm_exit_meaning(77), "unknown"));
}

Test(kvmboxd_state, page_tokens)
{
	char *t = page_token_encode(1764145200310, "sb-3f2a9c0d11e84b7a");
	cr_assert_not_null(t);
	int64_t at;
	char id[SANDBOX_ID_LEN + 1];
	cr_assert_eq(page_token_decode(t, &at, id), 0);
	cr_expect_eq(at, 1764145200310);
	cr_expect_str_eq(id, "sb-3f2a9c0d11e84b7a");
	/* Any change breaks it. */
	t[strlen(t) - 1] = 'x';
	cr_expect_eq(page_token_decode(t, &at, id), -1);
	t[strlen(t) - 1] = 0;
	cr_expect_eq(page_token_decode(t, &at, id), -1);
	free(t);
	const char *bad[] = { "", "p", "garbage", "q31", "p3", "p2e", /* ".": no time */
			      "p312e73622d31", /* "1.sb-1": no valid id */ };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(page_token_decode(bad[i], &at, id), -1, "%s", bad[i]);
	cr_expect_eq(page_token_decode(NULL, &at, id), -1);
	/* A negative time is refused. */
	char *neg = page_token_encode(-5, "sb-3f2a9c0d11e84b7a");
	cr_expect_eq(page_token_decode(neg, &at, id), -1);
	free(neg);
}

Test(kvmboxd_state, list_order_newest_first)
{
	cr_expect_lt(sandbox_order(2000, "sb-a", 1000, "sb-b"), 0);
	cr_expect_gt(sandbox_order(1000, "sb-a", 2000, "sb-b"), 0);
	cr_expect_lt(sandbox_order(1000, "sb-b", 1000, "sb-a"), 0);
	cr_expect_eq(sandbox_order(1000, "sb-a", 1000, "sb-a"), 0);
}

Test(kvmboxd_state, proc_stat)
{
	/* A comm with spaces and ')' in it. */
	const char *text = "4242 (kvmbox-vmm) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0 "
			   "987654 1000 100 18446744073709551615\n";
	uint64_t ticks = 0, start = 0;
	char state = 0;
	cr_assert_eq(proc_stat_parse(text, &ticks, &start, &state), 0);
	cr_expect_eq(ticks, 200);
	cr_expect_eq(start, 987654);
	cr_expect_eq(state, 'S');
	cr_expect_eq(proc_stat_parse("4242 (x) Z 1 2 3", &ticks, &start, &state), -1);
	cr_expect_eq(proc_stat_parse("garbage", NULL, NULL, NULL), -1);
	char self[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	cr_assert_not_null(f);
	size_t n = fread(self, 1, sizeof(self) - 1, f);
	fclose(f);
	self[n] = 0;
	cr_expect_eq(proc_stat_parse(self, &ticks, &start, &state), 0);
	cr_expect_eq(state, 'R');
	cr_expect_gt(start, 0);
}

static struct sandbox *sample(void)
{
	struct sandbox *s = calloc(1, sizeof(*s));
	strcpy(s->id, "sb-3f2a9c0d11e84b7a");
	strcpy(s->name, "demo");
	strcpy(s->image, "default");
	s->vcpus = 2;
	s->memory_mb = 512;
	s->disk_gb = 3;
	s->timeout_min = 120;
	s->env = json_pack("{s:s}", "LANG", "C.UTF-8");
	s->net = SANDBOX_NET_ALLOW;
	s->allow = json_pack("[s, s]", "10.0.0.0/8", "2001:db8::/32");
	s->secret_names = json_pack("[s]", "API_TOKEN");
	s->status = SANDBOX_RUNNING;
	s->created_at = 1764145200000;
	s->started_at = 1764145200310;
	s->expires_at = 1764152400310;
	s->exit_code = -1;
	s->cpu_ms = 412;
	s->ingress_bytes = 5;
	s->egress_bytes = 1ull << 40;
	s->pid = 4242;
	s->pid_start = 987654;
	strcpy(s->tap, "kb3f2a9c0d11e8");
	strcpy(s->vsock, "/run/kvmbox/sb-3f2a9c0d11e84b7a.vsock");
	return s;
}

static void sample_free(struct sandbox *s)
{
	sandbox_fields_free(s);
	free(s);
}

Test(kvmboxd_state, api_object_shape)
{
	struct sandbox *s = sample();
	json_t *o = sandbox_to_json(s, false);
	cr_assert_not_null(o);
	const char *keys[] = { "id", "name", "image", "status", "resources", "env", "network", "secrets",
			       "timeoutMinutes", "createdAt", "startedAt", "stoppedAt", "expiresAt", "exitCode",
			       "errorMessage", "activeCpuUsageMs", "networkUsage" };
	cr_expect_eq(json_object_size(o), sizeof(keys) / sizeof(keys[0]));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_expect_not_null(json_object_get(o, keys[i]), "%s", keys[i]);
	cr_expect(json_is_null(json_object_get(o, "stoppedAt")));
	cr_expect(json_is_null(json_object_get(o, "exitCode")));
	cr_expect(json_is_null(json_object_get(o, "errorMessage")));
	cr_expect_str_eq(json_string_value(json_object_get(o, "status")), "running");
	cr_expect_str_eq(json_string_value(json_array_get(json_object_get(o, "secrets"), 0)), "API_TOKEN");
	cr_expect_null(json_object_get(o, "pid"));
	cr_expect_null(json_object_get(o, "tap"));
	json_decref(o);
	s->net = SANDBOX_NET_ALL;
	o = sandbox_to_json(s, false);
	cr_expect_str_eq(json_string_value(json_object_get(o, "network")), "all");
	json_decref(o);
	sample_free(s);
}

Test(kvmboxd_state, persist_round_trip)
{
	struct sandbox *s = sample();
	s->error_message = strdup("the monitor exited with code 3");
	s->exit_code = 3;
	s->status = SANDBOX_FAILED;
	s->stopped_at = 1764145201000;
	json_t *o = sandbox_to_json(s, true);
	char *text = json_dumps(o, JSON_SORT_KEYS);
	json_decref(o);

	json_error_t je;
	json_t *back = json_loads(text, 0, &je);
	struct sandbox *t = calloc(1, sizeof(*t));
	char why[256];
	cr_assert_eq(sandbox_from_json(t, back, why, sizeof(why)), 0, "%s", why);
	json_decref(back);
	json_t *o2 = sandbox_to_json(t, true);
	char *text2 = json_dumps(o2, JSON_SORT_KEYS);
	json_decref(o2);
	cr_expect_str_eq(text2, text);
	cr_expect_eq(t->pid, 4242);
	cr_expect_eq(t->pid_start, 987654);
	cr_expect_str_eq(t->tap, "kb3f2a9c0d11e8");
	cr_expect_eq(t->net, SANDBOX_NET_ALLOW);
	cr_expect_eq(t->egress_bytes, 1ull << 40);
	cr_expect_eq(t->exit_code, 3);
	free(text);
	free(text2);
	sample_free(s);
	sample_free(t);
}

Test(kvmboxd_state, persist_refuses_bad_files)
{
	struct sandbox *s = sample();
	json_t *good = sandbox_to_json(s, true);
	sample_free(s);
	struct {
		const char *key;
		json_t *value; /* NULL: delete the key */
	} cases[] = {
		{ "id", json_string("sb-1") },
		{ "id", NULL },
		{ "name", json_integer(1) },
		{ "name", json_string("") },
		{ "status", json_string("sleeping") },
		{ "resources", json_pack("{s:i}", "vcpus", 1) },
		{ "env", json_pack("{s:i}", "A", 1) },
		{ "network", json_string("some") },
		{ "network", json_pack("{s:[i]}", "allow", 1) },
		{ "secrets", json_pack("{s:s}", "A", "leaked") },
		{ "timeoutMinutes", json_string("5") },
		{ "createdAt", NULL },
		{ "tap", json_string("a-name-much-too-long-for-a-tap") },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *o = json_deep_copy(good);
		if (cases[i].value)
			json_object_set_new(o, cases[i].key, cases[i].value);
		else
			json_object_del(o, cases[i].key);
		struct sandbox *t = calloc(1, sizeof(*t));
		char why[256] = "";
		cr_expect_eq(sandbox_from_json(t, o, why, sizeof(why)), -1, "case %zu (%s)", i, cases[i].key);
		cr_expect_neq(why[0], 0);
		/* Refused means nothing kept: no leak, no half-filled fields. */
		cr_expect_null(t->env);
		cr_expect_null(t->secret_names);
		json_decref(o);
		sample_free(t);
	}
	struct sandbox *t = calloc(1, sizeof(*t));
	char why[256];
	json_t *arr = json_array();
	cr_expect_eq(sandbox_from_json(t, arr, why, sizeof(why)), -1);
	cr_expect_eq(sandbox_from_json(t, NULL, why, sizeof(why)), -1);
	json_decref(arr);
	sample_free(t);
	json_decref(good);
}

Test(kvmboxd_state, console_last_lines)
{
	const char *text = "one\ntwo\nthree\nfour\n\n";
	cr_expect_str_eq(text_last_lines(text, strlen(text), 2), "three\nfour\n\n");
	cr_expect_str_eq(text_last_lines(text, strlen(text), 10), text);
	cr_expect_str_eq(text_last_lines("", 0, 3), "");
	cr_expect_str_eq(text_last_lines("abc", 3, 1), "abc");
}

Test(kvmboxd_state, atomic_write_and_rm_tree)
{
	char dir[] = "/tmp/kvmboxd-unit-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char sub[PATH_MAX], path[PATH_MAX + 32], buf[64];
	snprintf(sub, sizeof(sub), "%s/a", dir);
	cr_assert_eq(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/sandbox.json", sub);
	cr_expect_eq(write_file_atomic(path, "{\"a\":1}", 7), 0);
	cr_expect_eq(write_file_atomic(path, "{}", 2), 0);
	cr_expect_eq(read_small_file(path, buf, sizeof(buf)), 2);
	cr_expect_str_eq(buf, "{}");
	snprintf(path, sizeof(path), "%s/sandbox.json.tmp", sub);
	cr_expect_neq(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/nope/sandbox.json", sub);
	cr_expect_eq(write_file_atomic(path, "{}", 2), -1);
	cr_expect_eq(rm_tree(dir), 0);
	cr_expect_neq(access(dir, F_OK), 0);
	cr_expect_eq(rm_tree(dir), 0);
}
