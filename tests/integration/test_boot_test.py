"""kvmbox boot-test (docs/boot-test.md): boot the Linux images through $(BUILD)/kvmbox and check its verdicts,
exit codes, --json output and console log.

Exit codes: 0 pass, 1 fail, 2 vmm-error/usage, 3 panic, 4 timeout.
"""
import json
import hashlib
import os
import subprocess
import tempfile
import time
import unittest

import kvmboxtest
from kvmboxtest import BUILD, IMAGES, need

KVMBOX = os.path.join(BUILD, "kvmbox")
VMLINUX = os.path.join(IMAGES, "vmlinux")
INITRAMFS = os.path.join(IMAGES, "initramfs.cpio.gz")
TIMEOUT = 60  # seconds, for each subprocess: nothing hangs the test run
# A boot that prints "kvmbox-init: reached /init" and "kvmbox-init: nproc=N" and then reboots by itself:
# kvmbox_cmd makes the agent (PID 1) exec the legacy shell init, which does that. A plain `quiet` boot
# now stays up, serving the agent protocol.
QUIET = "quiet kvmbox_cmd=true"

PASS, FAIL, VMM_ERROR, PANIC, TIMED_OUT = 0, 1, 2, 3, 4


class Run:
    def __init__(self, p, elapsed):
        self.rc, self.out, self.err, self.elapsed = p.returncode, p.stdout, p.stderr, elapsed

    def __repr__(self):
        return "rc=%d elapsed=%.2fs\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            self.rc, self.elapsed, self.out, self.err)


class BootTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need(KVMBOX)
        need(kvmboxtest.VMM)
        need(VMLINUX)
        need(INITRAMFS)

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="kvmbox-boot-test-")
        self.addCleanup(self.tmp.cleanup)

    def boot_test(self, *args, initrd=True, timeout=TIMEOUT):
        """Run kvmbox boot-test against the monitor under test, its console log in our temporary folder."""
        argv = [KVMBOX, "boot-test", "--vmm", kvmboxtest.VMM, "--kernel", VMLINUX, "--memory", "256"]
        if initrd:
            argv += ["--initrd", INITRAMFS]
        if "--log" not in args:
            argv += ["--log", os.path.join(self.tmp.name, "console.log")]
        start = time.monotonic()
        p = subprocess.run(argv + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           errors="replace", timeout=timeout)
        return Run(p, time.monotonic() - start)

    def assertVerdict(self, run, rc, verdict):
        self.assertEqual(run.rc, rc, run)
        self.assertRegex(run.err, r"(?m)^boot-test: %s in \d+\.\d{3} s" % verdict, run)

    def test_pass_expect(self):
        run = self.boot_test("--cmdline", QUIET, "--expect", "kvmbox-init: reached /init")
        self.assertVerdict(run, PASS, "pass")
        self.assertIn("kvmbox-init: reached /init", run.out, run)  # the console is echoed
        self.assertRegex(run.err, r"expected output at \d+\.\d{3} s", run)

    def test_pass_clean_reboot(self):
        run = self.boot_test("--cmdline", 'quiet kvmbox_cmd="echo boot-test-ran"')
        self.assertVerdict(run, PASS, "pass")
        self.assertIn("boot-test-ran", run.out, run)
        self.assertRegex(run.err, r"boot marker at \d+\.\d{3} s", run)

    def test_fail_expect_not_seen(self):
        run = self.boot_test("--cmdline", QUIET, "--expect", "no-such-output", "--quiet")
        self.assertVerdict(run, FAIL, "fail")
        self.assertIn("no-such-output", run.err, run)
        self.assertIn("monitor exit 0", run.err, run)
        self.assertEqual(run.out, "", "--quiet echoed the console\n%r" % run)

    def test_panic(self):
        """No initrd and no root device: 'VFS: Unable to mount root fs', a kernel panic."""
        run = self.boot_test("--cmdline", "rdinit=/nonexistent", "--quiet", initrd=False)
        self.assertVerdict(run, PANIC, "panic")
        with open(os.path.join(self.tmp.name, "console.log"), errors="replace") as f:
            self.assertIn("Kernel panic - not syncing", f.read())

    def test_timeout(self):
        run = self.boot_test("--cmdline", 'quiet kvmbox_cmd="sleep 30"', "--timeout", "1", "--quiet",
                             timeout=20)
        self.assertVerdict(run, TIMED_OUT, "timeout")
        self.assertLess(run.elapsed, 5.0, run)

    def test_vmm_error_missing_kernel(self):
        missing = os.path.join(self.tmp.name, "no-such-vmlinux")
        argv = [KVMBOX, "boot-test", "--vmm", kvmboxtest.VMM, "--kernel", missing,
                "--log", os.path.join(self.tmp.name, "console.log")]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
        run = Run(p, 0)
        self.assertVerdict(run, VMM_ERROR, "vmm-error")
        self.assertIn("no-such-vmlinux", run.err, run)  # the monitor's own error line is quoted

    def test_json(self):
        log = os.path.join(self.tmp.name, "json-console.log")
        run = self.boot_test("--cmdline", QUIET, "--expect", "reached /init$", "--json", "--log", log)
        self.assertEqual(run.rc, PASS, run)
        obj = json.loads(run.out)  # nothing but the object on stdout
        self.assertEqual(set(obj), {"verdict", "exitCode", "elapsedMs", "expectMatchedMs", "bootMarkerMs",
                                    "consoleLog", "message"}, run)
        self.assertEqual(obj["verdict"], "pass", run)
        self.assertEqual(obj["consoleLog"], log, run)
        self.assertIsInstance(obj["elapsedMs"], (int, float))
        self.assertIsInstance(obj["expectMatchedMs"], (int, float))
        self.assertGreater(obj["expectMatchedMs"], 0)
        self.assertLessEqual(obj["expectMatchedMs"], obj["elapsedMs"])
        self.assertIsInstance(obj["exitCode"], int)

    def test_json_vmm_error(self):
        run = self.boot_test("--cmdline", QUIET, "--json", "--extra-vmm-arg", "--memory=oops")
        self.assertEqual(run.rc, VMM_ERROR, run)
        obj = json.loads(run.out)
        self.assertEqual(obj["verdict"], "vmm-error", run)
        self.assertEqual(obj["exitCode"], kvmboxtest.EXIT_BAD_INPUT, run)
        self.assertIsNone(obj["expectMatchedMs"])
        self.assertTrue(obj["message"], run)

    def test_multiline_expect(self):
        """A pattern with a newline is matched across lines (the console's CRLF reads as LF)."""
        run = self.boot_test("--cmdline", QUIET, "--expect", "reached /init\nkvmbox-init: nproc=1$", "--quiet")
        self.assertVerdict(run, PASS, "pass")
        run = self.boot_test("--cmdline", QUIET, "--expect", "reached /init\nno-such-line", "--quiet")
        self.assertVerdict(run, FAIL, "fail")

    def test_signal_stops_monitor(self):
        """SIGTERM to boot-test stops the monitor too (exit 128+15), without waiting for the guest."""
        argv = [KVMBOX, "boot-test", "--vmm", kvmboxtest.VMM, "--kernel", VMLINUX, "--initrd", INITRAMFS,
                "--memory", "256", "--cmdline", 'quiet kvmbox_cmd="sleep 30"', "--expect", "never-printed",
                "--log", os.path.join(self.tmp.name, "console.log")]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out = b""
            deadline = time.monotonic() + TIMEOUT
            while b"reached /init" not in out and time.monotonic() < deadline:
                chunk = p.stdout.read1(4096)
                if not chunk:
                    break
                out += chunk
            self.assertIn(b"reached /init", out)
            children = [pid for pid in os.listdir("/proc") if pid.isdigit() and self.ppid(pid) == p.pid]
            self.assertEqual(len(children), 1, children)
            start = time.monotonic()
            p.terminate()
            rest, err = p.communicate(timeout=10)
            self.assertEqual(p.returncode, 128 + 15, err)
            self.assertLess(time.monotonic() - start, 5.0)
            self.assertIn(b"boot-test: interrupted", err)
            self.assertIn(self.state(children[0]), (None, "Z"), "the monitor outlived boot-test")
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()

    @staticmethod
    def stat_field(pid, index):
        """A field of /proc/PID/stat after the command name (0: state, 1: parent pid); None if gone."""
        try:
            with open("/proc/%s/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()[index]
        except (OSError, IndexError):
            return None

    def ppid(self, pid):
        v = self.stat_field(pid, 1)
        return int(v) if v else None

    def state(self, pid):
        return self.stat_field(pid, 0)

    def test_console_log(self):
        log = os.path.join(self.tmp.name, "kept.log")
        run = self.boot_test("--cmdline", 'quiet kvmbox_cmd="echo in-the-log"', "--log", log)
        self.assertVerdict(run, PASS, "pass")
        self.assertIn(log, run.err, run)
        with open(log, errors="replace") as f:
            console = f.read()
        for want in ("kvmbox-init: reached /init", "in-the-log", "kvmbox-init: command exited 0"):
            self.assertIn(want, console, "console log lacks %r\n%s" % (want, console))
        self.assertEqual(console, run.out, "the log and the echoed console differ")

    def test_default_log_in_tmpdir(self):
        env = dict(os.environ, TMPDIR=self.tmp.name)
        argv = [KVMBOX, "boot-test", "--vmm", kvmboxtest.VMM, "--kernel", VMLINUX, "--initrd", INITRAMFS,
                "--memory", "256", "--cmdline", QUIET, "--quiet"]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                           timeout=TIMEOUT)
        self.assertEqual(p.returncode, PASS, p.stderr)
        logs = [n for n in os.listdir(self.tmp.name) if n.startswith("kvmbox-boot-test-") and n.endswith(".log")]
        self.assertEqual(len(logs), 1, os.listdir(self.tmp.name))
        self.assertIn(os.path.join(self.tmp.name, logs[0]), p.stderr)


