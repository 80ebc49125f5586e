/* The sandbox life-cycle commands: create, ls, inspect, stop, kill, timeout, rm (docs/cli.md), and the
 * create options that `kvmbox run` shares. Each is one or a few JSON requests to kvmboxd (docs/api.md). */
#include "tools/kvmbox/kvmbox.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- shared helpers ---- */

int64_t cli_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cli_human_duration(char *buf, size_t n, int64_t s)
{
	if (s < 1)
		snprintf(buf, n, "less than a second");
	else if (s < 120) /* plain numbers up to twice the unit: "119 minutes", not "1 hour" */
		snprintf(buf, n, "%lld second%s", (long long)s, s == 1 ? "" : "s");
	else if (s < 120 * 60)
		snprintf(buf, n, "%lld minutes", (long long)(s / 60));
	else if (s < 48 * 3600)
		snprintf(buf, n, "%lld hours", (long long)(s / 3600));
	else
		snprintf(buf, n, "%lld days", (long long)(s / 86400));
}

char *cli_sandbox_path(struct api *a, const char *id, const char *suffix)
{
	char *e = api_escape(a, id), *p;
	if (asprintf(&p, "/v1/sandboxes/%s%s", e, suffix ? suffix : "") < 0) {
		fprintf(stderr, "kvmbox %s: out of memory\n", a->cmd);
		exit(KVMBOX_EXIT_TOOL);
	}
	free(e);
	return p;
}

int cli_env_opt(const char *cmd, const char *opt, json_t *obj, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char *key = eq ? strndup(arg, (size_t)(eq - arg)) : strdup(arg);
	const char *val = eq ? eq + 1 : getenv(arg);
	int rc = 0;
	if (!key || !*key)
		rc = cli_usage_error(cmd, "%s wants NAME=VALUE (or NAME, valued from this environment), not '%s'",
				     opt, arg);
	else if (!val)
		rc = cli_usage_error(cmd, "%s %s: no '=' and no %s in this environment; give %s=VALUE", opt, arg,
				     arg, arg);
	else
		json_object_set_new(obj, key, json_string(val));
	free(key);
	return rc;
}

static json_t *sub_object(json_t *req, const char *key)
{
	json_t *o = json_object_get(req, key);
	if (!o) {
		o = json_object();
		json_object_set_new(req, key, o);
	}
	return o;
}

/* "none", "all", or CIDRs separated by commas: {"allow": [...]}. The daemon checks the CIDRs' syntax. */
static int net_opt(const char *cmd, json_t *req, const char *arg)
{
	if (!strcmp(arg, "none") || !strcmp(arg, "all")) {
		json_object_set_new(req, "network", json_string(arg));
		return 0;
	}
	json_t *allow = json_array();
	bool empty = !*arg;
	for (const char *p = arg; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (!len)
			empty = true;
		else
			json_array_append_new(allow, json_stringn(p, len));
		p = comma ? comma + 1 : NULL;
		if (comma && !*p)
			empty = true;
	}
	if (empty || !json_array_size(allow)) {
		json_decref(allow);
		return cli_usage_error(cmd, "--net wants none, all, or CIDRs separated by commas "
				       "(10.0.0.0/8,2001:db8::/32), not '%s'", arg);
	}
	json_t *net = json_object();
	json_object_set_new(net, "allow", allow);
	json_object_set_new(req, "network", net);
	return 0;
}

