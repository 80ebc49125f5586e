"""Bad input never crashes or hangs the monitor: each case is one clear error line and exit code 1."""
import json
import os
import struct
import tempfile
import unittest

from kvmboxtest import EXIT_BAD_INPUT, IMAGES, VmmTestCase, need, run_vmm


def minimal_elf(paddr, code=b"\xf4", entry=None):
    """A one-segment ELF64 x86_64 executable loaded at paddr."""
    ehdr_size, phdr_size = 64, 56
    offset = 0x1000
    entry = paddr if entry is None else entry
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, ehdr_size, 0, 0, ehdr_size, phdr_size, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, offset, paddr, paddr, len(code), len(code), 0x1000)
    image = ehdr + phdr
    return image + bytes(offset - len(image)) + code


class BadInput(VmmTestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name, content=None):
        p = os.path.join(self.tmp.name, name)
        if content is not None:
            with open(p, "wb") as f:
                f.write(content)
        return p

    def assertBadInput(self, args, *words):
        res = run_vmm(args, timeout=30)
        self.assertEqual(res.rc, EXIT_BAD_INPUT, repr(res))
        lines = [l for l in res.log.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "expected exactly one error line\n%r" % res)
        for w in words:
            self.assertIn(w, lines[0], repr(res))
        self.assertLess(res.elapsed, 10)
        return lines[0]

    def test_missing_kernel(self):
        self.assertBadInput(["--kernel", self.path("nope")], "cannot open kernel", "No such file")

    def test_no_kernel_option(self):
        self.assertBadInput([], "no kernel given")

    def test_kernel_is_a_directory(self):
        self.assertBadInput(["--kernel", self.tmp.name], "not a regular file")

    def test_empty_kernel(self):
        self.assertBadInput(["--kernel", self.path("empty", b"")], "is empty")

    def test_not_a_kernel(self):
        self.assertBadInput(["--kernel", self.path("text", b"hello, I am not a kernel\n" * 100)], "not a kernel")

    def test_truncated_vmlinux(self):
        with open(need(os.path.join(IMAGES, "vmlinux")), "rb") as f:
            head = f.read(4096)
        self.assertBadInput(["--kernel", self.path("truncated", head)], "truncated")

    def test_truncated_elf_header(self):
        self.assertBadInput(["--kernel", self.path("short", minimal_elf(0x100000)[:40])], "truncated")

    def test_segment_outside_memory(self):
        k = self.path("high.elf", minimal_elf(0x40000000))
        self.assertBadInput(["--kernel", k, "--memory", "128"], "does not fit in guest RAM")

    def test_segment_in_boot_area(self):
        self.assertBadInput(["--kernel", self.path("low.elf", minimal_elf(0x8000))], "boot area")

    def test_entry_outside_segments(self):
        k = self.path("entry.elf", minimal_elf(0x100000, entry=0x300000))
        self.assertBadInput(["--kernel", k], "entry point")

    def test_overlong_cmdline(self):
        k = self.path("k.elf", minimal_elf(0x100000))
        self.assertBadInput(["--kernel", k, "--cmdline", "x" * 3000], "command line", "--cmdline")

    def test_initrd_does_not_fit(self):
        k = self.path("k.elf", minimal_elf(0x100000))
        big = self.path("big.img")
        with open(big, "wb") as f:
            f.truncate(200 << 20)  # sparse: costs no disk
        self.assertBadInput(["--kernel", k, "--initrd", big, "--memory", "128"], "initrd", "raise --memory")

    def test_missing_initrd(self):
        k = self.path("k.elf", minimal_elf(0x100000))
        self.assertBadInput(["--kernel", k, "--initrd", self.path("none")], "cannot open initrd")

    def test_impossible_memory(self):
        k = self.path("k.elf", minimal_elf(0x100000))
        for mem in ["0", "1", "-5", "abc", "99999999999999", "2000000"]:
            with self.subTest(memory=mem):
                self.assertBadInput(["--kernel", k, "--memory", mem], "--memory")

    def test_impossible_cpus(self):
        k = self.path("k.elf", minimal_elf(0x100000))
        for cpus in ["0", "256", "100000", "two"]:
            with self.subTest(cpus=cpus):
                self.assertBadInput(["--kernel", k, "--cpus", cpus], "--cpus")

    def test_bad_options(self):
        k = self.path("k.elf", minimal_elf(0x100000))
        self.assertBadInput(["--kernel", k, "--bogus"], "unknown option")
        self.assertBadInput(["--kernel", k, "--timeout", "-1"], "--timeout")
        self.assertBadInput(["--kernel", k, "--entry", "bios"], "--entry")
        self.assertBadInput(["--kernel", k, "--log-level", "loud"], "--log-level")
        self.assertBadInput(["--kernel", k, "--entry", "pvh"], "no PVH entry")
        self.assertBadInput(["--kernel"], "needs a value")

    def test_bad_config_files(self):
        k = self.path("k.elf", minimal_elf(0x100000))
        cases = [
            (b"{not json", "invalid JSON"),
            (b"[1, 2]", "JSON object"),
            (json.dumps({"kernel": k, "colour": "blue"}).encode(), "unknown key"),
            (json.dumps({"kernel": k, "memory": "128"}).encode(), "must be a non-negative integer"),
            (json.dumps({"kernel": k, "cpus": 0}).encode(), "--cpus"),
            (b'{"kernel": "a", "kernel": "b"}', "invalid JSON"),
        ]
        for i, (text, word) in enumerate(cases):
            with self.subTest(config=text):
                self.assertBadInput(["--config", self.path("c%d.json" % i, text)], word)
        self.assertBadInput(["--config", self.path("missing.json")], "cannot open")

    def test_config_file_works(self):
        """The JSON config is the same machine as the options; later options override it."""
        need(os.path.join(IMAGES, "vmlinux"))
        cfg = self.path("vm.json", json.dumps({
            "kernel": os.path.join(IMAGES, "vmlinux"), "initrd": os.path.join(IMAGES, "initramfs.cpio.gz"),
            "memory": 64, "cpus": 1, "cmdline": "quiet kvmbox_cmd=\"echo from-config\"",
            "log-level": "info", "timeout": 60}).encode())
        res = run_vmm(["--config", cfg, "--memory", "256"], timeout=90)
        self.assertEqual(res.rc, 0, repr(res))
        self.assertIn("from-config", res.console)


