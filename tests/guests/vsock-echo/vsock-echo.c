/*
 * vsock-echo: a test program for inside the Linux guest (static: gcc -static -O2), the guest end of
 * the virtio-vsock tests (tests/integration/test_vsock.py).
 *
 *   vsock-echo listen PORT         accept connections on PORT (any number at once, a process each)
 *                                  and echo every byte back until the peer shuts down its side
 *   vsock-echo connect PORT BYTES  connect to the host (CID 2) port PORT, send BYTES of the test
 *                                  pattern while reading back what the host echoes, verify it and
 *                                  print "OK <bytes> <ms> ms" or "FAIL <why>"
 *   vsock-echo send PORT BYTES     connect to the host port PORT, send BYTES of the pattern, shut down
 *                                  the write side, wait for the host to close; print "SENT <bytes> <ms> ms"
 *   vsock-echo sink PORT           accept one connection on PORT, read until end-of-file, check the
 *                                  pattern; print "SINK <bytes> ok|bad <ms> ms"
 *   vsock-echo stall PORT SECONDS  the same, but first leave the connection unread for SECONDS
 *                                  (prints "STALLING" when it has accepted)
 *   vsock-echo cid                 print the guest's CID: "CID <n>"
 *
 * The pattern: byte i of a stream is P[i % 65521], P[k] = (k*k*7 + k*13 + (k >> 5)) & 0xff.
 * `listen` prints "LISTENING <port>" once it accepts connections.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>

#define PERIOD 65521u
#define CHUNK 65536

static uint8_t pattern[PERIOD];

static void make_pattern(void)
{
	for (uint64_t k = 0; k < PERIOD; k++)
		pattern[k] = (uint8_t)((k * k * 7 + k * 13 + (k >> 5)) & 0xff);
}

/* Fills buf with the pattern bytes [off, off + n). */
static void fill(uint8_t *buf, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint64_t k = (off + i) % PERIOD;
		size_t take = PERIOD - k < n - i ? PERIOD - k : n - i;
		memcpy(buf + i, pattern + k, take);
		i += take;
	}
}

/* Whether buf holds the pattern bytes [off, off + n); *bad gets the offset of the first wrong byte. */
static int check(const uint8_t *buf, uint64_t off, size_t n, uint64_t *bad)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] != pattern[(off + i) % PERIOD]) {
			*bad = off + i;
			return 0;
		}
	}
	return 1;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int parse_u(const char *s, unsigned long long *v)
{
	char *end;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno || *end || !*s ? -1 : 0;
}

static int vsock_listen(unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0) {
		printf("FAIL socket: %s\n", strerror(errno));
		return -1;
	}
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY };
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0) {
		printf("FAIL bind/listen on port %u: %s\n", port, strerror(errno));
		return -1;
	}
	return fd;
}

static int vsock_connect(unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0) {
		printf("FAIL socket: %s\n", strerror(errno));
		return -1;
	}
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_HOST };
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		printf("FAIL connect to host port %u: %s\n", port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void echo(int fd)
{
	static uint8_t buf[CHUNK];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (write_all(fd, buf, (size_t)r) < 0)
			break;
	}
	shutdown(fd, SHUT_WR);
	close(fd);
}

static int cmd_listen(unsigned port)
{
	int lfd = vsock_listen(port);
	if (lfd < 0)
		return 1;
	signal(SIGCHLD, SIG_IGN); /* no zombies */
	printf("LISTENING %u\n", port);
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			printf("FAIL accept: %s\n", strerror(errno));
			return 1;
		}
		pid_t pid = fork();
		if (pid == 0) {
			close(lfd);
			echo(fd);
			_exit(0);
		}
		if (pid < 0) /* no process to spare: echo this one inline */
			echo(fd);
		else
			close(fd);
	}
}

