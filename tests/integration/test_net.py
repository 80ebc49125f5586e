"""virtio-net with Linux on a tap (--net tap=NAME / --net auto), each test in a network namespace of its
own (ip netns add kvmbox-test-<pid>-<n>, deleted afterwards): messages both ways with busybox nc (the
guest connecting out and the guest listening), 16 MiB checked with md5 each way over HTTP (busybox httpd
and wget in the guest, Python on the host), two NICs, a busy tap, a driver reset with a read
outstanding, the auto tap gone after SIGKILL, bad --net options; then tools/net/kvmbox-net (tap + NAT + egress policy) between two
namespaces joined by a veth pair, an "internet" side and the host side.

The guest gets its address from the kernel command line: ip=10.0.2.15::10.0.2.1:255.255.255.0::eth0:off.
Throughput figures go to stderr. Needs root, iproute2 and nftables (tools/net/kvmbox-net)."""
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from kvmboxtest import EXIT_BAD_INPUT, EXIT_OK, IMAGES, ROOT, VMM, VmmTestCase, need, run_vmm

KERNEL = os.path.join(IMAGES, "vmlinux")
INITRD = os.path.join(IMAGES, "initramfs.cpio.gz")
KVMBOX_NET = os.path.join(ROOT, "tools", "net", "kvmbox-net")
HOST_IP, GUEST_IP = "10.0.2.1", "10.0.2.15"
GUEST_NET = "ip=%s::%s:255.255.255.0::eth0:off" % (GUEST_IP, HOST_IP)
VM_TIMEOUT = "30"        # the monitor's --timeout (generous: the host may be busy with other VMs)
WAIT = 60                # subprocess timeouts, seconds
MIB = 1 << 20

# The host end of a TCP connection, run inside the namespace (python3 -c LISTENER MODE ADDR PORT [FILE]):
#   recv: accept one connection, read to EOF, print "<bytes> <md5> <seconds from first byte>"
#   connect: connect to ADDR:PORT (retrying for 40 s), send FILE's bytes, close
LISTENER = r"""
import hashlib, socket, sys, time
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "connect":
    deadline = time.monotonic() + 40
    while True:
        try:
            c = socket.create_connection((addr, port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    c.sendall(open(sys.argv[4], "rb").read())
    c.close()
    print("sent", flush=True)
    sys.exit(0)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: the address may come later (--net auto)
s.bind((addr, port))
s.listen(1)
s.settimeout(45)
print("listening", flush=True)
c, _ = s.accept()
c.settimeout(45)
h, n, t0 = hashlib.md5(), 0, None
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    if t0 is None:
        t0 = time.monotonic()
    h.update(b)
    n += len(b)
print(n, h.hexdigest(), time.monotonic() - (t0 or time.monotonic()), flush=True)
"""


# Host HTTP client run in the namespace (python3 -c FETCH URL HOST:PORT): fetch URL (retrying while the
# guest's server starts), print "<bytes> <md5> <seconds>", then send "done" to HOST:PORT (the guest waits).
FETCH = r"""
import hashlib, socket, sys, time, urllib.request
url, (host, port) = sys.argv[1], sys.argv[2].split(":")
deadline = time.monotonic() + 40
while True:
    try:
        t0 = time.monotonic()
        data = urllib.request.urlopen(url, timeout=20).read()
        secs = time.monotonic() - t0
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
print(len(data), hashlib.md5(data).hexdigest(), secs)
socket.create_connection((host, int(port)), timeout=10).sendall(b"done\n")
"""


def figure(text):
    sys.stderr.write("\n  [net figure] %s\n" % text)
    sys.stderr.flush()


def sh(*args, check=True, timeout=WAIT):
    p = subprocess.run(list(args), capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(args), p.returncode, p.stdout.decode(errors="replace"),
                                                      p.stderr.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


class NetNs:
    """A network namespace, deleted (with everything in it) by close()."""
    count = 0

    def __init__(self, tag=""):
        NetNs.count += 1
        self.name = "kvmbox-test-%d-%d%s" % (os.getpid(), NetNs.count, tag)
        sh("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args, check=True):
        return sh("ip", "-n", self.name, *args, check=check)

    def exec(self, *args, check=True, timeout=WAIT):
        return sh("ip", "netns", "exec", self.name, *args, check=check, timeout=timeout)

    def popen(self, args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name] + list(args), **kw)

    def links(self):
        return self.ip("-o", "link", "show")

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=WAIT)


