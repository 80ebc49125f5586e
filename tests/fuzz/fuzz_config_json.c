/*
 * libFuzzer target: the text of a --config file. Applies it to default settings and checks that
 * whatever was accepted is within the documented limits, then frees everything.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what)
{
	fprintf(stderr, "fuzz_config_json: broken promise: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';

	struct vm_config c;
	struct error err;
	config_defaults(&c);
	err.msg[0] = '\0';
	if (config_apply_json_text(&c, text, "fuzz.json", &err)) {
		if (!err.msg[0])
			broken("refused without a message");
	}
	/* Even a refused file may have applied the keys before the bad one: all of them must be valid. */
	if (c.memory_mib < CONFIG_MIN_MEMORY_MIB || c.memory_mib > CONFIG_MAX_MEMORY_MIB)
		broken("memory out of range");
	if (c.cpus < 1 || c.cpus > CONFIG_MAX_CPUS)
		broken("cpus out of range");
	if (c.timeout_s < 0 || c.timeout_s > 1e9 || !isfinite(c.timeout_s))
		broken("timeout out of range");
	if (c.console == CONSOLE_FILE && (!c.console_path || !c.console_path[0]))
		broken("console file without a path");
	if ((unsigned)c.entry > ENTRY_PVH || (unsigned)c.log_level > LOG_DEBUG)
		broken("enum out of range");
	if (c.nr_disks > CONFIG_MAX_DISKS || (c.nr_disks && !c.disks))
		broken("disk list");
	for (unsigned i = 0; i < c.nr_disks; i++)
		if (!c.disks[i])
			broken("NULL disk spec");
	if (c.probe || c.help || c.version)
		broken("a command-line-only key was applied");
	config_free(&c);
	free(text);
	return 0;
}
