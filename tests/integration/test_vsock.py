"""virtio-vsock with Linux (--vsock cid=N,uds=PATH, Firecracker's hybrid vsock): host programs connect
to PATH and write "CONNECT <port>"; guest connections to host port P reach PATH_P. Echo round trips, many
connections at once, 32 MiB checked byte for byte both ways, flow control that keeps the monitor's memory
bounded when either reader stops, bad CONNECT lines, and the socket path's life cycle.

The guest end is tests/guests/vsock-echo/vsock-echo.c, built static and appended to the image's
initramfs as a second cpio archive, under $KVMBOX_BUILD/vsock-test/ (rebuilt when its inputs change). Throughput and latency figures
go to stderr."""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from kvmboxtest import BUILD, EXIT_BAD_INPUT, EXIT_OK, IMAGES, ROOT, VMM, VmmProcess, VmmTestCase, need, run_vmm

KERNEL = os.path.join(IMAGES, "vmlinux")
BASE_INITRD = os.path.join(IMAGES, "initramfs.cpio.gz")
SRC = os.path.join(ROOT, "tests", "guests", "vsock-echo", "vsock-echo.c")
CACHE = os.path.join(BUILD, "vsock-test")
ECHO_BIN = os.path.join(CACHE, "vsock-echo")
INITRD = os.path.join(CACHE, "initramfs-vsock.cpio.gz")
MIB = 1 << 20

