/* kvmbox: the user-facing command-line tool. Each subcommand is one function taking its own argv
 * (argv[0] is the subcommand's name) and returning the process exit status. */
#ifndef KVMBOX_TOOLS_KVMBOX_H
#define KVMBOX_TOOLS_KVMBOX_H

#include <stdio.h>

#ifndef KVMBOX_VERSION
#define KVMBOX_VERSION "0.1.0"
#endif

/* Exit status for a command line kvmbox cannot make sense of (every subcommand uses it too). */
#define KVMBOX_EXIT_USAGE 2

/* kvmbox boot-test: boot a kernel on kvmbox-vmm and judge the boot by its console (tools/kvmbox/boot_test.c). */
int cmd_boot_test(int argc, char **argv);
void boot_test_usage(FILE *out);

#endif
