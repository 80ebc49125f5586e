"""Integration tests with the freestanding test guests (tests/guests/): each guest checks from inside
the VM what docs/kvmbox-vmm.md promises and prints PASS/FAIL lines, KEY value lines and
`DONE pass=N fail=M`; these tests run them under kvmbox-vmm and compare what they saw with what was
asked for."""
import datetime
import os
import re
import shutil
import tempfile
import unittest

from kvmboxtest import (EXIT_BAD_INPUT, EXIT_KVM_ERROR, EXIT_OK, EXIT_TIMEOUT, EXIT_TRIPLE_FAULT, GUESTS,
                        IS_PVM, VMM, VmmTestCase, need, run_vmm)

# Odd but legal command-line characters (what a kernel command line can carry: no newline, no NUL).
ODD_CMDLINE = 'kvmbox-test a=b "q x" t=~!@#$%^&*()_+{}|:<>?[]\\;\',./` x=--y  two  spaces'
VM_TIMEOUT = "30"   # --timeout for every guest that should end by itself: a hang becomes exit 5
PROC_TIMEOUT = 60   # subprocess timeout on top


def fnv1a(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def host_max_vcpus():
    res = run_vmm(["--probe"], timeout=PROC_TIMEOUT)
    m = re.search(r"^max vcpus:\s*(\d+)", res.console + res.log, re.M)
    if res.rc != 0 or not m:
        raise AssertionError("cannot read 'max vcpus: N' from --probe\n%r" % res)
    return int(m.group(1))  # the whole limit: 255 vCPUs boot in under a second


class GuestTestCase(VmmTestCase):
    @classmethod
    def setUpClass(cls):
        need(VMM)
        cls.tmp = tempfile.mkdtemp(prefix="kvmbox-guests-")
        # Sizes that are not multiples of 8 exercise the guests' hash tails.
        cls.small = os.urandom(5 * 1024 + 3)
        cls.big = os.urandom(1024 * 1024 + 13)
        cls.small_path = os.path.join(cls.tmp, "small.bin")
        cls.big_path = os.path.join(cls.tmp, "big.bin")
        with open(cls.small_path, "wb") as f:
            f.write(cls.small)
        with open(cls.big_path, "wb") as f:
            f.write(cls.big)
        cls.small_fnv, cls.big_fnv = fnv1a(cls.small), fnv1a(cls.big)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def guest(self, name):
        return need(os.path.join(GUESTS, name))

    def run_guest(self, name, args, stdin=b""):
        return run_vmm(["--kernel", self.guest(name), "--timeout", VM_TIMEOUT] + args, stdin=stdin,
                       timeout=PROC_TIMEOUT)

    @staticmethod
    def lines(res):
        return [l.rstrip("\r") for l in res.console.split("\n")]

    def value(self, res, key):
        """The rest of the one console line starting with `KEY ` (None when absent)."""
        found = [l[len(key) + 1:] for l in self.lines(res) if l.startswith(key + " ")]
        self.assertLessEqual(len(found), 1, "%s printed %d times\n%r" % (key, len(found), res))
        return found[0] if found else None

    def assertGuestPassed(self, res):
        """Exit 0, no FAIL line, and the last line is DONE with fail=0."""
        self.assertExit(res, EXIT_OK)
        fails = [l for l in self.lines(res) if l.startswith("FAIL")]
        self.assertEqual(fails, [], "the guest reported failures\n%r" % res)
        done = [l for l in self.lines(res) if l.strip()]
        self.assertTrue(done, "no console output\n%r" % res)
        m = re.fullmatch(r"DONE pass=(\d+) fail=(\d+)", done[-1])
        self.assertTrue(m, "last console line is not DONE\n%r" % res)
        self.assertGreater(int(m.group(1)), 0, repr(res))
        self.assertEqual(int(m.group(2)), 0, repr(res))
        self.assertNotIn("error:", res.log, "the monitor logged an error for a clean run\n%r" % res)

    def assertCore(self, res, cmdline, memory, initrd=None):
        """What every checking guest reports: command line, RAM, initrd, the boot marker."""
        self.assertGuestPassed(res)
        self.assertEqual(self.value(res, "CMDLINE"), cmdline, repr(res))
        self.assertEqual(self.value(res, "RAM"), str(memory), repr(res))
        initrd_line = self.value(res, "INITRD")
        if initrd is None:
            self.assertIsNone(initrd_line, repr(res))
        else:
            data, fnv = initrd
            self.assertEqual(initrd_line, "size=%d fnv=%08x" % (len(data), fnv), repr(res))
        self.assertIn("boot marker", res.log, repr(res))

    def assertSmp(self, res, cpus):
        self.assertEqual(self.value(res, "MPTABLE"), "cpus=%d ioapic=0xfec00000" % cpus, repr(res))
        self.assertEqual(self.value(res, "CPUS"),
                         "online=%d apicids=%s" % (cpus, ",".join(str(i) for i in range(cpus))), repr(res))
        for name in ("entry-state", "boot-params", "e820", "mptable", "cpuid", "smp", "rtc"):
            self.assertIn("PASS " + name, self.lines(res), repr(res))

    def assertRtc(self, res):
        rtc = self.value(res, "RTC")
        self.assertIsNotNone(rtc, repr(res))
        t = datetime.datetime.strptime(rtc, "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        skew = abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())
        self.assertLess(skew, 600, "guest RTC %s is %.0f s off host UTC\n%r" % (rtc, skew, res))


class Check64Test(GuestTestCase):
    """check64.elf: the Linux 64-bit boot protocol entry."""

    def test_cpus(self):
        for cpus in sorted({1, 2, 4, host_max_vcpus()}):
            with self.subTest(cpus=cpus):
                res = self.run_guest("check64.elf", ["--cpus", str(cpus), "--no-default-cmdline",
                                                     "--cmdline", ODD_CMDLINE])
                self.assertCore(res, ODD_CMDLINE, 128)
                self.assertSmp(res, cpus)
                self.assertRtc(res)

    def test_memory_sizes(self):
        # 2 MiB: the smallest machine; 4096 MiB: RAM split around the 0xd0000000-4G hole.
        # The 2047-byte command line is the longest allowed.
        long_cmdline = ("kvmbox-long " + "x" * 2047)[:2047]
        for memory, cmdline in ((2, long_cmdline), (4096, "mem-4096"), (128, "")):
            with self.subTest(memory=memory):
                res = self.run_guest("check64.elf", ["--memory", str(memory), "--initrd", self.small_path,
                                                     "--no-default-cmdline", "--cmdline", cmdline,
                                                     "--entry", "linux64"])
                self.assertCore(res, cmdline, memory, (self.small, self.small_fnv))
                self.assertSmp(res, 1)

    def test_big_initrd(self):
        res = self.run_guest("check64.elf", ["--cpus", "2", "--initrd", self.big_path, "--no-default-cmdline",
                                             "--cmdline", "big-initrd"])
        self.assertCore(res, "big-initrd", 128, (self.big, self.big_fnv))
        self.assertSmp(res, 2)

    def test_serial_echo(self):
        res = self.run_guest("check64.elf", ["--no-default-cmdline", "--cmdline", "x serial-echo y"],
                             stdin=b"hello-kvmbox\n")
        self.assertCore(res, "x serial-echo y", 128)
        lines = self.lines(res)
        self.assertIn("READY", lines, repr(res))
        self.assertEqual(self.value(res, "ECHO"), "hello-kvmbox", repr(res))
        self.assertIn("PASS serial-echo", lines, repr(res))


class PvhTest(GuestTestCase):
    """check-pvh.elf: 32-bit code with the Xen PVH note, entered through PVH."""

    def test_pvh(self):
        for entry, memory, initrd in (("pvh", 128, None), ("pvh", 4096, "small"), ("auto", 2, "small"),
                                      ("auto", 128, "big")):
            with self.subTest(entry=entry, memory=memory, initrd=initrd):
                args = ["--entry", entry, "--memory", str(memory), "--no-default-cmdline",
                        "--cmdline", ODD_CMDLINE]
                want = None
                if initrd == "small":
                    args += ["--initrd", self.small_path]
                    want = (self.small, self.small_fnv)
                elif initrd == "big":
                    args += ["--initrd", self.big_path]
                    want = (self.big, self.big_fnv)
                res = self.run_guest("check-pvh.elf", args)
                self.assertCore(res, ODD_CMDLINE, memory, want)
                for name in ("entry-state", "bss-zero", "start-info", "memmap"):
                    self.assertIn("PASS " + name, self.lines(res), repr(res))


class BzImageTest(GuestTestCase):
    """check.bzImage: the check64 checks packaged as a bzImage."""

    def test_bzimage(self):
        for cpus, memory in ((2, 128), (1, 4096)):
            with self.subTest(cpus=cpus, memory=memory):
                res = self.run_guest("check.bzImage", ["--allow-emulated", "--cpus", str(cpus), "--memory",
                                                       str(memory), "--initrd", self.small_path,
                                                       "--no-default-cmdline", "--cmdline", ODD_CMDLINE])
                self.assertCore(res, ODD_CMDLINE, memory, (self.small, self.small_fnv))
                self.assertSmp(res, cpus)
                self.assertIn("PASS bzimage-header", self.lines(res), repr(res))
                self.assertRtc(res)

    @unittest.skipUnless(IS_PVM, "only a PVM host refuses a bzImage without --allow-emulated")
    def test_bzimage_refused_without_allow_emulated(self):
        res = self.run_guest("check.bzImage", [])
        self.assertExit(res, EXIT_BAD_INPUT)
        self.assertNotIn("GUEST", res.console, repr(res))
        self.assertIn("--allow-emulated", res.log, repr(res))


class FaultTest(GuestTestCase):
    """Guests that end badly: the exit code must say how."""

    def summary_lines(self, res, pattern):
        return [l for l in res.log.splitlines() if re.search(pattern, l, re.I)]

    def test_triple_fault(self):
        res = self.run_guest("triple-fault.elf", [])
        self.assertIn(res.rc, (EXIT_TRIPLE_FAULT, EXIT_KVM_ERROR), repr(res))
        self.assertIn("TRIPLE-FAULT now", res.console, repr(res))
        # One summary line saying what happened (the register dump comes on top of it).
        pattern = r"triple.fault" if res.rc == EXIT_TRIPLE_FAULT else r"internal error|emulation"
        self.assertEqual(len(self.summary_lines(res, pattern)), 1, repr(res))
        self.assertLess(res.elapsed, 20, repr(res))

    def test_garbage(self):
        res = self.run_guest("garbage.elf", [])
        self.assertIn(res.rc, (EXIT_TRIPLE_FAULT, EXIT_KVM_ERROR), repr(res))
        self.assertLess(res.elapsed, 20, repr(res))
        self.assertTrue(self.summary_lines(res, r"error"), repr(res))

    def test_spin_timeout(self):
        res = run_vmm(["--kernel", self.guest("spin.elf"), "--timeout", "1"], timeout=PROC_TIMEOUT)
        self.assertExit(res, EXIT_TIMEOUT)
        self.assertIn("SPIN", self.lines(res), repr(res))
        self.assertGreaterEqual(res.elapsed, 0.95, repr(res))
        self.assertLess(res.elapsed, 10, repr(res))


if __name__ == "__main__":
    unittest.main()