int cli_spec_opt(const char *cmd, json_t *req, int c, const char *arg)
{
	long v;
	switch (c) {
	case OPT_CPUS:
		if (!cli_parse_int(arg, 1, INT_MAX, &v))
			return cli_usage_error(cmd, "--cpus wants a positive whole number, not '%s'", arg);
		json_object_set_new(sub_object(req, "resources"), "vcpus", json_integer(v));
		return 0;
	case OPT_MEMORY:
		if (!cli_parse_int(arg, 1, INT_MAX, &v))
			return cli_usage_error(cmd, "--memory wants a positive whole number of MiB, not '%s'", arg);
		json_object_set_new(sub_object(req, "resources"), "memoryMb", json_integer(v));
		return 0;
	case OPT_DISK:
		if (!cli_parse_int(arg, 1, INT_MAX, &v))
			return cli_usage_error(cmd, "--disk wants a positive whole number of GiB, not '%s'", arg);
		json_object_set_new(sub_object(req, "resources"), "diskGb", json_integer(v));
		return 0;
	case OPT_TIMEOUT:
		if (!cli_parse_int(arg, 1, INT_MAX, &v))
			return cli_usage_error(cmd, "--timeout wants a positive whole number of minutes, not '%s'", arg);
		json_object_set_new(req, "timeoutMinutes", json_integer(v));
		return 0;
	case OPT_ENV: return cli_env_opt(cmd, "--env", sub_object(req, "env"), arg);
	case OPT_SECRET: return cli_env_opt(cmd, "--secret", sub_object(req, "secrets"), arg);
	case OPT_NET: return net_opt(cmd, req, arg);
	case OPT_NAME: json_object_set_new(req, "name", json_string(arg)); return 0;
	case OPT_IMAGE: json_object_set_new(req, "image", json_string(arg)); return 0;
	default: return 1;
	}
}

/* The positional IMAGE of run and create, against --image. */
int cli_spec_image(const char *cmd, json_t *req, const char *image)
{
	const char *opt = json_string_value(json_object_get(req, "image"));
	if (opt && strcmp(opt, image))
		return cli_usage_error(cmd, "two images: --image %s and %s; give one", opt, image);
	json_object_set_new(req, "image", json_string(image));
	return 0;
}

json_t *cli_create_sandbox(struct api *a, json_t *req, bool wait, int *rc)
{
	json_t *sb = NULL;
	*rc = api_json(a, "POST", wait ? "/v1/sandboxes" : "/v1/sandboxes?wait=false", req, &sb);
	if (!*rc && !json_is_object(sb)) {
		fprintf(stderr, "kvmbox %s: kvmboxd answered the create without a sandbox object\n", a->cmd);
		*rc = KVMBOX_EXIT_TOOL;
	}
	if (*rc) {
		json_decref(sb);
		return NULL;
	}
	return sb;
}

static void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2));
	putchar('\n');
}

/* ---- create ---- */

void create_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox create [options] [IMAGE]\n\n"
		     "Creates a sandbox, waits until its agent answers, and prints its id (--json: the sandbox).\n\n"
		     "options:\n" CLI_SPEC_HELP
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               print the sandbox as JSON\n"
		     "  --help               show this help\n\n"
		     "exit status: 0 created and running, 1 kvmboxd refused it or it failed to start (the failed\n"
		     "sandbox is kept: `kvmbox inspect` it, `kvmbox rm` it), 2 usage, 125 kvmboxd unreachable.\n");
}

int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_LONG_OPTS, CLI_SPEC_LONG_OPTS, { NULL, 0, NULL, 0 } };
	json_t *req = json_object();
	int c, rc = 0;
	opterr = 0;
	optind = 0;
	while (!rc && (c = getopt_long(argc, argv, ":he:", opts, NULL)) != -1) {
		if (cli_common_opt(c, optarg))
			continue;
		if (c == 'h' || c == OPT_HELP) {
			create_usage(stdout);
			json_decref(req);
			return 0;
		}
		rc = cli_spec_opt("create", req, c == 'e' ? OPT_ENV : c, optarg);
		if (rc == 1)
			rc = cli_getopt_error("create", c, argv);
	}
	if (!rc && optind < argc - 1)
		rc = cli_usage_error("create", "one IMAGE at most, not '%s' and '%s'", argv[optind], argv[optind + 1]);
	if (!rc && optind < argc)
		rc = cli_spec_image("create", req, argv[optind]);
	if (rc) {
		json_decref(req);
		return rc;
	}

	struct api a;
	if (api_open(&a, "create")) {
		json_decref(req);
		return KVMBOX_EXIT_TOOL;
	}
	json_t *sb = cli_create_sandbox(&a, req, true, &rc);
	json_decref(req);
	if (sb) {
		const char *id = json_string_value(json_object_get(sb, "id"));
		const char *status = json_string_value(json_object_get(sb, "status"));
		if (kvmbox_json)
			print_json(sb);
		else
			printf("%s\n", id ? id : "?");
		if (status && !strcmp(status, "failed")) {
			const char *why = json_string_value(json_object_get(sb, "errorMessage"));
			fprintf(stderr, "kvmbox create: sandbox %s failed to start: %s (remove it with `kvmbox rm %s`)\n",
				id, why ? why : "no reason given", id);
			rc = KVMBOX_EXIT_API;
		}
	}
	json_decref(sb);
	api_close(&a);
	return rc;
}