static int cmd_connect(unsigned port, uint64_t bytes)
{
	static uint8_t out[CHUNK], in[CHUNK];
	double t0 = now_ms();
	int fd = vsock_connect(port);
	if (fd < 0)
		return 1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	uint64_t sent = 0, got = 0;
	size_t out_len = 0, out_off = 0;
	int shut = 0;
	while (got < bytes) {
		if (sent == bytes && !shut) {
			shutdown(fd, SHUT_WR);
			shut = 1;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN | (sent < bytes ? POLLOUT : 0) };
		if (poll(&p, 1, 20000) <= 0) {
			printf("FAIL stalled: sent %llu, received %llu of %llu\n", (unsigned long long)sent,
			       (unsigned long long)got, (unsigned long long)bytes);
			return 1;
		}
		if ((p.revents & POLLOUT) && sent < bytes) {
			if (out_off == out_len) {
				out_len = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
				fill(out, sent, out_len);
				out_off = 0;
			}
			ssize_t w = write(fd, out + out_off, out_len - out_off);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				printf("FAIL write: %s after %llu bytes\n", strerror(errno), (unsigned long long)sent);
				return 1;
			}
			if (w > 0) {
				out_off += (size_t)w;
				sent += (uint64_t)w;
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(fd, in, sizeof(in));
			if (r < 0 && errno != EAGAIN && errno != EINTR) {
				printf("FAIL read: %s after %llu bytes\n", strerror(errno), (unsigned long long)got);
				return 1;
			}
			if (r == 0) {
				printf("FAIL end-of-file after %llu of %llu bytes\n", (unsigned long long)got,
				       (unsigned long long)bytes);
				return 1;
			}
			if (r > 0) {
				uint64_t bad;
				if (got + (uint64_t)r > sent || !check(in, got, (size_t)r, &bad)) {
					printf("FAIL wrong data at byte %llu\n", (unsigned long long)(got + (uint64_t)r > sent ? sent : bad));
					return 1;
				}
				got += (uint64_t)r;
			}
		}
	}
	close(fd);
	printf("OK %llu %.1f ms\n", (unsigned long long)bytes, now_ms() - t0);
	return 0;
}

static int cmd_send(unsigned port, uint64_t bytes)
{
	static uint8_t out[CHUNK];
	double t0 = now_ms();
	int fd = vsock_connect(port);
	if (fd < 0)
		return 1;
	for (uint64_t sent = 0; sent < bytes;) {
		size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
		fill(out, sent, n);
		if (write_all(fd, out, n) < 0) {
			printf("FAIL write: %s after %llu bytes\n", strerror(errno), (unsigned long long)sent);
			return 1;
		}
		sent += n;
	}
	shutdown(fd, SHUT_WR);
	uint8_t b;
	while (read(fd, &b, 1) > 0) /* the host closes when it has everything */
		;
	close(fd);
	printf("SENT %llu %.1f ms\n", (unsigned long long)bytes, now_ms() - t0);
	return 0;
}

static int cmd_sink(unsigned port, unsigned stall_s)
{
	static uint8_t in[CHUNK];
	int lfd = vsock_listen(port);
	if (lfd < 0)
		return 1;
	printf("LISTENING %u\n", port);
	fflush(stdout);
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0) {
		printf("FAIL accept: %s\n", strerror(errno));
		return 1;
	}
	if (stall_s) {
		printf("STALLING\n");
		sleep(stall_s);
	}
	double t0 = now_ms();
	uint64_t got = 0, bad = 0;
	int ok = 1;
	for (;;) {
		ssize_t r = read(fd, in, sizeof(in));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (ok && !check(in, got, (size_t)r, &bad))
			ok = 0;
		got += (uint64_t)r;
	}
	close(fd);
	printf("SINK %llu %s %.1f ms\n", (unsigned long long)got, ok ? "ok" : "bad", now_ms() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long port, bytes = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	make_pattern();
	if (argc == 2 && !strcmp(argv[1], "cid")) {
		int fd = open("/dev/vsock", O_RDONLY);
		unsigned cid = 0;
		if (fd < 0 || ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0) {
			printf("FAIL /dev/vsock: %s\n", strerror(errno));
			return 1;
		}
		printf("CID %u\n", cid);
		return 0;
	}
	if (argc >= 3 && !parse_u(argv[2], &port) && port <= UINT32_MAX) {
		if (!strcmp(argv[1], "listen") && argc == 3)
			return cmd_listen((unsigned)port);
		if (!strcmp(argv[1], "sink") && argc == 3)
			return cmd_sink((unsigned)port, 0);
		if (argc == 4 && !parse_u(argv[3], &bytes)) {
			if (!strcmp(argv[1], "stall") && bytes > 0 && bytes < 3600)
				return cmd_sink((unsigned)port, (unsigned)bytes);
			if (!strcmp(argv[1], "connect"))
				return cmd_connect((unsigned)port, bytes);
			if (!strcmp(argv[1], "send"))
				return cmd_send((unsigned)port, bytes);
		}
	}
	fprintf(stderr, "usage: vsock-echo listen PORT | connect PORT BYTES | send PORT BYTES | sink PORT | stall PORT SECONDS | cid\n");
	return 2;
}
