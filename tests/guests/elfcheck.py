#!/usr/bin/env python3
"""Sanity-check a built test guest: ELF64 x86-64, PT_LOADs at >= 1 MiB, e_entry inside an executable
PT_LOAD; with --pvh also a PT_NOTE holding the Xen XEN_ELFNOTE_PHYS32_ENTRY (18) note whose address
lies inside an executable PT_LOAD. usage: elfcheck.py [--pvh] FILE"""
import struct
import sys


def main():
    args = sys.argv[1:]
    pvh = "--pvh" in args
    path = [a for a in args if a != "--pvh"][0]
    d = open(path, "rb").read()

    def die(msg):
        sys.exit("%s: %s" % (path, msg))

    if d[:4] != b"\x7fELF" or d[4] != 2 or d[5] != 1:
        die("not a little-endian ELF64 file")
    e_type, e_machine = struct.unpack_from("<HH", d, 0x10)
    (e_entry, e_phoff) = struct.unpack_from("<QQ", d, 0x18)
    phentsize, phnum = struct.unpack_from("<HH", d, 0x36)
    if e_type != 2 or e_machine != 62:
        die("e_type %d e_machine %d, want EXEC x86-64" % (e_type, e_machine))
    loads, notes = [], []
    for i in range(phnum):
        p_type, flags, off, _v, paddr, filesz, memsz, _a = struct.unpack_from("<IIQQQQQQ", d, e_phoff + i * phentsize)
        if p_type == 1:
            loads.append((paddr, memsz, flags))
            if paddr < 0x100000:
                die("PT_LOAD at 0x%x below 1 MiB" % paddr)
        elif p_type == 4:
            notes.append((off, filesz))

    def executable(addr):
        return any(a <= addr < a + m and f & 1 for a, m, f in loads)

    if not executable(e_entry):
        die("e_entry 0x%x is not in an executable PT_LOAD" % e_entry)
    if pvh:
        found = None
        for off, size in notes:
            p = off
            while p + 12 <= off + size:
                namesz, descsz, ntype = struct.unpack_from("<III", d, p)
                name = d[p + 12:p + 12 + namesz]
                desc_off = p + 12 + ((namesz + 3) & ~3)
                if name == b"Xen\0" and ntype == 18:
                    if descsz == 4:
                        found = struct.unpack_from("<I", d, desc_off)[0]
                    elif descsz == 8:
                        found = struct.unpack_from("<Q", d, desc_off)[0]
                p = desc_off + ((descsz + 3) & ~3)
        if found is None:
            die("no PT_NOTE with the Xen PHYS32_ENTRY note")
        if not executable(found):
            die("PVH entry 0x%x is not in an executable PT_LOAD" % found)


if __name__ == "__main__":
    main()
