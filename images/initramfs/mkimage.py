#!/usr/bin/env python3
"""Lay out kvmbox's guest userland (busybox and the agent), for the initramfs or the rootfs.

    mkimage.py initramfs --busybox /bin/busybox --agent build/kvmbox-agent --init images/initramfs/init \
            -o initramfs.cpio
        writes a newc cpio archive (pipe it through `gzip -9n`): every entry owned by root (but /home/user),
        device nodes included, fixed mtimes; needs neither root nor mknod.
    mkimage.py rootfs --busybox /bin/busybox --agent build/kvmbox-agent --init images/initramfs/init \
            --stage DIR -o fixup.debugfs
        fills DIR (for `mkfs.ext4 -d DIR`) and writes a debugfs command file that creates the device
        nodes and gives every inode its owner and intended mode (`debugfs -w -f fixup.debugfs`).

The layout: /bin/busybox with a symlink per applet (`busybox --list-full`); the guest agent
(tools/agent/, static) as /sbin/kvmbox-agent, which is the guest's PID 1: /init in the initramfs and
/sbin/init in the rootfs are symlinks to it; the legacy shell init (--init) as /etc/kvmbox/init.sh, which
the agent execs for kvmbox_cmd=/kvmbox_shell= boots; /etc/{hostname,passwd,group} with root and an
unprivileged `user` (1000:1000, home /home/user); mount points; and /dev/console 5:1, /dev/null 1:3,
/dev/ttyS0 4:64, /dev/mem 1:1. mtimes are $SOURCE_DATE_EPOCH (default 0).
"""
import argparse
import os
import shutil
import stat
import struct
import subprocess
import sys

DIRS = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/kvmbox", "dev", "proc", "sys", "tmp", "run",
        "root", "home", "home/user", "mnt", "var", "var/log", "lib"]
DEVICES = [("dev/console", stat.S_IFCHR | 0o600, 5, 1),
           ("dev/null", stat.S_IFCHR | 0o666, 1, 3),
           ("dev/ttyS0", stat.S_IFCHR | 0o660, 4, 64),
           # the legacy init writes the boot-time marker through /dev/mem before it mounts anything
           ("dev/mem", stat.S_IFCHR | 0o640, 1, 1)]
# `user` lets tests and sandboxes run commands as someone other than root (the agent's run ... user).
ETC = {"etc/hostname": "kvmbox\n",
       "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
       "etc/group": "root:x:0:\nuser:x:1000:\n"}
DIR_MODES = {"tmp": 0o1777, "root": 0o700}
OWNERS = {"home/user": (1000, 1000)}  # everything else is root's
AGENT_AT = "sbin/kvmbox-agent"
LEGACY_INIT_AT = "etc/kvmbox/init.sh"


def die(msg):
    sys.exit("mkimage: " + msg)


BUSYBOX_FIX = "install Debian's busybox-static (apt-get install busybox-static), which replaces the busybox package"
AGENT_FIX = "build it with `make build/kvmbox-agent` (tools/tools.mk links it with -static)"


