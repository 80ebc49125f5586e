/* maxrss RESULT-FILE COMMAND [ARGS...]: run COMMAND (stdin, stdout and stderr inherited), then write
 * "maxrss_kib=N status=S" to RESULT-FILE: its peak RSS (ru_maxrss from wait4) and its exit status (128+N for
 * signal N), which is also ours.
 *
 * Why not wait4 from the benchmark itself: Linux charges a process's ru_maxrss with the RSS of the address
 * space it left at execve, so a child forked (or vforked) by a 15 MiB Python shows at least 15 MiB. This
 * launcher is static and tiny, so the floor it leaves (a few hundred KiB) is below what any VMM uses. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: maxrss RESULT-FILE COMMAND [ARGS...]\n");
		return 125;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("maxrss: fork");
		return 125;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		fprintf(stderr, "maxrss: %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	int status;
	struct rusage ru;
	pid_t p;
	do
		p = wait4(pid, &status, 0, &ru);
	while (p < 0 && errno == EINTR);
	if (p < 0) {
		perror("maxrss: wait4");
		return 125;
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	FILE *f = fopen(argv[1], "w");
	if (!f) {
		fprintf(stderr, "maxrss: %s: %s\n", argv[1], strerror(errno));
		return 125;
	}
	fprintf(f, "maxrss_kib=%ld status=%d\n", ru.ru_maxrss, code);
	fclose(f);
	return code;
}
