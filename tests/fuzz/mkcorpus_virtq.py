#!/usr/bin/env python3
"""Writes the committed seeds of fuzz_virtq (tests/fuzz/corpus/virtq/).

usage: mkcorpus_virtq.py [OUTDIR]   (default: the corpus/ folder next to this script)

Each seed is fuzz_virtq's 16-byte header then a guest RAM image (48 KiB at 0, a hole, 16 KiB at
0x10000; only the bytes up to the last one set are stored). Valid layouts (plain, EVENT_IDX, indirect,
16-bit index wraparound, buffers in high RAM, a 256-buffer chain) and malformed ones, one rule broken
each. Deterministic; rerun after changing this script and commit."""
import os
import struct
import sys

NEXT, WRITE, INDIRECT = 1, 2, 4
EVENT_IDX, INDIRECT_DESC, SET_AVAIL_IDX, RAW_ADDRS = 1, 2, 4, 8
LOW, HIGH_BASE = 48 << 10, 0x10000
DESC, AVAIL, USED, IND, DATA = 0x100, 0x400, 0x600, 0x1000, 0x4000


class Layout:
    def __init__(self, size=8, flags=0, desc=DESC, avail=AVAIL, used=USED, last=0, avail_idx=None, irq=0xFF):
        self.size, self.flags, self.desc, self.avail, self.used = size, flags, desc, avail, used
        self.last, self.irq = last, irq
        self.idx = last  # the driver's avail->idx
        self.forced_idx = avail_idx
        self.ram = bytearray(LOW + (16 << 10))

    def host(self, gpa):
        return gpa if gpa < LOW else LOW + gpa - HIGH_BASE

    def put(self, gpa, fmt, *v):
        struct.pack_into("<" + fmt, self.ram, self.host(gpa), *v)

    def d(self, i, addr, length, flags=0, nxt=0, table=None):
        self.put((self.desc if table is None else table) + 16 * i, "QIHH", addr, length, flags, nxt)

    def publish(self, head):
        self.put(self.avail + 4 + 2 * (self.idx % self.size), "H", head)
        self.idx = (self.idx + 1) & 0xFFFF
        self.put(self.avail + 2, "H", self.idx)

    def used_event(self, v):
        self.put(self.avail + 4 + 2 * self.size, "H", v)

    def bytes(self):
        log2 = self.size.bit_length() - 1
        flags = self.flags | (SET_AVAIL_IDX if self.forced_idx is not None else 0)
        hdr = bytes([log2, flags]) + b"".join(v.to_bytes(3, "little") for v in (self.desc, self.avail, self.used))
        hdr += struct.pack("<HHB", self.last, self.forced_idx or 0, self.irq)
        assert len(hdr) == 16
        return hdr + bytes(self.ram).rstrip(b"\0")


def plain(**kw):
    q = Layout(**kw)
    q.d(0, DATA, 16, NEXT, 3)
    q.d(3, DATA + 0x100, 0x200, NEXT, 5)
    q.d(5, DATA + 0x1000, 0x40, WRITE)
    q.d(1, DATA + 0x2000, 0x10, WRITE)
    q.publish(0)
    q.publish(1)
    return q


def seeds():
    yield "plain", plain().bytes()
    q = plain(flags=EVENT_IDX, irq=0x55)
    q.used_event(1)
    yield "event-idx", q.bytes()
    q = Layout(flags=INDIRECT_DESC | EVENT_IDX)
    q.d(0, DATA, 8, NEXT, 2, table=IND)
    q.d(2, DATA + 0x100, 32, NEXT | WRITE, 1, table=IND)
    q.d(1, DATA + 0x200, 1, WRITE, table=IND)
    q.d(4, DATA + 0x300, 4, NEXT, 6)
    q.d(6, IND, 48, INDIRECT)
    q.publish(4)
    yield "indirect", q.bytes()
    q = Layout(last=65534)
    for i in range(3):
        q.d(i, DATA + 16 * i, 16, WRITE)
        q.publish(i)
    yield "wraparound", q.bytes()
    q = Layout(size=4, desc=HIGH_BASE, avail=HIGH_BASE + 0x100, used=HIGH_BASE + 0x200)
    q.d(0, HIGH_BASE + 0x1000, 0x3000, NEXT, 1)
    q.d(1, 0x2000, 0x100, WRITE)
    q.publish(0)
    yield "high-ram", q.bytes()
    q = Layout(size=256, flags=INDIRECT_DESC, desc=0x2000, avail=0x3000, used=0x3400)
    for i in range(256):
        q.d(i, DATA + 8 * i, 8, (NEXT if i < 255 else 0) | (WRITE if i >= 128 else 0), i + 1, table=IND)
    q.d(7, IND, 256 * 16, INDIRECT)
    q.publish(7)
    yield "long-indirect", q.bytes()
    # One rule broken each.
    q = Layout()
    q.d(0, DATA, 4, NEXT, 1)
    q.d(1, DATA, 4, NEXT, 0)
    q.publish(0)
    yield "bad-loop", q.bytes()
    q = Layout()
    q.d(0, DATA, 4, NEXT, 8)
    q.publish(0)
    yield "bad-next", q.bytes()
    q = Layout()
    q.publish(9)
    yield "bad-head", q.bytes()
    q = plain(avail_idx=9)
    yield "bad-avail-idx", q.bytes()
    q = Layout(flags=INDIRECT_DESC)
    q.d(0, IND + 0x100, 16, INDIRECT, table=IND)
    q.d(0, DATA, 4, table=IND + 0x100)
    q.d(0, IND, 16, INDIRECT)
    q.publish(0)
    yield "bad-nested", q.bytes()
    q = Layout()
    q.d(0, DATA, 4, table=IND)
    q.d(0, IND, 16, INDIRECT)
    q.publish(0)
    yield "bad-indirect-unnegotiated", q.bytes()
    q = Layout(flags=INDIRECT_DESC)
    q.d(0, IND, 24, INDIRECT)
    q.publish(0)
    yield "bad-indirect-len", q.bytes()
    q = Layout()
    q.d(0, LOW - 8, 16)  # half in the hole
    q.publish(0)
    yield "bad-buffer-hole", q.bytes()
    q = Layout()
    q.d(0, DATA, 4, WRITE | NEXT, 1)
    q.d(1, DATA, 4)
    q.publish(0)
    yield "bad-order", q.bytes()
    q = plain(flags=RAW_ADDRS, desc=DESC + 8)
    yield "bad-desc-align", q.bytes()
    q = plain(flags=EVENT_IDX, used=HIGH_BASE + (16 << 10) - (4 + 8 * 8))
    yield "bad-used-event-word", q.bytes()
    q = Layout(flags=INDIRECT_DESC)
    for i in range(257):
        q.d(i, DATA, 1, NEXT if i < 256 else 0, i + 1, table=IND)
    q.d(0, IND, 257 * 16, INDIRECT)
    q.publish(0)
    yield "bad-257-buffers", q.bytes()
    q = plain()
    yield "bad-size", b"\xf6" + q.bytes()[1:]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    d = os.path.join(out, "virtq")
    os.makedirs(d, exist_ok=True)
    for name, data in seeds():
        assert len(data) < 64 * 1024 + 16, name
        with open(os.path.join(d, name + ".bin"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