class TrivialGuest(unittest.TestCase):
    """The benchmark's PVH guest ($(BUILD)/bench/hello-pvh.elf, make tools): prints hello, resets."""

    def test_hello_pvh(self):
        hello = need(os.path.join(BUILD, "bench", "hello-pvh.elf"))
        with tempfile.TemporaryDirectory(prefix="kvmbox-boot-test-") as tmp:
            for expect in ([], ["--expect", "^hello$"]):
                p = subprocess.run([KVMBOX, "boot-test", "--vmm", kvmboxtest.VMM, "--kernel", hello, "--timeout", "10",
                                    "--log", os.path.join(tmp, "hello.log")] + expect,
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
                self.assertEqual(p.returncode, PASS, "%s\n%s" % (p.stdout, p.stderr))
                self.assertEqual(p.stdout.replace("\r", ""), "hello\n", p.stderr)


class Usage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need(KVMBOX)

    def kvmbox(self, *args):
        return subprocess.run([KVMBOX] + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=TIMEOUT)

    def test_help(self):
        for args in (["--help"], ["help"]):
            p = self.kvmbox(*args)
            self.assertEqual(p.returncode, 0, p)
            self.assertIn("boot-test", p.stdout)
        p = self.kvmbox("boot-test", "--help")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("--expect", p.stdout)

    def test_unknown_subcommand(self):
        p = self.kvmbox("no-such-subcommand")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("unknown subcommand 'no-such-subcommand'", p.stderr)

    def test_usage_errors(self):
        for args in (["boot-test"], ["boot-test", "--kernel", VMLINUX, "--bogus"],
                     ["boot-test", "--kernel", VMLINUX, "--cpus", "zero"],
                     ["boot-test", "--kernel", VMLINUX, "--timeout", "-1"],
                     ["boot-test", "--kernel", VMLINUX, "--expect", "("]):
            p = self.kvmbox(*args)
            self.assertEqual(p.returncode, 2, "%s: %r" % (args, p))
            self.assertTrue(p.stderr, args)

    def test_rootfs(self):
        """--rootfs boots an ext4 image on virtio-blk, read-only unless --rootfs-rw."""
        rootfs = os.path.join(IMAGES, "rootfs.ext4")
        with open(rootfs, "rb") as f:
            before = hashlib.md5(f.read()).hexdigest()
        p = self.kvmbox("boot-test", "--kernel", VMLINUX, "--rootfs", rootfs, "--cmdline",
                        'quiet kvmbox_cmd="grep vda /proc/cmdline; touch /x 2>&1"', "--expect", "Read-only file system")
        self.assertEqual(p.returncode, 0, p)
        with open(rootfs, "rb") as f:
            self.assertEqual(hashlib.md5(f.read()).hexdigest(), before, "a read-only --rootfs was modified")
        p = self.kvmbox("boot-test", "--kernel", VMLINUX, "--rootfs-rw")
        self.assertEqual(p.returncode, 2, p)


if __name__ == "__main__":
    unittest.main()
