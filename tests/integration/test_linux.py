"""Linux guests: boot $(BUILD)/images/vmlinux with the busybox initramfs (make images) on the monitor.

Every boot here has kvmbox_cmd= or kvmbox_shell=, so the agent (/init) execs the legacy shell init
(images/initramfs/init, /etc/kvmbox/init.sh in the image); test_agent_boot.py boots the agent itself.
The legacy init prints "kvmbox-init: reached /init", writes the boot marker
(the monitor logs "boot marker"), prints "kvmbox-init: nproc=N", runs the kernel command-line variable
kvmbox_cmd with sh -c, prints "kvmbox-init: command exited S" and ends the VM with reboot -f (exit 0).
"""
import os
import re
import select
import struct
import subprocess
import tempfile
import time
import unittest

import kvmboxtest
from kvmboxtest import IMAGES, IS_PVM, EXIT_OK, EXIT_BAD_INPUT, need, run_vmm

VMLINUX = os.path.join(IMAGES, "vmlinux")
BZIMAGE = os.path.join(IMAGES, "bzImage")
INITRAMFS = os.path.join(IMAGES, "initramfs.cpio.gz")
ROOTFS = os.path.join(IMAGES, "rootfs.ext4")
CMD = 'quiet kvmbox_cmd="uname -a; echo kvmbox-ok"'
VM_TIMEOUT = 60      # seconds, for the subprocess: nothing hangs the test run
VMM_TIMEOUT = "50"   # the monitor's own --timeout, so a stuck guest still shows its console (exit 5)


def line_re(text):
    """A whole console line (the guest's tty writes CRLF)."""
    return re.compile(r"^%s\r?$" % re.escape(text), re.M)


def fake_linux_elf():
    """A tiny valid ELF64 x86_64 executable that claims to be Linux but has no PVM native shim: one PT_LOAD
    at 16 MiB holding `hlt; jmp .-1` and the string "Linux version 6.12.0"."""
    base = 0x1000000
    code = b"\xf4\xeb\xfd" + b"\0" * 13 + b"Linux version 6.12.0 (kvmbox fake) #1 SMP\n\0"
    ehsize, phsize = 64, 56
    off = ehsize + phsize
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, base + off, ehsize, 0, 0, ehsize, phsize, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, off + len(code), off + len(code), 0x1000)
    return ehdr + phdr + code


class LinuxBoot(kvmboxtest.VmmTestCase):
    @classmethod
    def setUpClass(cls):
        need(VMLINUX)
        need(INITRAMFS)

    def boot(self, cpus=1, cmdline=CMD, extra=()):
        args = ["--kernel", VMLINUX, "--initrd", INITRAMFS, "--memory", "256", "--cpus", str(cpus),
                "--timeout", VMM_TIMEOUT, "--cmdline", cmdline] + list(extra)
        return run_vmm(args, timeout=VM_TIMEOUT)

    def check_boot(self, res, cpus):
        self.assertExit(res, EXIT_OK)
        for want in ("kvmbox-init: reached /init", "kvmbox-ok", "kvmbox-init: command exited 0",
                     "kvmbox-init: nproc=%d" % cpus):
            self.assertRegex(res.console, line_re(want), "console lacks %r\n%r" % (want, res))
        self.assertRegex(res.console, r"Linux kvmbox 6\.\d+\.\d+.* x86_64", "no uname -a output\n%r" % res)
        self.assertLess(res.console.index("reached /init"), res.console.index("kvmbox-ok"))
        self.assertIn("boot marker", res.log, "the monitor logged no boot marker\n%r" % res)

    def test_boot_1cpu(self):
        self.check_boot(self.boot(1), 1)

    def test_boot_2cpus(self):
        self.check_boot(self.boot(2), 2)

    def test_boot_4cpus(self):
        self.check_boot(self.boot(4), 4)

    def test_boot_pvh_entry(self):
        self.check_boot(self.boot(1, extra=["--entry", "pvh"]), 1)

    def test_command_status(self):
        res = self.boot(1, cmdline='quiet kvmbox_cmd="echo to-stderr >&2; exit 3"')
        self.assertExit(res, EXIT_OK)
        self.assertRegex(res.console, line_re("to-stderr"), res)
        self.assertRegex(res.console, line_re("kvmbox-init: command exited 3"), res)

    def test_interactive_shell(self):
        """kvmbox_shell=1: a shell on the console reads what we type; `exit` ends the VM."""
        args = [kvmboxtest.VMM, "--kernel", VMLINUX, "--initrd", INITRAMFS, "--memory", "256",
                "--timeout", VMM_TIMEOUT, "--cmdline", "quiet kvmbox_shell=1"]
        p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = b""
        deadline = time.monotonic() + VM_TIMEOUT

        def read_until(pattern):
            nonlocal out
            while not re.search(pattern, out):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
                    return False
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    return False
                out += chunk
            return True

        try:
            self.assertTrue(read_until(rb"/ # "), "no shell prompt: %r" % out)
            p.stdin.write(b"echo shell-$((6*7)); tty\n")
            p.stdin.flush()
            self.assertTrue(read_until(rb"shell-42\r?\n"), "the shell did not run the command: %r" % out)
            self.assertTrue(read_until(rb"/dev/ttyS0"), "the shell has no controlling tty: %r" % out)
            p.stdin.write(b"exit\n")
            p.stdin.flush()
            rest, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            self.assertEqual(p.returncode, EXIT_OK, "console %r\nlog %r" % (out + rest, err))
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()