def check_static(path, fix):
    """Refuse a dynamically linked program: the guest has no libc (e.g. Debian's busybox package, not -static).
    fix says what to do about it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        die("%s: %s: %s" % (path, e.strerror, fix))
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1 or struct.unpack_from("<H", data, 18)[0] != 62:
        die("%s is not an x86_64 ELF executable: %s" % (path, fix))
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        if struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3:  # PT_INTERP
            die("%s is dynamically linked: %s" % (path, fix))
    return data


def applets(busybox):
    try:
        out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        die("cannot list the applets of %s: %s" % (busybox, e))
    names = [l.strip() for l in out.splitlines() if "/" in l.strip()]  # drops "linuxrc"
    if "bin/sh" not in names or "bin/mount" not in names:
        die("%s has no sh or mount applet" % busybox)
    return names


def layout(kind, busybox, agent_path, init_path):
    """Return the entries as (path, mode, content or symlink target or (major, minor))."""
    bb = check_static(busybox, BUSYBOX_FIX)
    agent = check_static(agent_path, AGENT_FIX)
    try:
        with open(init_path, "rb") as f:
            init = f.read()
    except OSError as e:
        die("%s: %s: pass the legacy init script (images/initramfs/init) with --init" % (init_path, e.strerror))
    # Where the kernel looks for PID 1: rdinit's default in an initramfs, init's first choice on a disk.
    init_at = "init" if kind == "initramfs" else "sbin/init"
    entries = {}
    for d in DIRS:
        entries[d] = (stat.S_IFDIR | DIR_MODES.get(d, 0o755), None)
    for path, mode, major, minor in DEVICES:
        entries[path] = (mode, (major, minor))
    for path, text in ETC.items():
        entries[path] = (stat.S_IFREG | 0o644, text.encode())
    entries["bin/busybox"] = (stat.S_IFREG | 0o755, bb)
    for a in applets(busybox):
        if a not in ("bin/busybox", init_at, AGENT_AT):
            entries.setdefault(a, (stat.S_IFLNK | 0o777, b"/bin/busybox"))
    entries[AGENT_AT] = (stat.S_IFREG | 0o755, agent)
    entries[init_at] = (stat.S_IFLNK | 0o777, b"/" + AGENT_AT.encode())
    entries[LEGACY_INIT_AT] = (stat.S_IFREG | 0o755, init)
    for path in list(entries):  # every parent directory is listed too
        parent = os.path.dirname(path)
        while parent and parent not in entries:
            entries[parent] = (stat.S_IFDIR | 0o755, None)
            parent = os.path.dirname(parent)
    # Sorted, a directory comes before everything in it (the kernel's unpacker needs parents first).
    return [(p,) + entries[p] for p in sorted(entries)]


def write_cpio(entries, out, mtime):
    def header(ino, mode, nlink, size, rdev, name, owner=(0, 0)):
        fields = [ino, mode, owner[0], owner[1], nlink, mtime, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        hdr = b"070701" + b"".join(b"%08X" % v for v in fields) + name + b"\0"
        return hdr + b"\0" * (-len(hdr) % 4)

    for ino, (path, mode, data) in enumerate(entries, 1):
        name, owner = path.encode(), OWNERS.get(path, (0, 0))
        if stat.S_ISCHR(mode):
            out.write(header(ino, mode, 1, 0, data, name, owner))
        elif stat.S_ISDIR(mode):
            out.write(header(ino, mode, 2, 0, (0, 0), name, owner))
        else:
            out.write(header(ino, mode, 1, len(data), (0, 0), name, owner))
            out.write(data + b"\0" * (-len(data) % 4))
    out.write(header(0, 0, 1, 0, (0, 0), b"TRAILER!!!"))


def write_stage(entries, stage, script, mtime):
    """Fill STAGE for mkfs.ext4 -d; device nodes and ownership go into the debugfs script instead."""
    if os.path.lexists(stage):
        shutil.rmtree(stage)
    os.makedirs(stage)
    cmds = []
    for path, mode, data in entries:
        full = os.path.join(stage, path)
        if stat.S_ISCHR(mode):
            # debugfs's mknod takes a name in the current directory, not a path
            cmds += ["cd /%s" % os.path.dirname(path),
                     "mknod %s c %d %d" % (os.path.basename(path), data[0], data[1]), "cd /"]
        elif stat.S_ISDIR(mode):
            os.mkdir(full)
        elif stat.S_ISLNK(mode):
            os.symlink(data.decode(), full)
        else:
            with open(full, "wb") as f:
                f.write(data)
        # mkfs.ext4 -d copies the staged owner and the umask-filtered mode: set both explicitly.
        uid, gid = OWNERS.get(path, (0, 0))
        cmds.append("sif /%s mode 0%o" % (path, mode))
        cmds.append("sif /%s uid %d" % (path, uid))
        cmds.append("sif /%s gid %d" % (path, gid))
    for path, mode, data in reversed(entries):  # children first: writing into a directory changes its mtime
        if not stat.S_ISCHR(mode):
            os.utime(os.path.join(stage, path), (mtime, mtime), follow_symlinks=False)
    os.utime(stage, (mtime, mtime))
    script.write("\n".join(cmds) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["initramfs", "rootfs"])
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--agent", required=True, help="the static guest agent, PID 1 (make build/kvmbox-agent)")
    ap.add_argument("--init", required=True, help="the legacy init script, installed as /" + LEGACY_INIT_AT)
    ap.add_argument("--stage", help="rootfs: the directory to fill for mkfs.ext4 -d")
    ap.add_argument("-o", "--output", required=True, help="the cpio archive, or the rootfs debugfs script")
    args = ap.parse_args()
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    entries = layout(args.kind, args.busybox, args.agent, args.init)
    tmp = args.output + ".tmp"
    if args.kind == "initramfs":
        with open(tmp, "wb") as out:
            write_cpio(entries, out, mtime)
    else:
        if not args.stage:
            die("rootfs needs --stage DIR")
        with open(tmp, "w") as out:
            write_stage(entries, args.stage, out, mtime)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
