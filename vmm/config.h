/* What one VM is: filled from the command line and/or a JSON file with the same keys. */
#ifndef KVMBOX_CONFIG_H
#define KVMBOX_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/error.h"
#include "vmm/log.h"

enum console_mode { CONSOLE_STDIO, CONSOLE_FILE, CONSOLE_NONE };
enum entry_mode { ENTRY_AUTO, ENTRY_LINUX64, ENTRY_PVH };

#define CONFIG_MAX_CPUS 255     /* APIC IDs are 8 bits in the MP table */
#define CONFIG_MIN_MEMORY_MIB 2
#define CONFIG_MAX_MEMORY_MIB (1024ull * 1024) /* 1 TiB */
#define CONFIG_MAX_DISKS 16
#define CONFIG_MAX_NETS 8

struct vm_config {
	char *kernel;
	char *initrd;
	char *cmdline;
	uint64_t memory_mib;
	unsigned cpus;
	enum console_mode console;
	char *console_path;
	double timeout_s;       /* 0: none */
	enum entry_mode entry;
	bool hugepages;
	bool allow_emulated;
	bool no_default_cmdline;
	enum log_level log_level;
	char **disks;           /* --disk PATH[,readonly][,serial=ID][,direct], in order */
	unsigned nr_disks;
	char **nets;            /* --net tap=NAME[,mac=MAC] | auto[,mac=MAC], in order */
	unsigned nr_nets;
	char *vsock;            /* --vsock cid=N,uds=PATH (devices/virtio_vsock.c parses it) */
	bool probe;
	bool help;
	bool version;
};

void config_defaults(struct vm_config *c);
void config_free(struct vm_config *c);

/* Parses argv (and any --config file at its place in argv). Returns -1 with a message on bad input. */
int config_parse_args(struct vm_config *c, int argc, char **argv, struct error *err);
/* Applies one JSON object (the --config file's contents). */
int config_apply_json_text(struct vm_config *c, const char *text, const char *origin, struct error *err);

void config_print_help(const char *prog);

#endif
