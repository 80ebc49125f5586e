#include "vmm/file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int file_map_open(struct file_map *f, const char *path, const char *what, struct error *err)
{
	f->data = NULL;
	f->len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_set(err, "cannot open %s %s: %s; check --%s", what, path, strerror(errno), what);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return error_set(err, "cannot stat %s %s: %s", what, path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return error_set(err, "%s %s is not a regular file; check --%s", what, path, what);
	}
	if (st.st_size == 0) {
		close(fd);
		return error_set(err, "%s %s is empty; check --%s", what, path, what);
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED)
		return error_set(err, "cannot read %s %s: %s", what, path, strerror(e));
	f->data = p;
	f->len = (size_t)st.st_size;
	return 0;
}

void file_map_close(struct file_map *f)
{
	if (f->data)
		munmap((void *)f->data, f->len);
	f->data = NULL;
	f->len = 0;
}
