/* The agent benchmark's client (tools/bench/agent drives it): libkvmbox against one agent, the guest's
 * (through the monitor's vsock socket) or the host's (kvmbox-agent --listen unix:PATH), so that both are
 * measured with the same code. Prints one JSON object:
 *   call_us   round trip of a request that does nothing (hello): the protocol and transport floor
 *   run_us    an empty command (/bin/true, argv, no shell) from run to its exit report
 *   exec_us   the target's own fork+exec+wait of the same program, timed inside the target by a shell
 *             loop (the floor under run_us)
 *   write_mbs / read_mbs  a file of --mib MiB written from memory, then read back, through the agent
 * usage: agent-bench --uds PATH [--port N] [--runs N] [--mib N] [--dir DIR] */
#include "kvmbox.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void die(const char *what, const struct kvmbox_error *e)
{
	fprintf(stderr, "agent-bench: %s: %s\n", what, e->message);
	exit(1);
}

static void stats(double *v, int n, double *median, double *p90)
{
	qsort(v, n, sizeof(*v), cmp_double);
	*median = v[n / 2];
	*p90 = v[n * 9 / 10];
}

static int count_bytes(void *ctx, const void *data, size_t len)
{
	(void)data;
	*(size_t *)ctx += len;
	return 0;
}

int main(int argc, char **argv)
{
	const char *uds = NULL, *dir = "/tmp";
	unsigned port = 0;
	int runs = 200, mib = 64;
	static const struct option opts[] = {
		{"uds", required_argument, NULL, 'u'}, {"port", required_argument, NULL, 'p'},
		{"runs", required_argument, NULL, 'r'}, {"mib", required_argument, NULL, 'm'},
		{"dir", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'}, {0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'u': uds = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'r': runs = atoi(optarg); break;
		case 'm': mib = atoi(optarg); break;
		case 'd': dir = optarg; break;
		case 'h':
			printf("usage: agent-bench --uds PATH [--port N] [--runs N] [--mib N] [--dir DIR]\n"
			       "Measures one agent through libkvmbox and prints JSON (see tools/bench/agent).\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!uds || runs < 10 || mib < 1) {
		fprintf(stderr, "agent-bench: --uds PATH is required; --runs >= 10, --mib >= 1\n");
		return 2;
	}
	struct kvmbox_error e;
	kvmbox_agent *a;
	if (kvmbox_agent_connect(uds, port, 30000, &a, &e))
		die("connect", &e);
	double *v = calloc(runs * 10, sizeof(*v));
	double call_med, call_p90, run_med, run_p90;

	for (int i = 0; i < runs * 10; i++) {
		double t = now_s();
		if (kvmbox_agent_call(a, "{\"op\":\"hello\",\"version\":1}", NULL, &e))
			die("hello", &e);
		v[i] = (now_s() - t) * 1e6;
	}
	stats(v, runs * 10, &call_med, &call_p90);

	struct kvmbox_run r = {.cmd = "/bin/true"};
	struct kvmbox_command cmd;
	for (int i = 0; i < runs; i++) {
		double t = now_s();
		if (kvmbox_run(a, &r, NULL, NULL, &cmd, &e))
			die("run true", &e);
		v[i] = (now_s() - t) * 1e6;
		if (cmd.exit_code != 0) {
			fprintf(stderr, "agent-bench: `true` exited %d\n", cmd.exit_code);
			return 1;
		}
	}
	stats(v, runs, &run_med, &run_p90);

	/* The target's own fork+exec+wait of the same program: a shell loop, timed by the agent's startedAt and
	 * finishedAt (so the target needs no clock program with sub-second resolution). */
	char script[256];
	snprintf(script, sizeof(script), "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", runs * 2);
	const char *sh_args[] = {"-c", script, NULL};
	struct kvmbox_run sh = {.cmd = "/bin/sh", .args = sh_args};
	if (kvmbox_run(a, &sh, NULL, NULL, &cmd, &e))
		die("exec loop", &e);
	double exec_us = (cmd.finished_at_ms - cmd.started_at_ms) * 1000.0 / (runs * 2);

	size_t bytes = (size_t)mib << 20;
	char *buf = malloc(bytes);
	for (size_t i = 0; i < bytes; i++)
		buf[i] = (char)(i * 2654435761u >> 13);
	char path[512];
	snprintf(path, sizeof(path), "%s/agent-bench.%d", dir, (int)getpid());
	double wv[5], rv[5];
	for (int i = 0; i < 5; i++) {
		double t = now_s();
		if (kvmbox_write_file(a, path, -1, 0, buf, bytes, &e))
			die("writeFile", &e);
		wv[i] = bytes / (now_s() - t) / 1e6;
		size_t got = 0;
		t = now_s();
		if (kvmbox_read_file(a, path, count_bytes, &got, &e))
			die("readFile", &e);
		rv[i] = bytes / (now_s() - t) / 1e6;
		if (got != bytes) {
			fprintf(stderr, "agent-bench: read %zu bytes back of %zu\n", got, bytes);
			return 1;
		}
	}
	char req[600];
	snprintf(req, sizeof(req), "{\"op\":\"unlink\",\"path\":\"%s\"}", path);
	kvmbox_agent_call(a, req, NULL, &e);
	double wmed, rmed, dummy;
	stats(wv, 5, &wmed, &dummy);
	stats(rv, 5, &rmed, &dummy);
	printf("{\"call_us\": {\"median\": %.1f, \"p90\": %.1f}, \"run_us\": {\"median\": %.1f, \"p90\": %.1f}, "
	       "\"exec_us\": %.1f, \"write_mbs\": %.1f, \"read_mbs\": %.1f, \"mib\": %d, \"runs\": %d}\n",
	       call_med, call_p90, run_med, run_p90, exec_us, wmed, rmed, mib, runs);
	free(buf);
	free(v);
	kvmbox_agent_close(a);
	return 0;
}
