"""A small client of the agent protocol (docs/agent-protocol.md) for the integration tests: frames over a
Unix socket, either the agent's own (kvmbox-agent --listen unix:PATH) or the monitor's hybrid vsock socket
(CONNECT 1024). Deliberately independent of libkvmbox, so the tests check the protocol as documented."""
import json
import socket
import struct
import time

MAGIC, VERSION = 0x4B, 1
REQUEST, RESPONSE, EVENT, DATA = 1, 2, 3, 4
MORE = 1
HEADER = struct.Struct("<BBBBIII")
MAX_DATA = 256 * 1024
AGENT_PORT = 1024


class AgentError(Exception):
    def __init__(self, error, response=None):
        super().__init__(error.get("message", error.get("code")))
        self.error = error
        self.code = error.get("code")
        self.response = response


def encode(ftype, fid, obj=None, data=b"", flags=0):
    js = json.dumps(obj, separators=(",", ":")).encode() if obj is not None else b""
    return HEADER.pack(MAGIC, VERSION, ftype, flags, fid, len(js), len(data)) + js + data


class Agent:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.next_id = 1

    @classmethod
    def connect_unix(cls, path, timeout=10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s)

    @classmethod
    def connect_vsock(cls, uds, port=AGENT_PORT, timeout=30):
        """Through the monitor's hybrid vsock socket, retrying until the guest's agent listens."""
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(max(1.0, deadline - time.monotonic()))
            try:
                s.connect(uds)
                s.sendall(b"CONNECT %d\n" % port)
                line = b""
                while not line.endswith(b"\n"):
                    c = s.recv(1)
                    if not c:
                        break
                    line += c
                if line.startswith(b"OK "):
                    return cls(s)
            except OSError:
                pass
            s.close()
            if time.monotonic() > deadline:
                raise TimeoutError("the agent did not answer on %s port %d" % (uds, port))
            time.sleep(0.05)

    def close(self):
        self.sock.close()

    def send(self, ftype, fid, obj=None, data=b"", flags=0):
        self.sock.sendall(encode(ftype, fid, obj, data, flags))

    def recv_frame(self):
        while True:
            if len(self.buf) >= HEADER.size:
                magic, ver, ftype, flags, fid, jl, dl = HEADER.unpack_from(self.buf)
                assert magic == MAGIC and ver == VERSION, "bad frame from the agent"
                total = HEADER.size + jl + dl
                if len(self.buf) >= total:
                    js = self.buf[HEADER.size:HEADER.size + jl]
                    data = self.buf[HEADER.size + jl:total]
                    self.buf = self.buf[total:]
                    return ftype, fid, (json.loads(js) if js else None), data
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the agent closed the connection")
            self.buf += chunk

    def new_id(self):
        fid = self.next_id
        self.next_id += 1
        return fid

    def request(self, obj, data=b"", on_event=None, on_data=None, chunks=None):
        """One request; returns the RESPONSE (raising AgentError for ok:false). chunks: upload these data
        parts as DATA frames after the request (MORE on all but the last)."""
        fid = self.new_id()
        if chunks:
            self.send(REQUEST, fid, obj, data, MORE)
            for i, c in enumerate(chunks):
                self.send(DATA, fid, None, c, MORE if i + 1 < len(chunks) else 0)
        else:
            self.send(REQUEST, fid, obj, data)
        return self.wait(fid, on_event, on_data)

    def wait(self, fid, on_event=None, on_data=None):
        while True:
            ftype, rid, meta, data = self.recv_frame()
            if rid != fid:
                continue
            if ftype == EVENT and on_event:
                on_event(meta)
            elif ftype == DATA and on_data:
                on_data(meta, data)
            elif ftype == RESPONSE:
                if not meta.get("ok"):
                    raise AgentError(meta["error"], meta)
                return meta

    # conveniences
    def run(self, cmd, *args, **kw):
        """Run to the end; returns (command, [(stream, bytes, byteOffset)])."""
        out = []
        req = {"op": "run", "cmd": cmd, "args": list(args)}
        req.update(kw)
        res = self.request(req, on_data=lambda m, d: out.append((m["stream"], d, m["byteOffset"])))
        return res, out

    def sh(self, script, **kw):
        res, out = self.run("/bin/sh", "-c", script, **kw)
        return res, b"".join(d for s, d, o in out if s == "stdout"), b"".join(d for s, d, o in out if s == "stderr")

    def read_file(self, path, **kw):
        parts = []
        req = {"op": "readFile", "path": path}
        req.update(kw)
        res = self.request(req, on_data=lambda m, d: parts.append(d))
        data = b"".join(parts)
        assert res["size"] == len(data)
        return data

    def write_file(self, path, data, op="writeFile", **kw):
        req = {"op": op, "path": path}
        req.update(kw)
        pieces = [data[i:i + MAX_DATA] for i in range(0, len(data), MAX_DATA)] or [b""]
        if len(pieces) == 1:
            return self.request(req, pieces[0])
        return self.request(req, pieces[0], chunks=pieces[1:])

    def fs(self, op, **kw):
        req = {"op": op}
        req.update(kw)
        return self.request(req)
