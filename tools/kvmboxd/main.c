/* kvmboxd: the sandbox daemon. HTTP/JSON on a Unix socket (docs/api.md); one kvmbox-vmm per sandbox. */
#include "tools/kvmboxd/http.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmboxd [options]\n"
		"\n"
		"The kvmbox sandbox daemon: serves the sandbox API (docs/api.md) over HTTP on a Unix socket and runs\n"
		"one kvmbox-vmm per sandbox. Sandboxes keep running when the daemon stops; a restarted daemon\n"
		"re-adopts them.\n"
		"\n"
		"  --socket PATH               the API socket (default /run/kvmbox/kvmbox.sock, mode 0600)\n"
		"  --socket-owner USER[:GROUP] who owns the socket (default: the daemon's user)\n"
		"  --state-dir DIR             sandboxes' records and disks (default /var/lib/kvmbox)\n"
		"  --run-dir DIR               sandboxes' vsock sockets (default /run/kvmbox)\n"
		"  --images DIR                images: DIR/NAME/{vmlinux,rootfs.ext4} (default /var/lib/kvmbox/images)\n"
		"  --vmm PATH                  the monitor (default: kvmbox-vmm next to kvmboxd)\n"
		"  --net-tool PATH             kvmbox-net, for sandboxes with a network (default: found next to\n"
		"                              kvmboxd, then in the source tree's tools/net/)\n"
		"  --max-lifetime-minutes N    no sandbox lives longer (default 1440)\n"
		"  --max-sandboxes N           sandboxes not ended at once (default 64)\n"
		"  --help, --version\n");
}

