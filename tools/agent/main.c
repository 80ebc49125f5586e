/* kvmbox-agent: the guest's PID 1 and the server of the agent protocol (docs/agent-protocol.md).
 *
 *   kvmbox-agent                      as the guest's init: PID 1 duties, then serve vsock port 1024
 *   kvmbox-agent --listen unix:PATH   on the host, for tests: serve a Unix socket, no PID 1 duties
 *   kvmbox-agent --listen vsock:PORT  another vsock port
 */
#include "tools/agent/agent.h"
#include "tools/agent/init.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmbox-agent [--listen vsock:PORT|unix:PATH]\n"
		"\n"
		"The kvmbox guest agent. As the guest's PID 1 (/init, /sbin/init in the kvmbox images) it mounts\n"
		"/proc, /sys, /dev, /tmp and /run, sets the hostname and network from the kernel command line\n"
		"(kvmbox.hostname=, kvmbox.ip=ADDR/PREFIX[@IFACE], kvmbox.gw=, kvmbox.dns=), reaps orphans, and serves\n"
		"the agent protocol (commands and files, docs/agent-protocol.md) on vsock port %u. A shutdown request\n"
		"or SIGTERM/SIGINT/SIGPWR ends the guest cleanly.\n"
		"\n"
		"  --listen vsock:PORT  listen on this vsock port (default vsock:%u)\n"
		"  --listen unix:PATH   listen on a Unix socket instead: runs the agent on the host, without the PID 1\n"
		"                       duties (tests, development)\n"
		"  --help               this text\n"
		"  --version            the agent's and the protocol's versions\n",
		AGENT_VSOCK_PORT, AGENT_VSOCK_PORT);
}

/* PID 1 must never exit (the kernel panics): on a fatal error, power off instead. */
static int fatal(const struct agent_boot *b, const char *what, const struct agent_error *e)
{
	agent_log("%s: %s", what, e ? e->message : strerror(errno));
	if (b->pid1) {
		agent_log("cannot serve the agent protocol: powering off");
		agent_poweroff(b);
		for (;;)
			pause();
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (getpid() == 1)
		agent_boot_legacy_exec(argv);
	const char *listen_at = NULL;
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	int o;
	/* As PID 1, argv comes from the kernel (init= words): ignore what is not ours. */
	opterr = getpid() != 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			listen_at = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("kvmbox-agent %s, protocol version %d\n", AGENT_VERSION, AGENT_PROTO_VERSION);
			return 0;
		default:
			if (getpid() != 1) {
				usage(stderr);
				return 2;
			}
		}
	}
	unsigned port = AGENT_VSOCK_PORT;
	const char *unix_path = NULL;
	if (listen_at) {
		char *end;
		if (strncmp(listen_at, "unix:", 5) == 0 && listen_at[5]) {
			unix_path = listen_at + 5;
		} else if (strncmp(listen_at, "vsock:", 6) == 0 &&
			   (errno = 0, port = strtoul(listen_at + 6, &end, 10), !errno && !*end && end != listen_at + 6)) {
		} else {
			fprintf(stderr, "kvmbox-agent: --listen %s: expected vsock:PORT or unix:PATH\n", listen_at);
			return 2;
		}
	}

	/* Keep freed frame buffers (up to 1.3 MiB each) in the heap: fresh mmaps fault on every page, which is
	 * expensive in a VM. */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 16 << 20);
	struct agent_boot boot;
	if (agent_boot_init(&boot) && boot.pid1)
		return fatal(&boot, "PID 1 set-up", NULL);
	struct agent_error e;
	struct agent_options ao = {.system = boot.pid1};
	struct agent *ag = agent_create(&ao, &e);
	if (!ag)
		return fatal(&boot, "start", &e);
	if (unix_path ? agent_listen_unix(ag, unix_path, &e) : agent_listen_vsock(ag, port, &e)) {
		if (unix_path)
			fprintf(stderr, "kvmbox-agent: listen on %s: %s: pick a writable path\n", unix_path, e.message);
		else
			agent_log("listen on vsock port %u: %s: does the VM have a vsock device (kvmbox-vmm --vsock)?",
				  port, e.message);
		return fatal(&boot, "listen", &e);
	}
	if (boot.pid1)
		agent_boot_ready(&boot, port);
	else
		fprintf(stderr, "kvmbox-agent: listening on %s\n", unix_path ? unix_path : "vsock");
	while (!agent_stopping(ag))
		if (agent_run_once(ag, -1) < 0) {
			agent_log("event loop: %s", strerror(errno));
			break;
		}
	agent_flush(ag, 1000);
	if (boot.pid1) {
		agent_poweroff(&boot);
		for (;;)
			pause();
	}
	agent_destroy(ag);
	if (unix_path)
		unlink(unix_path);
	return 0;
}
