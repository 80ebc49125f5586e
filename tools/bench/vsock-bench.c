/*
 * vsock-bench: both ends of the vsock benchmark (tools/bench/vsock). One static program, so that the guest
 * end (AF_VSOCK inside the Linux guest) and the raw host path (AF_UNIX on the host) run the same code and
 * only the transport differs.
 *
 *   vsock-bench serve vsock|unix:PREFIX
 *	Listens on four ports (vsock: ports 5000-5003 of any CID; unix: sockets PREFIX_5000..PREFIX_5003),
 *	a process per connection, and prints "LISTENING" once all accept:
 *	  5000 echo    every byte back until end-of-file
 *	  5001 sink    read until end-of-file, then answer the byte count (8 bytes, little-endian) and close
 *	  5002 source  read a byte count (8 bytes, little-endian), send that many bytes, close
 *	  5003 stat    send /proc/stat (the machine's CPU time) and close
 *   vsock-bench client hybrid:UDS|unix:PREFIX in BYTES | out BYTES | ping COUNT SIZE | stat
 *	hybrid:UDS connects through a monitor's --vsock socket ("CONNECT <port>\n", "OK <hostport>\n");
 *	unix:PREFIX connects to PREFIX_<port>. Sets the connection up (ping: and 50 warm-up round trips),
 *	prints "READY", waits for a line on stdin, runs, prints one JSON line and exits:
 *	  in BYTES        BYTES to the sink, then its count back:       {"bytes": N, "seconds": S}
 *	  out BYTES       BYTES from the source until end-of-file:      {"bytes": N, "seconds": S}
 *	  ping COUNT SIZE COUNT round trips of SIZE bytes to the echo:  {"samples_ns": [...]}
 *	  stat            (no READY, no waiting) prints the server's /proc/stat
 * Every read and write moves at most CHUNK bytes, on either path.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define CHUNK 65536
#define PORT_ECHO 5000
#define PORT_SINK 5001
#define PORT_SOURCE 5002
#define PORT_STAT 5003
#define NR_PORTS 4

static uint8_t buf[CHUNK];

static void die(const char *what)
{
	fprintf(stderr, "vsock-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads exactly n bytes; -1 on error or end-of-file first. */
static int read_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = read(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---- server ---- */

static int listen_on(const char *prefix, unsigned port)
{
	int fd;
	if (!prefix) {
		fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY };
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("vsock bind");
	} else {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", prefix, port) >= sizeof(a.sun_path)) {
			errno = ENAMETOOLONG;
			die("unix path");
		}
		unlink(a.sun_path);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("unix bind");
	}
	if (listen(fd, 64) < 0)
		die("listen");
	return fd;
}

static void serve_echo(int fd)
{
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || write_all(fd, buf, (size_t)r) < 0)
			break;
	}
}

static void serve_sink(int fd)
{
	uint64_t got = 0;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (uint64_t)r;
	}
	write_all(fd, &got, sizeof(got));
}

static void serve_source(int fd)
{
	uint64_t want;
	if (read_all(fd, &want, sizeof(want)) < 0)
		return;
	for (uint64_t sent = 0; sent < want;) {
		size_t n = want - sent < CHUNK ? (size_t)(want - sent) : CHUNK;
		if (write_all(fd, buf, n) < 0)
			return;
		sent += n;
	}
}

static void serve_stat(int fd)
{
	char s[8192];
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return;
	size_t n = fread(s, 1, sizeof(s), f);
	fclose(f);
	write_all(fd, s, n);
}

