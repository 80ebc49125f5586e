#!/usr/bin/env python3
"""Writes the committed seeds of fuzz_virtio_blk (tests/fuzz/fuzz_virtio_blk.c describes the input) into
tests/fuzz/corpus/virtio_blk/: well-formed requests of every type, several queues, EVENT_IDX and indirect
chains, resets and register pokes, and a few malformed chains."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "virtio_blk")

DESC, AVAIL, USED = 0x400, 0x800, 0xa00
HDRS, STATUS, DATA = 0xc00, 0xe00, 0x1000
F_EVENT_IDX, F_INDIRECT, F_FLUSH, F_DISCARD, F_WZ, F_MQ = 1, 2, 4, 8, 16, 32
O_RO, O_DIRECT, O_TWOQ, O_RESET, O_TOGGLE, O_ROUND2, O_POKES, O_LATE = 1, 2, 4, 8, 16, 32, 64, 128
NEXT, WRITE, INDIRECT = 1, 2, 4


class Input:
    def __init__(self, feat=F_EVENT_IDX | F_FLUSH | F_DISCARD | F_WZ, opts=0, qlog=3):
        self.h = bytearray(32)
        self.h[0], self.h[1], self.h[2] = feat, opts, qlog | (qlog << 4)
        struct.pack_into("<HHH", self.h, 3, DESC // 16, AVAIL // 2, USED // 4)
        struct.pack_into("<HH", self.h, 10, 0x8000 // 16, 0x8000 // 16)  # queue 1 at +0x8000 / +0x8000 / +0x10000
        self.h[14] = 8
        self.ram = bytearray(DATA)
        self.qsize = 1 << qlog
        self.next_desc = 0
        self.avail_idx = 0
        self.data = DATA

    def put(self, gpa, fmt, *v):
        end = gpa + struct.calcsize(fmt)
        if end > len(self.ram):
            self.ram.extend(bytes(end - len(self.ram)))
        struct.pack_into(fmt, self.ram, gpa, *v)

    def desc(self, i, addr, length, flags, nxt, table=DESC):
        self.put(table + 16 * i, "<QIHH", addr, length, flags, nxt)

    def buf(self, n, align=512):
        self.data = (self.data + align - 1) & ~(align - 1)
        a = self.data
        self.data += n
        return a

    def publish(self, head, avail=AVAIL):
        self.put(avail + 4 + 2 * (self.avail_idx % self.qsize), "<H", head)
        self.avail_idx += 1
        self.put(avail + 2, "<H", self.avail_idx)

    def request(self, rtype, sector, data_lens=(), data_in=True, payload=None, indirect=False):
        """header, data segments, status byte; published."""
        n = len(data_lens) + 2
        head = self.next_desc
        hdr = HDRS + 16 * head
        self.put(hdr, "<IIQ", rtype, 0, sector)
        segs = [(hdr, 16, 0)]
        for ln in data_lens:
            a = self.buf(ln)
            if payload is not None:
                self.put(a, "%ds" % len(payload[:ln]), payload[:ln])
            segs.append((a, ln, WRITE if data_in else 0))
        segs.append((STATUS + head, 1, WRITE))
        if indirect:
            table = self.buf(16 * n, 16)
            for k, (a, ln, fl) in enumerate(segs):
                self.desc(k, a, ln, fl | (NEXT if k < n - 1 else 0), k + 1 if k < n - 1 else 0, table)
            self.desc(head, table, 16 * n, INDIRECT, 0)
            self.next_desc += 1
        else:
            for k, (a, ln, fl) in enumerate(segs):
                i = head + k
                self.desc(i, a, ln, fl | (NEXT if k < n - 1 else 0), i + 1 if k < n - 1 else 0)
            self.next_desc += n
        self.publish(head)
        return head

    def bytes(self):
        return bytes(self.h) + bytes(self.ram)


def discard_seg(inp, sector, count, flags=0):
    a = inp.buf(16, 16)
    inp.put(a, "<QII", sector, count, flags)
    return a


def raw_request(inp, rtype, seg_gpa):
    """A DISCARD/WRITE_ZEROES request whose second readable descriptor is an existing segment."""
    head = inp.next_desc
    hdr = HDRS + 16 * head
    inp.put(hdr, "<IIQ", rtype, 0, 0)
    inp.desc(head, hdr, 16, NEXT, head + 1)
    inp.desc(head + 1, seg_gpa, 16, NEXT, head + 2)
    inp.desc(head + 2, STATUS + head, 1, WRITE, 0)
    inp.next_desc += 3
    inp.publish(head)


def seeds():
    s = {}
    i = Input(); i.request(0, 0, [4096]); s["read-4k"] = i
    i = Input(); i.request(1, 8, [1024], data_in=False, payload=b"\xab" * 1024); s["write-1k"] = i
    i = Input(); i.request(4, 0); s["flush"] = i
    i = Input(); i.request(8, 0, [20]); s["get-id"] = i
    i = Input(); raw_request(i, 11, discard_seg(i, 16, 64)); s["discard"] = i
    i = Input(); raw_request(i, 13, discard_seg(i, 32, 8, 1)); s["write-zeroes-unmap"] = i
    i = Input(); raw_request(i, 13, discard_seg(i, 2040, 100)); s["write-zeroes-past-end"] = i
    i = Input(); i.request(99, 0, [512]); s["unknown-type"] = i
    i = Input(); i.request(0, 2047, [1024]); s["read-past-end"] = i
    i = Input(); i.request(0, 0, [1000]); s["read-unaligned-length"] = i
    i = Input(feat=F_EVENT_IDX | F_INDIRECT | F_FLUSH, qlog=4)
    i.request(0, 0, [512, 1024, 512]); i.request(1, 4, [2048], data_in=False, indirect=True)
    i.request(0, 100, [4096], indirect=True); i.request(4, 0); s["mixed-indirect"] = i
    i = Input(feat=F_EVENT_IDX | F_MQ, opts=O_TWOQ); i.request(0, 0, [4096])
    # queue 1: same descriptors copied at +0x8000, its own avail ring
    ram = i.ram
    i.put(DESC + 0x8000, "%ds" % 0x80, bytes(ram[DESC:DESC + 0x80]))
    i.put(AVAIL + 0x8000 + 2, "<HH", 1, 0)
    s["two-queues"] = i
    i = Input(opts=O_RESET); i.request(0, 0, [65536 - DATA - 512]); i.request(4, 0); i.h[14] = 0x81
    s["reset-in-flight"] = i
    i = Input(opts=O_TOGGLE); i.request(0, 0, [4096]); i.h[14] = 0x81; s["queue-ready-toggle"] = i
    i = Input(opts=O_ROUND2); i.request(0, 0, [512]); i.h[16] = 1
    i.desc(5, HDRS, 16, NEXT, 6); i.desc(6, STATUS + 5, 1, WRITE, 0); i.put(AVAIL + 4 + 2, "<H", 5)
    s["second-round"] = i
    i = Input(opts=O_POKES); i.request(0, 0, [512])
    struct.pack_into("<BI", i.h, 17, 2, 0)      # QUEUE_READY 0
    struct.pack_into("<BI", i.h, 22, 5, 0)      # STATUS 0 (reset)
    struct.pack_into("<BI", i.h, 27, 13, 0x10)  # config read
    s["pokes"] = i
    i = Input(opts=O_LATE); i.request(0, 0, [512]); s["late-driver-ok"] = i
    i = Input(opts=O_DIRECT); i.request(0, 8, [4096]); i.request(1, 16, [512], data_in=False); s["direct"] = i
    i = Input(opts=O_RO, feat=F_FLUSH); i.request(1, 0, [512], data_in=False); i.request(0, 0, [512]); s["readonly"] = i
    # malformed
    i = Input(); i.desc(0, HDRS, 16, NEXT, 1); i.desc(1, DATA, 512, NEXT | WRITE, 0); i.publish(0); s["loop"] = i
    i = Input(); i.desc(0, HDRS, 16, 0, 0); i.publish(0); s["no-status"] = i
    i = Input(); i.request(0, 0, [512]); i.put(AVAIL + 2, "<H", 200); s["avail-idx-ahead"] = i
    i = Input(); i.desc(0, HDRS, 16, NEXT, 1); i.desc(1, STATUS, 1, WRITE, 0); i.desc(2, DATA, 16, NEXT, 0)
    i.put(AVAIL + 4, "<H", 7); i.put(AVAIL + 2, "<H", 1); s["head-out-of-range"] = i
    i = Input(feat=F_EVENT_IDX); i.request(0, 0, [512]); i.h[0] |= 128; s["no-version-1"] = i
    i = Input(feat=F_EVENT_IDX | 64); i.h[9] = 40; i.request(0, 0, [512]); s["unknown-feature"] = i
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, inp in sorted(seeds().items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(inp.bytes())
    print("wrote %d seeds to %s" % (len(seeds()), os.path.normpath(OUT)))


if __name__ == "__main__":
    main()
