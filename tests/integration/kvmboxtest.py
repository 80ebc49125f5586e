"""Shared helpers for the integration tests: where the build is, and how to run the monitor."""
import os
import re
import subprocess
import threading
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("KVMBOX_BUILD", os.path.join(ROOT, "build")))
VMM = os.path.abspath(os.environ.get("KVMBOX_VMM", os.path.join(BUILD, "kvmbox-vmm")))
GUESTS = os.path.join(BUILD, "guests")
IMAGES = os.path.join(BUILD, "images")
IS_PVM = os.path.isdir("/sys/module/kvm_pvm")

# Exit codes of kvmbox-vmm (docs/kvmbox-vmm.md).
EXIT_OK, EXIT_BAD_INPUT, EXIT_HOST, EXIT_TRIPLE_FAULT, EXIT_KVM_ERROR, EXIT_TIMEOUT, EXIT_PANIC = range(7)


class Result:
    def __init__(self, rc, console, log, elapsed):
        self.rc, self.console, self.log, self.elapsed = rc, console, log, elapsed

    def __repr__(self):
        return "rc=%d elapsed=%.2fs\n--- console ---\n%s\n--- log ---\n%s" % (
            self.rc, self.elapsed, self.console, self.log)


def run_vmm(args, stdin=b"", timeout=60, vmm=None):
    """Run the monitor with console on stdio; return its exit code, console output and log."""
    start = time.monotonic()
    p = subprocess.run([vmm or VMM] + list(args), input=stdin, capture_output=True, timeout=timeout)
    return Result(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"),
                  time.monotonic() - start)


def need(path):
    """Skip-proof check: a missing artifact is a failure, not a skip (make check builds them all)."""
    if not os.path.exists(path):
        raise AssertionError("%s is missing: run `make` and `make images` first" % path)
    return path


class VmmTestCase(unittest.TestCase):
    def assertExit(self, res, code):
        self.assertEqual(res.rc, code, "unexpected exit code\n%r" % res)


class VmmProcess:
    """A monitor running in the background: its console (stdout) and log (stderr) collected by a thread
    each. wait_for() waits for a regular expression on either; finish() waits for the exit and fails on a
    sanitizer report."""

    def __init__(self, args):
        self.args = list(args)
        self.p = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.out, self.err = b"", b""
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._read, args=(self.p.stdout, "out"), daemon=True),
                        threading.Thread(target=self._read, args=(self.p.stderr, "err"), daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, f, name):
        while True:
            chunk = os.read(f.fileno(), 65536)
            with self.cond:
                if chunk:
                    setattr(self, name, getattr(self, name) + chunk)
                self.cond.notify_all()
                if not chunk:
                    return

    def console(self):
        with self.cond:
            return self.out.decode(errors="replace")

    def log(self):
        with self.cond:
            return self.err.decode(errors="replace")

    def report(self):
        return "--- console ---\n%s\n--- log ---\n%s" % (self.console()[-6000:], self.log()[-4000:])

    def wait_for(self, pattern, stream="out", timeout=30):
        """Wait for a regular expression on the console (or, stream="err", the log); returns the match."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = re.search(pattern, getattr(self, stream).decode(errors="replace"), re.M)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or not any(t.is_alive() for t in self.threads):
                    break
                self.cond.wait(min(left, 0.2))
        raise AssertionError("no %r in the %s\n%s" % (pattern, "console" if stream == "out" else "log",
                                                       self.report()))

    def wait_exit(self, timeout=20):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the monitor did not exit within %d s\n%s" % (timeout, self.report()))
        for t in self.threads:
            t.join(5)
        return rc

    def finish(self, timeout=30):
        """Wait for the exit (killing it after timeout, which fails); returns the exit code."""
        try:
            rc = self.wait_exit(timeout)
        except AssertionError:
            self.close()
            raise
        self.close()
        log = self.log()
        if "AddressSanitizer" in log or "runtime error:" in log or "LeakSanitizer" in log:
            raise AssertionError("sanitizer report\n" + self.report())
        return rc

    def stop(self):
        """SIGTERM, then finish()."""
        if self.p.poll() is None:
            self.p.terminate()
        return self.finish()

    def close(self):
        """Kill it if it still runs and release everything (idempotent)."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        for t in self.threads:
            t.join(5)
        self.p.stdout.close()
        self.p.stderr.close()

    kill = close

    def rss_kib(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")
