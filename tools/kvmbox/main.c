/* kvmbox: the command-line front end. `kvmbox SUBCOMMAND [options]`; for now the only subcommand is
 * boot-test (later: run, create, ls, ...). Manual: docs/boot-test.md. */
#include "tools/kvmbox/kvmbox.h"

#include <stdio.h>
#include <string.h>

static const struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	void (*usage)(FILE *out);
	const char *summary;
} subcommands[] = {
	{ "boot-test", cmd_boot_test, boot_test_usage, "boot a kernel and check its console for a pass or fail" },
};
#define N_SUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *out)
{
	fprintf(out, "usage: kvmbox SUBCOMMAND [options]\n"
		     "       kvmbox help [SUBCOMMAND]\n"
		     "       kvmbox --help | --version\n\n"
		     "subcommands:\n");
	for (size_t i = 0; i < N_SUBCOMMANDS; i++)
		fprintf(out, "  %-12s %s\n", subcommands[i].name, subcommands[i].summary);
	fprintf(out, "\n`kvmbox SUBCOMMAND --help` describes a subcommand's options. Manual: docs/boot-test.md\n");
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

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return KVMBOX_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("kvmbox %s\n", KVMBOX_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "help")) {
		if (argc < 3) {
			usage(stdout);
			return 0;
		}
		const struct subcommand *sc = find(argv[2]);
		if (!sc)
			return unknown(argv[2]);
		sc->usage(stdout);
		return 0;
	}
	if (cmd[0] == '-') {
		fprintf(stderr, "kvmbox: unknown option '%s' before the subcommand; see `kvmbox --help`\n", cmd);
		return KVMBOX_EXIT_USAGE;
	}
	const struct subcommand *sc = find(cmd);
	if (!sc)
		return unknown(cmd);
	return sc->run(argc - 1, argv + 1);
}