# The stream pattern vsock-echo sends and checks: byte i is P[i % 65521].
PERIOD = 65521
PATTERN = bytes(((k * k * 7 + k * 13 + (k >> 5)) & 0xff) for k in range(PERIOD))
BIG = PATTERN * (32 * MIB // PERIOD + 2)


def pattern(off, n):
    """Pattern bytes [off, off + n) for n <= 32 MiB."""
    start = off % PERIOD
    return memoryview(BIG)[start:start + n]


def figure(text):
    sys.stderr.write("\n  [vsock figure] %s\n" % text)
    sys.stderr.flush()


def newer(target, *sources):
    return os.path.exists(target) and all(os.path.getmtime(target) >= os.path.getmtime(s) for s in sources)


def build_initrd():
    """vsock-echo (static) and a copy of the initramfs with it in /bin, cached under BUILD/vsock-test."""
    need(KERNEL)
    need(BASE_INITRD)
    os.makedirs(CACHE, exist_ok=True)
    if not newer(ECHO_BIN, SRC):
        subprocess.run(["gcc", "-static", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o",
                        ECHO_BIN + ".tmp", SRC], check=True, timeout=120)
        os.replace(ECHO_BIN + ".tmp", ECHO_BIN)
    if newer(INITRD, ECHO_BIN, BASE_INITRD):
        return
    # The kernel unpacks concatenated archives in order: the image's, then one holding /bin/vsock-echo
    # (no unpacking, so no root needed for the image's device nodes).
    with tempfile.TemporaryDirectory(dir=CACHE) as root:
        os.mkdir(os.path.join(root, "bin"))
        shutil.copy(ECHO_BIN, os.path.join(root, "bin", "vsock-echo"))
        extra = subprocess.run("find bin | cpio -o -H newc -R 0:0 --quiet | gzip -1", shell=True, cwd=root,
                               check=True, capture_output=True, timeout=60).stdout
    with open(INITRD + ".tmp", "wb") as out, open(BASE_INITRD, "rb") as base:
        out.write(base.read())
        out.write(extra)
    os.replace(INITRD + ".tmp", INITRD)


class GuestVm(VmmProcess):
    """One monitor running Linux with the vsock device; the guest runs `cmd`. wait_for() waits for console
    text."""

    def __init__(self, tmp, cmd, timeout=20, cid=3):
        self.uds = os.path.join(tmp, "v.sock")
        args = [VMM, "--kernel", KERNEL, "--initrd", INITRD, "--memory", "256", "--timeout", str(timeout),
                "--vsock", "cid=%d,uds=%s" % (cid, self.uds), "--cmdline", 'quiet kvmbox_cmd="%s"' % cmd]
        super().__init__(args)

    def wait_for(self, text, timeout=15):
        return super().wait_for(re.escape(text), timeout=timeout)


def read_line(s, limit=64):
    line = b""
    while not line.endswith(b"\n") and len(line) < limit:
        c = s.recv(1)
        if not c:
            break
        line += c
    return line


def host_connect(uds, port, timeout=10):
    """CONNECT to a guest port through the monitor's socket; returns (socket, host port) or raises."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(uds)
    s.sendall(b"CONNECT %d\n" % port)
    line = read_line(s)
    if not line.startswith(b"OK ") or not line.endswith(b"\n"):
        s.close()
        raise ConnectionError("CONNECT %d: got %r" % (port, line))
    return s, int(line[3:])


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def closed_by_peer(s, timeout=5):
    """Whether the peer closes the socket (end-of-file or reset) within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def echo_stream(s, total, chunk=256 * 1024):
    """Sends `total` pattern bytes from a thread and checks what comes back; returns seconds taken."""
    err = []

    def sender():
        try:
            for off in range(0, total, chunk):
                s.sendall(pattern(off, min(chunk, total - off)))
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    start = time.monotonic()
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = 0
    while got < total:
        data = s.recv(1 << 20)
        if not data:
            break
        if data != pattern(got, len(data)):
            raise AssertionError("echoed bytes differ at %d..%d" % (got, got + len(data)))
        got += len(data)
    elapsed = time.monotonic() - start
    t.join(30)
    if err:
        raise err[0]
    if got != total:
        raise AssertionError("echo ended after %d of %d bytes" % (got, total))
    return elapsed


class HostListener:
    """A Unix socket at PATH_<port> for guest-initiated connections; `handler(conn)` runs per connection
    in its own thread."""

    def __init__(self, path, handler):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.handler = handler
        self.errors = []
        self.results = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            r = self.handler(c)
            if r is not None:
                self.results.append(r)
        except Exception as e:  # reported by the test
            self.errors.append(e)
        finally:
            c.close()

    def close(self):
        self.sock.close()


def host_echo(c):
    c.settimeout(20)
    while True:
        data = c.recv(1 << 20)
        if not data:
            return
        c.sendall(data)


class VirtioVsock(VmmTestCase):
    @classmethod
    def setUpClass(cls):
        build_initrd()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kvmbox-vsock-")
        self.vm = None

    def tearDown(self):
        if self.vm:
            self.vm.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def boot(self, cmd, timeout=20):
        self.vm = GuestVm(self.tmp, cmd, timeout=timeout)
        return self.vm

    def connect_retry(self, port, deadline=10):
        end = time.monotonic() + deadline
        while True:
            try:
                return host_connect(self.vm.uds, port)
            except (ConnectionError, FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def test_host_to_guest(self):
        """CONNECT to a guest echo server: OK <port>, a round trip, 8 connections at once, 32 MiB checked byte
        for byte, round-trip latency, and end-of-file from the host side closing the guest's end."""
        vm = self.boot("vsock-echo listen 5000")
        vm.wait_for("LISTENING 5000")
        s, hport = self.connect_retry(5000)
        self.assertGreaterEqual(hport, 1024)
        s.sendall(b"hello vsock")
        self.assertEqual(recv_exact(s, 11), b"hello vsock")
        # Latency: 64-byte round trips on one connection.
        times = []
        for i in range(300):
            t0 = time.perf_counter()
            s.sendall(b"x" * 64)
            self.assertEqual(len(recv_exact(s, 64)), 64)
            times.append(time.perf_counter() - t0)
        figure("echo round trip (64 bytes, host->guest->host): median %.0f us, p99 %.0f us" %
               (statistics.median(times) * 1e6, sorted(times)[int(len(times) * 0.99)] * 1e6))
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(closed_by_peer(s), "the guest did not close after our end-of-file")
        s.close()

        # 8 connections at once, 1 MiB each, each with its own host port.
        results, ports = {}, set()

        def one(i):
            try:
                c, p = host_connect(vm.uds, 5000)
                ports.add(p)
                c.settimeout(20)
                echo_stream(c, MIB + i * 4099)
                c.close()
                results[i] = "ok"
            except Exception as e:
                results[i] = repr(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, {i: "ok" for i in range(8)}, vm.report())
        self.assertEqual(len(ports), 8)

        s, _ = host_connect(vm.uds, 5000)
        s.settimeout(30)
        elapsed = echo_stream(s, 32 * MIB)
        s.close()
        figure("32 MiB echo through the guest (both directions at once, checked): %.0f MB/s each way" %
               (32 * MIB / elapsed / 1e6))
        self.assertIsNone(vm.p.poll(), vm.report())
        self.assertEqual(vm.stop(), 128 + signal.SIGTERM, vm.report())
        self.assertFalse(os.path.exists(vm.uds), "the socket file was not removed at exit")

    def test_host_to_guest_throughput(self):
        """32 MiB from the host into a guest sink that checks the pattern."""
        vm = self.boot("vsock-echo sink 5001")
        vm.wait_for("LISTENING 5001")
        s, _ = self.connect_retry(5001)
        s.settimeout(30)
        start = time.monotonic()
        for off in range(0, 32 * MIB, MIB):
            s.sendall(pattern(off, MIB))
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(closed_by_peer(s, 30))
        elapsed = time.monotonic() - start
        s.close()
        vm.wait_for("SINK ")
        self.assertIn("SINK %d ok" % (32 * MIB), vm.console(), vm.report())
        figure("host->guest 32 MiB (guest sink, checked): %.0f MB/s" % (32 * MIB / elapsed / 1e6))
        self.assertExit_(vm.finish(), EXIT_OK)

    def assertExit_(self, rc, code):
        self.assertEqual(rc, code, "exit code %d\n%s" % (rc, self.vm.report()))

    def test_guest_to_host(self):
        """The guest connects to host ports: an echo server on PATH_6000 (1 MiB and 32 MiB checked), a sink on
        PATH_6001 that checks 32 MiB, and a port nobody listens on (connection reset)."""
        echo = HostListener(os.path.join(self.tmp, "v.sock_6000"), host_echo)

        def sink(c):
            c.settimeout(30)
            got, start = 0, None
            while True:
                data = c.recv(1 << 20)
                if not data:
                    break
                if start is None:
                    start = time.monotonic()
                if data != pattern(got, len(data)):
                    raise AssertionError("guest data differs at %d" % got)
                got += len(data)
            return got, time.monotonic() - (start or time.monotonic())
        sinkl = HostListener(os.path.join(self.tmp, "v.sock_6001"), sink)
        try:
            vm = self.boot("vsock-echo connect 6000 1048576; vsock-echo connect 6000 33554432; "
                           "vsock-echo send 6001 33554432; vsock-echo connect 6002 10; echo DONE")
            vm.wait_for("DONE", 30)
            self.assertExit_(vm.finish(), EXIT_OK)
        finally:
            echo.close()
            sinkl.close()
        con = vm.console()
        self.assertIn("OK 1048576", con)
        self.assertIn("OK 33554432", con)
        self.assertIn("SENT 33554432", con)
        self.assertIn("FAIL connect to host port 6002: Connection reset by peer", con)
        self.assertEqual(echo.errors + sinkl.errors, [])
        self.assertEqual(len(sinkl.results), 1)
        got, secs = sinkl.results[0]
        self.assertEqual(got, 32 * MIB)
        figure("guest->host 32 MiB (host sink, checked): %.0f MB/s" % (got / secs / 1e6))
        ms = float(con.split("OK 33554432 ")[1].split()[0])
        figure("guest-initiated 32 MiB echo (checked in the guest): %.0f MB/s each way" % (32 * MIB / ms / 1e3))

    def test_host_reader_stops(self):
        """A host program that stops reading while the guest keeps sending: the guest waits for credit and
        the monitor's memory stays bounded; once the host reads again everything arrives intact."""
        stall = {}
        ready = threading.Event()
        go = threading.Event()

        def slow(c):
            ready.set()
            go.wait(30)
            c.settimeout(30)
            got = 0
            while True:
                data = c.recv(1 << 20)
                if not data:
                    break
                if data != pattern(got, len(data)):
                    raise AssertionError("guest data differs at %d" % got)
                got += len(data)
            stall["got"] = got
        lst = HostListener(os.path.join(self.tmp, "v.sock_6000"), slow)
        try:
            vm = self.boot("vsock-echo send 6000 67108864", timeout=25)
            self.assertTrue(ready.wait(15), vm.report())
            base = vm.rss_kib()
            peak = base
            for _ in range(20):
                time.sleep(0.1)
                peak = max(peak, vm.rss_kib())
            go.set()
            vm.wait_for("SENT 67108864", 20)
            self.assertExit_(vm.finish(), EXIT_OK)
        finally:
            go.set()
            lst.close()
        self.assertEqual(lst.errors, [])
        self.assertEqual(stall.get("got"), 64 * MIB)
        figure("host reader stalled 2 s: monitor RSS %d -> %d KiB" % (base, peak))
        self.assertLess(peak - base, 8 * 1024)

    def test_guest_reader_stops(self):
        """A guest that leaves a connection unread while the host keeps writing: the monitor stops reading
        the host socket (memory stays bounded), then delivers everything once the guest reads."""
        vm = self.boot("vsock-echo stall 5002 3", timeout=25)
        vm.wait_for("LISTENING 5002")
        s, _ = self.connect_retry(5002)
        vm.wait_for("STALLING")
        sent = [0]

        def sender():
            try:
                for off in range(0, 64 * MIB, MIB):
                    s.sendall(pattern(off, MIB))
                    sent[0] = off + MIB
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        base = vm.rss_kib()
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        peak = base
        for _ in range(15):
            time.sleep(0.1)
            peak = max(peak, vm.rss_kib())
        stuck_at = sent[0]
        self.assertLess(stuck_at, 64 * MIB, "the host could send everything to a guest that does not read")
        t.join(30)
        vm.wait_for("SINK ", 20)
        self.assertIn("SINK %d ok" % (64 * MIB), vm.console(), vm.report())
        s.close()
        figure("guest reader stalled: monitor RSS %d -> %d KiB while the host was blocked" % (base, peak))
        self.assertLess(peak - base, 8 * 1024)
        self.assertExit_(vm.finish(), EXIT_OK)

    def test_bad_connect_lines(self):
        """Garbage, unknown ports, overlong lines and silent peers are closed; the monitor keeps serving."""
        vm = self.boot("vsock-echo listen 5000")
        vm.wait_for("LISTENING 5000")
        s, _ = self.connect_retry(5000)
        s.close()
        bad = [b"garbage\n", b"CONNECT\n", b"CONNECT -1\n", b"CONNECT 99999999999\n", b"CONNECT 5000x\n",
               b"connect 5000\n", b"CONNECT 5999\n", b"A" * 100, b"\x00\xff" * 20 + b"\n"]
        for line in bad:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(vm.uds)
            c.sendall(line)
            self.assertTrue(closed_by_peer(c), "%r: not closed" % line)
            c.close()
        # Peers that vanish at every stage.
        for stage in range(3):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(vm.uds)
            if stage >= 1:
                c.sendall(b"CONN")
            if stage >= 2:
                c.sendall(b"ECT 5000\n")
            c.close()
        # Half the data of a connection, then the host program is gone.
        c, _ = host_connect(vm.uds, 5000)
        c.sendall(b"x" * 100000)
        c.close()
        time.sleep(0.3)
        s, _ = host_connect(vm.uds, 5000)
        s.sendall(b"still here")
        self.assertEqual(recv_exact(s, 10), b"still here")
        s.close()
        self.assertIsNone(vm.p.poll(), vm.report())
        self.assertEqual(vm.stop(), 128 + signal.SIGTERM, vm.report())

    def test_socket_path(self):
        """A stale socket file is replaced and removed at exit; a live one, a non-socket and bad options
        are refused with exit 1."""
        path = os.path.join(self.tmp, "v.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()
        res = run_vmm(["--kernel", KERNEL, "--initrd", INITRD, "--timeout", "15", "--vsock",
                       "cid=4294967294,uds=%s" % path, "--cmdline", 'quiet kvmbox_cmd="vsock-echo cid"'],
                      timeout=30)
        self.assertExit(res, EXIT_OK)
        self.assertIn("CID 4294967294", res.console)
        self.assertFalse(os.path.exists(path))

        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        live.bind(path)
        live.listen(1)
        try:
            res = run_vmm(["--kernel", KERNEL, "--vsock", "cid=3,uds=%s" % path], timeout=30)
            self.assertExit(res, EXIT_BAD_INPUT)
            self.assertIn("in use", res.log)
            self.assertTrue(os.path.exists(path))
        finally:
            live.close()
        os.unlink(path)
        with open(path, "w") as f:
            f.write("not a socket")
        res = run_vmm(["--kernel", KERNEL, "--vsock", "cid=3,uds=%s" % path], timeout=30)
        self.assertExit(res, EXIT_BAD_INPUT)
        self.assertIn("not a socket", res.log)
        for spec in ["cid=2,uds=%s" % path, "uds=%s" % path, "cid=3", "cid=x,uds=/tmp/a", "cid=3,uds=",
                     "cid=3,uds=/tmp/a,foo=1", "cid=4294967295,uds=/tmp/a", "cid=3,uds=/" + "a" * 100, ""]:
            res = run_vmm(["--kernel", KERNEL, "--vsock", spec], timeout=30)
            self.assertExit(res, EXIT_BAD_INPUT)
            self.assertIn("--vsock", res.log)


if __name__ == "__main__":
    unittest.main()
