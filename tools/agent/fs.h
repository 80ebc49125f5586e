/* File operations of the agent (docs/agent-protocol.md, "Files"): node:fs/promises-shaped calls on the
 * agent's own file system, errno-coded errors exactly as Linux reports them. Runs on the host too (the
 * unit tests drive it against a temporary folder). Relative paths resolve against the process's cwd
 * (the agent chdir()s to the sandbox's cwd). */
#ifndef KVMBOX_AGENT_FS_H
#define KVMBOX_AGENT_FS_H

#include "tools/agent/request.h"

#include <stdint.h>
#include <sys/stat.h>

/* Run one non-streaming file operation: r->op is one of MKDIR, READDIR, MKDTEMP, STAT, LSTAT, REALPATH,
 * RENAME, COPY_FILE, UNLINK, RM, RMDIR, TRUNCATE, CHMOD, CHOWN, SYMLINK, READLINK, ACCESS, EXISTS.
 * On success *result is the response's fields (a new object, possibly empty) and 0 is returned; on
 * failure err is filled and -1 returned. */
int agent_fs_call(const struct agent_request *r, json_t **result, struct agent_error *err);

/* readFile: open r->path for reading (EISDIR for a directory, like node), seek to r->offset; *fd is the
 * open file, *size the number of bytes to send (to the end of the file, or r->length when smaller). */
int agent_fs_open_read(const struct agent_request *r, int *fd, int64_t *size, struct agent_error *err);

/* writeFile/appendFile: open r->path for writing (O_TRUNC, or O_APPEND for appendFile; O_EXCL when
 * r->exclusive), creating it with r->mode (default 0666, less the umask) and, when r->recursive, its
 * missing parent folders (0777 less the umask). */
int agent_fs_open_write(const struct agent_request *r, int *fd, struct agent_error *err);

/* stat as JSON: {"type", "mode", "size", "uid", "gid", "nlink", "dev", "ino", "rdev", "blksize",
 * "blocks", "atimeMs", "mtimeMs", "ctimeMs"}; type is file, directory, symlink, fifo, socket, char, block. */
json_t *agent_fs_stat_json(const struct stat *st);

#endif