/* ---- ls ---- */

void ls_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox ls [-a] [--status S[,S...]] [-q] [--json]\n\n"
		     "Lists sandboxes, newest first: by default those not ended (created, starting, running).\n\n"
		     "options:\n"
		     "  -a, --all            every sandbox kvmboxd keeps, the ended ones too\n"
		     "  --status S[,S...]    only these statuses (created, starting, running, finished,\n"
		     "                       cancelled, failed)\n"
		     "  -q, --quiet          print only the ids\n"
		     "  --json               {\"sandboxes\": [...]}, every page\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --help               show this help\n");
}

struct table {
	char **cells; /* rows * cols */
	size_t rows, cols, cap;
};

static void table_add(struct table *t, const char **row)
{
	if (t->rows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = realloc(t->cells, t->cap * t->cols * sizeof(*t->cells));
		if (!t->cells) {
			fprintf(stderr, "kvmbox ls: out of memory\n");
			exit(KVMBOX_EXIT_TOOL);
		}
	}
	for (size_t i = 0; i < t->cols; i++)
		t->cells[t->rows * t->cols + i] = strdup(row[i] ? row[i] : "-");
	t->rows++;
}

static void table_print(struct table *t)
{
	size_t width[16] = { 0 };
	for (size_t r = 0; r < t->rows; r++)
		for (size_t i = 0; i < t->cols; i++) {
			size_t w = strlen(t->cells[r * t->cols + i]);
			if (w > width[i])
				width[i] = w;
		}
	for (size_t r = 0; r < t->rows; r++) {
		for (size_t i = 0; i < t->cols; i++) {
			const char *s = t->cells[r * t->cols + i];
			if (i + 1 < t->cols)
				printf("%-*s   ", (int)width[i], s);
			else
				printf("%s\n", s);
			free(t->cells[r * t->cols + i]);
		}
	}
	free(t->cells);
}

static void ls_row(struct table *t, json_t *sb, int64_t now)
{
	char cpus[16] = "-", mem[32] = "-", created[64] = "-", expires[64] = "-", d[48];
	json_t *res = json_object_get(sb, "resources");
	json_t *v = json_object_get(res, "vcpus");
	if (json_is_integer(v))
		snprintf(cpus, sizeof(cpus), "%lld", (long long)json_integer_value(v));
	v = json_object_get(res, "memoryMb");
	if (json_is_integer(v)) {
		long long mb = json_integer_value(v);
		if (mb >= 1024 && mb % 1024 == 0)
			snprintf(mem, sizeof(mem), "%lld GiB", mb / 1024);
		else
			snprintf(mem, sizeof(mem), "%lld MiB", mb);
	}
	v = json_object_get(sb, "createdAt");
	if (json_is_integer(v)) {
		cli_human_duration(d, sizeof(d), (now - json_integer_value(v)) / 1000);
		snprintf(created, sizeof(created), "%s ago", d);
	}
	const char *status = json_string_value(json_object_get(sb, "status"));
	bool alive = status && (!strcmp(status, "created") || !strcmp(status, "starting") ||
				!strcmp(status, "running"));
	v = json_object_get(sb, "expiresAt");
	if (alive && json_is_integer(v)) {
		int64_t left = json_integer_value(v) - now;
		if (left <= 0) {
			snprintf(expires, sizeof(expires), "now");
		} else {
			cli_human_duration(d, sizeof(d), left / 1000);
			snprintf(expires, sizeof(expires), "in %s", d);
		}
	}
	const char *row[] = { json_string_value(json_object_get(sb, "id")),
			      json_string_value(json_object_get(sb, "name")),
			      json_string_value(json_object_get(sb, "image")), status, cpus, mem, created, expires };
	table_add(t, row);
}

