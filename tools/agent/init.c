/* PID 1 duties of the agent (init.h). Everything here runs before the agent listens or after it stopped,
 * so it is plain blocking code. A failure is logged on the console as
 * "kvmbox-agent: <what failed>: <strerror>: <what to do>" and the boot goes on: a guest without /tmp
 * or a network is still worth reaching over vsock. Only a missing /proc stops it. */
#include "tools/agent/init.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/route.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Console messages: one write per line, so lines from concurrent writers never mix. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "kvmbox-agent: ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = strlen(line);
	line[len++] = '\n';
	ssize_t r = write(STDERR_FILENO, line, len);
	(void)r; /* nowhere else to report it */
}

/* ---- the kernel command line (pure) ---- */

bool agent_hostname_valid(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 64 || name[0] == '-' || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '.')
			return false;
	return true;
}

int agent_parse_ip(const char *value, struct agent_ip *ip, const char **why)
{
	char buf[64];
	if (strlen(value) >= sizeof(buf))
		return *why = "too long", -1;
	strcpy(buf, value);
	memset(ip, 0, sizeof(*ip));
	strcpy(ip->ifname, "eth0");
	char *at = strchr(buf, '@');
	if (at) {
		*at++ = '\0';
		size_t n = strlen(at);
		if (n == 0 || n >= IFNAMSIZ || strchr(at, '/') || strchr(at, ':'))
			return *why = "bad interface name after @", -1;
		memcpy(ip->ifname, at, n + 1);
	}
	char *slash = strchr(buf, '/');
	if (!slash)
		return *why = "no /PREFIX", -1;
	*slash++ = '\0';
	char *end;
	errno = 0;
	unsigned long prefix = strtoul(slash, &end, 10);
	if (!isdigit((unsigned char)*slash) || *end || errno || prefix > 32)
		return *why = "the prefix is not 0..32", -1;
	if (inet_pton(AF_INET, buf, &ip->addr) != 1)
		return *why = "not an IPv4 address", -1;
	ip->prefix = (unsigned)prefix;
	return 0;
}

/* The kernel's ip=: client:server:gw:netmask:hostname:device:autoconf:dns0:dns1:ntp, or a bare autoconf
 * method (dhcp, on, any, ...). Only "off" and "none" mean it configured nothing. */
static void parse_kernel_ip(const char *value, struct agent_cmdline *c)
{
	if (!strcmp(value, "off") || !strcmp(value, "none")) {
		c->kernel_ip = false;
		return;
	}
	c->kernel_ip = true;
	c->kernel_ip_dev[0] = '\0';
	c->kernel_ip_gw = false;
	const char *p = value;
	for (int field = 0; p; field++) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		if (field == 2 && n > 0)
			c->kernel_ip_gw = true;
		if (field == 5 && n > 0 && n < IFNAMSIZ) {
			memcpy(c->kernel_ip_dev, p, n);
			c->kernel_ip_dev[n] = '\0';
		}
		p = colon ? colon + 1 : NULL;
	}
}