@unittest.skipUnless(IS_PVM, "PVM host only: elsewhere a kernel without the shim runs natively")
class PvmShimRequired(kvmboxtest.VmmTestCase):
    """On a PVM host a Linux kernel without the native shim would run in KVM's instruction emulator
    (minutes): the monitor refuses it at once unless --allow-emulated."""

    def test_bzimage_refused(self):
        res = run_vmm(["--kernel", need(BZIMAGE), "--initrd", need(INITRAMFS), "--memory", "256",
                       "--timeout", "10", "--cmdline", CMD], timeout=VM_TIMEOUT)
        self.assertExit(res, EXIT_BAD_INPUT)
        self.assertLess(res.elapsed, 5.0, res)
        self.assertRegex(res.log, re.compile("emulat", re.I), res)

    def test_kernel_without_shim_refused(self):
        with tempfile.NamedTemporaryFile(prefix="fake-linux-", suffix=".elf") as f:
            f.write(fake_linux_elf())
            f.flush()
            res = run_vmm(["--kernel", f.name, "--memory", "64", "--timeout", "10"], timeout=VM_TIMEOUT)
        self.assertExit(res, EXIT_BAD_INPUT)
        self.assertLess(res.elapsed, 5.0, res)
        self.assertRegex(res.log, re.compile("shim|emulat", re.I), res)


class RootfsImage(unittest.TestCase):
    """rootfs.ext4 (booted as root=/dev/vda once virtio-blk exists): a clean ext4 with the userland."""

    def debugfs(self, request):
        p = subprocess.run(["debugfs", "-R", request, need(ROOTFS)], capture_output=True, text=True,
                           env=dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"))
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_fsck_clean(self):
        p = subprocess.run(["e2fsck", "-fn", need(ROOTFS)], capture_output=True, text=True,
                           env=dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_contents(self):
        root = self.debugfs("ls -l /")
        for d in ("bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "root"):
            self.assertRegex(root, r"\s4[0-7]{4} \(2\)\s+0\s+0\s.*\s%s\n" % d, root)
        dev = self.debugfs("ls -l /dev")
        for mode, name in (("20600", "console"), ("20666", "null"), ("20660", "ttyS0")):
            self.assertRegex(dev, r"\s%s \(3\)\s+0\s+0\s.*\s%s\n" % (mode, name), dev)
        # PID 1 is the agent; the legacy shell init is what it execs for kvmbox_cmd/kvmbox_shell boots.
        self.assertIn("kvmbox-init: reached /init", self.debugfs("cat /etc/kvmbox/init.sh"))
        self.assertIn('Fast link dest: "/sbin/kvmbox-agent"', self.debugfs("stat /sbin/init"))
        self.assertRegex(self.debugfs("stat /sbin/kvmbox-agent"), r"Mode:\s+0755")
        self.assertRegex(self.debugfs("stat /bin/busybox"), r"User:\s+0\s+Group:\s+0")
        passwd = self.debugfs("cat /etc/passwd")
        self.assertIn("root:x:0:0:", passwd)
        self.assertIn("user:x:1000:1000:user:/home/user:/bin/sh", passwd)
        self.assertIn("user:x:1000:", self.debugfs("cat /etc/group"))
        self.assertRegex(self.debugfs("stat /home/user"), r"User:\s+1000\s+Group:\s+1000")


if __name__ == "__main__":
    unittest.main()
