#!/usr/bin/env python3
"""Writes the committed seeds of fuzz_agent_request (tests/fuzz/corpus/agent_request/).

usage: mkcorpus_agent.py [OUTDIR]   (default: the corpus/ folder next to this script)

Each seed is the byte stream of one connection to the agent (docs/agent-protocol.md): a REQUEST frame for
every op with all of its fields, uploads followed by DATA frames, several requests back to back, and
broken ones (bad magic, version, type, flags, id 0, lengths over their bounds, a truncated frame, JSON
that is not an object, unknown ops and fields, wrong types, out-of-range values, duplicate keys, NUL
escapes). Deterministic; rerun after changing this script and commit."""
import json
import os
import struct
import sys

MAGIC, VERSION = 0x4B, 1
REQUEST, RESPONSE, EVENT, DATA = 1, 2, 3, 4
MORE = 1
MAX_JSON, MAX_DATA = 1 << 20, 256 << 10


def frame(ftype, fid, js=b"", data=b"", flags=0, magic=MAGIC, version=VERSION, json_len=None, data_len=None):
    if isinstance(js, (dict, list)):
        js = json.dumps(js, separators=(",", ":")).encode()
    elif isinstance(js, str):
        js = js.encode()
    jl = len(js) if json_len is None else json_len
    dl = len(data) if data_len is None else data_len
    return struct.pack("<BBBBIII", magic, version, ftype, flags, fid, jl, dl) + js + data


def req(fid, obj, data=b"", flags=0):
    return frame(REQUEST, fid, obj, data, flags)


# One request per op, every field it takes set.
OPS = {
    "hello": {"version": 1},
    "configure": {"env": {"PATH": "/bin:/usr/bin", "LANG": "C.UTF-8"}, "cwd": "/root", "user": "root",
                  "hostname": "sandbox"},
    "shutdown": {},
    "run": {"cmd": "/bin/sh", "args": ["-c", "echo hi; exit 3"], "cwd": "/tmp", "env": {"A": "1"},
            "user": "nobody", "sudo": False, "stdin": True, "detached": False, "timeoutMs": 5000,
            "outputBufferBytes": 65536},
    "attach": {"id": "cmd-1", "fromOffset": 0, "follow": True, "output": True},
    "stdin": {"id": "cmd-1", "eof": True},
    "signal": {"id": "cmd-1", "signal": "SIGTERM"},
    "get": {"id": "cmd-1"},
    "list": {},
    "readFile": {"path": "/etc/hostname", "offset": 0, "length": 4096},
    "writeFile": {"path": "/tmp/a/b.txt", "mode": 0o644, "recursive": True, "exclusive": False},
    "appendFile": {"path": "/tmp/log", "mode": 0o600, "recursive": False},
    "mkdir": {"path": "/tmp/x/y", "mode": 0o755, "recursive": True},
    "readdir": {"path": "/tmp", "withFileTypes": True},
    "mkdtemp": {"prefix": "/tmp/sb-"},
    "stat": {"path": "/etc/passwd"},
    "lstat": {"path": "/bin/sh"},
    "realpath": {"path": "/tmp/../etc"},
    "rename": {"oldPath": "/tmp/a", "newPath": "/tmp/b"},
    "copyFile": {"src": "/etc/passwd", "dest": "/tmp/passwd", "exclusive": True, "preserve": True},
    "unlink": {"path": "/tmp/f"},
    "rm": {"path": "/tmp/x", "recursive": True, "force": True},
    "rmdir": {"path": "/tmp/d"},
    "truncate": {"path": "/tmp/f", "len": 10},
    "chmod": {"path": "/tmp/f", "mode": 0o4755},
    "chown": {"path": "/tmp/f", "uid": 1000, "gid": -1},
    "symlink": {"target": "/etc/passwd", "path": "/tmp/l"},
    "readlink": {"path": "/tmp/l"},
    "access": {"path": "/tmp/f", "mode": 6},
    "exists": {"path": "/tmp/f"},
}


