"""The guest agent as PID 1 (tools/agent/init.c, docs/agent-protocol.md): $(BUILD)/images/vmlinux with the
initramfs, or the rootfs on virtio-blk, booted WITHOUT kvmbox_cmd, so /init (/sbin/init) is kvmbox-agent.

It mounts, sets the hostname and network from kvmbox.* words of the command line, prints
"kvmbox-agent: ready on vsock port 1024", writes the boot marker (the monitor logs "boot marker") and
serves the agent protocol on vsock port 1024, reached through the monitor's --vsock Unix socket
("CONNECT 1024"). A `shutdown` request (or SIGTERM to PID 1) ends the VM cleanly: exit 0, and a disk root
is left clean (e2fsck). The network test puts the monitor in a network namespace of its own with
--net auto (needs root and iproute2, like test_net.py).
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import kvmboxtest
from agentclient import REQUEST, Agent
from kvmboxtest import IMAGES, EXIT_OK, need

VMLINUX = os.path.join(IMAGES, "vmlinux")
INITRAMFS = os.path.join(IMAGES, "initramfs.cpio.gz")
ROOTFS = os.path.join(IMAGES, "rootfs.ext4")
READY = "kvmbox-agent: ready on vsock port 1024"
VMM_TIMEOUT = 40   # the monitor's own --timeout: a stuck guest still shows its console (exit 5)
WAIT = 60          # subprocess and socket timeouts, seconds
ENV_SBIN = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")  # e2fsprogs



class Vm(kvmboxtest.VmmProcess):
    """The monitor booting the agent image, its vsock socket in tmp."""

    def __init__(self, tmp, cmdline, extra=(), netns=None):
        self.uds = os.path.join(tmp, "v.sock")
        args = [kvmboxtest.VMM, "--kernel", VMLINUX, "--memory", "256", "--timeout", str(VMM_TIMEOUT),
                "--vsock", "cid=3,uds=%s" % self.uds, "--cmdline", cmdline] + list(extra)
        if netns:
            args = ["ip", "netns", "exec", netns] + args
        super().__init__(args)


class AgentBootTestCase(kvmboxtest.VmmTestCase):
    def setUp(self):
        need(VMLINUX)
        self.tmp = tempfile.mkdtemp(prefix="kvmbox-agent-boot-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def boot(self, cmdline, extra=(), netns=None):
        vm = Vm(self.tmp, cmdline, extra, netns)
        self.addCleanup(vm.close)
        vm.wait_for(r"^%s\r?$" % re.escape(READY))
        self.assertIn("boot marker", vm.wait_for("boot marker", stream="err").group(0))
        return vm

    def connect(self, vm):
        agent = Agent.connect_vsock(vm.uds)
        agent.sock.settimeout(WAIT)
        self.addCleanup(agent.close)
        return agent

    def sh(self, vm, agent, script, **kw):
        """sh -c script in the guest, which must exit 0; returns its stdout as text."""
        res, out, err = agent.sh(script, **kw)
        self.assertEqual(res.get("exitCode"), 0, "%r\nstdout %r\nstderr %r\n%s" % (res, out, err, vm.report()))
        return out.decode(errors="replace")

    def shutdown(self, vm, agent):
        res = agent.request({"op": "shutdown"})
        self.assertEqual(res, {"ok": True}, vm.report())
        self.assertEqual(vm.wait_exit(), EXIT_OK, vm.report())
        self.assertIn("kvmbox-agent: powering off", vm.console())
        self.assertIn("guest rebooted", vm.log())


class InitramfsBoot(AgentBootTestCase):
    def setUp(self):
        super().setUp()
        need(INITRAMFS)

    def boot_initramfs(self, words, **kw):
        return self.boot("quiet " + words, extra=["--initrd", INITRAMFS] + list(kw.pop("extra", [])), **kw)

    def test_ready_and_shutdown(self):
        """No kvmbox_cmd: the agent is PID 1, writes the boot marker, says it is ready, and a shutdown
        request ends the VM with exit 0."""
        vm = self.boot_initramfs("kvmbox.hostname=box1")
        self.assertNotIn("kvmbox-init: reached /init", vm.console(), "the legacy init ran\n" + vm.report())
        self.assertNotRegex(vm.console(), r"kvmbox-agent: .*failed", vm.report())
        self.shutdown(vm, self.connect(vm))

    def test_setup(self):
        """Hostname, mounts, lo, resolv.conf, /dev links, umask, and the unprivileged user of /etc/passwd."""
        vm = self.boot_initramfs("kvmbox.hostname=box1 kvmbox.dns=10.0.2.3,2001:db8::53")
        agent = self.connect(vm)
        out = self.sh(vm, agent, "hostname; cut -d' ' -f2,3 /proc/mounts; ip -o -4 addr show lo; "
                      "ip -o link show lo; cat /etc/resolv.conf; readlink /dev/fd; "
                      "stat -c '%a %n' /tmp /run /dev/shm; umask")
        lines = out.splitlines()
        self.assertEqual(lines[0], "box1", out)
        for mount in ("/proc proc", "/sys sysfs", "/dev devtmpfs", "/dev/pts devpts", "/dev/shm tmpfs",
                      "/tmp tmpfs", "/run tmpfs"):
            self.assertIn(mount, lines, out)
        self.assertRegex(out, r"lo\s+inet 127\.0\.0\.1/8", out)
        self.assertRegex(out, r"lo: <LOOPBACK,UP", out)
        self.assertIn("nameserver 10.0.2.3\nnameserver 2001:db8::53\n", out)
        for want in ("/proc/self/fd", "1777 /tmp", "755 /run", "1777 /dev/shm", "0022"):
            self.assertIn(want, lines, out)
        out = self.sh(vm, agent, "id; echo home=$HOME; touch ~/x && ls -ln ~/x", user="user")
        self.assertIn("uid=1000(user) gid=1000(user)", out)
        self.assertIn("home=/home/user", out)
        self.assertRegex(out, r" 1000 +1000 .*/home/user/x", out)
        self.shutdown(vm, agent)

    def test_sigterm_powers_off(self):
        """SIGTERM to PID 1 is a clean power-off too (exit 0)."""
        vm = self.boot_initramfs("")
        agent = self.connect(vm)
        agent.send(REQUEST, agent.new_id(), {"op": "run", "cmd": "/bin/sh", "args": ["-c", "kill -TERM 1"]})
        self.assertEqual(vm.wait_exit(), EXIT_OK, vm.report())
        self.assertIn("kvmbox-agent: powering off", vm.console())

    def test_bad_words(self):
        """Bad kvmbox.* values are logged and skipped, and so is a missing interface; none of it stops
        the boot."""
        vm = self.boot_initramfs("kvmbox.hostname=-bad kvmbox.ip=10.0.0.1 kvmbox.gw=nope kvmbox.ip=10.0.3.2/24@eth1")
        console = vm.console()
        for want in (r"kvmbox\.hostname=-bad ignored: not a hostname", r"kvmbox\.ip=10\.0\.0\.1 ignored: no /PREFIX",
                     r"kvmbox\.gw=nope ignored",
                     r"setting 10\.0\.3\.2/24 on eth1 failed: No such device: give the VM a network device"):
            self.assertRegex(console, "kvmbox-agent: " + want, vm.report())
        agent = self.connect(vm)
        self.assertEqual(self.sh(vm, agent, "hostname").strip(), "kvmbox")  # /etc/hostname's
        self.shutdown(vm, agent)

    def test_legacy_cmd_still_runs_script(self):
        """kvmbox_cmd boots exec /etc/kvmbox/init.sh, which behaves as the old /init did."""
        res = kvmboxtest.run_vmm(["--kernel", VMLINUX, "--initrd", INITRAMFS, "--memory", "256", "--timeout",
                                  str(VMM_TIMEOUT), "--cmdline", 'quiet kvmbox_cmd="hostname"'],
                                 timeout=WAIT)
        self.assertExit(res, EXIT_OK)
        for want in ("kvmbox-init: reached /init", "kvmbox", "kvmbox-init: command exited 0"):
            self.assertRegex(res.console, r"(?m)^%s\r?$" % re.escape(want), res)
        self.assertNotIn(READY, res.console)
        self.assertIn("boot marker", res.log)


class RootfsBoot(AgentBootTestCase):
    def test_rootfs_boot_and_clean_shutdown(self):
        """root=/dev/vda rw: /sbin/init is the agent; after a shutdown the image is clean (fsck) and keeps
        what the guest wrote."""
        disk = os.path.join(self.tmp, "rootfs.ext4")
        subprocess.run(["cp", "--sparse=always", need(ROOTFS), disk], check=True)
        vm = self.boot("root=/dev/vda rw quiet kvmbox.hostname=diskbox", extra=["--disk", disk])
        agent = self.connect(vm)
        out = self.sh(vm, agent, "echo written-by-agent > /root/agent.txt; hostname; grep ' / ' /proc/mounts")
        self.assertIn("diskbox", out)
        self.assertIn("/dev/root / ext4 rw", out)
        self.shutdown(vm, agent)
        fsck = subprocess.run(["e2fsck", "-fn", disk], capture_output=True, timeout=WAIT, env=ENV_SBIN)
        self.assertEqual(fsck.returncode, 0, fsck.stdout.decode() + fsck.stderr.decode())
        cat = subprocess.run(["debugfs", "-R", "cat /root/agent.txt", disk], capture_output=True, timeout=WAIT,
                             env=ENV_SBIN)
        self.assertEqual(cat.stdout, b"written-by-agent\n", cat.stderr)


@unittest.skipUnless(shutil.which("ip"), "needs iproute2")
class NetworkBoot(AgentBootTestCase):
    """kvmbox.ip/kvmbox.gw on eth0 (--net auto in a namespace of our own): the guest answers for its address."""

    def netns(self):
        ns = "kvmbox-agent-test-%d-%d" % (os.getpid(), len(self._cleanups))
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=WAIT)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", ns], timeout=WAIT)
        return ns

    def test_ip_and_gateway(self):
        need(INITRAMFS)
        ns = self.netns()
        vm = self.boot("quiet kvmbox.ip=10.0.2.15/24 kvmbox.gw=10.0.2.1 kvmbox.hostname=netbox",
                       extra=["--initrd", INITRAMFS, "--net", "auto"], netns=ns)
        tap = vm.wait_for(r"eth0 on tap (\S+)", stream="err").group(1)
        for cmd in (["addr", "add", "10.0.2.1/24", "dev", tap], ["link", "set", tap, "up"]):
            subprocess.run(["ip", "-n", ns] + cmd, check=True, timeout=WAIT)
        # The guest owns 10.0.2.15 once it answers ARP for it: poke it with a UDP datagram (no ping on
        # every host) and look for its MAC in the namespace's neighbour table.
        poke = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('10.0.2.15', 9))"
        deadline = time.monotonic() + 20
        while True:
            subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", poke], check=True, timeout=WAIT)
            time.sleep(0.2)
            neigh = subprocess.run(["ip", "-n", ns, "neigh", "show", "10.0.2.15"], capture_output=True,
                                   text=True, timeout=WAIT).stdout
            if "lladdr" in neigh:
                break
            self.assertLess(time.monotonic(), deadline, "the guest does not answer ARP for 10.0.2.15: %r\n%s"
                            % (neigh, vm.report()))
        agent = self.connect(vm)
        out = self.sh(vm, agent, "ip -o -4 addr show eth0; ip route; ping -c 1 -W 5 10.0.2.1")
        self.assertRegex(out, r"eth0\s+inet 10\.0\.2\.15/24", out)
        self.assertRegex(out, r"default via 10\.0\.2\.1 dev eth0", out)
        self.shutdown(vm, agent)

    def test_kernel_ip_wins(self):
        """The kernel's own ip= configured eth0: kvmbox.ip and kvmbox.gw leave it alone (and say so)."""
        need(INITRAMFS)
        vm = self.boot("quiet ip=10.0.2.15::10.0.2.1:255.255.255.0::eth0:off kvmbox.ip=10.0.2.99/24 "
                       "kvmbox.gw=10.0.2.9", extra=["--initrd", INITRAMFS, "--net", "auto"], netns=self.netns())
        for want in (r"kvmbox\.ip= for eth0 ignored: the kernel's ip= configured it",
                     r"kvmbox\.gw= ignored: the kernel's ip= set a gateway"):
            self.assertRegex(vm.console(), "kvmbox-agent: " + want, vm.report())
        agent = self.connect(vm)
        out = self.sh(vm, agent, "ip -o -4 addr show eth0; ip route")
        self.assertRegex(out, r"eth0\s+inet 10\.0\.2\.15/24", out)
        self.assertNotIn("10.0.2.99", out)
        self.assertRegex(out, r"default via 10\.0\.2\.1 dev eth0", out)
        self.shutdown(vm, agent)


if __name__ == "__main__":
    unittest.main()
