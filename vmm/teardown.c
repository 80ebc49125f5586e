#include "vmm/teardown.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

static bool is_kvm_fd(const struct vm *vm, int fd)
{
	if (fd == vm->kvm_fd || fd == vm->vm_fd)
		return true;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (fd == vm->vcpus[i].fd)
			return true;
	return false;
}

void teardown_detach(struct vm *vm)
{
	if (vm->vm_fd < 0)
		return;
	int alive[2];
	if (pipe2(alive, O_CLOEXEC) < 0)
		return;
	/* The child never touches guest RAM: don't copy its page tables into the child. */
	if (vm->mem.base)
		madvise(vm->mem.base, vm->mem.size, MADV_DONTFORK);
	pid_t pid = fork();
	if (pid < 0) {
		close(alive[0]);
		close(alive[1]);
		return;
	}
	if (pid > 0) {
		/* The write end stays open in the monitor until it exits: that is the child's signal. */
		close(alive[0]);
		return;
	}
	/* Child: keep only the KVM fds and the read end, so nobody waits on our stdout or sockets. */
	close(alive[1]);
	DIR *d = opendir("/proc/self/fd");
	int dfd = d ? dirfd(d) : -1;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd == dfd || fd == alive[0] || is_kvm_fd(vm, fd))
			continue;
		close(fd);
	}
	if (d)
		closedir(d);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	char c;
	while (read(alive[0], &c, 1) < 0)
		;
	_exit(0); /* closing the last KVM fd destroys the VM here, after the monitor has exited */
}