static void warnf(void (*warn)(void *, const char *), void *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warnf(void (*warn)(void *, const char *), void *ctx, const char *fmt, ...)
{
	if (!warn)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	warn(ctx, msg);
}

static void parse_word(char *word, struct agent_cmdline *c, void (*warn)(void *, const char *), void *ctx)
{
	char *eq = strchr(word, '=');
	if (!eq)
		return;
	*eq = '\0';
	const char *name = word, *value = eq + 1;
	if (!strcmp(name, "ip")) {
		parse_kernel_ip(value, c);
	} else if (!strcmp(name, "kvmbox.hostname")) {
		if (agent_hostname_valid(value))
			snprintf(c->hostname, sizeof(c->hostname), "%s", value);
		else
			warnf(warn, ctx, "kvmbox.hostname=%.80s ignored: not a hostname: use 1 to 64 letters, digits, "
			      "'-' and '.'", value);
	} else if (!strcmp(name, "kvmbox.ip")) {
		const char *why;
		if (c->n_ips == AGENT_MAX_IPS)
			warnf(warn, ctx, "kvmbox.ip=%.80s ignored: more than %d kvmbox.ip words: give at most %d",
			      value, AGENT_MAX_IPS, AGENT_MAX_IPS);
		else if (agent_parse_ip(value, &c->ips[c->n_ips], &why) == 0)
			c->n_ips++;
		else
			warnf(warn, ctx, "kvmbox.ip=%.80s ignored: %s: use ADDR/PREFIX[@IFACE], e.g. "
			      "kvmbox.ip=10.0.2.15/24@eth0", value, why);
	} else if (!strcmp(name, "kvmbox.gw")) {
		if (inet_pton(AF_INET, value, &c->gw) == 1)
			c->has_gw = true;
		else
			warnf(warn, ctx, "kvmbox.gw=%.80s ignored: not an IPv4 address: use e.g. kvmbox.gw=10.0.2.1",
			      value);
	} else if (!strcmp(name, "kvmbox.dns")) {
		c->n_dns = 0;
		char list[256];
		snprintf(list, sizeof(list), "%s", value);
		char *save = NULL;
		for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
			unsigned char bin[sizeof(struct in6_addr)];
			if (inet_pton(AF_INET, a, bin) != 1 && inet_pton(AF_INET6, a, bin) != 1)
				warnf(warn, ctx, "kvmbox.dns: %.60s ignored: not an IP address: use "
				      "kvmbox.dns=ADDR[,ADDR]", a);
			else if (c->n_dns == AGENT_MAX_DNS)
				warnf(warn, ctx, "kvmbox.dns: %.60s ignored: at most %d name servers are used", a,
				      AGENT_MAX_DNS);
			else
				snprintf(c->dns[c->n_dns++], sizeof(c->dns[0]), "%s", a);
		}
	}
}

void agent_cmdline_parse(const char *cmdline, struct agent_cmdline *c, void (*warn)(void *, const char *),
			 void *ctx)
{
	memset(c, 0, sizeof(*c));
	const char *p = cmdline;
	for (;;) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		/* One word: spaces inside double quotes belong to it, the quotes themselves are dropped (the
		 * kernel's next_arg() does the same for name="a b"). */
		char word[1024];
		size_t n = 0;
		bool quoted = false, overlong = false;
		for (; *p && (quoted || !isspace((unsigned char)*p)); p++) {
			if (*p == '"')
				quoted = !quoted;
			else if (n + 1 < sizeof(word))
				word[n++] = *p;
			else
				overlong = true;
		}
		word[n] = '\0';
		if (!strcmp(word, "--"))
			break;
		if (!overlong)
			parse_word(word, c, warn, ctx);
	}
}

/* ---- PID 1 set-up ---- */

/* A mount point is a directory whose device differs from its parent's (no /proc needed to tell). */
static bool is_mounted(const char *path)
{
	char parent[256];
	struct stat st, pst;
	snprintf(parent, sizeof(parent), "%s/..", path);
	if (stat(path, &st) != 0 || stat(parent, &pst) != 0)
		return false;
	return st.st_dev != pst.st_dev || st.st_ino == pst.st_ino;
}

static int mount_fs(const char *type, const char *path, unsigned long flags, const char *opts, mode_t mode)
{
	if (is_mounted(path))
		return 0;
	if (mkdir(path, mode) != 0 && errno != EEXIST) {
		say("mkdir %s failed: %s: the image needs a %s folder", path, strerror(errno), path);
		return -1;
	}
	if (mount(type, path, type, flags, opts) != 0) {
		say("mount %s on %s failed: %s: check the guest kernel has %s support", type, path, strerror(errno),
		    type);
		return -1;
	}
	return 0;
}

/* fds 0-2 on /dev/console, where the kernel did not open it (no /dev/console in the initial root);
 * /dev/null otherwise, so that no later open lands on 0-2 by accident. */
static void setup_stdio(void)
{
	int console = -1;
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1)
			continue;
		if (console < 0)
			console = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (console < 0)
			console = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (console >= 0 && console != fd)
			dup2(console, fd);
	}
	if (console > 2)
		close(console);
}

