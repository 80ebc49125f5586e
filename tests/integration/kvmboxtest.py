"""Shared helpers for the integration tests: where the build is, and how to run the monitor."""
import os
import subprocess
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