int cmd_ls(int argc, char **argv)
{
	enum { O_ALL = OPT_CMD_BASE, O_STATUS, O_QUIET };
	static const struct option opts[] = {
		CLI_COMMON_LONG_OPTS,
		{ "all", no_argument, NULL, O_ALL },
		{ "status", required_argument, NULL, O_STATUS },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ NULL, 0, NULL, 0 },
	};
	bool all = false, quiet = false;
	const char *status = NULL;
	int c;
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":haq", opts, NULL)) != -1) {
		if (cli_common_opt(c, optarg))
			continue;
		switch (c) {
		case 'h':
		case OPT_HELP: ls_usage(stdout); return 0;
		case 'a':
		case O_ALL: all = true; break;
		case 'q':
		case O_QUIET: quiet = true; break;
		case O_STATUS: status = optarg; break;
		default: return cli_getopt_error("ls", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("ls", "unexpected argument '%s'", argv[optind]);
	if (status && all)
		return cli_usage_error("ls", "-a and --status: give one");
	if (!status && !all)
		status = "created,starting,running";

	struct api a;
	if (api_open(&a, "ls"))
		return KVMBOX_EXIT_TOOL;
	json_t *list = json_array();
	char *token = NULL;
	int rc = 0;
	do { /* every page */
		char *path, *st = status ? api_escape(&a, status) : NULL, *tok = token ? api_escape(&a, token) : NULL;
		if (asprintf(&path, "/v1/sandboxes?limit=500%s%s%s%s", st ? "&status=" : "", st ? st : "",
			     tok ? "&pageToken=" : "", tok ? tok : "") < 0)
			path = NULL;
		free(st);
		free(tok);
		free(token);
		token = NULL;
		json_t *page = NULL;
		rc = path ? api_json(&a, "GET", path, NULL, &page) : KVMBOX_EXIT_TOOL;
		free(path);
		if (rc)
			break;
		json_t *sbs = json_object_get(page, "sandboxes");
		if (!json_is_array(sbs)) {
			fprintf(stderr, "kvmbox ls: kvmboxd's list has no \"sandboxes\" array\n");
			json_decref(page);
			rc = KVMBOX_EXIT_TOOL;
			break;
		}
		json_array_extend(list, sbs);
		const char *next = json_string_value(json_object_get(page, "nextPageToken"));
		if (next && *next)
			token = strdup(next);
		json_decref(page);
	} while (token);
	api_close(&a);
	if (rc) {
		json_decref(list);
		return rc;
	}

	if (kvmbox_json) {
		json_t *out = json_pack("{s:O,s:n}", "sandboxes", list, "nextPageToken");
		print_json(out);
		json_decref(out);
	} else if (quiet) {
		size_t i;
		json_t *sb;
		json_array_foreach(list, i, sb)
			printf("%s\n", json_string_value(json_object_get(sb, "id")));
	} else {
		const char *head[] = { "ID", "NAME", "IMAGE", "STATUS", "CPUS", "MEMORY", "CREATED", "EXPIRES" };
		struct table t = { .cols = 8 };
		table_add(&t, head);
		int64_t now = cli_now_ms();
		size_t i;
		json_t *sb;
		json_array_foreach(list, i, sb)
			ls_row(&t, sb, now);
		table_print(&t);
	}
	json_decref(list);
	return 0;
}

/* ---- inspect, stop, kill, timeout, rm: one request per sandbox ---- */

/* One request per sandbox named on the command line. */
struct each {
	const char *cmd;
	const char *method, *suffix;
	json_t *body;
	bool print_answer;  /* --json or inspect: collect the answers into an array */
	const char *conflict_hint; /* said after a CONFLICT answer; %s is the id */
};

/* The request for every id; API errors do not stop the others, an unreachable daemon does. */
static int for_each(struct each *e, int argc, char **argv)
{
	struct api a;
	if (api_open(&a, e->cmd))
		return KVMBOX_EXIT_TOOL;
	json_t *answers = json_array();
	int rc = 0;
	for (int i = 0; i < argc; i++) {
		char *path = cli_sandbox_path(&a, argv[i], e->suffix);
		json_t *ans = NULL;
		int r = api_json(&a, e->method, path, e->body, &ans);
		free(path);
		if (r == KVMBOX_EXIT_TOOL) {
			rc = r;
			break;
		}
		if (r) {
			if (e->conflict_hint && !strcmp(a.code, "CONFLICT")) {
				fprintf(stderr, "kvmbox %s: ", e->cmd);
				fprintf(stderr, e->conflict_hint, argv[i]);
				fputc('\n', stderr);
			}
			rc = r;
			continue;
		}
		if (e->print_answer)
			json_array_append(answers, ans ? ans : json_null());
		else
			printf("%s\n", argv[i]);
		fflush(stdout);
		json_decref(ans);
	}
	if (e->print_answer && json_array_size(answers))
		print_json(answers);
	json_decref(answers);
	api_close(&a);
	return rc;
}

/* getopt for inspect/stop/kill/timeout/rm: the common options, plus extra ones whose values are the
 * letters of flag_vals (flags[i] set for flag_vals[i]); shorts: those of them that have a short form.
 * 0, -1 after --help, else a usage error's exit status. */
static int parse_ids(const char *cmd, void (*usage)(FILE *), int argc, char **argv, const struct option *extra,
		     const char *shorts, const char *flag_vals, bool *flags)
{
	struct option opts[8] = { CLI_COMMON_LONG_OPTS };
	size_t n = 3;
	for (size_t i = 0; extra && extra[i].name && n < 7; i++)
		opts[n++] = extra[i];
	opts[n] = (struct option){ NULL, 0, NULL, 0 };
	char optstring[16];
	snprintf(optstring, sizeof(optstring), ":h%s", shorts);
	int c;
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, optstring, opts, NULL)) != -1) {
		if (cli_common_opt(c, optarg))
			continue;
		if (c == 'h' || c == OPT_HELP) {
			usage(stdout);
			return -1;
		}
		const char *f = c > 0 && c < 0x100 && c != ':' && c != '?' ? strchr(flag_vals, c) : NULL;
		if (f) {
			flags[f - flag_vals] = true;
			continue;
		}
		return cli_getopt_error(cmd, c, argv);
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "which sandbox? give one or more ids or names");
	return 0;
}