static int read_small_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	int saved = errno;
	close(fd);
	if (n < 0)
		return errno = saved, -1;
	buf[n] = '\0';
	return 0;
}

static void setup_hostname(struct agent_boot *b)
{
	char name[128] = "";
	const char *from = "kvmbox.hostname=";
	if (b->cmdline.hostname[0]) {
		snprintf(name, sizeof(name), "%s", b->cmdline.hostname);
	} else if (read_small_file("/etc/hostname", name, sizeof(name)) == 0) {
		name[strcspn(name, " \t\r\n")] = '\0';
		from = "/etc/hostname";
		if (!agent_hostname_valid(name)) {
			say("/etc/hostname holds no valid hostname: using \"kvmbox\": write one name of letters, "
			    "digits, '-' and '.' there");
			name[0] = '\0';
		}
	}
	if (!name[0]) {
		strcpy(name, "kvmbox");
		from = "the default";
	}
	/* Valid names are at most 64 bytes: they fit. */
	memcpy(b->hostname, name, strnlen(name, sizeof(b->hostname) - 1));
	if (sethostname(b->hostname, strlen(b->hostname)) != 0)
		say("sethostname %s (from %s) failed: %s: the hostname stays the kernel's", b->hostname, from,
		    strerror(errno));
}

/* ---- networking, by ioctl ---- */

static void sockaddr_v4(struct sockaddr *sa, struct in_addr a)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = a };
	memcpy(sa, &sin, sizeof(sin));
}

static int if_up(int s, const char *ifname)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
		return -1;
	if (ifr.ifr_flags & IFF_UP)
		return 0;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr);
}

static bool kernel_configured(const struct agent_cmdline *c, const char *ifname)
{
	return c->kernel_ip && (!c->kernel_ip_dev[0] || !strcmp(c->kernel_ip_dev, ifname));
}

static void setup_ip(int s, const struct agent_ip *ip)
{
	char addr[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &ip->addr, addr, sizeof(addr));
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ip->ifname);
	sockaddr_v4(&ifr.ifr_addr, ip->addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) != 0) {
		say("setting %s/%u on %s failed: %s: %s", addr, ip->prefix, ip->ifname, strerror(errno),
		    errno == ENODEV ? "give the VM a network device (kvmbox-vmm --net) or name another with @IFACE"
				    : "check kvmbox.ip=");
		return;
	}
	struct in_addr mask = { .s_addr = ip->prefix ? htonl(~0u << (32 - ip->prefix)) : 0 };
	/* After the address: SIOCSIFADDR gives it its class's mask, which this replaces. */
	sockaddr_v4(&ifr.ifr_netmask, mask);
	if (ioctl(s, SIOCSIFNETMASK, &ifr) != 0)
		say("setting the netmask /%u on %s failed: %s: check kvmbox.ip=", ip->prefix, ip->ifname,
		    strerror(errno));
	if (if_up(s, ip->ifname) != 0)
		say("bringing %s up failed: %s: check the network device", ip->ifname, strerror(errno));
}

static void setup_gateway(int s, struct in_addr gw)
{
	char addr[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &gw, addr, sizeof(addr));
	struct rtentry rt = { 0 };
	sockaddr_v4(&rt.rt_dst, (struct in_addr){ 0 });
	sockaddr_v4(&rt.rt_genmask, (struct in_addr){ 0 });
	sockaddr_v4(&rt.rt_gateway, gw);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	if (ioctl(s, SIOCADDRT, &rt) != 0 && errno != EEXIST)
		say("adding the default route via %s failed: %s: %s", addr, strerror(errno),
		    errno == ENETUNREACH ? "the gateway must be inside a kvmbox.ip= subnet" : "check kvmbox.gw=");
}