class Vm:
    """The monitor inside a namespace, console and log in files."""

    def __init__(self, ns, tmpdir, net_args, cmd, extra=(), vmm=None, memory=256):
        self.console_path = os.path.join(tmpdir, "console-%d.txt" % id(self))
        self.log_path = os.path.join(tmpdir, "log-%d.txt" % id(self))
        self.console_f = open(self.console_path, "wb")
        self.log_f = open(self.log_path, "wb")
        args = [vmm or VMM, "--kernel", KERNEL, "--initrd", INITRD, "--memory", str(memory), "--timeout",
                VM_TIMEOUT, "--cmdline", 'quiet %s kvmbox_cmd="%s"' % (GUEST_NET, cmd)]
        for n in net_args:
            args += ["--net", n]
        self.p = ns.popen(args + list(extra), stdin=subprocess.DEVNULL, stdout=self.console_f, stderr=self.log_f)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def console(self):
        with open(self.console_path, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError("the monitor never logged %r\n%s" % (pattern, self.report()))

    def wait(self, timeout=WAIT):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("the monitor did not exit in %d s\n%s" % (timeout, self.report()))

    def report(self):
        return "--- monitor rc %s ---\n--- console ---\n%s\n--- log ---\n%s" % (self.p.poll(), self.console()[-4000:], self.log()[-4000:])

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.console_f.close()
        self.log_f.close()


class NetCase(VmmTestCase):
    def setUp(self):
        need(KERNEL)
        need(INITRD)
        if os.geteuid() != 0:
            raise AssertionError("test_net needs root (network namespaces, taps)")
        self.tmp = tempfile.mkdtemp(prefix="kvmbox-net-")
        self.namespaces = []
        self.vms = []
        self.helpers = []

    def tearDown(self):
        for p in self.helpers:
            if p.poll() is None:
                p.kill()
            p.communicate()
        for vm in self.vms:
            vm.close()
        for ns in self.namespaces:
            ns.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def netns(self, tag=""):
        ns = NetNs(tag)
        self.namespaces.append(ns)
        return ns

    def vm(self, ns, net_args, cmd, **kw):
        v = Vm(ns, self.tmp, net_args, cmd, **kw)
        self.vms.append(v)
        return v

    def tap(self, ns, name="ktap0"):
        """A persistent tap in ns with the host address, up."""
        ns.ip("tuntap", "add", "mode", "tap", "name", name, "vnet_hdr")
        ns.ip("addr", "add", HOST_IP + "/24", "dev", name)
        ns.ip("link", "set", name, "up")
        return name

    def helper(self, ns, *args):
        """LISTENER in ns; returns once it listens (or, for connect, at once)."""
        p = ns.popen([sys.executable, "-c", LISTENER] + [str(a) for a in args], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
        self.helpers.append(p)
        if args[0] != "connect":
            line = p.stdout.readline().decode()
            if line.strip() != "listening":
                p.kill()
                self.fail("listener failed: %s" % p.communicate()[1].decode(errors="replace"))
        return p

    def helper_result(self, p, vm):
        try:
            out, err = p.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        self.assertEqual(p.returncode, 0, "host end failed: %s\n%s" % (err.decode(errors="replace"), vm.report()))
        return out.decode().split()


class VirtioNet(NetCase):
    def test_message_guest_to_host_auto_tap(self):
        """--net auto: the tap the monitor created (named in its log) carries the guest's message."""
        ns = self.netns()
        listener = self.helper(ns, "recv", HOST_IP, 7001)
        vm = self.vm(ns, ["auto"], "echo hello-from-guest | nc %s 7001; echo nc-status=$?" % HOST_IP)
        tap = vm.wait_log(r"eth0 on tap (kvmbox\d+) \(created").group(1)
        self.assertIn(tap + ":", ns.links())
        ns.ip("addr", "add", HOST_IP + "/24", "dev", tap)
        ns.ip("link", "set", tap, "up")
        n, md5, _ = self.helper_result(listener, vm)
        self.assertEqual(vm.wait(), EXIT_OK, vm.report())
        self.assertEqual(int(n), len(b"hello-from-guest\n"))
        self.assertEqual(md5, hashlib.md5(b"hello-from-guest\n").hexdigest())
        self.assertIn("nc-status=0", vm.console())
        # The tap went with the monitor.
        self.assertNotIn(tap + ":", ns.links())

    def test_message_host_to_guest_listening(self):
        """--net tap=NAME: the guest listens (nc -l), the host connects and sends a line."""
        ns = self.netns()
        tap = self.tap(ns)
        msg = os.path.join(self.tmp, "msg")
        with open(msg, "wb") as f:
            f.write(b"hello-from-host\n")
        vm = self.vm(ns, ["tap=%s,mac=02:00:00:00:00:15" % tap],
                     "ip link show eth0; nc -l -p 7002 </dev/null; echo nc-status=$?")
        sender = self.helper(ns, "connect", GUEST_IP, 7002, msg)
        self.helper_result(sender, vm)
        self.assertEqual(vm.wait(), EXIT_OK, vm.report())
        con = vm.console()
        self.assertRegex(con, r"hello-from-host\r?\n")
        self.assertIn("nc-status=0", con)
        self.assertIn("link/ether 02:00:00:00:00:15", con)
        # The persistent tap stays, free for the next VM.
        self.assertIn(tap + ":", ns.links())
        self.assertIn("on tap %s, MAC 02:00:00:00:00:15" % tap, vm.log())

    def test_16mib_guest_to_host(self):
        """16 MiB of random bytes from the guest (busybox httpd, sendfile) to a host HTTP client; md5 both
        ends. (busybox nc copies 1 KiB per system call: it would measure the guest's syscalls.)"""
        ns = self.netns()
        tap = self.tap(ns)
        vm = self.vm(ns, ["tap=" + tap],
                     "mkdir /www; dd if=/dev/urandom of=/www/f bs=1M count=16 2>/dev/null; md5sum /www/f; "
                     "httpd -h /www -p 8081 && nc -l -p 8082 </dev/null", extra=["--log-level", "debug"])
        vm.wait_log(r"boot marker")
        out = ns.exec(sys.executable, "-c", FETCH, "http://%s:8081/f" % GUEST_IP, "%s:8082" % GUEST_IP)
        n, md5, secs = out.split()
        self.assertEqual(vm.wait(), EXIT_OK, vm.report())
        m = re.search(r"([0-9a-f]{32})  /www/f", vm.console())
        self.assertTrue(m, vm.report())
        self.assertEqual(int(n), 16 * MIB)
        self.assertEqual(md5, m.group(1))
        self.assertRegex(vm.log(), r"virtio-net %s: TX \d+ packets \d+ bytes \(0 dropped" % tap)
        figure("guest -> host 16 MiB (guest httpd, host HTTP client): %.3f s, %.0f MB/s (%s)"
               % (float(secs), 16 * MIB / 1e6 / float(secs), VMM))

    def test_16mib_host_to_guest(self):
        """16 MiB of random bytes from a host HTTP server to the guest's wget; md5 of what the guest got."""
        ns = self.netns()
        tap = self.tap(ns)
        www = os.path.join(self.tmp, "www")
        os.mkdir(www)
        data = os.urandom(16 * MIB)
        with open(os.path.join(www, "data"), "wb") as f:
            f.write(data)
        srv = ns.popen([sys.executable, "-m", "http.server", "-b", HOST_IP, "-d", www, "8080"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.helpers.append(srv)
        vm = self.vm(ns, ["tap=" + tap],
                     "until nc -w 1 %s 8080 </dev/null; do sleep 0.1; done; "
                     "time wget -q -O /tmp/d http://%s:8080/data; md5sum /tmp/d; ls -l /tmp/d"
                     % (HOST_IP, HOST_IP), extra=["--log-level", "debug"])
        self.assertEqual(vm.wait(), EXIT_OK, vm.report())
        con = vm.console()
        self.assertRegex(con, r"%s  /tmp/d" % hashlib.md5(data).hexdigest(), vm.report())
        self.assertRegex(vm.log(), r"RX \d+ packets \d+ bytes \(0 dropped\)")
        secs = float(re.search(r"real\s+(\d+)m\s*([\d.]+)s", con).group(2))
        figure("host -> guest 16 MiB (host HTTP server, guest wget): %.3f s, %.0f MB/s (%s)"
               % (secs, 16 * MIB / 1e6 / max(secs, 0.001), VMM))

    def test_driver_reset(self):
        """The guest unbinds and rebinds its driver (a device reset with a read outstanding), twice, then
        still talks: the reset cancelled the read and renegotiated the offloads."""
        ns = self.netns()
        tap = self.tap(ns)
        listener = self.helper(ns, "recv", HOST_IP, 7005)
        rebind = ("d=$(basename /sys/bus/virtio/drivers/virtio_net/virtio*); "
                  "echo $d > /sys/bus/virtio/drivers/virtio_net/unbind; "
                  "echo $d > /sys/bus/virtio/drivers/virtio_net/bind; ")
        vm = self.vm(ns, ["tap=" + tap],
                     "ping -c 1 -W 5 %s >/dev/null; %s %s ip addr add %s/24 dev eth0; ip link set eth0 up; "
                     "echo after-reset | nc %s 7005; echo nc-status=$?"
                     % (HOST_IP, rebind, rebind, GUEST_IP, HOST_IP), extra=["--log-level", "debug"])
        n, md5, _ = self.helper_result(listener, vm)
        self.assertEqual(vm.wait(), EXIT_OK, vm.report())
        self.assertEqual(md5, hashlib.md5(b"after-reset\n").hexdigest(), vm.report())
        self.assertIn("nc-status=0", vm.console())
        # The tap's offloads follow every DRIVER_OK: at boot and after each of the two rebinds.
        self.assertEqual(len(re.findall(r"driver features 0x[0-9a-f]+, tap offloads", vm.log())), 3, vm.report())
        self.assertNotIn("still in flight", vm.log())

    def test_auto_tap_gone_after_sigkill(self):
        """A non-persistent tap goes away with its last fd: SIGKILL included."""
        ns = self.netns()
        vm = self.vm(ns, ["auto"], "sleep 30")
        tap = vm.wait_log(r"eth0 on tap (kvmbox\d+) \(created").group(1)
        vm.wait_log(r"boot marker")
        self.assertIn(tap + ":", ns.links())
        os.kill(vm.p.pid, signal.SIGKILL)
        self.assertEqual(vm.wait(), -signal.SIGKILL)
        deadline = time.monotonic() + 5
        while tap + ":" in ns.links() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertNotIn(tap + ":", ns.links(), "the tap outlived the killed monitor")
        self.assertNotRegex(ns.links(), r"kvmbox\d+")

    def test_two_nics(self):
        """Two --net devices are eth0 and eth1 with the MACs given."""
        ns = self.netns()
        ns.ip("tuntap", "add", "mode", "tap", "name", "ktapA")
        vm = self.vm(ns, ["tap=ktapA,mac=02:aa:00:00:00:01", "auto,mac=02:aa:00:00:00:02"],
                     "cat /sys/class/net/eth0/address /sys/class/net/eth1/address")
        self.assertEqual(vm.wait(), EXIT_OK, vm.report())
        self.assertRegex(vm.console(), r"02:aa:00:00:00:01\r?\n02:aa:00:00:00:02")
        self.assertIn("tap ktapA is down", vm.log())

    def test_busy_tap(self):
        """A single-queue tap has one reader: a second monitor on it exits 1 and says so."""
        ns = self.netns()
        tap = self.tap(ns)
        first = self.vm(ns, ["tap=" + tap], "sleep 30")
        first.wait_log(r"boot marker")
        second = self.vm(ns, ["tap=" + tap], "true")
        self.assertEqual(second.wait(), EXIT_BAD_INPUT, second.report())
        self.assertIn("tap %s is in use by another process" % tap, second.log())


class BadNetOptions(VmmTestCase):
    def setUp(self):
        need(KERNEL)

    def check(self, spec, want):
        res = run_vmm(["--kernel", KERNEL, "--net", spec, "--console", "none", "--timeout", "5"], timeout=WAIT)
        self.assertEqual(res.rc, EXIT_BAD_INPUT, res)
        self.assertIn(want, res.log)
        self.assertEqual(len([l for l in res.log.splitlines() if "error" in l.lower()]), 1, res.log)

    def test_missing_tap_name(self):
        self.check("tap=", "the tap name is missing")

    def test_bad_mac(self):
        self.check("auto,mac=zz:00:00:00:00:01", "is not a unicast MAC address")

    def test_multicast_mac(self):
        self.check("auto,mac=01:00:5e:00:00:01", "is not a unicast MAC address")

    def test_unknown_kind(self):
        self.check("bridge=br0", "start with tap=NAME")

    def test_unknown_option(self):
        self.check("auto,queues=4", "unknown option 'queues=4'")

    def test_long_name(self):
        self.check("tap=abcdefghijklmnopq", "longer than 15 characters")

    def test_no_such_tap(self):
        self.check("tap=kvmbox-nosuch", "there is no network interface 'kvmbox-nosuch'")


class KvmboxNetTool(NetCase):
    """tools/net/kvmbox-net between two namespaces joined by a veth pair: "inet" stands for the internet
    (192.0.2.1 and 198.51.100.1 on its loopback, a listener on each) and routes nothing back to the
    guests' subnet, so only masqueraded traffic gets answers; "host" runs the monitor, the tap and NAT."""

    def setUp(self):
        super().setUp()
        if not shutil.which("nft"):
            raise AssertionError("nft is missing: apt-get install nftables")
        self.host = self.netns("h")
        self.inet = self.netns("i")
        sh("ip", "link", "add", "kvt-up", "netns", self.host.name, "type", "veth", "peer", "name", "kvt-down",
           "netns", self.inet.name)
        self.host.ip("addr", "add", "203.0.113.2/24", "dev", "kvt-up")
        self.host.ip("link", "set", "kvt-up", "up")
        self.host.ip("route", "add", "default", "via", "203.0.113.1")
        self.inet.ip("addr", "add", "203.0.113.1/24", "dev", "kvt-down")
        self.inet.ip("addr", "add", "192.0.2.1/32", "dev", "lo")
        self.inet.ip("addr", "add", "198.51.100.1/32", "dev", "lo")
        self.inet.ip("link", "set", "kvt-down", "up")

    def tool(self, *args, check=True):
        return self.host.exec(KVMBOX_NET, *args, check=check)

    def probe(self, ipconf, targets):
        """Boots a guest on tap sbx0 that sends one line to each (addr, port) with nc -w 2 and prints
        reach-<addr>=<nc status>; returns the console."""
        cmd = "; ".join("echo probe-%s | nc -w 2 %s %d; echo reach-%s=$?" % (a, a, p, a) for a, p in targets)
        args = [VMM, "--kernel", KERNEL, "--initrd", INITRD, "--memory", "256", "--timeout", VM_TIMEOUT,
                "--net", "tap=sbx0", "--cmdline", 'quiet ip=%s kvmbox_cmd="%s"' % (ipconf, cmd)]
        res = subprocess.run(["ip", "netns", "exec", self.host.name] + args, capture_output=True, timeout=WAIT)
        con = res.stdout.decode(errors="replace")
        self.assertEqual(res.returncode, EXIT_OK, con + res.stderr.decode(errors="replace"))
        return con

    def test_setup_policy_teardown(self):
        out = self.tool("setup", "sbx0")
        m = re.search(r"ip=(\S+)", out)
        self.assertTrue(m, out)
        ipconf = m.group(1)
        self.assertTrue(ipconf.startswith("10.200.0.2::10.200.0.1:255.255.255.252:"), ipconf)
        self.assertIn("sbx0:", self.host.links())
        self.assertEqual(self.host.exec("sysctl", "-n", "net.ipv4.ip_forward").strip(), "1")

        # policy all (the default): both "internet" addresses answer, NATed to the host's address.
        a = self.helper(self.inet, "recv", "192.0.2.1", 8001)
        b = self.helper(self.inet, "recv", "198.51.100.1", 8002)
        con = self.probe(ipconf, [("192.0.2.1", 8001), ("198.51.100.1", 8002)])
        self.assertIn("reach-192.0.2.1=0", con)
        self.assertIn("reach-198.51.100.1=0", con)
        for p, addr in ((a, "192.0.2.1"), (b, "198.51.100.1")):
            out, _ = p.communicate(timeout=WAIT)
            self.assertEqual(out.decode().split()[1], hashlib.md5(b"probe-%s\n" % addr.encode()).hexdigest())

        # allow one network: the other is unreachable.
        self.tool("policy", "sbx0", "allow", "192.0.2.0/24")
        a = self.helper(self.inet, "recv", "192.0.2.1", 8003)
        b = self.helper(self.inet, "recv", "198.51.100.1", 8004)
        con = self.probe(ipconf, [("192.0.2.1", 8003), ("198.51.100.1", 8004)])
        self.assertIn("reach-192.0.2.1=0", con)
        self.assertRegex(con, r"reach-198\.51\.100\.1=[1-9]")
        self.assertEqual(a.communicate(timeout=WAIT)[0].decode().split()[0], str(len("probe-192.0.2.1\n")))
        b.kill()

        # none: nothing leaves, the host itself included; the host can still reach the guest.
        self.tool("policy", "sbx0", "none")
        a = self.helper(self.inet, "recv", "192.0.2.1", 8005)
        h = self.helper(self.host, "recv", "10.200.0.1", 8006)
        con = self.probe(ipconf, [("192.0.2.1", 8005), ("10.200.0.1", 8006)])
        self.assertRegex(con, r"reach-192\.0\.2\.1=[1-9]")
        self.assertRegex(con, r"reach-10\.200\.0\.1=[1-9]")
        a.kill()
        h.kill()
        self.assertIn("tap_sbx0", self.host.exec("nft", "list", "table", "inet", "kvmbox"))

        # Bad input is refused with a message.
        bad = self.tool("policy", "sbx0", "allow", "not-a-net", check=False)
        self.assertNotIn("ip daddr", bad)
        p = subprocess.run(["ip", "netns", "exec", self.host.name, KVMBOX_NET, "policy", "sbx0", "allow", "300.1/x"],
                           capture_output=True, timeout=WAIT)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"is not an IPv4 address", p.stderr)

        self.tool("teardown", "sbx0")
        self.assertNotIn("sbx0:", self.host.links())
        self.assertNotIn("kvmbox", self.host.exec("nft", "list", "ruleset"))

    def test_host_to_guest_under_policy_none(self):
        """policy none blocks what the guest starts, not the answers to what the host starts."""
        out = self.tool("setup", "sbx0", "--policy", "none")
        ipconf = re.search(r"ip=(\S+)", out).group(1)
        msg = os.path.join(self.tmp, "msg")
        with open(msg, "wb") as f:
            f.write(b"from-host\n")
        args = [VMM, "--kernel", KERNEL, "--initrd", INITRD, "--memory", "256", "--timeout", VM_TIMEOUT,
                "--net", "tap=sbx0", "--cmdline",
                'quiet ip=%s kvmbox_cmd="nc -l -p 9000 </dev/null; echo nc-status=$?"' % ipconf]
        vm = self.host.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.helpers.append(vm)
        sender = self.helper(self.host, "connect", "10.200.0.2", 9000, msg)
        sender.communicate(timeout=WAIT)
        out, err = vm.communicate(timeout=WAIT)
        self.assertEqual(sender.returncode, 0)
        self.assertEqual(vm.returncode, EXIT_OK, err.decode(errors="replace"))
        self.assertIn(b"from-host", out)
        self.assertIn(b"nc-status=0", out)


if __name__ == "__main__":
    unittest.main()
