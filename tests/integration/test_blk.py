"""virtio-blk with Linux: the rootfs on /dev/vda, data that survives power-off and a killed monitor,
read-only disks, host I/O errors that fail one request only, and bad --disk options."""
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from kvmboxtest import EXIT_BAD_INPUT, IMAGES, VMM, VmmTestCase, need, run_vmm

KERNEL = os.path.join(IMAGES, "vmlinux")
INITRD = os.path.join(IMAGES, "initramfs.cpio.gz")
ROOTFS = os.path.join(IMAGES, "rootfs.ext4")


def debugfs_cat(image, path):
    out = subprocess.run(["debugfs", "-R", "cat %s" % path, image], capture_output=True, timeout=30)
    return out.stdout.decode(errors="replace")


class VirtioBlk(VmmTestCase):
    def setUp(self):
        need(KERNEL)
        need(ROOTFS)
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def rootfs_copy(self):
        dst = os.path.join(self.tmp.name, "rootfs.ext4")
        subprocess.run(["cp", "--sparse=always", ROOTFS, dst], check=True)
        return dst

    def data_disk(self, name, size, pattern=True):
        p = os.path.join(self.tmp.name, name)
        with open(p, "wb") as f:
            if pattern:
                f.write(os.urandom(size))
            else:
                f.truncate(size)
        return p

    def test_rootfs_write_survives_poweroff(self):
        """The rootfs boots from /dev/vda; a file written and synced is in the image afterwards."""
        disk = self.rootfs_copy()
        res = run_vmm(["--kernel", KERNEL, "--disk", disk, "--memory", "256", "--cpus", "2", "--cmdline",
                       'root=/dev/vda rw quiet kvmbox_cmd="echo kvmbox-blk-ok > /root/hello.txt; sync; '
                       'grep ext4 /proc/mounts; cat /sys/block/vda/size"'], timeout=90)
        self.assertExit(res, 0)
        self.assertIn("kvmbox-init: reached /init", res.console)
        self.assertIn("/dev/root / ext4 rw", res.console)  # the kernel's name for root=/dev/vda
        self.assertIn("\n%d\r\n" % (os.path.getsize(disk) // 512), res.console)
        self.assertEqual(debugfs_cat(disk, "/root/hello.txt"), "kvmbox-blk-ok\n")
        fsck = subprocess.run(["e2fsck", "-fn", disk], capture_output=True, timeout=60)
        self.assertEqual(fsck.returncode, 0, fsck.stdout.decode() + fsck.stderr.decode())

    def test_synced_data_survives_sigkill(self):
        """Kill the monitor with SIGKILL after the guest's sync returned: nothing synced is lost."""
        disk = self.rootfs_copy()
        p = subprocess.Popen([VMM, "--kernel", KERNEL, "--disk", disk, "--memory", "256", "--cmdline",
                              'root=/dev/vda rw quiet kvmbox_cmd="dd if=/dev/urandom of=/root/blob bs=64k '
                              'count=16 2>/dev/null; md5sum /root/blob; sync; echo SYNCED; sleep 600"'],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = b""
        deadline = time.monotonic() + 60
        try:
            while b"SYNCED" not in out and time.monotonic() < deadline:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
            self.assertIn(b"SYNCED", out, out.decode(errors="replace"))
        finally:
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=30)
        line = [l for l in out.decode().splitlines() if "/root/blob" in l][0]
        guest_md5 = line.split()[0]
        blob = subprocess.run(["debugfs", "-R", "cat /root/blob", disk], capture_output=True, timeout=30).stdout
        self.assertEqual(len(blob), 16 * 65536)
        self.assertEqual(hashlib.md5(blob).hexdigest(), guest_md5)

    def test_data_disks_read_write_readonly(self):
        """vda read-write and vdb read-only, with serials; the guest sees the host's bytes exactly."""
        a = self.data_disk("a.img", 4 << 20)
        b = self.data_disk("b.img", 2 << 20)
        with open(b, "rb") as f:
            b_md5 = hashlib.md5(f.read()).hexdigest()
        res = run_vmm(["--kernel", KERNEL, "--initrd", INITRD, "--memory", "256",
                       "--disk", a + ",serial=disk-a", "--disk", b + ",readonly,serial=disk-b", "--cmdline",
                       'quiet kvmbox_cmd="md5sum /dev/vdb; cat /sys/block/vdb/ro /sys/block/vda/serial '
                       '/sys/block/vdb/serial; echo written-by-guest | dd of=/dev/vda bs=512 seek=8 conv=sync,fsync '
                       '2>/dev/null; dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>&1 | tail -1; '
                       'echo wrote-ro=$?"'], timeout=90)
        self.assertExit(res, 0)
        self.assertIn("%s  /dev/vdb" % b_md5, res.console)
        self.assertIn("disk-a", res.console)
        self.assertIn("disk-b", res.console)
        with open(a, "rb") as f:
            f.seek(8 * 512)
            self.assertEqual(f.read(17), b"written-by-guest\n")
        with open(b, "rb") as f:
            self.assertEqual(hashlib.md5(f.read()).hexdigest(), b_md5, "a read-only disk was modified")

    def test_host_io_error_fails_one_request(self):
        """A disk truncated under the guest: reads past the new end fail, the rest keeps working."""
        disk = self.data_disk("t.img", 16 << 20)
        p = subprocess.Popen([VMM, "--kernel", KERNEL, "--initrd", INITRD, "--memory", "256", "--disk", disk,
                              "--timeout", "60", "--cmdline",
                              'quiet kvmbox_cmd="echo READY; read go; '
                              'dd if=/dev/vda of=/dev/null bs=1M skip=12 count=1 iflag=direct 2>&1 | tail -1; '
                              'dd if=/dev/vda bs=4096 count=1 iflag=direct 2>/dev/null | md5sum; echo DONE"'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = b""
        try:
            while b"READY" not in out:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
            with open(disk, "rb") as f:
                head_md5 = hashlib.md5(f.read(4096)).hexdigest()
            os.truncate(disk, 1 << 20)
            p.stdin.write(b"go\n")
            p.stdin.flush()
            rest, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
        console = (out + rest).decode(errors="replace")
        self.assertEqual(p.returncode, 0, console + err.decode(errors="replace"))
        self.assertRegex(console, r"(?i)error|Input/output")
        self.assertIn(head_md5, console)
        self.assertIn("DONE", console)

    def test_bad_disk_options(self):
        for spec, word in [("/nonexistent/disk.img", "cannot open"),
                           (self.data_disk("x.img", 4096) + ",bogus", "unknown option"),
                           (self.data_disk("e.img", 0, pattern=False), "empty"),
                           (self.tmp.name, "Is a directory")]:
            with self.subTest(spec=spec):
                res = run_vmm(["--kernel", KERNEL, "--initrd", INITRD, "--disk", spec], timeout=30)
                self.assertEqual(res.rc, EXIT_BAD_INPUT, repr(res))
                self.assertIn(word, res.log)

    def test_disk_in_use_is_refused(self):
        """Two monitors on one writable image would corrupt it: the second is refused."""
        disk = self.data_disk("shared.img", 1 << 20)
        p = subprocess.Popen([VMM, "--kernel", KERNEL, "--initrd", INITRD, "--disk", disk, "--cmdline",
                              'quiet kvmbox_cmd="echo UP; sleep 30"'], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out = b""
            while b"UP" not in out:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
            res = run_vmm(["--kernel", KERNEL, "--initrd", INITRD, "--disk", disk], timeout=30)
            self.assertEqual(res.rc, EXIT_BAD_INPUT, repr(res))
            self.assertIn("in use", res.log)
        finally:
            p.kill()
            p.communicate(timeout=30)


if __name__ == "__main__":
    unittest.main()
