"""The kvmbox CLI's sandbox commands (docs/cli.md) over kvmboxd's API (docs/api.md).

Two sets:
- CliFakeTest: $(BUILD)/kvmbox against a small fake kvmboxd written here (http.server on a Unix socket).
  It pins down what the CLI sends and how it treats answers the real daemon rarely gives: errors,
  pagination, SLOW_CONSUMER resumes, binary output, signals, chunked uploads. No KVM needed.
- CliRealTest: $(BUILD)/kvmbox against a real $(BUILD)/kvmboxd with the images ($(BUILD)/images) and
  kvmbox-vmm: run, create/exec/cp/logs/stop/rm on real guests.

Exit codes (docs/cli.md): 0 ok, 1 API error, 2 usage, 125 kvmboxd unreachable (and run/exec's own
failures), 126 cannot run, 127 not found, 128+N signal N; run and exec exit with the command's status.
"""
import base64
import hashlib
import http.server
import json
import os
import signal
import socket
import sys
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import kvmboxtest
from kvmboxtest import BUILD, IMAGES, ROOT, need

KVMBOX = os.path.join(BUILD, "kvmbox")
KVMBOXD = os.path.join(BUILD, "kvmboxd")
TIMEOUT = 60  # seconds, for each subprocess

USAGE, API, TOOL, CANNOT_RUN, NOT_FOUND = 2, 1, 125, 126, 127


def kvmbox(*args, sock, input=None, timeout=TIMEOUT, env=None, text=True):
    e = dict(os.environ)
    e.pop("KVMBOX_SOCKET", None)
    e.update(env or {})
    return subprocess.run([KVMBOX, "--socket", sock] + list(args), input=input, capture_output=True,
                          text=text, timeout=timeout, env=e,
                          stdin=None if input is not None else subprocess.DEVNULL)


def show(p):
    return "rc=%d\n--- stdout ---\n%s\n--- stderr ---\n%s" % (p.returncode, p.stdout, p.stderr)


# ---------------------------------------------------------------------------------------------------------
# The fake kvmboxd: just enough of docs/api.md, with a few scripted commands.

class FakeCommand:
    def __init__(self, cid, cmd, args, stdin):
        self.id, self.cmd, self.args = cid, cmd, args
        self.out = []          # [(stream, bytes)]
        self.status, self.exit_code = "running", None
        self.stdin, self.stdin_data, self.stdin_eof = stdin, b"", False
        self.cond = threading.Condition()
        self.signals = []

    def obj(self):
        return {"id": self.id, "cmd": self.cmd, "args": self.args, "status": self.status,
                "exitCode": self.exit_code, "signal": None, "timedOut": False, "outputBytes":
                sum(len(d) for _, d in self.out), "bufferStart": 0}

    def emit(self, stream, data):
        with self.cond:
            self.out.append((stream, data))
            self.cond.notify_all()

    def end(self, code, status="finished"):
        with self.cond:
            self.status, self.exit_code = status, code
            self.cond.notify_all()


class FakeState:
    def __init__(self):
        self.lock = threading.Lock()
        self.sandboxes = {}   # id -> dict
        self.commands = {}    # (sbid, cid) -> FakeCommand
        self.files = {}       # (sbid, path) -> bytes
        self.requests = []    # (method, path, body)
        self.n = 0
        self.slow_once = set()

    def new_sandbox(self, req):
        with self.lock:
            self.n += 1
            sid = "sb-%016x" % (0xabc000 + self.n)
            now = int(time.time() * 1000)
            sb = {"id": sid, "name": req.get("name", sid), "image": req.get("image", "default"),
                  "status": "starting", "resources": {"vcpus": 1, "memoryMb": 256, "diskGb": 1},
                  "env": req.get("env", {}), "network": req.get("network", "none"),
                  "secrets": sorted(req.get("secrets", {})), "timeoutMinutes": req.get("timeoutMinutes", 120),
                  "createdAt": now - 3600 * 1000, "startedAt": now, "stoppedAt": None,
                  "expiresAt": now + 7200 * 1000, "exitCode": None, "errorMessage": None,
                  "polls": 0, "request": req}
            sb["resources"].update(req.get("resources", {}))
            if sb["image"] == "broken":
                sb["status"], sb["errorMessage"] = "failed", "the image's kernel did not boot"
            self.sandboxes[sid] = sb
            return sb

    def find(self, key):
        for sb in self.sandboxes.values():
            if sb["id"] == key or sb["name"] == key:
                return sb
        return None