/* /etc/resolv.conf, replaced whole (a half-written one would be worse than none). */
static void setup_dns(const struct agent_cmdline *c)
{
	char text[256] = "# written by kvmbox-agent from kvmbox.dns= on the kernel command line\n";
	for (unsigned i = 0; i < c->n_dns; i++) {
		size_t len = strlen(text);
		snprintf(text + len, sizeof(text) - len, "nameserver %s\n", c->dns[i]);
	}
	const char *tmp = "/etc/.resolv.conf.kvmbox";
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		say("writing /etc/resolv.conf failed: %s: %s", strerror(errno),
		    errno == EROFS ? "boot the root disk with rw" : "check /etc is writable");
		return;
	}
	size_t len = strlen(text);
	bool ok = write(fd, text, len) == (ssize_t)len;
	int saved = errno;
	if (close(fd) != 0 && ok)
		ok = false, saved = errno;
	if (!ok || rename(tmp, "/etc/resolv.conf") != 0) {
		say("writing /etc/resolv.conf failed: %s: check /etc has room", strerror(ok ? errno : saved));
		unlink(tmp);
	}
}

static void setup_network(const struct agent_cmdline *c)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		say("opening an IPv4 socket failed: %s: the network stays unconfigured (guest kernel without "
		    "CONFIG_INET?)", strerror(errno));
		return;
	}
	if (if_up(s, "lo") != 0)
		say("bringing lo up failed: %s: localhost will not work", strerror(errno));
	for (unsigned i = 0; i < c->n_ips; i++) {
		if (kernel_configured(c, c->ips[i].ifname))
			say("kvmbox.ip= for %s ignored: the kernel's ip= configured it: give one of the two",
			    c->ips[i].ifname);
		else
			setup_ip(s, &c->ips[i]);
	}
	if (c->has_gw) {
		if (c->kernel_ip && c->kernel_ip_gw)
			say("kvmbox.gw= ignored: the kernel's ip= set a gateway: give one of the two");
		else
			setup_gateway(s, c->gw);
	}
	close(s);
	if (c->n_dns)
		setup_dns(c);
}

static void warn_console(void *ctx, const char *msg)
{
	(void)ctx;
	say("%s", msg);
}

int agent_boot_init(struct agent_boot *b)
{
	memset(b, 0, sizeof(*b));
	b->pid1 = getpid() == 1;
	if (!b->pid1) {
		/* On the host: report, change nothing. */
		if (gethostname(b->hostname, sizeof(b->hostname) - 1) != 0)
			strcpy(b->hostname, "localhost");
		return 0;
	}
	umask(022);
	setup_stdio();
	/* Everything else needs /proc (the command line, the commands' /proc/self): the one fatal step. */
	if (mount_fs("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555) != 0) {
		say("cannot go on without /proc: rebuild the guest kernel with CONFIG_PROC_FS");
		return -1;
	}
	mount_fs("sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555);
	/* The kernel mounts devtmpfs on /dev itself when it mounted a root device (CONFIG_DEVTMPFS_MOUNT),
	 * not for an initramfs. */
	mount_fs("devtmpfs", "/dev", MS_NOSUID, "mode=0755", 0755);
	setup_stdio(); /* /dev/console may only exist now */
	mount_fs("devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666", 0755);
	mount_fs("tmpfs", "/dev/shm", MS_NOSUID | MS_NODEV, "mode=1777", 01777);
	/* The usual /dev links that devtmpfs does not make (bash's <(...), programs opening /dev/stdin). */
	static const char *const links[][2] = { { "/proc/self/fd", "/dev/fd" }, { "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" } };
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		if (symlink(links[i][0], links[i][1]) != 0 && errno != EEXIST)
			say("symlink %s -> %s failed: %s: programs using it will fail", links[i][1], links[i][0],
			    strerror(errno));
	mount_fs("tmpfs", "/tmp", MS_NOSUID | MS_NODEV, "mode=1777", 01777);
	mount_fs("tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=0755", 0755);

	setenv("PATH", AGENT_PATH, 1);
	setenv("HOME", "/root", 1);
	setenv("TERM", "linux", 0);

	struct statfs sfs;
	b->root_is_disk = statfs("/", &sfs) == 0 && sfs.f_type != TMPFS_MAGIC && sfs.f_type != RAMFS_MAGIC;

	char cmdline[4096];
	if (read_small_file("/proc/cmdline", cmdline, sizeof(cmdline)) != 0) {
		say("reading /proc/cmdline failed: %s: booting without kvmbox.* settings", strerror(errno));
		cmdline[0] = '\0';
	}
	agent_cmdline_parse(cmdline, &b->cmdline, warn_console, NULL);
	setup_hostname(b);
	setup_network(&b->cmdline);
	return 0;
}

void agent_boot_ready(const struct agent_boot *b, unsigned port)
{
	/* The boot-time marker: the monitor logs how long after its start the guest got here. Never on the
	 * host: 0xd0000000 is kvmbox's MMIO slot, not anybody else's. */
	if (b->pid1) {
		int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
		void *page = fd < 0 ? MAP_FAILED
				    : mmap(NULL, 4096, PROT_WRITE, MAP_SHARED, fd, (off_t)AGENT_BOOT_MARKER);
		if (page == MAP_FAILED) {
			say("boot marker write failed: %s on /dev/mem: the monitor will not log the boot time "
			    "(guest kernel without CONFIG_DEVMEM?)", strerror(errno));
		} else {
			*(volatile uint8_t *)page = AGENT_BOOT_MAGIC;
			munmap(page, 4096);
		}
		if (fd >= 0)
			close(fd);
	}
	say("ready on vsock port %u", port);
}

void agent_boot_legacy_exec(char **argv)
{
	if (getpid() != 1 || (!getenv("kvmbox_cmd") && !getenv("kvmbox_shell")))
		return;
	static char *const fallback[] = { AGENT_LEGACY_INIT, NULL };
	execv(AGENT_LEGACY_INIT, argv && argv[0] ? argv : fallback);
	say("exec %s for kvmbox_cmd/kvmbox_shell failed: %s: rebuild the image (make images); starting the "
	    "agent instead", AGENT_LEGACY_INIT, strerror(errno));
}

/* ---- power-off ---- */

/* Reap every child that has exited; true when none is left. */
static bool reap_all(void)
{
	for (;;) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);
		if (pid > 0)
			continue;
		return pid < 0 && errno == ECHILD;
	}
}

