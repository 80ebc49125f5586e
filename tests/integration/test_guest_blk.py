"""virtio-blk driven from inside the VM by the freestanding guest blk.elf (tests/guests/blk.c): a small
polling virtio 1.x driver that checks negotiation, queue set-up, I/O, the error statuses and the
DEVICE_NEEDS_RESET handling of malformed rings; the host side then checks the disk image."""
import os
import re
import shutil
import struct
import tempfile
import unittest

from kvmboxtest import EXIT_OK, GUESTS, VMM, VmmTestCase, need, run_vmm

SECTOR = 512
DISK_BYTES = 1024 * 1024
SEED = 1234
PAT_FIRST, PAT_SECTORS = 8, 8   # one 8-sector write; sector 16 is written through odd framing
FRAME_SECTOR = PAT_FIRST + PAT_SECTORS
ZEROED = range(24, 28)          # WRITE_ZEROES (24-25 plain, 26-27 with UNMAP)
DISCARDED = range(28, 30)       # DISCARD: zeroes or the old data
STRICT_UNTOUCHED = (30, 31)     # blk-strict: DISCARD with unmap / WRITE_ZEROES with an unknown flag
VM_TIMEOUT = "20"               # the guest needs about 1 s in KVM's instruction emulator
PROC_TIMEOUT = 50

F_SEG_MAX, F_RO, F_BLK_SIZE, F_FLUSH, F_MQ, F_DISCARD, F_WRITE_ZEROES = 2, 5, 6, 9, 12, 13, 14
F_INDIRECT, F_EVENT_IDX, F_VERSION_1 = 28, 29, 32

# Checks every run must pass (the guest skips none of them on this monitor).
COMMON_PASSES = [
    "probe", "features", "registers", "negotiate-refused", "negotiate-legacy", "negotiate", "setup",
    "flush", "read", "interrupt-status", "get-id", "last-sector", "beyond-end", "unsupported",
    "odd-length", "framing", "no-interrupt-flag", "event-idx", "indirect",
    "bad-addr", "recover-bad-addr", "loop", "recover-loop", "next-range", "recover-next-range",
    "no-status", "recover-no-status", "avail-ahead", "recover-avail-ahead", "bad-head", "recover-bad-head",
    "indirect-unnegotiated", "recover-indirect-unnegotiated", "indirect-nested", "recover-indirect-nested",
    "indirect-next", "recover-indirect-next", "indirect-len", "recover-indirect-len",
    "indirect-outside", "recover-indirect-outside", "queue-too-big", "recover-queue-too-big",
    "queue-npot", "recover-queue-npot", "queue-ring-outside", "recover-queue-ring-outside",
    "queue-before-features", "recover-queue-before-features",
]
# One monitor warning per malformed case above (bad-addr ... queue-before-features).
NEEDS_RESET_CASES = 15


