/* Read-only mappings of input files (kernel, initrd), with messages that name the file and the fix. */
#ifndef KVMBOX_FILE_MAP_H
#define KVMBOX_FILE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/error.h"

struct file_map {
	const uint8_t *data;
	size_t len;
};

/* what: "kernel", "initrd" (for messages). An empty file is an error. */
int file_map_open(struct file_map *f, const char *path, const char *what, struct error *err);
void file_map_close(struct file_map *f);

#endif