if __name__ == "__main__":
    unittest.main()


class HugePages(VmmTestCase):
    NR = "/proc/sys/vm/nr_hugepages"

    def test_hugepages_shortage_is_a_clear_error(self):
        """Not enough huge pages reserved: a clear error at start, never a SIGBUS later."""
        with open(self.NR) as f:
            if int(f.read()) != 0:
                self.skipTest("huge pages are reserved on this host")
        k = os.path.join(IMAGES, "vmlinux")
        res = run_vmm(["--kernel", need(k), "--hugepages", "--memory", "64"], timeout=30)
        self.assertEqual(res.rc, EXIT_BAD_INPUT, repr(res))
        self.assertIn("huge pages", res.log)

    @unittest.skipUnless(os.geteuid() == 0, "reserving huge pages needs root")
    def test_hugepages_boot_linux(self):
        with open(self.NR) as f:
            before = int(f.read())
        try:
            with open(self.NR, "w") as f:
                f.write(str(before + 64))
            res = run_vmm(["--kernel", need(os.path.join(IMAGES, "vmlinux")), "--initrd",
                           os.path.join(IMAGES, "initramfs.cpio.gz"), "--hugepages", "--memory", "128",
                           "--cmdline", 'quiet kvmbox_cmd="echo huge-ok"'], timeout=60)
            self.assertEqual(res.rc, 0, repr(res))
            self.assertIn("huge-ok", res.console)
        finally:
            with open(self.NR, "w") as f:
                f.write(str(before))