def pattern(seed, sector):
    x = (seed ^ (sector * 0x9E3779B9)) & 0xFFFFFFFF
    words = []
    for _ in range(SECTOR // 4):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        words.append(x)
    return struct.pack("<%dI" % len(words), *words)


def fnv1a(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def sector_of(data, n):
    return data[n * SECTOR:(n + 1) * SECTOR]


class GuestBlkTest(VmmTestCase):
    @classmethod
    def setUpClass(cls):
        need(VMM)
        cls.guest = need(os.path.join(GUESTS, "blk.elf"))

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kvmbox-guest-blk-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def make_disk(self, name, with_pattern=False):
        data = bytearray(os.urandom(DISK_BYTES))
        if with_pattern:
            for s in range(PAT_FIRST, PAT_FIRST + PAT_SECTORS):
                data[s * SECTOR:(s + 1) * SECTOR] = pattern(SEED, s)
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path, bytes(data)

    def run_guest(self, disk_spec, cmdline="seed=%d" % SEED, extra=()):
        return run_vmm(["--kernel", self.guest, "--timeout", VM_TIMEOUT, "--no-default-cmdline", "--cmdline",
                        cmdline, "--disk", disk_spec] + list(extra), timeout=PROC_TIMEOUT)

    @staticmethod
    def lines(res):
        return [l.rstrip("\r") for l in res.console.split("\n")]

    def value(self, res, key):
        found = [l[len(key) + 1:] for l in self.lines(res) if l.startswith(key + " ")]
        self.assertEqual(len(found), 1, "%s printed %d times\n%r" % (key, len(found), res))
        return found[0]

    def assertGuestPassed(self, res, passes):
        self.assertExit(res, EXIT_OK)
        lines = self.lines(res)
        self.assertEqual([l for l in lines if l.startswith("FAIL")], [], "the guest reported failures\n%r" % res)
        last = [l for l in lines if l.strip()][-1:]
        m = re.fullmatch(r"DONE pass=(\d+) fail=(\d+)", last[0] if last else "")
        self.assertTrue(m, "last console line is not DONE\n%r" % res)
        self.assertEqual(int(m.group(2)), 0, repr(res))
        missing = [p for p in passes if "PASS " + p not in lines]
        self.assertEqual(missing, [], "checks that did not pass\n%r" % res)
        self.assertEqual(self.value(res, "SEED"), str(SEED), repr(res))
        self.assertEqual(self.value(res, "CAPACITY"), str(DISK_BYTES // SECTOR), repr(res))
        # The malformed rings were logged, and each only broke the device, not the VM.
        self.assertEqual(res.log.count("the device needs a reset"), NEEDS_RESET_CASES, repr(res))
        self.assertNotIn("error:", res.log, repr(res))

    def features(self, res):
        return int(self.value(res, "FEATURES"), 16)

    def assertFeatures(self, feats, readonly):
        for bit in (F_VERSION_1, F_FLUSH, F_SEG_MAX, F_BLK_SIZE, F_INDIRECT, F_EVENT_IDX):
            self.assertTrue(feats >> bit & 1, "feature bit %d missing in 0x%x" % (bit, feats))
        self.assertEqual(bool(feats >> F_RO & 1), readonly, "RO bit in 0x%x" % feats)
        for bit in (F_DISCARD, F_WRITE_ZEROES):
            self.assertEqual(bool(feats >> bit & 1), not readonly, "bit %d in 0x%x" % (bit, feats))

    def test_writable(self):
        """Writes the pattern, reads it back, every error status, every malformed ring; the image
        then holds exactly what the guest wrote."""
        path, orig = self.make_disk("rw.img")
        res = self.run_guest(path + ",serial=guest-blk-1")
        self.assertGuestPassed(res, COMMON_PASSES + ["write", "write-zeroes", "discard"])
        self.assertEqual(self.value(res, "SERIAL"), "guest-blk-1", repr(res))
        self.assertEqual(self.value(res, "RO"), "0", repr(res))
        self.assertEqual(self.value(res, "CONFIG"), "seg_max=126 blk_size=512 num_queues=1", repr(res))
        self.assertFeatures(self.features(res), readonly=False)
        last = DISK_BYTES // SECTOR - 1
        self.assertEqual(self.value(res, "LAST"), "fnv=%08x" % fnv1a(sector_of(orig, last)), repr(res))
        with open(path, "rb") as f:
            now = f.read()
        self.assertEqual(len(now), DISK_BYTES)
        for s in range(DISK_BYTES // SECTOR):
            got = sector_of(now, s)
            if PAT_FIRST <= s <= FRAME_SECTOR:
                self.assertEqual(got, pattern(SEED, s), "sector %d: not the pattern" % s)
            elif s in ZEROED:
                self.assertEqual(got, bytes(SECTOR), "sector %d: WRITE_ZEROES left data" % s)
            elif s in DISCARDED:
                self.assertIn(got, (bytes(SECTOR), sector_of(orig, s)), "sector %d after DISCARD" % s)
            else:
                self.assertEqual(got, sector_of(orig, s), "sector %d changed" % s)

    def test_readonly(self):
        """A read-only disk: RO offered, writes/DISCARD/WRITE_ZEROES refused, the image unchanged."""
        path, orig = self.make_disk("ro.img", with_pattern=True)
        res = self.run_guest(path + ",readonly")
        self.assertGuestPassed(res, COMMON_PASSES + ["write-ro", "discard-ro"])
        self.assertEqual(self.value(res, "SERIAL"), "kvmbox-disk0", repr(res))
        self.assertEqual(self.value(res, "RO"), "1", repr(res))
        self.assertFeatures(self.features(res), readonly=True)
        with open(path, "rb") as f:
            self.assertTrue(f.read() == orig, "the read-only image changed")

    def test_two_queues(self):
        """--cpus 2: two queues (MQ); the second one works and survives the resets too."""
        path, _ = self.make_disk("mq.img")
        res = self.run_guest(path, extra=["--cpus", "2"])
        self.assertGuestPassed(res, COMMON_PASSES + ["write", "queue1"])
        self.assertEqual(self.value(res, "CONFIG"), "seg_max=126 blk_size=512 num_queues=2", repr(res))
        self.assertTrue(self.features(res) >> F_MQ & 1)

    def test_discard_flags_strict(self):
        """virtio 1.4 5.2.6.2: DISCARD with the unmap flag, and DISCARD/WRITE_ZEROES with an unknown
        flag, must end with UNSUPP and change nothing."""
        path, orig = self.make_disk("strict.img")
        res = self.run_guest(path, cmdline="seed=%d blk-strict" % SEED)
        self.assertIn("PASS discard-flags", self.lines(res), repr(res))
        with open(path, "rb") as f:
            now = f.read()
        for s in STRICT_UNTOUCHED:
            self.assertEqual(sector_of(now, s), sector_of(orig, s), "sector %d changed" % s)
        self.assertGuestPassed(res, COMMON_PASSES + ["write", "discard-flags"])


if __name__ == "__main__":
    unittest.main()