def public(sb):
    return {k: v for k, v in sb.items() if k not in ("polls", "request")}


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    # -- plumbing
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", 0))
        return self.rfile.read(n) if n else b""

    def send(self, status, obj=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (b"" if obj is None else json.dumps(obj).encode())
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    def error(self, status, code, message, **extra):
        self.send(status, dict({"code": code, "message": message}, **extra))

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    # -- the API
    def route(self, method):
        st = self.server.state
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        parts = [urllib.parse.unquote(p) for p in u.path.split("/")[1:]]
        raw = self.body() if method in ("POST", "PUT") else b""
        st.requests.append((method, self.path, raw))
        if method in ("POST",) and parts[-1:] != ["stdin"] and raw:
            try:
                req = json.loads(raw)
            except ValueError:
                return self.error(400, "BAD_REQUEST", "malformed JSON")
        else:
            req = {}
        if parts[:2] != ["v1", "sandboxes"]:
            if parts == ["v1", "health"]:
                return self.send(200, {"version": "fake", "sandboxes": {}, "images": ["default"]})
            return self.error(404, "NOT_FOUND", "no route %s" % u.path)
        if len(parts) == 2:
            if method == "POST":
                if req.get("name") == "taken":
                    return self.error(409, "CONFLICT", "a sandbox named taken exists")
                sb = st.new_sandbox(req)
                if q.get("wait") == "false":
                    return self.send(202, public(sb))
                if sb["status"] == "starting":
                    sb["status"] = "running"
                return self.send(201, public(sb))
            # GET list: pages of 2, to exercise pageToken
            sbs = sorted(st.sandboxes.values(), key=lambda s: s["id"], reverse=True)
            if "status" in q:
                sbs = [s for s in sbs if s["status"] in q["status"].split(",")]
            start = int(q.get("pageToken", 0))
            page = sbs[start:start + 2]
            nxt = str(start + 2) if start + 2 < len(sbs) else None
            return self.send(200, {"sandboxes": [public(s) for s in page], "nextPageToken": nxt})
        sb = st.find(parts[2])
        if not sb:
            return self.error(404, "NOT_FOUND", "no sandbox %s" % parts[2])
        rest = parts[3:]
        if not rest:
            if method == "DELETE":
                if sb["status"] == "running" and q.get("force") != "true":
                    return self.error(409, "CONFLICT", "sandbox %s is running: stop it or use force" % sb["id"])
                del st.sandboxes[sb["id"]]
                return self.send(204)
            sb["polls"] += 1
            if sb["status"] == "starting" and sb["polls"] >= 2:
                sb["status"] = "running"
            return self.send(200, public(sb))
        if rest == ["stop"] or rest == ["kill"]:
            if sb["status"] == "running":
                sb["status"] = "finished" if rest == ["stop"] else "cancelled"
            return self.send(200 if req.get("blocking", True) else 202, public(sb))
        if rest == ["timeout"]:
            if sb["status"] != "running":
                return self.error(409, "NOT_RUNNING", "sandbox %s is %s" % (sb["id"], sb["status"]))
            sb["expiresAt"] = int(time.time() * 1000) + req["timeoutMinutes"] * 60000
            return self.send(200, public(sb))
        if sb["status"] != "running":
            return self.error(409, "NOT_RUNNING", "sandbox %s is %s" % (sb["id"], sb["status"]))
        if rest == ["commands"] and method == "POST":
            return self.start_command(sb, req)
        if rest[0] == "commands" and len(rest) >= 2:
            c = st.commands.get((sb["id"], rest[1]))
            if not c:
                return self.error(404, "NOT_FOUND", "no command %s" % rest[1])
            if rest[2:] == ["logs"]:
                return self.logs(c, q)
            if rest[2:] == ["signal"]:
                c.signals.append(req.get("signal"))
                if c.status != "running":
                    return self.error(409, "NOT_RUNNING", "command %s ended" % c.id)
                num = req["signal"] if isinstance(req["signal"], int) else getattr(signal, req["signal"])
                c.end(128 + int(num), "killed")
                return self.send(200, {})
            if rest[2:] == ["stdin"]:
                if c.status != "running":
                    return self.error(409, "NOT_RUNNING", "command %s ended" % c.id)
                with c.cond:
                    c.stdin_data += raw
                    c.stdin_eof = q.get("eof") == "true"
                    c.cond.notify_all()
                return self.send(200, {"bytes": len(raw)})
        if rest == ["fs"]:
            path = req.get("path")
            if (sb["id"], path) in st.files:
                return self.send(200, {"type": "file", "mode": 0o100640, "size": len(st.files[(sb["id"], path)])})
            if path in ("/root", "/tmp"):
                return self.send(200, {"type": "directory", "mode": 0o40755, "size": 4096})
            return self.error(404, "ENOENT", "ENOENT: no such file or directory, stat '%s'" % path,
                              errno=-2, syscall="stat", path=path)
        if rest == ["files"]:
            path = q.get("path")
            if method == "GET":
                if (sb["id"], path) not in st.files:
                    return self.error(404, "ENOENT", "ENOENT: no such file or directory, open '%s'" % path,
                                      errno=-2, syscall="open", path=path)
                return self.send(200, raw=st.files[(sb["id"], path)], ctype="application/octet-stream")
            if os.path.dirname(path) not in ("/root", "/tmp"):
                return self.error(404, "ENOENT", "ENOENT: no such file or directory, open '%s'" % path,
                                  errno=-2, syscall="open", path=path)
            st.files[(sb["id"], path)] = raw
            st.files[(sb["id"], path + ":mode")] = q.get("mode")
            return self.send(200, {"size": len(raw)})
        return self.error(404, "NOT_FOUND", "no route %s" % u.path)

    def start_command(self, sb, req):
        st = self.server.state
        cmd, args = req["cmd"], req.get("args", [])
        if cmd == "nosuch":
            return self.error(404, "ENOENT", "ENOENT: no such file or directory, execve 'nosuch'", errno=-2,
                              syscall="execve", path="nosuch")
        if cmd == "noexec":
            return self.error(403, "EACCES", "EACCES: permission denied, execve 'noexec'", errno=-13,
                              syscall="execve", path="noexec")
        with st.lock:
            cid = "cmd-%d" % (len(st.commands) + 1)
            c = FakeCommand(cid, cmd, args, req.get("stdin", False))
            c.request = req
            st.commands[(sb["id"], cid)] = c
        threading.Thread(target=self.script, args=(c, sb), daemon=True).start()
        return self.send(201, c.obj())

    @staticmethod
    def script(c, sb):
        """The fake guest: what each command does."""
        if c.cmd == "echo":
            c.emit("stdout", (" ".join(c.args) + "\n").encode())
            c.end(0)
        elif c.cmd == "exit":
            c.emit("stderr", b"exiting\n")
            c.end(int(c.args[0]))
        elif c.cmd == "binary":
            c.emit("stdout", bytes(range(256)) * 4)
            c.end(0)
        elif c.cmd == "env":
            env = dict(sb["request"].get("env", {}), **c.request.get("env", {}))
            c.emit("stdout", "".join("%s=%s\n" % kv for kv in sorted(env.items())).encode())
            c.end(0)
        elif c.cmd == "req":  # the command's request as the daemon saw it
            c.emit("stdout", json.dumps(c.request, sort_keys=True).encode() + b"\n")
            c.end(0)
        elif c.cmd == "slow":  # many chunks; the logs endpoint cuts the first reader with SLOW_CONSUMER
            for i in range(10):
                c.emit("stdout" if i % 2 == 0 else "stderr", b"line %d\n" % i)
            c.end(0)
        elif c.cmd == "cat":
            with c.cond:
                while not c.stdin_eof and c.status == "running":
                    c.cond.wait(0.1)
            c.emit("stdout", c.stdin_data)
            c.end(0)
        elif c.cmd == "sleep":
            with c.cond:
                deadline = time.monotonic() + float(c.args[0] if c.args else 30)
                while c.status == "running" and time.monotonic() < deadline:
                    c.cond.wait(0.1)
            if c.status == "running":
                c.end(0)
        else:
            c.emit("stderr", b"fake: unknown command\n")
            c.end(1)

    def logs(self, c, q):
        follow = q.get("follow", "true") == "true"
        b64 = q.get("encoding") == "base64"
        off = int(q.get("fromOffset", 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        i, pos, sent_lines = 0, 0, 0
        slow = c.cmd == "slow" and c.id not in self.server.state.slow_once
        while True:
            with c.cond:
                while i >= len(c.out) and c.status == "running" and follow:
                    c.cond.wait(0.1)
                items = c.out[i:]
                ended = c.status != "running"
            for stream, data in items:
                i += 1
                start = pos
                pos += len(data)
                if pos <= off:
                    continue
                if start < off:
                    data, start = data[off - start:], off
                if slow and sent_lines == 3:
                    self.server.state.slow_once.add(c.id)
                    self.chunk(json.dumps({"type": "error", "code": "SLOW_CONSUMER",
                                           "message": "the reader fell behind"}).encode() + b"\n")
                    self.chunk(b"")
                    return
                line = {"type": "output", "stream": stream, "byteOffset": start, "timestamp": 1,
                        "data": base64.b64encode(data).decode() if b64 else data.decode(errors="replace")}
                self.chunk(json.dumps(line).encode() + b"\n")
                sent_lines += 1
            if ended and i >= len(c.out):
                self.chunk(json.dumps({"type": "exit", "command": c.obj()}).encode() + b"\n")
                break
            if not follow:
                break
        self.chunk(b"")


class FakeServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "kvmbox", 0

    def handle_error(self, request, client_address):
        # A CLI that stops reading (a test that ends a stream early) is expected, not an error.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class CliFakeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need(KVMBOX)

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="kvmbox-cli-")
        self.addCleanup(self.tmp.cleanup)
        self.sock = os.path.join(self.tmp.name, "k.sock")
        self.srv = FakeServer(self.sock, FakeHandler)
        self.srv.state = self.state = FakeState()
        t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        t.start()
        self.addCleanup(self.srv.server_close)
        self.addCleanup(self.srv.shutdown)

    def k(self, *args, **kw):
        return kvmbox(*args, sock=self.sock, **kw)

    def running(self, name=None):
        sb = self.state.new_sandbox({"name": name} if name else {})
        sb["status"] = "running"
        return sb["id"]

    # -- the daemon is not there
    def test_unreachable(self):
        for args in (["ls"], ["run", "--", "true"], ["exec", "x", "--", "true"], ["inspect", "x"],
                     ["cp", "x:/a", "-"], ["rm", "x"]):
            p = kvmbox(*args, sock=os.path.join(self.tmp.name, "nothing.sock"))
            self.assertEqual(p.returncode, TOOL, show(p))
            self.assertIn("cannot reach kvmboxd at %s: No such file or directory" %
                          os.path.join(self.tmp.name, "nothing.sock"), p.stderr)
            self.assertIn("systemctl start kvmboxd", p.stderr)

    def test_socket_from_environment(self):
        p = subprocess.run([KVMBOX, "ls", "-q"], capture_output=True, text=True, timeout=TIMEOUT,
                           env=dict(os.environ, KVMBOX_SOCKET=self.sock))
        self.assertEqual(p.returncode, 0, show(p))

    def test_not_a_daemon(self):
        """A socket that answers nonsense: the tool's own error, 125."""
        path = os.path.join(self.tmp.name, "junk.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.listen(1)

        def serve():
            c, _ = s.accept()
            c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            c.close()
        threading.Thread(target=serve, daemon=True).start()
        p = kvmbox("ls", sock=path)
        s.close()
        self.assertEqual(p.returncode, TOOL, show(p))
        self.assertIn("not JSON", p.stderr)

    # -- usage
    def test_help(self):
        for cmd in ("run", "create", "ls", "inspect", "exec", "logs", "stop", "kill", "timeout", "rm", "cp",
                    "boot-test"):
            p = self.k(cmd, "--help")
            self.assertEqual(p.returncode, 0, show(p))
            self.assertIn("usage: kvmbox %s" % cmd, p.stdout)
            p = self.k("help", cmd)
            self.assertEqual(p.returncode, 0, show(p))
            self.assertIn("usage: kvmbox %s" % cmd, p.stdout)
        p = self.k("--help")
        self.assertEqual(p.returncode, 0, show(p))
        for cmd in ("run", "exec", "cp", "boot-test"):
            self.assertIn(cmd, p.stdout)

    def test_usage_errors(self):
        for args, text in ((["run"], "which command"), (["run", "--cpus", "0", "--", "x"], "--cpus"),
                           (["run", "--env", "=x", "--", "x"], "--env"),
                           (["run", "--net", "10.0.0.0/8,", "--", "x"], "--net"),
                           (["run", "a", "b", "--", "x"], "one IMAGE"),
                           (["run", "--image", "a", "b", "--", "x"], "two images"),
                           (["run", "--bogus", "--", "x"], "unknown option '--bogus'"),
                           (["exec", "sb"], "which command"), (["exec"], "which sandbox"),
                           (["exec", "-d", "-i", "sb", "--", "x"], "-d and -i"),
                           (["ls", "extra"], "unexpected"), (["inspect"], "which sandbox"),
                           (["timeout", "sb", "soon"], "MINUTES"), (["cp", "a", "b"], "neither"),
                           (["cp", "a:/x", "b:/y"], "both"), (["logs", "sb"], "ID CMDID"),
                           (["create", "--memory"], "needs a value"), (["nosuch"], "unknown subcommand")):
            p = self.k(*args)
            self.assertEqual(p.returncode, USAGE, "%s\n%s" % (args, show(p)))
            self.assertIn(text, p.stderr, args)
        self.assertEqual(self.state.requests, [], "a usage error reached the daemon")

    # -- create, ls, inspect, stop, kill, timeout, rm
    def test_create(self):
        p = self.k("create", "--cpus", "2", "--memory", "512", "--disk", "3", "-e", "A=1", "--env", "B=x=y",
                   "--secret", "TOKEN", "--timeout", "30", "--net", "10.0.0.0/8,192.168.0.0/16", "--name", "web",
                   "myimage", env={"TOKEN": "s3cret"})
        self.assertEqual(p.returncode, 0, show(p))
        sid = p.stdout.strip()
        self.assertRegex(sid, r"^sb-[0-9a-f]{16}$")
        self.assertEqual(self.state.sandboxes[sid]["request"], {
            "name": "web", "image": "myimage", "resources": {"vcpus": 2, "memoryMb": 512, "diskGb": 3},
            "env": {"A": "1", "B": "x=y"}, "secrets": {"TOKEN": "s3cret"}, "timeoutMinutes": 30,
            "network": {"allow": ["10.0.0.0/8", "192.168.0.0/16"]}})
        self.assertEqual(self.state.requests[-1][1], "/v1/sandboxes")  # create waits
        p = self.k("create", "--json", "--net", "all")
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(json.loads(p.stdout)["network"], "all")

    def test_create_errors(self):
        p = self.k("create", "--name", "taken")
        self.assertEqual(p.returncode, API, show(p))
        self.assertEqual(p.stderr.strip(), "kvmbox create: a sandbox named taken exists (CONFLICT)")
        p = self.k("create", "broken")
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("failed to start: the image's kernel did not boot", p.stderr)

    def test_ls(self):
        ids = [self.running("n%d" % i) for i in range(5)]
        self.state.sandboxes[ids[0]]["status"] = "finished"
        p = self.k("ls")
        self.assertEqual(p.returncode, 0, show(p))
        lines = p.stdout.splitlines()
        self.assertRegex(lines[0], r"^ID\s+NAME\s+IMAGE\s+STATUS\s+CPUS\s+MEMORY\s+CREATED\s+EXPIRES$")
        self.assertEqual(len(lines), 5, p.stdout)  # 4 running, over two pages
        self.assertIn("60 minutes ago", p.stdout)
        self.assertIn("256 MiB", p.stdout)
        self.assertRegex(p.stdout, r"in 1(19|20) minutes")
        self.assertNotIn(ids[0], p.stdout)
        self.assertIn("status=created%2Cstarting%2Crunning", self.state.requests[0][1])
        p = self.k("ls", "-a", "-q")
        self.assertEqual(sorted(p.stdout.split()), sorted(ids))
        p = self.k("ls", "--status", "finished", "--json")
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual([s["id"] for s in json.loads(p.stdout)["sandboxes"]], [ids[0]])

    def test_inspect(self):
        a = self.running("alpha")
        p = self.k("inspect", "alpha", "nope", a)
        self.assertEqual(p.returncode, API, show(p))
        self.assertEqual([s["id"] for s in json.loads(p.stdout)], [a, a])
        self.assertIn("kvmbox inspect: no sandbox nope (NOT_FOUND)", p.stderr)

    def test_stop_kill_timeout_rm(self):
        a, b = self.running(), self.running()
        p = self.k("timeout", a, "30")
        self.assertEqual(p.returncode, 0, show(p))
        self.assertRegex(p.stdout, r"^%s expires at .* \(in (29|30) minutes\)$" % a)
        p = self.k("rm", a)
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("(CONFLICT)", p.stderr)
        p = self.k("stop", "--no-wait", a)
        self.assertEqual((p.returncode, p.stdout), (0, a + "\n"), show(p))
        self.assertEqual(json.loads(self.state.requests[-1][2]), {"blocking": False})
        p = self.k("kill", "--json", b)
        self.assertEqual(json.loads(p.stdout)[0]["status"], "cancelled", show(p))
        p = self.k("timeout", b, "5")
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("(NOT_RUNNING)", p.stderr)
        c = self.running()
        p = self.k("rm", a, b)
        self.assertEqual((p.returncode, p.stdout.split()), (0, [a, b]), show(p))
        p = self.k("rm", "-f", c, "gone")
        self.assertEqual((p.returncode, p.stdout.split()), (API, [c]), show(p))
        self.assertEqual(self.state.requests[-2][:2], ("DELETE", "/v1/sandboxes/%s?force=true" % c))
        self.assertEqual(self.state.sandboxes, {})

    # -- run
    def test_run(self):
        p = self.k("run", "--env", "A=1", "--", "echo", "hello", "world")
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(p.stdout, "hello world\n")
        self.assertEqual(self.state.sandboxes, {}, "run did not remove its sandbox")
        methods = [(m, path.split("?")[0].count("/"), path) for m, path, _ in self.state.requests]
        self.assertEqual(methods[0][2], "/v1/sandboxes?wait=false")
        self.assertEqual(methods[-1][0], "DELETE")
        self.assertTrue(methods[-1][2].endswith("?force=true"))

    def test_run_exit_code_and_stderr(self):
        p = self.k("run", "default", "--", "exit", "7")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (7, "", "exiting\n"), show(p))

    def test_run_docker_form_and_options(self):
        """Without --, the first operand is the image; -w/-u go to the command."""
        p = self.k("run", "-w", "/tmp", "-u", "nobody", "--keep", "--name", "kept", "img", "req", "-x")
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(json.loads(p.stdout), {"cmd": "req", "args": ["-x"], "cwd": "/tmp", "user": "nobody"})
        sb = self.state.find("kept")
        self.assertEqual((sb["image"], sb["status"]), ("img", "running"))
        self.assertIn("kept sandbox %s" % sb["id"], p.stderr)

    def test_run_binary_output(self):
        p = self.k("run", "--", "binary", text=False)
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(p.stdout, bytes(range(256)) * 4)

    def test_run_slow_consumer_resume(self):
        """An error line SLOW_CONSUMER: the CLI resumes from the last byte it saw, nothing lost or doubled."""
        p = self.k("run", "--", "slow")
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(p.stdout, "".join("line %d\n" % i for i in range(0, 10, 2)))
        self.assertEqual(p.stderr, "".join("line %d\n" % i for i in range(1, 10, 2)))
        logs = [path for m, path, _ in self.state.requests if "/logs" in path]
        self.assertEqual(len(logs), 2, logs)
        self.assertIn("fromOffset=21", logs[1])  # 3 lines of 7 bytes

    def test_run_failed_sandbox(self):
        p = self.k("run", "broken", "--", "echo", "x")
        self.assertEqual(p.returncode, TOOL, show(p))
        self.assertIn("did not start (failed): the image's kernel did not boot", p.stderr)
        self.assertEqual(self.state.sandboxes, {})

    def test_run_not_found_and_cannot_run(self):
        p = self.k("run", "--", "nosuch")
        self.assertEqual(p.returncode, NOT_FOUND, show(p))
        self.assertIn("(ENOENT)", p.stderr)
        p = self.k("run", "--", "noexec")
        self.assertEqual(p.returncode, CANNOT_RUN, show(p))
        self.assertEqual(self.state.sandboxes, {})

    def test_run_api_error_is_125(self):
        p = self.k("run", "--name", "taken", "--", "echo")
        self.assertEqual(p.returncode, TOOL, show(p))
        self.assertIn("(CONFLICT)", p.stderr)

    def test_run_interrupt(self):
        """SIGINT while the command runs: the sandbox is killed and removed, exit 130."""
        proc = subprocess.Popen([KVMBOX, "--socket", self.sock, "run", "--", "sleep", "30"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not any("/logs" in p for _, p, _ in self.state.requests) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 130, err)
        self.assertEqual(self.state.sandboxes, {})

    def test_run_interactive(self):
        data = "x" * 200000 + "\nend\n"
        p = self.k("run", "-i", "--", "cat", input=data)
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(p.stdout, data)
        self.assertTrue(any("eof=true" in path for _, path, _ in self.state.requests))

    # -- exec, logs
    def test_exec(self):
        sid = self.running("box")
        p = self.k("exec", "-e", "X=1", "--sudo", "--timeout-ms", "500", "-w", "/", "box", "--", "req", "a")
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(json.loads(p.stdout), {"cmd": "req", "args": ["a"], "env": {"X": "1"}, "sudo": True,
                                                "timeoutMs": 500, "cwd": "/"})
        p = self.k("exec", sid, "exit", "3")
        self.assertEqual(p.returncode, 3, show(p))
        p = self.k("exec", "nope", "--", "echo")
        self.assertEqual(p.returncode, TOOL, show(p))
        self.assertIn("kvmbox exec: no sandbox nope (NOT_FOUND)", p.stderr)
        p = self.k("exec", sid, "--", "nosuch")
        self.assertEqual(p.returncode, NOT_FOUND, show(p))

    def test_exec_detach_and_logs(self):
        sid = self.running()
        p = self.k("exec", "-d", sid, "--", "slow")
        self.assertEqual(p.returncode, 0, show(p))
        cid = p.stdout.strip()
        self.assertRegex(cid, r"^cmd-\d+$")
        time.sleep(0.3)
        p = self.k("logs", "-f", sid, cid)
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(p.stdout, "".join("line %d\n" % i for i in range(0, 10, 2)))
        p = self.k("logs", "--from", "14", sid, cid)
        self.assertEqual(p.stdout, "".join("line %d\n" % i for i in range(2, 10, 2)), show(p))
        p = self.k("logs", "--json", sid, cid)
        lines = [json.loads(l) for l in p.stdout.splitlines()]
        self.assertEqual(lines[-1]["type"], "exit")
        self.assertEqual(base64.b64decode(lines[0]["data"]), b"line 0\n")
        p = self.k("logs", sid, "cmd-999")
        self.assertEqual(p.returncode, API, show(p))
        p = self.k("exec", "-d", "--json", sid, "--", "sleep", "1")
        self.assertEqual(json.loads(p.stdout)["status"], "running", show(p))

    def test_exec_signal_forwarded(self):
        """SIGINT to exec goes to the command (POST .../signal); its exit status (130) is exec's."""
        sid = self.running()
        proc = subprocess.Popen([KVMBOX, "--socket", self.sock, "exec", sid, "--", "sleep", "30"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not any("/logs" in p for _, p, _ in self.state.requests) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 130, err)
        sigs = [json.loads(b) for _, p, b in self.state.requests if p.endswith("/signal")]
        self.assertEqual(sigs, [{"signal": 2}])
        self.assertEqual(self.state.sandboxes[sid]["status"], "running")

    # -- cp
    def test_cp(self):
        sid = self.running("files")
        src = os.path.join(self.tmp.name, "src.bin")
        data = os.urandom(300000)
        with open(src, "wb") as f:
            f.write(data)
        os.chmod(src, 0o751)
        p = self.k("cp", src, "files:/root/")
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(self.state.files[(sid, "/root/src.bin")], data)
        self.assertEqual(self.state.files[(sid, "/root/src.bin:mode")], "0751")
        p = self.k("cp", "--json", src, "files:/tmp")  # an existing folder (stat says so)
        self.assertEqual(json.loads(p.stdout), {"size": 300000}, show(p))
        self.assertIn((sid, "/tmp/src.bin"), self.state.files)
        p = self.k("cp", "-", "files:/root/in", input=b"from stdin", text=False)
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(self.state.files[(sid, "/root/in")], b"from stdin")
        put = [r for r in self.state.requests if r[0] == "PUT"][-1]
        self.assertNotIn("mode=", put[1])
        # out
        dst = os.path.join(self.tmp.name, "out")
        os.mkdir(dst)
        p = self.k("cp", "files:/root/src.bin", dst)
        self.assertEqual(p.returncode, 0, show(p))
        with open(os.path.join(dst, "src.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.stat(os.path.join(dst, "src.bin")).st_mode & 0o777, 0o640)
        p = self.k("cp", "files:/root/in", "-", text=False)
        self.assertEqual((p.returncode, p.stdout), (0, b"from stdin"), show(p))
        # errors
        p = self.k("cp", "files:/root/missing", os.path.join(self.tmp.name, "never"))
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("(ENOENT)", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "never")))
        p = self.k("cp", src, "files:/nodir/x")
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("ENOENT: no such file or directory, open '/nodir/x' (ENOENT)", p.stderr)
        p = self.k("cp", "files:/root", dst)
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("is a folder", p.stderr)
        p = self.k("cp", self.tmp.name, "files:/root/x")
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("is a folder", p.stderr)


# ---------------------------------------------------------------------------------------------------------
# The real kvmboxd.

def health(sock):
    """True when GET /v1/health on sock answers 200."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(sock)
            s.sendall(b"GET /v1/health HTTP/1.0\r\nHost: kvmbox\r\n\r\n")
            return s.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False


def start_daemon(tmp):
    """kvmboxd on a socket in tmp with the build's images; returns (process, socket) once it answers."""
    images = os.path.join(tmp, "images", "default")
    os.makedirs(images)
    for name in ("vmlinux", "rootfs.ext4"):
        os.symlink(need(os.path.join(IMAGES, name)), os.path.join(images, name))
    sock = os.path.join(tmp, "k.sock")
    log = open(os.path.join(tmp, "kvmboxd.log"), "wb")
    proc = subprocess.Popen([KVMBOXD, "--socket", sock, "--state-dir", os.path.join(tmp, "state"),
                             "--run-dir", os.path.join(tmp, "run"), "--images", os.path.join(tmp, "images"),
                             "--vmm", kvmboxtest.VMM, "--net-tool", os.path.join(ROOT, "tools/net/kvmbox-net")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if health(sock):
            return proc, sock
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    with open(os.path.join(tmp, "kvmboxd.log"), errors="replace") as f:
        raise AssertionError("kvmboxd did not answer GET /v1/health within 20 s:\n" + f.read())


class CliRealTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need(KVMBOX)
        need(KVMBOXD)
        need(kvmboxtest.VMM)
        cls.tmp = tempfile.TemporaryDirectory(prefix="kvmbox-cli-real-")
        cls.proc, cls.sock = start_daemon(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        subprocess.run([KVMBOX, "--socket", cls.sock, "rm", "-f"] +
                       kvmbox("ls", "-a", "-q", sock=cls.sock).stdout.split(), capture_output=True, timeout=TIMEOUT)
        cls.proc.terminate()
        try:
            cls.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
        cls.tmp.cleanup()

    def k(self, *args, **kw):
        return kvmbox(*args, sock=self.sock, **kw)

    def log(self):
        with open(os.path.join(self.tmp.name, "kvmboxd.log"), errors="replace") as f:
            return f.read()[-4000:]

    def test_run(self):
        p = self.k("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (3, "out\n", "err\n"), show(p) + self.log())
        self.assertEqual(self.k("ls", "-a", "-q").stdout, "", "run left its sandbox behind")

    def test_run_env_secret_workdir_stdin(self):
        p = self.k("run", "--env", "A=1", "--secret", "S=hidden", "-w", "/tmp", "-i", "--",
                   "sh", "-c", 'echo "$A $S $(pwd)"; cat', input="piped\n")
        self.assertEqual((p.returncode, p.stdout), (0, "1 hidden /tmp\npiped\n"), show(p) + self.log())

    def test_run_not_found(self):
        p = self.k("run", "--", "/no/such/cmd")
        self.assertEqual(p.returncode, NOT_FOUND, show(p) + self.log())

    def test_sandbox_life(self):
        p = self.k("create", "--name", "cli-life", "--memory", "256")
        self.assertEqual(p.returncode, 0, show(p) + self.log())
        sid = p.stdout.strip()
        self.addCleanup(self.k, "rm", "-f", sid)
        p = self.k("ls")
        self.assertIn(sid, p.stdout, show(p))
        self.assertIn("cli-life", p.stdout)
        p = self.k("inspect", "cli-life")
        self.assertEqual(json.loads(p.stdout)[0]["status"], "running", show(p))
        # exec, binary-safe output, exit codes
        p = self.k("exec", "cli-life", "--", "sh", "-c", "printf '\\000\\377abc'; exit 5", text=False)
        self.assertEqual((p.returncode, p.stdout), (5, b"\x00\xffabc"), show(p))
        p = self.k("exec", "-d", sid, "--", "sh", "-c", "echo one; echo two >&2")
        self.assertEqual(p.returncode, 0, show(p))
        cid = p.stdout.strip()
        p = self.k("logs", "-f", sid, cid)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "one\n", "two\n"), show(p))
        # cp both ways
        src = os.path.join(self.tmp.name, "payload")
        data = os.urandom(1 << 20)
        with open(src, "wb") as f:
            f.write(data)
        p = self.k("cp", src, sid + ":/tmp/")
        self.assertEqual(p.returncode, 0, show(p))
        p = self.k("cp", sid + ":/tmp/payload", "-", text=False)
        self.assertEqual((p.returncode, p.stdout == data), (0, True), p.stderr)
        p = self.k("cp", sid + ":/no/such", "-")
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("(ENOENT)", p.stderr)
        # timeout, rm refused, stop, rm
        p = self.k("timeout", sid, "30")
        self.assertEqual(p.returncode, 0, show(p))
        p = self.k("rm", sid)
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("(CONFLICT)", p.stderr)
        p = self.k("stop", sid)
        self.assertEqual((p.returncode, p.stdout), (0, sid + "\n"), show(p))
        p = self.k("inspect", sid)
        self.assertIn(json.loads(p.stdout)[0]["status"], ("finished", "cancelled"), show(p))
        p = self.k("exec", sid, "--", "true")
        self.assertEqual(p.returncode, TOOL, show(p))
        self.assertIn("(NOT_RUNNING)", p.stderr)
        p = self.k("rm", sid)
        self.assertEqual(p.returncode, 0, show(p))

    def test_kill_and_unknown(self):
        p = self.k("create")
        self.assertEqual(p.returncode, 0, show(p) + self.log())
        sid = p.stdout.strip()
        self.addCleanup(self.k, "rm", "-f", sid)
        p = self.k("kill", "--json", sid)
        self.assertEqual(json.loads(p.stdout)[0]["status"], "cancelled", show(p))
        p = self.k("inspect", "sb-0000000000000000")
        self.assertEqual(p.returncode, API, show(p))
        self.assertIn("(NOT_FOUND)", p.stderr)

    def test_exec_signal_and_stdin(self):
        """Ctrl-C to exec reaches the command's trap in the guest; -i streams a large stdin."""
        p = self.k("create")
        self.assertEqual(p.returncode, 0, show(p) + self.log())
        sid = p.stdout.strip()
        self.addCleanup(self.k, "rm", "-f", sid)
        proc = subprocess.Popen([KVMBOX, "--socket", self.sock, "exec", sid, "--", "sh", "-c",
                                 'trap "echo got INT; exit 9" INT; echo ready; while :; do sleep 0.1; done'],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(proc.stdout.readline(), b"ready\n")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        self.assertEqual((proc.returncode, out), (9, b"got INT\n"), err)
        data = os.urandom(5 << 20)
        p = self.k("exec", "-i", sid, "--", "sha256sum", input=data, text=False)
        self.assertEqual(p.returncode, 0, show(p))
        self.assertEqual(p.stdout.split()[0].decode(), hashlib.sha256(data).hexdigest())

    def test_run_interrupt(self):
        proc = subprocess.Popen([KVMBOX, "--socket", self.sock, "run", "--", "sh", "-c", "echo up; sleep 60"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = proc.stdout.readline()
        self.assertEqual(line, b"up\n")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 130, err)
        self.assertEqual(self.k("ls", "-a", "-q").stdout, "", "the interrupted run left its sandbox")


if __name__ == "__main__":
    unittest.main()
