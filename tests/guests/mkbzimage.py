#!/usr/bin/env python3
"""Package a 64-bit test payload as a bzImage (Linux boot protocol 2.15, XLF_KERNEL_64).

usage: mkbzimage.py PAYLOAD.elf PAYLOAD.bin SETUP_SECTS OUT

PAYLOAD.elf is linked at 0x100000 with its 64-bit entry at 0x100200 (load address + 0x200);
PAYLOAD.bin is `objcopy -O binary` of it. The setup area is SETUP_SECTS+1 sectors: a boot sector
holding the setup header at 0x1f1, and no real-mode code worth the name (this image only supports
the 64-bit entry)."""
import struct
import sys

LOAD = 0x100000


def load_segments(path):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit("%s: not an ELF64 file" % path)
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    entry = struct.unpack_from("<Q", data, 0x18)[0]
    segs = []
    for i in range(phnum):
        p_type, _flags, _off, _vaddr, paddr, filesz, memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and memsz:
            segs.append((paddr, filesz, memsz))
    return entry, segs


def main():
    elf, binfile, setup_sects, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    entry, segs = load_segments(elf)
    payload = open(binfile, "rb").read()
    lo = min(s[0] for s in segs)
    file_end = max(s[0] + s[1] for s in segs)
    mem_end = max(s[0] + s[2] for s in segs)
    if lo != LOAD or entry != LOAD + 0x200:
        sys.exit("%s: loaded at 0x%x with entry 0x%x; want 0x%x and 0x%x" % (elf, lo, entry, LOAD, LOAD + 0x200))
    if len(payload) != file_end - LOAD:
        sys.exit("%s: %d bytes, the segments say %d" % (binfile, len(payload), file_end - LOAD))
    if not 1 <= setup_sects <= 63:
        sys.exit("bad setup_sects %d" % setup_sects)
    init_size = (mem_end - LOAD + 0xfff) & ~0xfff

    setup = bytearray((setup_sects + 1) * 512)
    setup[0:4] = b"\xfa\xf4\xeb\xfd"          # cli; hlt; jmp $-1 (never run: 64-bit entry only)
    setup[0x1ef] = 0xff                        # sentinel: a loader that copies it is too generous
    version_str = b"kvmbox check.bzImage\0"
    setup[0x300:0x300 + len(version_str)] = version_str

    def put(fmt, off, val):
        struct.pack_into("<" + fmt, setup, off, val)

    put("B", 0x1f1, setup_sects)               # setup_sects
    put("H", 0x1f2, 1)                         # root_flags
    put("I", 0x1f4, (len(payload) + 15) // 16)  # syssize
    put("H", 0x1fa, 0xffff)                    # vid_mode: normal
    put("H", 0x1fe, 0xaa55)                    # boot_flag
    setup[0x200:0x202] = b"\xeb\x6a"           # jump: header ends at 0x26c
    setup[0x202:0x206] = b"HdrS"
    put("H", 0x206, 0x020f)                    # version 2.15
    put("H", 0x20e, 0x300 - 0x200)             # kernel_version string
    put("B", 0x211, 0x01)                      # loadflags: LOADED_HIGH
    put("I", 0x214, LOAD)                      # code32_start
    put("I", 0x22c, 0x7fffffff)                # initrd_addr_max
    put("I", 0x230, 0x200000)                  # kernel_alignment
    put("B", 0x234, 0)                         # relocatable_kernel: no
    put("B", 0x235, 21)                        # min_alignment (log2)
    put("H", 0x236, 0x0001)                    # xloadflags: XLF_KERNEL_64
    put("I", 0x238, 2047)                      # cmdline_size
    put("Q", 0x258, LOAD)                      # pref_address
    put("I", 0x260, init_size)                 # init_size
    setup[0x26c:0x270] = b"\xfa\xf4\xeb\xfd"   # target of the jump: cli; hlt

    with open(out, "wb") as f:
        f.write(setup)
        f.write(payload)


if __name__ == "__main__":
    main()
