/* The agent's PID 1 duties in a guest (docs/agent-protocol.md): mounts, stdio, hostname and networking from
 * the kernel command line before it listens, the boot-time marker once it does, the legacy shell init for
 * kvmbox_cmd/kvmbox_shell boots, and the clean power-off. On the host (not PID 1) every function here
 * leaves the machine alone. The command-line parsing is pure and unit-tested (tests/unit/test_agent_init.c). */
#ifndef KVMBOX_AGENT_INIT_H
#define KVMBOX_AGENT_INIT_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#define AGENT_LEGACY_INIT   "/etc/kvmbox/init.sh" /* the old shell init, installed by the images */
#define AGENT_BOOT_MARKER   0xd0000000ul          /* devices/boot_marker.c: arch_boot_marker_addr() */
#define AGENT_BOOT_MAGIC    123
#define AGENT_PATH          "/sbin:/usr/sbin:/bin:/usr/bin"
#define AGENT_MAX_IPS       4                     /* kvmbox.ip= words honoured */
#define AGENT_MAX_DNS       3                     /* nameservers glibc and busybox read */

/* One kvmbox.ip=ADDR/PREFIX[@IFACE]. */
struct agent_ip {
	struct in_addr addr;
	unsigned prefix;            /* 0..32 */
	char ifname[IFNAMSIZ];      /* "eth0" unless given */
};

/* What the kvmbox.* words (and the kernel's own ip=) of /proc/cmdline ask for. */
struct agent_cmdline {
	char hostname[65];          /* kvmbox.hostname=, "" when absent */
	struct agent_ip ips[AGENT_MAX_IPS];
	unsigned n_ips;
	bool has_gw;
	struct in_addr gw;          /* kvmbox.gw= */
	char dns[AGENT_MAX_DNS][46]; /* kvmbox.dns=, IPv4 or IPv6 text, checked */
	unsigned n_dns;
	bool kernel_ip;             /* the kernel's ip= is there and not off/none: it configured the network */
	char kernel_ip_dev[IFNAMSIZ]; /* its device field; "" means every interface (ip=dhcp, or no device) */
	bool kernel_ip_gw;          /* its gateway field is set */
};

struct agent_boot {
	bool pid1;                  /* getpid() == 1 */
	char hostname[65];
	struct agent_cmdline cmdline;
	bool root_is_disk;          /* / is a block-device file system (root=/dev/vda), not the initramfs */
};

/* Parse a kernel command line (the text of /proc/cmdline) into c: kvmbox.hostname=, kvmbox.ip=, kvmbox.gw=,
 * kvmbox.dns= and the kernel's ip=. Words may be quoted the kernel's way (name="a b"); parsing stops at
 * "--" (what follows is init's argv). A bad value is skipped and reported through warn (called once per
 * bad word with a whole message; may be NULL); the rest still counts. */
void agent_cmdline_parse(const char *cmdline, struct agent_cmdline *c,
			 void (*warn)(void *ctx, const char *msg), void *ctx);
/* ADDR/PREFIX[@IFACE] → ip; returns 0, or -1 with why set to a constant string. */
int agent_parse_ip(const char *value, struct agent_ip *ip, const char **why);
/* A hostname the kernel and resolvers accept: 1..64 bytes of [A-Za-z0-9.-], not starting with - or . */
bool agent_hostname_valid(const char *name);

/* PID 1 set-up, before the agent listens: stdio on /dev/console; proc on /proc, sysfs on /sys, devtmpfs on
 * /dev, devpts on /dev/pts, tmpfs on /dev/shm (1777), /tmp (1777) and /run (0755), each only when not
 * mounted yet; umask 022; PATH, HOME, TERM; the hostname (kvmbox.hostname=, else /etc/hostname, else
 * "kvmbox"); lo up, and kvmbox.ip=, kvmbox.gw=, kvmbox.dns= applied by ioctl (no external programs),
 * except on the interfaces the kernel's own ip= configured. Failures are logged on the console and the
 * boot goes on; returns -1 only when /proc cannot be mounted. Not PID 1: fills b (pid1 false, the current
 * hostname) and changes nothing. */
int agent_boot_init(struct agent_boot *b);
/* Once the agent listens: writes the boot-time marker (PID 1 only) and prints
 * "kvmbox-agent: ready on vsock port PORT" on the console (stderr). */
void agent_boot_ready(const struct agent_boot *b, unsigned port);
/* First thing in main: as PID 1 with kvmbox_cmd or kvmbox_shell in the environment (kernel command-line
 * words the kernel passes on to init), exec the legacy shell init with argv. Returns only when it did not
 * exec (not such a boot, or the exec failed, which is logged). */
void agent_boot_legacy_exec(char **argv);
/* Clean end as PID 1: SIGTERM to every other process, up to 2 s for them to exit (reaping), SIGKILL to the
 * rest, sync, unmount (/ remounted read-only when it is a disk), reboot(RB_AUTOBOOT), which ends the VM
 * with exit code 0 (the monitor passes reboot=k). Not PID 1: returns at once. As PID 1 it returns only
 * when the reboot call failed (logged). */
void agent_poweroff(const struct agent_boot *b);

#endif
