"""A real kvmboxd for the integration tests and tools/bench/sandbox (docs/api.md).

Daemon(...) starts $(BUILD)/kvmboxd on a temporary folder of its own:

    kvmboxd --socket T/k.sock --state-dir T/state --run-dir T/run --images T/images
            --vmm $(BUILD)/kvmbox-vmm --net-tool tools/net/kvmbox-net [extra args]

with T/images/default/{vmlinux,rootfs.ext4} symlinks to $(BUILD)/images/, and waits for GET /v1/health.
It speaks HTTP/1.1 to the daemon over the Unix socket with http.client (one connection per request, so
requests from several threads never share one), with JSON helpers and a reader of the chunked NDJSON log
streams. restart() stops the daemon with SIGTERM and starts it again on the same folders (its sandboxes
keep running and must be re-adopted). close() removes every sandbox still listed (DELETE ?force=true, so
taps and disks go the daemon's way), stops the daemon, then SIGKILLs any monitor left whose command line
names this daemon's run folder, and says which ones it had to kill (assert_no_vmms() fails a test on
them). KVMBOX_KVMBOXD overrides the daemon binary (e.g. $(BUILD)/asan/kvmboxd)."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from kvmboxtest import BUILD, IMAGES, ROOT, VMM, need

KVMBOXD = os.path.abspath(os.environ.get("KVMBOX_KVMBOXD", os.path.join(BUILD, "kvmboxd")))
NET_TOOL = os.path.join(ROOT, "tools", "net", "kvmbox-net")


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix stream socket (the Host header says "kvmbox", as curl's examples do)."""

    def __init__(self, path, timeout=60):
        super().__init__("kvmbox", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError("not JSON (%s): %r" % (e, self.body[:400]))

    def __repr__(self):
        return "HTTP %d %s" % (self.status, self.body[:600].decode(errors="replace"))


class ApiError(AssertionError):
    def __init__(self, method, path, resp):
        super().__init__("%s %s -> %r" % (method, path, resp))
        self.resp = resp


class LogStream:
    """One reader of GET .../logs: iterate for the NDJSON objects as they come (each line parsed)."""

    def __init__(self, conn, resp):
        self.conn, self.resp = conn, resp
        self.status = resp.status
        self.headers = resp.headers

    def next(self):
        """The next object, or None at the end of the stream."""
        line = self.resp.readline()
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise AssertionError("NDJSON line without its newline: %r" % line)
        return json.loads(line)

    def __iter__(self):
        while True:
            o = self.next()
            if o is None:
                return
            yield o

    def read_all(self):
        return list(self)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def qs(path, query):
    if not query:
        return path
    q = {k: ("true" if v is True else "false" if v is False else v) for k, v in query.items() if v is not None}
    return path + "?" + urllib.parse.urlencode(q)


class Daemon:
    def __init__(self, extra_args=(), tmp=None, build=BUILD, kvmboxd=None):
        self.build = build
        self.kvmboxd = kvmboxd or (KVMBOXD if build == BUILD else os.path.join(build, "kvmboxd"))
        self.vmm = VMM if build == BUILD else os.path.join(build, "kvmbox-vmm")
        images = IMAGES if build == BUILD else os.path.join(build, "images")
        for f in (self.kvmboxd, self.vmm, os.path.join(images, "vmlinux"), os.path.join(images, "rootfs.ext4")):
            need(f)
        self.own_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix="kbd")
        self.sock = os.path.join(self.tmp, "k.sock")
        self.state_dir = os.path.join(self.tmp, "state")
        self.run_dir = os.path.join(self.tmp, "run")
        self.images_dir = os.path.join(self.tmp, "images")
        self.log_path = os.path.join(self.tmp, "kvmboxd.log")
        d = os.path.join(self.images_dir, "default")
        os.makedirs(d, exist_ok=True)
        for f in ("vmlinux", "rootfs.ext4"):
            if not os.path.lexists(os.path.join(d, f)):
                os.symlink(os.path.join(images, f), os.path.join(d, f))
        self.extra_args = list(extra_args)
        self.p = None
        self.killed_vmms = []
        self.start()

    # ---- the process ----

    def argv(self):
        return [self.kvmboxd, "--socket", self.sock, "--state-dir", self.state_dir, "--run-dir", self.run_dir,
                "--images", self.images_dir, "--vmm", self.vmm, "--net-tool", NET_TOOL] + self.extra_args

    def start(self, timeout=20):
        log = open(self.log_path, "ab")
        self.p = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.p.poll() is not None:
                raise AssertionError("kvmboxd exited %d at start\n%s" % (self.p.returncode, self.log()))
            try:
                r = self.request("GET", "/v1/health", timeout=5)
                if r.status == 200:
                    return r.json
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("kvmboxd did not answer /v1/health in %ds\n%s" % (timeout, self.log()))
            time.sleep(0.05)

    @property
    def pid(self):
        return self.p.pid

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stop the daemon (its sandboxes keep running); its exit code."""
        if self.p is None or self.p.poll() is not None:
            return self.p.returncode if self.p else None
        self.p.send_signal(sig)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("kvmboxd ignored signal %d for %ds\n%s" % (sig, timeout, self.log()))

    def restart(self):
        rc = self.stop()
        if rc != 0:
            raise AssertionError("kvmboxd exited %r on SIGTERM\n%s" % (rc, self.log()))
        return self.start()

    def log(self, tail=6000):
        try:
            with open(self.log_path, "rb") as f:
                return "--- kvmboxd log ---\n" + f.read().decode(errors="replace")[-tail:]
        except OSError:
            return ""

    # ---- HTTP ----

    def conn(self, timeout=60):
        return UnixHTTPConnection(self.sock, timeout)

    def request(self, method, path, body=None, headers=None, timeout=120, query=None):
        """One request on a fresh connection. body: bytes/str as is, anything else as JSON."""
        c = self.conn(timeout)
        try:
            h = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, bytearray, str)):
                body = json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
            if isinstance(body, str):
                body = body.encode()
            try:
                c.request(method, qs(path, query), body=body, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before the whole body was sent (413): the answer is still there to read
            r = c.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            c.close()

    def call(self, method, path, body=None, expect=(200,), query=None, **kw):
        """A request whose status must be in expect; its JSON body (None for an empty one)."""
        if isinstance(expect, int):
            expect = (expect,)
        r = self.request(method, path, body, query=query, **kw)
        if r.status not in expect:
            raise ApiError(method, qs(path, query), r)
        return r.json if r.body else None

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, {} if body is None else body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, expect=kw.pop("expect", 204), **kw)

    def error(self, method, path, body=None, status=None, code=None, query=None, headers=None, timeout=30):
        """A request that must fail: its JSON error object (code and message checked)."""
        r = self.request(method, path, body, query=query, headers=headers, timeout=timeout)
        where = "%s %s -> %r" % (method, qs(path, query), r)
        if status is not None and r.status != status:
            raise AssertionError("expected %d: %s" % (status, where))
        if r.status < 400:
            raise AssertionError("expected an error: %s" % where)
        e = r.json
        if not isinstance(e, dict) or not isinstance(e.get("code"), str) or not isinstance(e.get("message"), str):
            raise AssertionError("error without {code, message}: %s" % where)
        if code is not None and e["code"] != code:
            raise AssertionError("expected code %s: %s" % (code, where))
        e["_status"] = r.status
        return e

    def stream(self, path, query=None, timeout=60):
        """GET a streamed route (logs); the LogStream, or an ApiError for a non-200 answer."""
        c = self.conn(timeout)
        c.request("GET", qs(path, query))
        r = c.getresponse()
        if r.status != 200:
            body = r.read()
            c.close()
            raise ApiError("GET", qs(path, query), Response(r.status, r.headers, body))
        return LogStream(c, r)

    # ---- sandboxes ----

    def create(self, body=None, wait=True, expect=None):
        return self.call("POST", "/v1/sandboxes", body or {}, expect=expect or ((201,) if wait else (202,)),
                         query=None if wait else {"wait": False})

    def sandbox(self, sid):
        return self.get("/v1/sandboxes/" + urllib.parse.quote(sid, safe=""))

    def list_all(self, **query):
        """Every sandbox listed, following the page tokens."""
        out, token = [], None
        while True:
            q = dict(query)
            if token:
                q["pageToken"] = token
            r = self.get("/v1/sandboxes", query=q)
            out += r["sandboxes"]
            token = r["nextPageToken"]
            if not token:
                return out

    def run(self, sid, cmd, *args, **fields):
        body = {"cmd": cmd, "args": list(args)}
        body.update(fields)
        return self.call("POST", "/v1/sandboxes/%s/commands" % sid, body, expect=201)

    def output(self, sid, cid, **query):
        return self.get("/v1/sandboxes/%s/commands/%s/output" % (sid, cid), query=query or None)

    def sh(self, sid, script, **fields):
        """Run /bin/sh -c script to its end: (output object with stdout, stderr, command)."""
        c = self.run(sid, "/bin/sh", "-c", script, **fields)
        return self.output(sid, c["id"])

    def put_file(self, sid, path, data, **query):
        q = {"path": path}
        q.update(query)
        return self.call("PUT", "/v1/sandboxes/%s/files" % sid, bytes(data), query=q,
                         headers={"Content-Type": "application/octet-stream"})

    def get_file(self, sid, path):
        r = self.request("GET", "/v1/sandboxes/%s/files" % sid, query={"path": path})
        if r.status != 200:
            raise ApiError("GET", "/v1/sandboxes/%s/files?path=%s" % (sid, path), r)
        return r.body

    def fs(self, sid, op, expect=200, **fields):
        body = {"op": op}
        body.update(fields)
        return self.call("POST", "/v1/sandboxes/%s/fs" % sid, body, expect=expect)

    # ---- the host side ----

    def vmm_pids(self, sid=None):
        """Pids of the monitors whose command line names this daemon's run folder (or sid's vsock)."""
        key = (os.path.join(self.run_dir, sid) if sid else self.run_dir + "/").encode()
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0]) == b"kvmbox-vmm" and any(key in a for a in argv):
                out.append(int(d))
        return sorted(out)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def sandbox_dirs(self):
        d = os.path.join(self.state_dir, "sandboxes")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def close(self, expect_no_vmms=False):
        """Remove every listed sandbox, stop the daemon, kill the monitors left. Raises, after cleaning up,
        when expect_no_vmms and a monitor had to be killed, or when the daemon did not stop cleanly."""
        problems = []
        if self.p is not None and self.p.poll() is None:
            try:
                for s in self.list_all():
                    r = self.request("DELETE", "/v1/sandboxes/" + s["id"], query={"force": True}, timeout=60)
                    if r.status != 204:
                        problems.append("DELETE %s?force=true -> %r" % (s["id"], r))
            except (OSError, AssertionError) as e:
                problems.append("could not remove the sandboxes: %s" % e)
            rc = self.stop()
            if rc != 0:
                problems.append("kvmboxd exited %r on SIGTERM" % rc)
        left = self.vmm_pids()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.killed_vmms += left
        log = self.log()
        if "AddressSanitizer" in log or "runtime error:" in log or "LeakSanitizer" in log:
            problems.append("sanitizer report")
        if left:
            deadline = time.monotonic() + 10
            while self.vmm_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if left and expect_no_vmms:
            problems.append("monitors left running: %s" % left)
        if problems:
            raise AssertionError("; ".join(problems) + "\n" + log)


def taps():
    """Names of the host's kvmbox taps (kb + 12 hex digits)."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            n = parts[1].strip().split("@")[0]
            if n.startswith("kb"):
                names.append(n)
    return sorted(names)


def pss_kib(pid):
    """Pss (else Rss) of a process in KiB, from /proc/<pid>/smaps_rollup."""
    vals = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                vals[parts[0].rstrip(":")] = int(parts[1])
    return vals.get("Pss", vals.get("Rss", 0)), vals.get("Rss", 0)