void inspect_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox inspect ID...\n\n"
		     "Prints the sandboxes (ids or names) as a JSON array of the API's sandbox objects.\n\n"
		     "options:\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --help               show this help\n\n"
		     "exit status: 0, 1 when any sandbox is unknown (the others are still printed), 125.\n");
}

int cmd_inspect(int argc, char **argv)
{
	int rc = parse_ids("inspect", inspect_usage, argc, argv, NULL, "", "", NULL);
	if (rc)
		return rc < 0 ? 0 : rc;
	struct each e = { .cmd = "inspect", .method = "GET", .print_answer = true };
	return for_each(&e, argc - optind, argv + optind);
}

void stop_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox stop [--no-wait] ID...\n\n"
		     "Asks each sandbox's guest to power off cleanly; kvmboxd kills it after 10 s. Prints each id\n"
		     "(--json: the stopped sandboxes). Stopping an ended sandbox changes nothing.\n\n"
		     "options:\n"
		     "  --no-wait            return at once, while the guest shuts down\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               print the sandboxes as JSON\n"
		     "  --help               show this help\n");
}

int cmd_stop(int argc, char **argv)
{
	static const struct option extra[] = { { "no-wait", no_argument, NULL, 'W' }, { NULL, 0, NULL, 0 } };
	bool flags[1] = { false };
	int rc = parse_ids("stop", stop_usage, argc, argv, extra, "", "W", flags);
	if (rc)
		return rc < 0 ? 0 : rc;
	json_t *body = json_pack("{s:b}", "blocking", !flags[0]);
	struct each e = { .cmd = "stop", .method = "POST", .suffix = "/stop", .body = body,
			  .print_answer = kvmbox_json };
	rc = for_each(&e, argc - optind, argv + optind);
	json_decref(body);
	return rc;
}

void kill_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox kill ID...\n\n"
		     "Kills each sandbox's VM at once (it ends \"cancelled\"); its record stays until `kvmbox rm`.\n\n"
		     "options:\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               print the sandboxes as JSON\n"
		     "  --help               show this help\n");
}

