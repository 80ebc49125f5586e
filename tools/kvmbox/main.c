/* kvmbox: the command-line front end. `kvmbox [--socket PATH] [--json] SUBCOMMAND [options]`: boot-test
 * (docs/boot-test.md), and the sandbox commands, clients of kvmboxd's API (docs/cli.md, docs/api.md). */
#include "tools/kvmbox/kvmbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	void (*usage)(FILE *out);
	const char *summary;
} subcommands[] = {
	{ "run", cmd_run, run_usage, "create a sandbox, run a command in it, remove it" },
	{ "create", cmd_create, create_usage, "create a sandbox and print its id" },
	{ "ls", cmd_ls, ls_usage, "list sandboxes" },
	{ "inspect", cmd_inspect, inspect_usage, "show sandboxes as JSON" },
	{ "exec", cmd_exec, exec_usage, "run a command in a running sandbox" },
	{ "logs", cmd_logs, logs_usage, "show (or follow) a command's output" },
	{ "stop", cmd_stop, stop_usage, "power sandboxes off cleanly" },
	{ "kill", cmd_kill, kill_usage, "kill sandboxes at once" },
	{ "timeout", cmd_timeout, timeout_usage, "give a sandbox a new deadline" },
	{ "rm", cmd_rm, rm_usage, "remove sandboxes" },
	{ "cp", cmd_cp, cp_usage, "copy a file into or out of a sandbox" },
	{ "boot-test", cmd_boot_test, boot_test_usage, "boot a kernel and check its console for a pass or fail" },
};
#define N_SUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *out)
{
	fprintf(out, "usage: kvmbox [--socket PATH] [--json] SUBCOMMAND [options]\n"
		     "       kvmbox help [SUBCOMMAND]\n"
		     "       kvmbox --help | --version\n\n"
		     "subcommands:\n");
	for (size_t i = 0; i < N_SUBCOMMANDS; i++)
		fprintf(out, "  %-12s %s\n", subcommands[i].name, subcommands[i].summary);
	fprintf(out, "\nglobal options (also accepted after the subcommand):\n"
		     "  --socket PATH  kvmboxd's socket (default $KVMBOX_SOCKET, else " KVMBOX_DEFAULT_SOCKET ")\n"
		     "  --json         print the API's JSON instead of tables and ids\n\n"
		     "exit status: 0 success, 1 kvmboxd refused the request, 2 usage error, 125 kvmboxd unreachable\n"
		     "or broken; run and exec exit with the command's own status (126 cannot run it, 127 not found).\n"
		     "`kvmbox SUBCOMMAND --help` describes a subcommand's options. Manual: docs/cli.md\n");
}

static const struct subcommand *find(const char *name)
{
	for (size_t i = 0; i < N_SUBCOMMANDS; i++)
		if (!strcmp(subcommands[i].name, name))
			return &subcommands[i];
	return NULL;
}

static int unknown(const char *name)
{
	fprintf(stderr, "kvmbox: unknown subcommand '%s' (known: ", name);
	for (size_t i = 0; i < N_SUBCOMMANDS; i++)
		fprintf(stderr, "%s%s", i ? ", " : "", subcommands[i].name);
	fprintf(stderr, "); see `kvmbox --help`\n");
	return KVMBOX_EXIT_USAGE;
}

enum { O_VERSION = OPT_CMD_BASE };

int main(int argc, char **argv)
{
	const char *env = getenv("KVMBOX_SOCKET");
	if (env && *env)
		kvmbox_socket = env;

	/* The global options before the subcommand ('+': stop at the subcommand's name). */
	static const struct option opts[] = {
		CLI_COMMON_LONG_OPTS,
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		if (cli_common_opt(c, optarg))
			continue;
		switch (c) {
		case 'h':
		case OPT_HELP: usage(stdout); return 0;
		case O_VERSION: printf("kvmbox %s\n", KVMBOX_VERSION); return 0;
		case ':':
			fprintf(stderr, "kvmbox: %s needs a value; see `kvmbox --help`\n", argv[optind - 1]);
			return KVMBOX_EXIT_USAGE;
		default:
			fprintf(stderr, "kvmbox: unknown option '%s' before the subcommand; see `kvmbox --help`\n",
				argv[optind - 1]);
			return KVMBOX_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return KVMBOX_EXIT_USAGE;
	}
	argc -= optind;
	argv += optind;
	const char *cmd = argv[0];
	if (!strcmp(cmd, "help")) {
		if (argc < 2) {
			usage(stdout);
			return 0;
		}
		const struct subcommand *sc = find(argv[1]);
		if (!sc)
			return unknown(argv[1]);
		sc->usage(stdout);
		return 0;
	}
	const struct subcommand *sc = find(cmd);
	if (!sc)
		return unknown(cmd);
	optind = 1; /* each subcommand runs getopt_long on its own argv */
	return sc->run(argc, argv);
}