/* Wait up to ms for every process to be gone (all of them are PID 1's descendants, so reparented to it). */
static bool wait_all(int ms)
{
	const struct timespec step = { 0, 10 * 1000 * 1000 };
	for (int waited = 0;; waited += 10) {
		if (reap_all())
			return true;
		if (waited >= ms)
			return false;
		nanosleep(&step, NULL);
	}
}

/* Unmount everything but / in reverse mount order, so nested mounts go first. */
static void unmount_all(void)
{
	FILE *f = fopen("/proc/self/mounts", "re");
	if (!f)
		return;
	char *points[64];
	size_t n = 0;
	char src[256], dir[256], type[64];
	while (n < 64 && fscanf(f, "%255s %255s %63s %*[^\n]", src, dir, type) == 3) {
		/* /proc goes last (we read this from it) and / is remounted, not unmounted. */
		if (strcmp(dir, "/") && strcmp(dir, "/proc"))
			points[n++] = strdup(dir);
	}
	fclose(f);
	while (n-- > 0) {
		if (points[n] && umount2(points[n], 0) != 0 && errno != EINVAL)
			umount2(points[n], MNT_DETACH); /* busy: at least detach it, the data is synced */
		free(points[n]);
	}
	umount2("/proc", MNT_DETACH);
}

void agent_poweroff(const struct agent_boot *b)
{
	if (!b->pid1)
		return;
	say("powering off");
	kill(-1, SIGTERM); /* every process but PID 1 itself */
	if (!wait_all(2000)) {
		kill(-1, SIGKILL);
		wait_all(1000); /* a process stuck in the kernel may stay: the reboot ends it anyway */
	}
	sync();
	unmount_all();
	if (b->root_is_disk && mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) != 0)
		say("remounting / read-only failed: %s: the disk may need a fsck after this boot", strerror(errno));
	sync();
	reboot(RB_AUTOBOOT);
	say("reboot failed: %s: stop the VM from the host", strerror(errno));
}