static int cmd_serve(const char *where)
{
	const char *prefix = NULL;
	if (!strncmp(where, "unix:", 5))
		prefix = where + 5;
	else if (strcmp(where, "vsock"))
		return 2;
	unsigned ports[NR_PORTS] = { PORT_ECHO, PORT_SINK, PORT_SOURCE, PORT_STAT };
	struct pollfd p[NR_PORTS];
	for (unsigned i = 0; i < NR_PORTS; i++)
		p[i] = (struct pollfd){ .fd = listen_on(prefix, ports[i]), .events = POLLIN };
	signal(SIGCHLD, SIG_IGN); /* no zombies */
	printf("LISTENING\n");
	fflush(stdout);
	for (;;) {
		if (poll(p, NR_PORTS, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (unsigned i = 0; i < NR_PORTS; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			int fd = accept(p[i].fd, NULL, NULL);
			if (fd < 0)
				continue;
			pid_t pid = fork();
			if (pid == 0) {
				for (unsigned k = 0; k < NR_PORTS; k++)
					close(p[k].fd);
				if (ports[i] == PORT_ECHO)
					serve_echo(fd);
				else if (ports[i] == PORT_SINK)
					serve_sink(fd);
				else if (ports[i] == PORT_SOURCE)
					serve_source(fd);
				else
					serve_stat(fd);
				close(fd);
				_exit(0);
			}
			close(fd);
		}
	}
}

/* ---- client ---- */

static int connect_to(const char *target, unsigned port)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int hybrid = !strncmp(target, "hybrid:", 7);
	if (!hybrid && strncmp(target, "unix:", 5)) {
		fprintf(stderr, "vsock-bench: target %s: want hybrid:UDS or unix:PREFIX\n", target);
		exit(2);
	}
	if (hybrid)
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", target + 7);
	else
		snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", target + 5, port);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die(a.sun_path);
	if (hybrid) {
		char line[64];
		int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
		if (write_all(fd, line, (size_t)n) < 0)
			die("CONNECT");
		size_t len = 0;
		while (len < sizeof(line) - 1) { /* byte by byte: the stream starts right after the line */
			if (read_all(fd, line + len, 1) < 0) {
				fprintf(stderr, "vsock-bench: CONNECT %u: no OK line\n", port);
				exit(1);
			}
			if (line[len++] == '\n')
				break;
		}
		line[len] = '\0';
		if (strncmp(line, "OK ", 3)) {
			fprintf(stderr, "vsock-bench: CONNECT %u: got %s\n", port, line);
			exit(1);
		}
	}
	return fd;
}

static void ready(void)
{
	char line[16];
	printf("READY\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		exit(1);
}

static int cmd_client(int argc, char **argv)
{
	const char *target = argv[0], *mode = argv[1];
	if (!strcmp(mode, "stat") && argc == 2) {
		int fd = connect_to(target, PORT_STAT);
		for (;;) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return r < 0;
			fwrite(buf, 1, (size_t)r, stdout);
		}
	}
	if (!strcmp(mode, "in") && argc == 3) {
		uint64_t bytes = strtoull(argv[2], NULL, 0), got = 0;
		int fd = connect_to(target, PORT_SINK);
		ready();
		uint64_t t0 = now_ns();
		for (uint64_t sent = 0; sent < bytes;) {
			size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
			if (write_all(fd, buf, n) < 0)
				die("write");
			sent += n;
		}
		shutdown(fd, SHUT_WR);
		if (read_all(fd, &got, sizeof(got)) < 0)
			die("sink count");
		uint64_t t1 = now_ns();
		if (got != bytes) {
			fprintf(stderr, "vsock-bench: the sink got %llu of %llu bytes\n", (unsigned long long)got,
				(unsigned long long)bytes);
			return 1;
		}
		printf("{\"bytes\": %llu, \"seconds\": %.9f}\n", (unsigned long long)bytes, (t1 - t0) / 1e9);
		return 0;
	}
	if (!strcmp(mode, "out") && argc == 3) {
		uint64_t bytes = strtoull(argv[2], NULL, 0), got = 0;
		int fd = connect_to(target, PORT_SOURCE);
		ready();
		uint64_t t0 = now_ns();
		if (write_all(fd, &bytes, sizeof(bytes)) < 0)
			die("write");
		for (;;) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				die("read");
			if (r == 0)
				break;
			got += (uint64_t)r;
		}
		uint64_t t1 = now_ns();
		if (got != bytes) {
			fprintf(stderr, "vsock-bench: got %llu of %llu bytes from the source\n", (unsigned long long)got,
				(unsigned long long)bytes);
			return 1;
		}
		printf("{\"bytes\": %llu, \"seconds\": %.9f}\n", (unsigned long long)bytes, (t1 - t0) / 1e9);
		return 0;
	}
	if (!strcmp(mode, "ping") && argc == 4) {
		unsigned count = (unsigned)strtoul(argv[2], NULL, 0), size = (unsigned)strtoul(argv[3], NULL, 0);
		if (!count || !size || size > CHUNK)
			return 2;
		uint64_t *t = calloc(count, sizeof(*t));
		uint8_t in[CHUNK];
		int fd = connect_to(target, PORT_ECHO);
		for (unsigned i = 0; i < count + 50; i++) {
			if (i == 50)
				ready();
			uint64_t t0 = now_ns();
			if (write_all(fd, buf, size) < 0 || read_all(fd, in, size) < 0)
				die("echo");
			if (i >= 50)
				t[i - 50] = now_ns() - t0;
		}
		printf("{\"samples_ns\": [");
		for (unsigned i = 0; i < count; i++)
			printf("%s%llu", i ? ", " : "", (unsigned long long)t[i]);
		printf("]}\n");
		return 0;
	}
	return 2;
}

int main(int argc, char **argv)
{
	for (unsigned i = 0; i < CHUNK; i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 8));
	int rc = 2;
	if (argc == 3 && !strcmp(argv[1], "serve"))
		rc = cmd_serve(argv[2]);
	else if (argc >= 4 && !strcmp(argv[1], "client"))
		rc = cmd_client(argc - 2, argv + 2);
	if (rc == 2)
		fprintf(stderr, "usage: vsock-bench serve vsock|unix:PREFIX\n"
				"       vsock-bench client hybrid:UDS|unix:PREFIX in BYTES | out BYTES | ping COUNT SIZE | stat\n");
	return rc;
}