def seeds():
    fid = 1
    for op, fields in OPS.items():
        yield "op-" + op, req(fid, dict(op=op, **fields))
        fid += 1
    # minimal: only the op and its required fields
    yield "min-mkdir", req(1, {"op": "mkdir", "path": "d"})
    yield "min-chown", req(1, {"op": "chown", "path": "f", "uid": 0, "gid": 0})
    # uploads: the REQUEST holds the first bytes, DATA frames the rest, the last without MORE
    yield "upload-write", (req(5, {"op": "writeFile", "path": "/tmp/up"}, b"first ", MORE)
                           + frame(DATA, 5, b"", b"middle ", MORE) + frame(DATA, 5, b"", b"last"))
    yield "upload-stdin", (req(6, {"op": "stdin", "id": "cmd-2"}, b"input\n", MORE)
                           + frame(DATA, 6, b"", b"", 0))
    # a connection's worth of requests back to back
    stream = b"".join(req(i + 1, dict(op=op, **f)) for i, (op, f) in enumerate(list(OPS.items())[:8]))
    yield "pipeline", stream + req(100, {"op": "list"}) + frame(DATA, 100, {"stream": "stdout"}, b"x")
    # signals as names and numbers
    yield "signal-forms", b"".join(req(i + 1, {"op": "signal", "id": "c", "signal": s})
                                   for i, s in enumerate(["TERM", 9, "15", "SIGKILL", "SIGRTMIN", 0, 65, "x"]))
    yield "null-fields", req(1, {"op": "run", "cmd": "ls", "args": None, "env": None, "timeoutMs": None})
    yield "unicode", req(1, {"op": "stat", "path": "/tmp/\u00e9\u4e2d\U0001F600"})
    # refused requests
    yield "bad-requests", b"".join(req(i + 1, j) for i, j in enumerate([
        "{}", "[]", "{\"op\":1}", "{\"op\":\"nope\"}", "{\"op\":\"list\",\"path\":\"/\"}",
        "{\"op\":\"stat\"}", "{\"op\":\"stat\",\"path\":null}", "{\"op\":\"stat\",\"path\":\"\"}",
        "{\"op\":\"stat\",\"path\":\"a\\u0000b\"}", "{\"op\":\"stat\",\"path\":1}",
        "{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":4096}", "{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":-1}",
        "{\"op\":\"mkdir\",\"path\":\"a\",\"recursive\":\"yes\"}", "{\"op\":\"list\",\"op\":\"list\"}",
        "{\"op\":\"run\",\"cmd\":\"x\",\"env\":{\"A=B\":\"1\"}}", "{\"op\":\"run\",\"cmd\":\"x\",\"args\":[1]}",
        "{\"op\":\"run\",\"cmd\":\"x\",\"outputBufferBytes\":1}", "{\"op\":\"readFile\",\"path\":\"a\",\"offset\":1.5}",
        "{\"op\":\"chown\",\"path\":\"a\",\"uid\":-2,\"gid\":0}", "{\"op\":\"hello\",\"version\":0}",
        "{\"op\":\"readFile\",\"path\":\"a\",\"offset\":99999999999999999999}", "{\"op\":\"list\"} trailing",
        b"{\"op\":\"stat\",\"path\":\"\xff\"}", "{\"op\":", "",
    ]))
    # error messages that quote the request's bytes: a bad UTF-8 byte, a character cut at 64 bytes
    yield "error-not-utf8", (req(1, b'{"op":"stat","path":"a\\u000\xd7\x9d"}')
                             + req(2, {"op": "a" + "\u00e9" * 40}) + req(3, {"op": "list", "\u00e9" * 40: 1}))
    yield "long-path", req(1, {"op": "stat", "path": "/" + "p" * 4094}) + req(2, {"op": "stat", "path": "/" + "p" * 4095})
    yield "request-without-json", frame(REQUEST, 1) + req(2, {"op": "list"})
    # broken frames: the connection closes at the first one
    ok = req(9, {"op": "list"})
    yield "frame-bad-magic", frame(REQUEST, 1, {"op": "list"}, magic=0x4C)
    yield "frame-bad-version", frame(REQUEST, 1, {"op": "list"}, version=2)
    yield "frame-bad-type", ok + frame(5, 1, {"op": "list"})
    yield "frame-bad-flags", frame(REQUEST, 1, {"op": "list"}, flags=2)
    yield "frame-more-on-response", frame(RESPONSE, 1, {"ok": True}, flags=MORE)
    yield "frame-id-0", ok + frame(REQUEST, 0, {"op": "list"})
    yield "frame-json-too-long", frame(REQUEST, 1, b"", json_len=MAX_JSON + 1)
    yield "frame-data-too-long", frame(DATA, 1, b"", data_len=MAX_DATA + 1)
    yield "frame-truncated", ok + ok[:-3]
    yield "frame-header-only", ok[:16]
    yield "events-and-responses", frame(EVENT, 3, {"event": "started", "id": "cmd-1", "pid": 7}) + \
        frame(RESPONSE, 3, {"ok": True}) + frame(DATA, 3, {"stream": "stderr", "byteOffset": 0}, b"err")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    d = os.path.join(out, "agent_request")
    os.makedirs(d, exist_ok=True)
    for name, data in seeds():
        assert len(data) < 64 * 1024, name
        with open(os.path.join(d, name + ".bin"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