/* A file next to this executable (realpath of /proc/self/exe), else NULL. */
static char *beside_self(const char *rel)
{
	char self[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return NULL;
	self[n] = 0;
	snprintf(path, sizeof(path), "%s/%s", dirname(self), rel);
	return access(path, X_OK) == 0 ? realpath(path, NULL) : NULL;
}

static int open_socket(const char *path, const char *owner)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "kvmboxd: --socket %s: longer than %zu bytes: pick a shorter path\n", path,
			sizeof(a.sun_path) - 1);
		return -1;
	}
	strcpy(a.sun_path, path);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	if (mkdir_p(dirname(dir), 0755)) {
		fprintf(stderr, "kvmboxd: cannot create the folder of %s: %s\n", path, strerror(errno));
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* A live daemon answers on the socket; a stale file from a crash does not. */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		fprintf(stderr, "kvmboxd: another kvmboxd already serves %s: stop it first, or use --socket\n", path);
		close(fd);
		return -1;
	}
	unlink(path);
	mode_t old = umask(0177); /* the socket is born 0600: no window where others can connect */
	int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (rc || listen(fd, 128)) {
		fprintf(stderr, "kvmboxd: cannot listen on %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (owner) {
		char user[128], *group;
		snprintf(user, sizeof(user), "%s", owner);
		group = strchr(user, ':');
		if (group)
			*group++ = 0;
		struct passwd *pw = getpwnam(user);
		struct group *gr = group ? getgrnam(group) : NULL;
		if (!pw || (group && !gr)) {
			fprintf(stderr, "kvmboxd: --socket-owner %s: no such %s\n", owner, !pw ? "user" : "group");
			close(fd);
			unlink(path);
			return -1;
		}
		if (chown(path, pw->pw_uid, gr ? gr->gr_gid : pw->pw_gid)) {
			fprintf(stderr, "kvmboxd: chown %s to %s: %s\n", path, owner, strerror(errno));
			close(fd);
			unlink(path);
			return -1;
		}
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *socket_path = "/run/kvmbox/kvmbox.sock", *owner = NULL;
	struct daemon_config cfg = {
		.state_dir = "/var/lib/kvmbox", .run_dir = "/run/kvmbox", .images_dir = "/var/lib/kvmbox/images",
		.max_lifetime_min = 1440, .max_sandboxes = 64, .agent_timeout_ms = 30000,
	};
	enum { O_SOCKET = 256, O_OWNER, O_STATE, O_RUN, O_IMAGES, O_VMM, O_NET, O_LIFE, O_MAX, O_VERSION };
	static const struct option opts[] = {
		{"socket", required_argument, NULL, O_SOCKET}, {"socket-owner", required_argument, NULL, O_OWNER},
		{"state-dir", required_argument, NULL, O_STATE}, {"run-dir", required_argument, NULL, O_RUN},
		{"images", required_argument, NULL, O_IMAGES}, {"vmm", required_argument, NULL, O_VMM},
		{"net-tool", required_argument, NULL, O_NET}, {"max-lifetime-minutes", required_argument, NULL, O_LIFE},
		{"max-sandboxes", required_argument, NULL, O_MAX}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION}, {0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end;
		long v;
		switch (o) {
		case O_SOCKET: socket_path = optarg; break;
		case O_OWNER: owner = optarg; break;
		case O_STATE: cfg.state_dir = optarg; break;
		case O_RUN: cfg.run_dir = optarg; break;
		case O_IMAGES: cfg.images_dir = optarg; break;
		case O_VMM: cfg.vmm_path = optarg; break;
		case O_NET: cfg.net_tool = optarg; break;
		case O_LIFE:
		case O_MAX:
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 1000000) {
				fprintf(stderr, "kvmboxd: --%s %s: expected a number from 1 to 1000000\n",
					o == O_LIFE ? "max-lifetime-minutes" : "max-sandboxes", optarg);
				return 2;
			}
			*(o == O_LIFE ? &cfg.max_lifetime_min : &cfg.max_sandboxes) = (int)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case O_VERSION:
			printf("kvmboxd %s, API v1\n", KVMBOXD_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmboxd: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	char *found_vmm = NULL, *found_net = NULL;
	if (!cfg.vmm_path) {
		found_vmm = beside_self("kvmbox-vmm");
		cfg.vmm_path = found_vmm ? found_vmm : "/usr/local/bin/kvmbox-vmm";
	}
	if (!cfg.net_tool) {
		found_net = beside_self("kvmbox-net");
		if (!found_net)
			found_net = beside_self("../tools/net/kvmbox-net");
		cfg.net_tool = found_net ? found_net : "/usr/local/sbin/kvmbox-net";
	}
	if (access(cfg.vmm_path, X_OK)) {
		fprintf(stderr, "kvmboxd: the monitor %s: %s: build it (make) or pass --vmm\n", cfg.vmm_path,
			strerror(errno));
		return 1;
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	cfg.host_cpus = cpus > 0 ? (int)cpus : 1;
	cfg.host_mem_mb = (int64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) / (1 << 20);
	if (mkdir_p(cfg.state_dir, 0700) || mkdir_p(cfg.run_dir, 0755)) {
		fprintf(stderr, "kvmboxd: cannot create %s or %s: %s\n", cfg.state_dir, cfg.run_dir, strerror(errno));
		return 1;
	}

	/* Signals: SIGTERM/SIGINT end the daemon (sandboxes keep running); threads inherit the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct api_error e;
	struct registry *reg = registry_open(&cfg, &e);
	if (!reg) {
		fprintf(stderr, "kvmboxd: %s\n", e.message);
		return 1;
	}
	int fd = open_socket(socket_path, owner);
	if (fd < 0) {
		registry_close(reg);
		return 1;
	}
	struct daemon d = {.reg = reg, .cfg = &cfg};
	char err[256];
	struct MHD_Daemon *mhd = http_start(&d, fd, err, sizeof(err));
	if (!mhd) {
		fprintf(stderr, "kvmboxd: %s\n", err);
		registry_close(reg);
		unlink(socket_path);
		return 1;
	}
	fprintf(stderr, "kvmboxd: serving %s (state %s, images %s)\n", socket_path, cfg.state_dir, cfg.images_dir);
	int sig = 0;
	sigwait(&set, &sig);
	fprintf(stderr, "kvmboxd: signal %d: stopping (sandboxes keep running)\n", sig);
	MHD_stop_daemon(mhd);
	close(fd);
	unlink(socket_path);
	registry_close(reg);
	free(found_vmm);
	free(found_net);
	return 0;
}
