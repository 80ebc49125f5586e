#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

usage: mkcorpus.py [OUTDIR]   (default: the corpus/ folder next to this script)

kernel_image: small ELF64 kernels (PVH note of 4 and 8 bytes, a vmlinux look-alike with a virtual
entry, several segments, one in RAM above 4 GiB) and bzImage headers. config_json: --config files.
Every file is deterministic and well under 64 KiB; rerun after changing this script and commit."""
import json
import os
import struct
import sys

PT_LOAD, PT_NOTE = 1, 4
EHDR, PHDR = 64, 56


def note(name, ntype, desc):
    name_b = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return struct.pack("<III", len(name_b), len(desc), ntype) + pad(name_b) + pad(desc)


def elf(entry, loads, notes=b"", extra=b""):
    """loads: [(paddr, data, memsz)]; notes: raw note bytes (one PT_NOTE) or b""."""
    phnum = len(loads) + (1 if notes else 0)
    off = EHDR + PHDR * phnum
    body = b""
    phdrs = b""
    if notes:
        phdrs += struct.pack("<IIQQQQQQ", PT_NOTE, 4, off, 0, 0, len(notes), len(notes), 4)
        body += notes
    for paddr, data, memsz in loads:
        body += b"\0" * (-(off + len(body)) % 16)
        seg_off = off + len(body)
        vaddr = paddr + 0xffffffff80000000 if entry >= 0xffffffff80000000 else paddr
        phdrs += struct.pack("<IIQQQQQQ", PT_LOAD, 5, seg_off, vaddr, paddr, len(data), memsz, 16)
        body += data
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, EHDR, 0, 0, EHDR, PHDR, phnum, 0, 0, 0)
    return ehdr + phdrs + body + extra


def code(n, seed):
    # hlt; jmp $-1, then filler: the bytes do not matter to the monitor
    return (b"\xf4\xeb\xfd" + bytes((seed + 7 * i) & 0xff for i in range(n)))[:n]


def bzimage(setup_sects=0, version=0x20F, xlf=1, reloc=1, pref=0x1000000, init_size=0x400000,
            payload=0x400, jump=0x6A, cmdline_size=2047, align=0x200000):
    real = setup_sects or 4
    b = bytearray((real + 1) * 512)
    put = lambda fmt, o, v: struct.pack_into("<" + fmt, b, o, v)
    put("B", 0x1F1, setup_sects)
    put("H", 0x1FE, 0xAA55)
    put("B", 0x200, 0xEB)
    put("B", 0x201, jump)
    b[0x202:0x206] = b"HdrS"
    put("H", 0x206, version)
    put("B", 0x211, 1)
    put("I", 0x22C, 0x7FFFFFFF)
    put("I", 0x230, align)
    put("B", 0x234, reloc)
    put("H", 0x236, xlf)
    put("I", 0x238, cmdline_size)
    put("Q", 0x258, pref)
    put("I", 0x260, init_size)
    return bytes(b) + code(payload, 0x42)


def kernel_seeds():
    pvh = 0x100040
    yield "elf-pvh4", elf(0x100010, [(0x100000, code(0x80, 1), 0x1000)],
                          note(b"Xen", 18, struct.pack("<I", pvh)))
    yield "elf-pvh8", elf(0x100010, [(0x100000, code(0x80, 2), 0x1000)],
                          note(b"Xen", 18, struct.pack("<Q", pvh)))
    yield "elf-pvh-only", elf(0xdead0000, [(0x200000, code(0x40, 3), 0x40)],
                              note(b"Xen", 18, struct.pack("<I", 0x200000)))
    yield "elf-bare", elf(0x100000, [(0x100000, code(0x40, 4), 0x2000)])
    # A vmlinux look-alike: virtual e_entry, "Linux" notes, the banner, the PVM shim's signature.
    notes = note(b"Linux", 6, b"6.1.0\0") + note(b"GNU", 3, bytes(20)) + \
        note(b"Xen", 18, struct.pack("<I", 0x200100))
    text = code(0x100, 5) + b"Linux version 6.1.0-kvmbox (fuzz@seed)\0" + b"\xb9\x10\x4d\x56\x4b\x0f\x30"
    yield "elf-vmlinux", elf(0xffffffff80200000, [(0x200000, text, 0x3000), (0x204000, code(0x80, 6), 0x20000),
                                                  (0x230000, b"", 0x1000)], notes)
    yield "elf-high", elf(0x100000000 + 0x10, [(0x100000000, code(0x80, 7), 0x1000)])
    yield "elf-two-regions", elf(0x100000, [(0x100000, code(0x40, 8), 0x1000),
                                            (0x100000000, code(0x40, 9), 0x800)])
    yield "elf-many-loads", elf(0x100000, [(0x100000 + 0x10000 * i, code(0x20, i), 0x100) for i in range(16)])
    yield "bz-setup0-reloc", bzimage()
    yield "bz-setup3-fixed", bzimage(setup_sects=3, reloc=0, init_size=0x1000, xlf=3)
    yield "bz-proto212", bzimage(setup_sects=1, version=0x20C, reloc=1, pref=0x200000, align=0, jump=0x5e,
                                 cmdline_size=255)
    yield "bz-max-header", bzimage(jump=0x6E, reloc=0, init_size=0)


def config_seeds():
    yield "full", json.dumps({
        "kernel": "build/guests/check64.elf", "initrd": "initrd.cpio", "cmdline": "console=ttyS0 quiet",
        "memory": 256, "cpus": 2, "console": "stdio", "timeout": 12.5, "entry": "auto",
        "hugepages": False, "allow-emulated": True, "no-default-cmdline": False, "log-level": "debug",
        "disk": ["rootfs.ext4,serial=root", "data.img,readonly,direct"],
    }, indent=1)
    yield "disks", json.dumps({"disk": ["d%d.img" % i for i in range(16)]})
    yield "disks-bad", '{"disk": ["a.img", 7, ["b"]]}'
    yield "minimal", "{}"
    yield "pvh-file-console", '{"kernel": "vmlinux", "entry": "pvh", "console": "/tmp/serial.log", "timeout": 3}'
    yield "limits", '{"memory": 1048576, "cpus": 255, "timeout": 1e9, "entry": "linux64", "console": "none"}'
    yield "bad-type", '{"memory": "64", "cpus": 1.5}'
    yield "bad-range", '{"memory": 1, "cpus": 0, "timeout": -1}'
    yield "unknown-key", '{"kernel": "k", "config": "other.json", "probe": true}'
    yield "duplicate", '{"memory": 64, "memory": 128}'
    yield "not-object", '[{"memory": 64}, "x", 1, null, true]'
    yield "unicode", '{"cmdline": "root=/dev/vda \\u00e9\\u4e2d \\ud83d\\ude00", "kernel": "\\/a\\\\b"}'
    yield "truncated", '{"kernel": "k", "memory": 12'


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for target, seeds, ext in (("kernel_image", kernel_seeds(), ".bin"), ("config_json", config_seeds(), ".json")):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds:
            if isinstance(data, str):
                data = data.encode()
            assert len(data) < 64 * 1024, name
            with open(os.path.join(d, name + ext), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