int cmd_kill(int argc, char **argv)
{
	int rc = parse_ids("kill", kill_usage, argc, argv, NULL, "", "", NULL);
	if (rc)
		return rc < 0 ? 0 : rc;
	json_t *body = json_object();
	struct each e = { .cmd = "kill", .method = "POST", .suffix = "/kill", .body = body,
			  .print_answer = kvmbox_json };
	rc = for_each(&e, argc - optind, argv + optind);
	json_decref(body);
	return rc;
}

void rm_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox rm [-f] ID...\n\n"
		     "Removes ended sandboxes: their records, disks and logs. Prints each id.\n\n"
		     "options:\n"
		     "  -f, --force          kill a running sandbox first (without it, removing one is refused)\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               print the removed ids as a JSON array\n"
		     "  --help               show this help\n");
}

int cmd_rm(int argc, char **argv)
{
	static const struct option extra[] = { { "force", no_argument, NULL, 'f' }, { NULL, 0, NULL, 0 } };
	bool flags[1] = { false };
	int rc = parse_ids("rm", rm_usage, argc, argv, extra, "f", "f", flags);
	if (rc)
		return rc < 0 ? 0 : rc;
	/* 204 has no body: ids, or with --json an array of them. */
	struct each e = { .cmd = "rm", .method = "DELETE", .suffix = flags[0] ? "?force=true" : NULL,
			  .conflict_hint = "`kvmbox rm -f %s` kills and removes it" };
	if (!kvmbox_json)
		return for_each(&e, argc - optind, argv + optind);
	fflush(stdout);
	json_t *ids = json_array();
	struct api a;
	if (api_open(&a, "rm"))
		return KVMBOX_EXIT_TOOL;
	for (int i = optind; i < argc; i++) {
		char *path = cli_sandbox_path(&a, argv[i], e.suffix);
		int r = api_json(&a, "DELETE", path, NULL, NULL);
		free(path);
		if (!r)
			json_array_append_new(ids, json_string(argv[i]));
		else if (!strcmp(a.code, "CONFLICT"))
			fprintf(stderr, "kvmbox rm: `kvmbox rm -f %s` kills and removes it\n", argv[i]);
		if (r)
			rc = r;
		if (r == KVMBOX_EXIT_TOOL)
			break;
	}
	api_close(&a);
	print_json(ids);
	json_decref(ids);
	return rc;
}

void timeout_usage(FILE *out)
{
	fprintf(out, "usage: kvmbox timeout ID MINUTES\n\n"
		     "Gives a running sandbox a fresh deadline MINUTES from now (kvmboxd keeps its whole life\n"
		     "under its --max-lifetime-minutes). Prints the new expiry (--json: the sandbox).\n\n"
		     "options:\n"
		     "  --socket PATH        kvmboxd's socket\n"
		     "  --json               print the sandbox as JSON\n"
		     "  --help               show this help\n");
}

int cmd_timeout(int argc, char **argv)
{
	int rc = parse_ids("timeout", timeout_usage, argc, argv, NULL, "", "", NULL);
	if (rc)
		return rc < 0 ? 0 : rc;
	long min;
	if (argc - optind != 2)
		return cli_usage_error("timeout", "wants ID MINUTES");
	if (!cli_parse_int(argv[optind + 1], 1, INT_MAX, &min))
		return cli_usage_error("timeout", "MINUTES is a positive whole number, not '%s'", argv[optind + 1]);
	struct api a;
	if (api_open(&a, "timeout"))
		return KVMBOX_EXIT_TOOL;
	json_t *body = json_pack("{s:I}", "timeoutMinutes", (json_int_t)min), *sb = NULL;
	char *path = cli_sandbox_path(&a, argv[optind], "/timeout");
	rc = api_json(&a, "POST", path, body, &sb);
	free(path);
	json_decref(body);
	api_close(&a);
	if (rc)
		return rc;
	json_t *exp = json_object_get(sb, "expiresAt");
	if (kvmbox_json) {
		print_json(sb);
	} else if (json_is_integer(exp)) {
		time_t t = (time_t)(json_integer_value(exp) / 1000);
		char when[64], d[48];
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
		cli_human_duration(d, sizeof(d), (json_integer_value(exp) - cli_now_ms()) / 1000);
		printf("%s expires at %s (in %s)\n", argv[optind], when, d);
	} else {
		printf("%s\n", argv[optind]);
	}
	json_decref(sb);
	return 0;
}
