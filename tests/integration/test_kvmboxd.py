"""kvmboxd's API (docs/api.md) with real sandboxes: a real daemon (tests/integration/kvmboxd_fixture.py) on a
temporary state, run and images folder, real kvmbox-vmm guests booting $(BUILD)/images/{vmlinux,rootfs.ext4}
with the agent as PID 1, everything through HTTP on the daemon's Unix socket.

Sandboxes: create (wait and wait=false), the sandbox object's fields and timestamps, GET by id and by name,
list with status and createdAfter/createdBefore filters, pagination with limit=1 and page tokens; resources
honoured inside the guest (nproc, MemTotal, df); a network sandbox's tap; a VM that cannot start (201, failed). Commands: /bin/sh -c answered at
start (201), wait, output (stdout/stderr, exit code, base64), NDJSON logs with two independent readers,
resume from a byteOffset, follow=false on running and finished commands, signal, stdin in chunks with eof,
timeoutMs, env precedence (command env over sandbox env and secrets), commands that cannot start (404 ENOENT,
syscall execve). Secrets: in commands' env, never in GET or list bodies, sandbox.json, console.log, the
daemon's log or the monitor's command line. Files: 10 MiB byte-exact round trip, PUT with recursive, mode,
append, exclusive, GET errors (ENOENT with errno/syscall/path, EISDIR), POST /fs calls and their errno errors.
Life cycle: stop (blocking and not), kill, setTimeout (expiresAt moves, clamped by --max-lifetime-minutes),
409 NOT_RUNNING on ended sandboxes, DELETE with and without force, --max-sandboxes (429 LIMIT), and a
timeoutMinutes=1 sandbox created at the start and checked at the end (cancelled once its minute lapsed).
Faults: kill -9 of a monitor (failed, errorMessage, vsock and disk gone); a daemon restart re-adopts a running
sandbox (its commands, output and secrets still work) and marks failed one whose monitor died meanwhile.
Leaks: 20 create/use/destroy cycles leave no daemon fds, monitors, taps, vsock sockets or state folders.
A table of malformed requests: each a 4xx with {code, message} and no change to any sandbox.

Three daemons: the main one, one with --max-lifetime-minutes 5 --max-sandboxes 3 (timeouts and limits), and
one per fault class that gets restarted. A sandbox shared by the tests that do not end it keeps the file
short."""
import base64
import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest

from kvmboxd_fixture import ApiError, Daemon, taps

MIB = 1 << 20
MINUTE_MS = 60000
SECRET = "s3cr3t-Value-9f8e7d6c"
SECRET2 = "another-secret-4b4b4b"
ID_RE = re.compile(r"^sb-[0-9a-f]{16}$")
ENDED = ("finished", "cancelled", "failed")

D = None       # the main daemon
D2 = None      # --max-lifetime-minutes 5 --max-sandboxes 3
SHARED = None  # a running sandbox on D, never ended by a test
EXPIRING = None  # a timeoutMinutes=1 sandbox on D2, created first, checked last
T0 = 0


def setUpModule():
    global D, D2, SHARED, EXPIRING, T0
    D = Daemon()
    D2 = Daemon(["--max-lifetime-minutes", "5", "--max-sandboxes", "3"])
    EXPIRING = D2.create({"name": "expiring", "timeoutMinutes": 1}, wait=False)
    T0 = int(time.time() * 1000)
    SHARED = D.create({"name": "shared", "env": {"SB_ONLY": "sb", "BOTH": "sb", "LANG": "C.UTF-8"},
                       "secrets": {"API_TOKEN": SECRET, "OTHER_SECRET": SECRET2}})


def tearDownModule():
    errors = []
    for d in (D, D2):
        if d is None:
            continue
        try:
            d.close(expect_no_vmms=True)
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        raise AssertionError("\n".join(errors))


def wait_status(d, sid, statuses, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        s = d.sandbox(sid)
        if s["status"] in statuses:
            return s
        if time.monotonic() > deadline:
            raise AssertionError("sandbox %s still %s after %ds, expected %s\n%s"
                                 % (sid, s["status"], timeout, statuses, d.log()))
        time.sleep(0.1)


def wait_gone(pred, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def snapshot(d):
    """What a refused request must not change: every sandbox's id, name, status and deadline, and the counts."""
    return (sorted((s["id"], s["name"], s["status"], s["expiresAt"], s["timeoutMinutes"]) for s in d.list_all()),
            d.get("/v1/health")["sandboxes"])


class ApiTestCase(unittest.TestCase):
    maxDiff = None

    def assertSandbox(self, s):
        """The fields every sandbox object has (docs/api.md, "The sandbox object")."""
        for k in ("id", "name", "image", "status", "resources", "env", "network", "secrets", "timeoutMinutes",
                  "createdAt", "startedAt", "stoppedAt", "expiresAt", "exitCode", "errorMessage",
                  "activeCpuUsageMs", "networkUsage"):
            self.assertIn(k, s)
        self.assertRegex(s["id"], ID_RE)
        self.assertIn(s["status"], ("created", "starting", "running") + ENDED)
        self.assertEqual(sorted(s["resources"]), ["diskGb", "memoryMb", "vcpus"])
        self.assertEqual(sorted(s["networkUsage"]), ["egressBytes", "ingressBytes"])


class SandboxTest(ApiTestCase):
    def test_create_fields_and_get(self):
        t1 = int(time.time() * 1000)
        s = SHARED
        self.assertSandbox(s)
        self.assertEqual((s["name"], s["image"], s["status"], s["network"]), ("shared", "default", "running", "none"))
        self.assertEqual(s["resources"], {"vcpus": 1, "memoryMb": 256, "diskGb": 1})
        self.assertEqual(s["env"], {"SB_ONLY": "sb", "BOTH": "sb", "LANG": "C.UTF-8"})
        self.assertEqual(sorted(s["secrets"]), ["API_TOKEN", "OTHER_SECRET"])
        self.assertEqual(s["timeoutMinutes"], 120)
        self.assertTrue(T0 - 1000 <= s["createdAt"] <= s["startedAt"] <= t1, s)
        self.assertLess(s["startedAt"] - s["createdAt"], 30000)
        self.assertAlmostEqual(s["expiresAt"], s["startedAt"] + 120 * MINUTE_MS, delta=2000)
        self.assertEqual((s["stoppedAt"], s["exitCode"], s["errorMessage"]), (None, None, None))
        self.assertIsInstance(s["activeCpuUsageMs"], int)
        self.assertGreaterEqual(s["activeCpuUsageMs"], 0)
        self.assertEqual(s["networkUsage"], {"ingressBytes": 0, "egressBytes": 0})
        by_id = D.sandbox(s["id"])
        by_name = D.sandbox("shared")
        for x in (by_id, by_name):
            self.assertGreaterEqual(x["activeCpuUsageMs"], s["activeCpuUsageMs"])
            # expiresAt moves with setTimeout (LifecycleTest.test_set_timeout may have run first).
            self.assertEqual(dict(x, activeCpuUsageMs=0, expiresAt=0), dict(s, activeCpuUsageMs=0, expiresAt=0))
        self.assertEqual(len(D.vmm_pids(s["id"])), 1)
        self.assertTrue(os.path.exists(os.path.join(D.run_dir, s["id"] + ".vsock")))
        h = D.get("/v1/health")
        self.assertIsInstance(h["version"], str)
        self.assertIn("default", h["images"])
        self.assertGreaterEqual(h["sandboxes"].get("running", 0), 1)

    def test_default_resources_in_guest(self):
        out = D.sh(SHARED["id"], "nproc; grep MemTotal /proc/meminfo; df -k / | tail -1")
        lines = out["stdout"].splitlines()
        self.assertEqual(lines[0], "1", out)
        mem_kib = int(lines[1].split()[1])
        self.assertTrue(200 * 1024 < mem_kib <= 256 * 1024, out)
        disk_kib = int(lines[2].split()[1])
        self.assertTrue(0.85 * MIB < disk_kib <= MIB, out)

    def test_resources_honoured(self):
        s = D.create({"name": "big", "resources": {"vcpus": 2, "memoryMb": 512, "diskGb": 3}})
        try:
            self.assertEqual(s["status"], "running", s)
            self.assertEqual(s["resources"], {"vcpus": 2, "memoryMb": 512, "diskGb": 3})
            out = D.sh(s["id"], "nproc; grep MemTotal /proc/meminfo; df -k / | tail -1")
            lines = out["stdout"].splitlines()
            self.assertEqual(lines[0], "2", out)
            mem_kib = int(lines[1].split()[1])
            self.assertTrue(400 * 1024 < mem_kib <= 512 * 1024, out)
            disk_kib = int(lines[2].split()[1])
            self.assertTrue(0.85 * 3 * MIB < disk_kib <= 3 * MIB, out)
            disk = os.path.join(D.state_dir, "sandboxes", s["id"], "disk.ext4")
            self.assertEqual(os.stat(disk).st_size, 3 << 30)
        finally:
            D.delete("/v1/sandboxes/" + s["id"], query={"force": True})

    def test_list_filters_pages_and_delete(self):
        # A: wait=false (202, starting), nulls count as absent; B: created, then killed.
        a = D.create({"name": "list-a", "env": None, "resources": {"vcpus": None}, "network": None}, wait=False)
        self.assertSandbox(a)
        self.assertEqual(a["status"], "starting", a)
        self.assertEqual(a["resources"], {"vcpus": 1, "memoryMb": 256, "diskGb": 1})
        time.sleep(0.01)
        b = D.create({"name": "list-b"})
        a = wait_status(D, a["id"], ("running",) + ENDED)
        self.assertEqual(a["status"], "running", a)
        self.assertLess(a["createdAt"], b["createdAt"])
        b = D.post("/v1/sandboxes/%s/kill" % b["id"])
        self.assertEqual(b["status"], "cancelled")
        try:
            everything = D.get("/v1/sandboxes")
            self.assertIsNone(everything["nextPageToken"])
            all_ids = [s["id"] for s in everything["sandboxes"]]
            for s in everything["sandboxes"]:
                self.assertSandbox(s)
            keys = [(s["createdAt"], s["id"]) for s in everything["sandboxes"]]
            self.assertEqual(keys, sorted(keys, reverse=True), "newest first")
            self.assertIn(SHARED["id"], all_ids)
            self.assertLess(all_ids.index(b["id"]), all_ids.index(a["id"]))
            self.assertLess(all_ids.index(a["id"]), all_ids.index(SHARED["id"]))

            running = [s["id"] for s in D.get("/v1/sandboxes", query={"status": "running"})["sandboxes"]]
            self.assertIn(a["id"], running)
            self.assertIn(SHARED["id"], running)
            self.assertNotIn(b["id"], running)
            self.assertEqual([s["id"] for s in D.get("/v1/sandboxes", query={"status": "cancelled"})["sandboxes"]],
                             [b["id"]])
            both = [s["id"] for s in D.get("/v1/sandboxes", query={"status": "running,cancelled"})["sandboxes"]]
            self.assertEqual(set(both), set(running) | {b["id"]})

            after = [s["id"] for s in D.get("/v1/sandboxes", query={"createdAfter": b["createdAt"] - 1})["sandboxes"]]
            self.assertEqual(after, [b["id"]])
            before = [s["id"] for s in D.get("/v1/sandboxes",
                                             query={"createdBefore": a["createdAt"] + 1})["sandboxes"]]
            self.assertIn(a["id"], before)
            self.assertIn(SHARED["id"], before)
            self.assertNotIn(b["id"], before)
            window = D.get("/v1/sandboxes", query={"createdAfter": a["createdAt"] - 1,
                                                   "createdBefore": b["createdAt"] + 1})["sandboxes"]
            self.assertEqual([s["id"] for s in window], [b["id"], a["id"]])

            # Pages of one, following the tokens, give the same list.
            paged, token, pages = [], None, 0
            while True:
                q = {"limit": 1}
                if token:
                    q["pageToken"] = token
                page = D.get("/v1/sandboxes", query=q)
                pages += 1
                self.assertLessEqual(len(page["sandboxes"]), 1)
                paged += [s["id"] for s in page["sandboxes"]]
                token = page["nextPageToken"]
                if not token:
                    break
                self.assertIsInstance(token, str)
                self.assertLess(pages, 100)
            self.assertEqual(paged, all_ids)
            # Filters carry across pages.
            self.assertEqual([s["id"] for s in D.list_all(status="running", limit=1)], running)
            page = D.get("/v1/sandboxes", query={"limit": 2})
            self.assertEqual([s["id"] for s in page["sandboxes"]], all_ids[:2])
            self.assertIsNotNone(page["nextPageToken"])

            # DELETE: an ended sandbox goes without force; a running one needs it.
            D.delete("/v1/sandboxes/" + b["id"])
            D.error("GET", "/v1/sandboxes/" + b["id"], status=404, code="NOT_FOUND")
            D.error("GET", "/v1/sandboxes/list-b", status=404, code="NOT_FOUND")
            self.assertNotIn(b["id"], D.sandbox_dirs())
            D.error("DELETE", "/v1/sandboxes/" + a["id"], status=409, code="CONFLICT")
            self.assertEqual(D.sandbox(a["id"])["status"], "running")
            D.delete("/v1/sandboxes/list-a", query={"force": True})
            D.error("GET", "/v1/sandboxes/" + a["id"], status=404, code="NOT_FOUND")
            self.assertEqual(D.vmm_pids(a["id"]), [])
            self.assertNotIn(a["id"], D.sandbox_dirs())
            self.assertFalse(os.path.exists(os.path.join(D.run_dir, a["id"] + ".vsock")))
            # The name is free again.
            c = D.create({"name": "list-b"}, wait=False)
            D.delete("/v1/sandboxes/" + c["id"], query={"force": True})
        finally:
            for x in (a, b):
                D.request("DELETE", "/v1/sandboxes/" + x["id"], query={"force": True})

    def test_vm_that_cannot_start(self):
        # An image whose kernel is not one: 201 with a failed sandbox and its errorMessage, nothing left.
        img = os.path.join(D.images_dir, "broken")
        os.makedirs(img, exist_ok=True)
        with open(os.path.join(img, "vmlinux"), "wb") as f:
            f.write(b"not a kernel\n" * 100)
        os.symlink(os.path.join(D.images_dir, "default", "rootfs.ext4"), os.path.join(img, "rootfs.ext4"))
        try:
            r = D.request("POST", "/v1/sandboxes", {"name": "broken", "image": "broken"}, timeout=60)
            self.assertEqual(r.status, 201, r)
            s = r.json
            self.assertSandbox(s)
            self.assertEqual(s["status"], "failed", s)
            self.assertIsInstance(s["errorMessage"], str)
            self.assertTrue(s["errorMessage"], s)
            self.assertEqual(D.vmm_pids(s["id"]), [])
            self.assertFalse(os.path.exists(os.path.join(D.run_dir, s["id"] + ".vsock")))
            self.assertFalse(os.path.exists(os.path.join(D.state_dir, "sandboxes", s["id"], "disk.ext4")))
            D.error("POST", "/v1/sandboxes/%s/commands" % s["id"], {"cmd": "true"}, status=409, code="NOT_RUNNING")
            D.delete("/v1/sandboxes/" + s["id"])
            self.assertNotIn(s["id"], D.sandbox_dirs())
        finally:
            shutil.rmtree(img)

    def test_network_tap(self):
        before = taps()
        s = D.create({"name": "net", "network": "all"})
        try:
            self.assertEqual(s["status"], "running", s)
            self.assertEqual(s["network"], "all")
            tap = "kb" + s["id"][3:15]
            self.assertIn(tap, taps())
            out = D.sh(s["id"], "ip -o -4 addr show 2>/dev/null || cat /proc/net/dev")
            self.assertEqual(out["command"]["exitCode"], 0, out)
            s2 = D.sandbox(s["id"])
            self.assertGreaterEqual(s2["networkUsage"]["egressBytes"], 0)
        finally:
            D.delete("/v1/sandboxes/" + s["id"], query={"force": True})
        self.assertEqual(taps(), before)
        s = D.create({"name": "allow", "network": {"allow": ["10.0.0.0/8", "2001:db8::/32"]}}, wait=False)
        try:
            self.assertEqual(s["network"], {"allow": ["10.0.0.0/8", "2001:db8::/32"]})
            s = wait_status(D, s["id"], ("running",) + ENDED)
            self.assertEqual(s["status"], "running", s)
        finally:
            D.delete("/v1/sandboxes/" + s["id"], query={"force": True})
        self.assertEqual(taps(), before)


class CommandTest(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        cls.sid = SHARED["id"]
        cls.base = "/v1/sandboxes/%s/commands" % cls.sid

    def test_run_answers_at_start(self):
        t = time.monotonic()
        c = D.run(self.sid, "/bin/sh", "-c", "sleep 1.5; echo done; echo oops >&2; exit 3")
        self.assertLess(time.monotonic() - t, 1.2, "201 came after the command ended")
        self.assertRegex(c["id"], r"^cmd-\d+$")
        self.assertEqual((c["cmd"], c["args"], c["status"]), ("/bin/sh", ["-c", "sleep 1.5; echo done; echo oops >&2; exit 3"],
                                                             "running"))
        self.assertIsInstance(c["pid"], int)
        w = D.get("%s/%s/wait" % (self.base, c["id"]))
        self.assertEqual((w["status"], w["exitCode"], w["signal"], w["timedOut"]), ("finished", 3, None, False))
        self.assertEqual(w["outputBytes"], 10)
        out = D.output(self.sid, c["id"])
        self.assertEqual((out["stdout"], out["stderr"], out["truncated"]), ("done\n", "oops\n", False))
        self.assertEqual(out["command"]["exitCode"], 3)
        self.assertEqual(D.get("%s/%s" % (self.base, c["id"]))["status"], "finished")
        listed = D.get(self.base)["commands"]
        self.assertIn(c["id"], [x["id"] for x in listed])
        D.error("GET", "%s/cmd-999999" % self.base, status=404, code="NOT_FOUND")
        D.error("GET", "%s/cmd-999999/wait" % self.base, status=404, code="NOT_FOUND")

    def test_output_encodings(self):
        c = D.run(self.sid, "/bin/sh", "-c", r"printf 'ok\377\000z'")
        out = D.output(self.sid, c["id"])
        self.assertEqual(out["stdout"], "ok\ufffd\x00z")
        out = D.output(self.sid, c["id"], encoding="base64")
        self.assertEqual(base64.b64decode(out["stdout"]), b"ok\xff\x00z")
        self.assertEqual(out["stderr"], "")

    def test_small_output_buffer(self):
        """outputBufferBytes: a replay of bytes the buffer dropped is 409 OUTPUT_GONE before any line; from
        bufferStart the logs are exactly the tail; output says truncated."""
        c = D.run(self.sid, "/bin/sh", "-c", "head -c 65536 /dev/zero | tr '\\0' x", outputBufferBytes=4096)
        w = D.get("%s/%s/wait" % (self.base, c["id"]))
        self.assertEqual((w["outputBytes"], w["bufferStart"]), (65536, 65536 - 4096), w)
        D.error("GET", "%s/%s/logs" % (self.base, c["id"]), status=409, code="OUTPUT_GONE")
        with D.stream("%s/%s/logs" % (self.base, c["id"]), query={"fromOffset": 65536 - 4096}) as st:
            lines = st.read_all()
        self.assertEqual(lines[-1]["type"], "exit", lines[-1])
        self.assertEqual("".join(l["data"] for l in lines[:-1]), "x" * 4096)
        self.assertEqual(lines[0]["byteOffset"], 65536 - 4096)
        out = D.output(self.sid, c["id"])
        self.assertEqual((out["stdout"], out["truncated"]), ("x" * 4096, True))
        D.error("POST", self.base, {"cmd": "true", "outputBufferBytes": 100}, status=400, code="BAD_REQUEST")

    def test_logs_two_readers(self):
        c = D.run(self.sid, "/bin/sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo err >&2")
        results = [None, None]

        def reader(i):
            with D.stream("%s/%s/logs" % (self.base, c["id"])) as st:
                results[i] = (st.headers.get("Content-Type"), st.read_all())

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for ctype, lines in results:
            self.assertTrue(ctype.startswith("application/x-ndjson"), ctype)
            self.assertEqual(lines[-1]["type"], "exit", lines)
            self.assertEqual(lines[-1]["command"]["status"], "finished")
            self.assertEqual(lines[-1]["command"]["id"], c["id"])
            outs = lines[:-1]
            self.assertTrue(all(o["type"] == "output" for o in outs), lines)
            self.assertEqual("".join(o["data"] for o in outs if o["stream"] == "stdout"), "line1\nline2\nline3\n")
            self.assertEqual("".join(o["data"] for o in outs if o["stream"] == "stderr"), "err\n")
            off = 0
            for o in outs:
                self.assertEqual(o["byteOffset"], off, lines)
                self.assertIsInstance(o["timestamp"], int)
                off += len(o["data"].encode())
            self.assertEqual(off, 22)
        self.assertEqual([(o.get("data"), o.get("byteOffset")) for o in results[0][1][:-1]],
                         [(o.get("data"), o.get("byteOffset")) for o in results[1][1][:-1]])

        # A finished command: follow=false gives it all and the exit line; fromOffset resumes mid-stream.
        with D.stream("%s/%s/logs" % (self.base, c["id"]), query={"follow": False}) as st:
            lines = st.read_all()
        self.assertEqual("".join(o["data"] for o in lines[:-1]), "line1\nline2\nline3\nerr\n")
        self.assertEqual(lines[-1]["type"], "exit")
        with D.stream("%s/%s/logs" % (self.base, c["id"]), query={"fromOffset": 8, "follow": False}) as st:
            lines = st.read_all()
        self.assertEqual(lines[0]["byteOffset"], 8)
        self.assertEqual("".join(o["data"] for o in lines[:-1]), "ne2\nline3\nerr\n")
        self.assertEqual(lines[-1]["type"], "exit")
        with D.stream("%s/%s/logs" % (self.base, c["id"]), query={"fromOffset": 22, "encoding": "base64"}) as st:
            lines = st.read_all()
        self.assertEqual([o["type"] for o in lines], ["exit"])
        with D.stream("%s/%s/logs" % (self.base, c["id"]), query={"fromOffset": 1, "encoding": "base64"}) as st:
            lines = st.read_all()
        self.assertEqual(base64.b64decode(lines[0]["data"]), b"ine1\n")

    def test_logs_no_follow_signal(self):
        c = D.run(self.sid, "/bin/sh", "-c", "echo ready; exec sleep 60")
        with D.stream("%s/%s/logs" % (self.base, c["id"])) as st:
            first = st.next()
        self.assertEqual((first["type"], first["data"]), ("output", "ready\n"))
        with D.stream("%s/%s/logs" % (self.base, c["id"]), query={"follow": False}) as st:
            lines = st.read_all()
        self.assertEqual([(o["type"], o["data"]) for o in lines], [("output", "ready\n")])
        self.assertEqual(D.post("%s/%s/signal" % (self.base, c["id"]), {"signal": "SIGTERM"}), {})
        w = D.get("%s/%s/wait" % (self.base, c["id"]))
        self.assertEqual((w["status"], w["signal"], w["exitCode"]), ("killed", "SIGTERM", 143))
        e = D.error("POST", "%s/%s/signal" % (self.base, c["id"]), {"signal": 9}, code="NOT_RUNNING")
        self.assertEqual(e["_status"], 409)
        c = D.run(self.sid, "sleep", "60")
        self.assertEqual(D.post("%s/%s/signal" % (self.base, c["id"]), {"signal": 9}), {})
        w = D.get("%s/%s/wait" % (self.base, c["id"]))
        self.assertEqual((w["status"], w["signal"], w["exitCode"]), ("killed", "SIGKILL", 137))

    def test_timeout_ms(self):
        c = D.run(self.sid, "sleep", "30", timeoutMs=300)
        w = D.get("%s/%s/wait" % (self.base, c["id"]))
        self.assertEqual((w["status"], w["timedOut"], w["signal"]), ("killed", True, "SIGKILL"))

    def test_stdin(self):
        c = D.run(self.sid, "/bin/sh", "-c", "cat; echo end", stdin=True)
        r = D.call("POST", "%s/%s/stdin" % (self.base, c["id"]), b"hello ",
                   headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r, {"bytes": 6})
        big = os.urandom(300 * 1024)
        r = D.call("POST", "%s/%s/stdin" % (self.base, c["id"]), big, query={"eof": True})
        self.assertEqual(r, {"bytes": len(big)})
        out = D.output(self.sid, c["id"], encoding="base64")
        self.assertEqual(base64.b64decode(out["stdout"]), b"hello " + big + b"end\n")
        e = D.error("POST", "%s/%s/stdin" % (self.base, c["id"]), b"late")
        self.assertIn(e["code"], ("NOT_RUNNING", "STDIN_CLOSED"), e)
        self.assertEqual(e["_status"], 409, e)
        c = D.run(self.sid, "sleep", "5")
        try:
            e = D.error("POST", "%s/%s/stdin" % (self.base, c["id"]), b"x", code="STDIN_CLOSED")
            self.assertEqual(e["_status"], 409, e)
        finally:
            D.post("%s/%s/signal" % (self.base, c["id"]), {"signal": "KILL"})

    def test_env_precedence_and_secrets(self):
        out = D.sh(self.sid, 'echo "$BOTH $SB_ONLY $API_TOKEN $OTHER_SECRET $CMD_ONLY $LANG"',
                   env={"BOTH": "cmd", "CMD_ONLY": "c"})
        self.assertEqual(out["stdout"], "cmd sb %s %s c C.UTF-8\n" % (SECRET, SECRET2))
        out = D.sh(self.sid, 'echo "$API_TOKEN $SB_ONLY"', env={"API_TOKEN": "override", "SB_ONLY": "x"})
        self.assertEqual(out["stdout"], "override x\n")
        out = D.sh(self.sid, 'echo "$HOME $USER"; pwd')
        self.assertEqual(out["stdout"], "/root root\n/root\n")

    def test_cannot_start(self):
        e = D.error("POST", self.base, {"cmd": "/no/such/program", "args": []}, status=404, code="ENOENT")
        self.assertEqual((e["errno"], e["syscall"], e["path"]), (2, "execve", "/no/such/program"))
        e = D.error("POST", self.base, {"cmd": "no-such-command"}, status=404, code="ENOENT")
        self.assertEqual((e["errno"], e["syscall"]), (2, "execve"))
        e = D.error("POST", self.base, {"cmd": "true", "cwd": "/no/such/dir"}, status=404, code="ENOENT")
        self.assertEqual((e["syscall"], e["path"]), ("chdir", "/no/such/dir"))
        D.put_file(self.sid, "/tmp/notexec", b"#!/bin/sh\n", mode="0644")
        e = D.error("POST", self.base, {"cmd": "/tmp/notexec"}, status=403, code="EACCES")
        self.assertEqual(e["syscall"], "execve")

    def test_user_and_cwd(self):
        # The rootfs of `make images` has root and user (1000).
        out = D.sh(self.sid, "id -u; pwd; echo $HOME", user="user", cwd="/tmp")
        self.assertEqual(out["stdout"].split(), ["1000", "/tmp", "/home/user"])
        out = D.sh(self.sid, "id -u", user="user", sudo=True)
        self.assertEqual(out["stdout"], "0\n")
        e = D.error("POST", "/v1/sandboxes/%s/commands" % self.sid, {"cmd": "true", "user": "nobody-here"},
                    status=404, code="ENOENT")
        self.assertEqual(e["syscall"], "getpwnam")


class SecretTest(ApiTestCase):
    def test_secrets_never_returned_or_written(self):
        sid = SHARED["id"]
        for method, path in (("GET", "/v1/sandboxes/" + sid), ("GET", "/v1/sandboxes/shared"),
                             ("GET", "/v1/sandboxes"), ("GET", "/v1/sandboxes?status=running"),
                             ("GET", "/v1/health")):
            r = D.request(method, path)
            self.assertEqual(r.status, 200)
            for v in (SECRET, SECRET2):
                self.assertNotIn(v.encode(), r.body, path)
        self.assertEqual(sorted(D.sandbox(sid)["secrets"]), ["API_TOKEN", "OTHER_SECRET"])
        # Make the guest busy with them first, so that anything that logs would have logged.
        D.sh(sid, 'echo "$API_TOKEN" > /dev/null')
        sdir = os.path.join(D.state_dir, "sandboxes", sid)
        names = os.listdir(sdir)
        self.assertIn("sandbox.json", names)
        for name in names:
            p = os.path.join(sdir, name)
            if name == "disk.ext4" or not os.path.isfile(p):
                continue
            with open(p, "rb") as f:
                data = f.read()
            for v in (SECRET, SECRET2):
                self.assertNotIn(v.encode(), data, p)
        with open(D.log_path, "rb") as f:
            log = f.read()
        for v in (SECRET, SECRET2):
            self.assertNotIn(v.encode(), log, "the daemon's log")
        for pid in D.vmm_pids(sid):
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmdline = f.read()
            with open("/proc/%d/environ" % pid, "rb") as f:
                environ = f.read()
            for v in (SECRET, SECRET2):
                self.assertNotIn(v.encode(), cmdline, "the monitor's command line")
                self.assertNotIn(v.encode(), environ, "the monitor's environment")


class FileTest(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        cls.sid = SHARED["id"]
        cls.files = "/v1/sandboxes/%s/files" % cls.sid
        cls.fsp = "/v1/sandboxes/%s/fs" % cls.sid

    def test_10mib_round_trip(self):
        data = random_bytes(10 * MIB)
        self.assertEqual(D.put_file(self.sid, "/root/big.bin", data), {"size": len(data)})
        r = D.request("GET", self.files, query={"path": "/root/big.bin"})
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/octet-stream"), r.headers)
        self.assertEqual(len(r.body), len(data))
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(data).hexdigest())
        out = D.sh(self.sid, "sha256sum /root/big.bin")
        self.assertEqual(out["stdout"].split()[0], hashlib.sha256(data).hexdigest())
        D.fs(self.sid, "unlink", path="/root/big.bin")

    def test_put_options(self):
        sid = self.sid
        self.assertEqual(D.put_file(sid, "/root/pt/a/b/f", b"deep", recursive=True), {"size": 4})
        self.assertEqual(D.get_file(sid, "/root/pt/a/b/f"), b"deep")
        e = D.error("PUT", self.files, b"x", query={"path": "/root/pt/none/f"}, status=404, code="ENOENT")
        self.assertEqual((e["errno"], e["syscall"], e["path"]), (2, "open", "/root/pt/none/f"))
        D.put_file(sid, "/root/pt/m600", b"m", mode="0600")
        self.assertEqual(D.fs(sid, "stat", path="/root/pt/m600")["mode"] & 0o7777, 0o600)
        D.put_file(sid, "/root/pt/m755", b"m", mode="755")
        self.assertEqual(D.fs(sid, "stat", path="/root/pt/m755")["mode"] & 0o7777, 0o755)
        self.assertEqual(D.put_file(sid, "/root/pt/log", b"one\n"), {"size": 4})
        # docs/api.md says {"size": N}: the bytes written (the agent's appendFile result) or the file's new
        # size (what kvmboxd answers) -- either reading is accepted until the doc says which.
        self.assertIn(D.put_file(sid, "/root/pt/log", b"two\n", append=True), ({"size": 4}, {"size": 8}))
        self.assertEqual(D.get_file(sid, "/root/pt/log"), b"one\ntwo\n")
        self.assertEqual(D.put_file(sid, "/root/pt/log", b"new"), {"size": 3})
        self.assertEqual(D.get_file(sid, "/root/pt/log"), b"new")
        e = D.error("PUT", self.files, b"zzz", query={"path": "/root/pt/log", "exclusive": True}, status=409,
                    code="EEXIST")
        self.assertEqual((e["errno"], e["syscall"], e["path"]), (errno.EEXIST, "open", "/root/pt/log"))
        self.assertEqual(D.get_file(sid, "/root/pt/log"), b"new")
        self.assertEqual(D.put_file(sid, "/root/pt/excl", b"", exclusive=True), {"size": 0})
        self.assertEqual(D.get_file(sid, "/root/pt/excl"), b"")
        e = D.error("PUT", self.files, b"x", query={"path": "/root/pt"}, status=400, code="EISDIR")
        D.fs(sid, "rm", path="/root/pt", recursive=True)

    def test_get_errors(self):
        e = D.error("GET", self.files, query={"path": "/root/missing.txt"}, status=404, code="ENOENT")
        self.assertEqual((e["errno"], e["syscall"], e["path"]), (2, "open", "/root/missing.txt"))
        e = D.error("GET", self.files, query={"path": "/etc"}, status=400, code="EISDIR")
        self.assertEqual((e["errno"], e["path"]), (errno.EISDIR, "/etc"))
        self.assertEqual(D.get_file(self.sid, "/proc/self/comm") != b"", True)
        self.assertEqual(D.get_file(self.sid, "/root/../etc/passwd")[:5], b"root:")

    def test_fs_calls(self):
        sid = self.sid
        self.assertEqual(D.fs(sid, "mkdir", path="/root/fs/a/b", recursive=True), {"path": "/root/fs"})
        self.assertEqual(D.fs(sid, "mkdir", path="/root/fs/a/b", recursive=True), {"path": None})
        D.put_file(sid, "/root/fs/a/f", b"12345")
        self.assertEqual(D.fs(sid, "readdir", path="/root/fs/a")["entries"], ["b", "f"])
        self.assertEqual(D.fs(sid, "readdir", path="/root/fs/a", withFileTypes=True)["entries"],
                         [{"name": "b", "type": "directory"}, {"name": "f", "type": "file"}])
        st = D.fs(sid, "stat", path="/root/fs/a/f")
        self.assertEqual((st["type"], st["size"]), ("file", 5))
        self.assertEqual(D.fs(sid, "rename", oldPath="/root/fs/a/f", newPath="/root/fs/g"), {})
        self.assertEqual(D.fs(sid, "exists", path="/root/fs/a/f"), {"exists": False})
        self.assertEqual(D.get_file(sid, "/root/fs/g"), b"12345")
        D.fs(sid, "copyFile", src="/root/fs/g", dest="/root/fs/h")
        D.fs(sid, "symlink", target="g", path="/root/fs/link")
        self.assertEqual(D.fs(sid, "readlink", path="/root/fs/link"), {"target": "g"})
        self.assertEqual(D.fs(sid, "realpath", path="/root/fs/link"), {"path": "/root/fs/g"})
        D.fs(sid, "truncate", path="/root/fs/h", len=2)
        self.assertEqual(D.get_file(sid, "/root/fs/h"), b"12")
        D.fs(sid, "chmod", path="/root/fs/h", mode=0o640)
        self.assertEqual(D.fs(sid, "lstat", path="/root/fs/h")["mode"] & 0o777, 0o640)
        tmp = D.fs(sid, "mkdtemp", prefix="/tmp/x-")["path"]
        self.assertTrue(tmp.startswith("/tmp/x-"))
        D.fs(sid, "rmdir", path=tmp)

        cases = [
            ({"op": "mkdir", "path": "/root/fs/a"}, 409, "EEXIST", "mkdir", "/root/fs/a"),
            ({"op": "mkdir", "path": "/root/fs/x/y"}, 404, "ENOENT", "mkdir", "/root/fs/x/y"),
            ({"op": "readdir", "path": "/root/fs/nope"}, 404, "ENOENT", "scandir", "/root/fs/nope"),
            ({"op": "readdir", "path": "/root/fs/g"}, 400, "ENOTDIR", "scandir", "/root/fs/g"),
            ({"op": "stat", "path": "/root/fs/nope"}, 404, "ENOENT", "stat", "/root/fs/nope"),
            ({"op": "rename", "oldPath": "/root/fs/nope", "newPath": "/root/fs/n2"}, 404, "ENOENT", "rename",
             "/root/fs/nope"),
            ({"op": "rm", "path": "/root/fs/a"}, 400, "EISDIR", "rm", "/root/fs/a"),
            ({"op": "rmdir", "path": "/root/fs/a"}, 409, "ENOTEMPTY", "rmdir", "/root/fs/a"),
            ({"op": "unlink", "path": "/root/fs/nope"}, 404, "ENOENT", "unlink", "/root/fs/nope"),
            ({"op": "rm", "path": "/"}, None, None, None, None),
        ]
        for body, status, code, syscall, path in cases:
            with self.subTest(body=body):
                e = D.error("POST", self.fsp, body, status=status, code=code)
                if code:
                    self.assertEqual(e["errno"], getattr(errno, code), e)
                    self.assertEqual((e["syscall"], e["path"]), (syscall, path), e)
        e = D.error("POST", self.fsp, {"op": "rename", "oldPath": "/root/fs/nope", "newPath": "/root/fs/n2"})
        self.assertEqual(e["dest"], "/root/fs/n2")
        self.assertEqual(D.fs(sid, "exists", path="/root/fs/a/b"), {"exists": True})
        self.assertEqual(D.fs(sid, "rm", path="/root/fs", recursive=True), {})
        self.assertEqual(D.fs(sid, "exists", path="/root/fs"), {"exists": False})
        D.fs(sid, "rm", path="/root/fs", force=True)


def random_bytes(n):
    return os.urandom(n)


class LifecycleTest(ApiTestCase):
    def test_stop_blocking(self):
        s = D.create({"name": "stopper"})
        sid = s["id"]
        c = D.run(sid, "sleep", "60")
        t = time.monotonic()
        s = D.post("/v1/sandboxes/%s/stop" % sid)
        self.assertLess(time.monotonic() - t, 12)
        self.assertEqual((s["status"], s["exitCode"], s["errorMessage"]), ("finished", 0, None), s)
        self.assertIsInstance(s["stoppedAt"], int)
        self.assertGreaterEqual(s["stoppedAt"], s["startedAt"])
        self.assertEqual(D.vmm_pids(sid), [])
        self.assertFalse(os.path.exists(os.path.join(D.run_dir, sid + ".vsock")))
        self.assertEqual(D.post("/v1/sandboxes/%s/stop" % sid), s)
        self.assertEqual(D.post("/v1/sandboxes/%s/stop" % sid, {"blocking": False}, expect=(200, 202))["status"],
                         "finished")
        for method, path, body in (("POST", "/commands", {"cmd": "true"}), ("GET", "/commands/" + c["id"], None),
                                   ("GET", "/files?path=/etc/hostname", None),
                                   ("PUT", "/files?path=/root/x", b"x"),
                                   ("POST", "/fs", {"op": "stat", "path": "/"}),
                                   ("POST", "/timeout", {"timeoutMinutes": 5})):
            with self.subTest(path=path):
                D.error(method, "/v1/sandboxes/%s%s" % (sid, path), body, status=409, code="NOT_RUNNING")
        self.assertEqual(D.sandbox(sid), s)
        D.delete("/v1/sandboxes/" + sid)
        self.assertNotIn(sid, D.sandbox_dirs())

    def test_stop_nonblocking_and_kill(self):
        a = D.create({"name": "nb"})
        b = D.create({"name": "killed"})
        r = D.request("POST", "/v1/sandboxes/%s/stop" % a["id"], {"blocking": False})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json["status"], "running")
        k = D.post("/v1/sandboxes/%s/kill" % b["id"])
        self.assertEqual(k["status"], "cancelled", k)
        self.assertIsInstance(k["stoppedAt"], int)
        self.assertEqual(D.vmm_pids(b["id"]), [])
        self.assertEqual(D.post("/v1/sandboxes/%s/kill" % b["id"])["status"], "cancelled")
        a = wait_status(D, a["id"], ENDED)
        self.assertEqual((a["status"], a["exitCode"]), ("finished", 0), a)
        wait_gone(lambda: not D.vmm_pids(a["id"]), what="the stopped monitor")
        for x in (a, b):
            D.delete("/v1/sandboxes/" + x["id"])

    def test_set_timeout(self):
        s = D.post("/v1/sandboxes/%s/timeout" % SHARED["id"], {"timeoutMinutes": 30})
        now = int(time.time() * 1000)
        self.assertAlmostEqual(s["expiresAt"], now + 30 * MINUTE_MS, delta=3000)
        self.assertEqual(s["status"], "running")
        s = D.post("/v1/sandboxes/%s/timeout" % SHARED["id"], {"timeoutMinutes": 120})
        self.assertAlmostEqual(s["expiresAt"], int(time.time() * 1000) + 120 * MINUTE_MS, delta=3000)

    def test_timeout_clamped_by_max_lifetime(self):
        s = D2.create({"name": "clamp", "timeoutMinutes": 2})
        try:
            self.assertEqual(s["status"], "running", s)
            self.assertAlmostEqual(s["expiresAt"], s["startedAt"] + 2 * MINUTE_MS, delta=2000)
            time.sleep(1.1)
            r = D2.post("/v1/sandboxes/%s/timeout" % s["id"], {"timeoutMinutes": 3})
            self.assertAlmostEqual(r["expiresAt"], int(time.time() * 1000) + 3 * MINUTE_MS, delta=1000)
            self.assertGreater(r["expiresAt"], s["expiresAt"])
            r = D2.post("/v1/sandboxes/%s/timeout" % s["id"], {"timeoutMinutes": 5})
            self.assertEqual(r["expiresAt"], s["startedAt"] + 5 * MINUTE_MS, r)
            D2.error("POST", "/v1/sandboxes/%s/timeout" % s["id"], {"timeoutMinutes": 6}, status=400,
                     code="BAD_REQUEST")
            D2.error("POST", "/v1/sandboxes", {"timeoutMinutes": 6}, status=400, code="BAD_REQUEST")
            self.assertEqual(D2.sandbox(s["id"])["expiresAt"], r["expiresAt"])
        finally:
            D2.delete("/v1/sandboxes/" + s["id"], query={"force": True})

    def test_default_timeout_over_max_lifetime(self):
        # The default timeoutMinutes (120) is over this daemon's --max-lifetime-minutes 5: no sandbox may
        # live longer than the maximum, so the sandbox must get at most 5 minutes.
        r = D2.request("POST", "/v1/sandboxes", {"name": "dflt"})
        self.assertEqual(r.status, 201, r)
        s = r.json
        try:
            self.assertLessEqual(s["timeoutMinutes"], 5, s)
            self.assertLessEqual(s["expiresAt"], s["startedAt"] + 5 * MINUTE_MS, s)
        finally:
            D2.delete("/v1/sandboxes/" + s["id"], query={"force": True})

    def test_max_sandboxes(self):
        live = [s for s in D2.list_all() if s["status"] not in ENDED]
        made = []
        try:
            for i in range(3 - len(live)):
                made.append(D2.create({"name": "lim%d" % i, "timeoutMinutes": 3}, wait=False))
            before = snapshot(D2)
            e = D2.error("POST", "/v1/sandboxes", {"name": "one-too-many", "timeoutMinutes": 3}, status=429,
                         code="LIMIT")
            self.assertEqual(snapshot(D2)[0], before[0])
            D2.post("/v1/sandboxes/%s/kill" % made[0]["id"])
            ok = D2.create({"name": "one-too-many", "timeoutMinutes": 3}, wait=False)
            made.append(ok)
        finally:
            for s in made:
                D2.request("DELETE", "/v1/sandboxes/" + s["id"], query={"force": True})


class FaultTest(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.d.close(expect_no_vmms=True)

    def test_vmm_killed(self):
        d = self.d
        s = d.create({"name": "victim"})
        sid = s["id"]
        pids = d.vmm_pids(sid)
        self.assertEqual(len(pids), 1)
        vsock = os.path.join(d.run_dir, sid + ".vsock")
        disk = os.path.join(d.state_dir, "sandboxes", sid, "disk.ext4")
        self.assertTrue(os.path.exists(vsock))
        self.assertTrue(os.path.exists(disk))
        os.kill(pids[0], signal.SIGKILL)
        s = wait_status(d, sid, ENDED, timeout=10)
        self.assertEqual(s["status"], "failed", s)
        self.assertIsInstance(s["errorMessage"], str)
        self.assertTrue(s["errorMessage"], s)
        self.assertIsInstance(s["stoppedAt"], int)
        wait_gone(lambda: not os.path.exists(vsock) and not os.path.exists(disk), what="vsock and disk removal")
        d.error("POST", "/v1/sandboxes/%s/commands" % sid, {"cmd": "true"}, status=409, code="NOT_RUNNING")
        d.delete("/v1/sandboxes/" + sid)
        self.assertNotIn(sid, d.sandbox_dirs())

    def test_restart_readopts(self):
        d = self.d
        x = d.create({"name": "survivor", "secrets": {"TOKEN": SECRET}, "env": {"E": "1"}})
        y = d.create({"name": "dies-while-down"})
        c = d.run(x["id"], "/bin/sh", "-c", "sleep 2; echo after-restart")
        xp, yp = d.vmm_pids(x["id"]), d.vmm_pids(y["id"])
        self.assertEqual((len(xp), len(yp)), (1, 1))
        self.assertEqual(d.stop(), 0, d.log())
        self.assertEqual(d.vmm_pids(x["id"]), xp, "a sandbox died with the daemon")
        os.kill(yp[0], signal.SIGKILL)
        wait_gone(lambda: not d.vmm_pids(y["id"]), what="the killed monitor")
        d.start()
        x2 = d.sandbox(x["id"])
        self.assertEqual(x2["status"], "running", x2)
        for k in ("id", "name", "createdAt", "startedAt", "expiresAt", "env", "secrets", "resources"):
            self.assertEqual(x2[k], x[k], k)
        y2 = d.sandbox("dies-while-down")
        self.assertEqual(y2["status"], "failed", y2)
        self.assertTrue(y2["errorMessage"], y2)
        self.assertFalse(os.path.exists(os.path.join(d.run_dir, y["id"] + ".vsock")))
        self.assertFalse(os.path.exists(os.path.join(d.state_dir, "sandboxes", y["id"], "disk.ext4")))
        out = d.output(x["id"], c["id"])
        self.assertEqual(out["stdout"], "after-restart\n")
        out = d.sh(x["id"], 'echo "$TOKEN $E"')
        self.assertEqual(out["stdout"], "%s 1\n" % SECRET)
        self.assertEqual(d.get("/v1/health")["sandboxes"].get("running"), 1)
        # The re-adopted sandbox is still fully managed: VMM death is noticed, stop works.
        s = d.post("/v1/sandboxes/%s/stop" % x["id"])
        self.assertEqual(s["status"], "finished", s)
        self.assertEqual(d.vmm_pids(x["id"]), [])
        for sid in (x["id"], y["id"]):
            d.delete("/v1/sandboxes/" + sid)
        self.assertEqual(d.sandbox_dirs(), [])

    def test_readopted_vmm_death_noticed(self):
        d = self.d
        s = d.create({"name": "adoptee"})
        d.restart()
        self.assertEqual(d.sandbox(s["id"])["status"], "running")
        os.kill(d.vmm_pids(s["id"])[0], signal.SIGKILL)
        s = wait_status(d, s["id"], ENDED, timeout=10)
        self.assertEqual(s["status"], "failed", s)
        self.assertTrue(s["errorMessage"])
        d.delete("/v1/sandboxes/" + s["id"])


class LeakTest(ApiTestCase):
    def test_20_cycles_leave_nothing(self):
        def state():
            return (D.vmm_pids(), taps(), D.sandbox_dirs(), sorted(os.listdir(D.run_dir)))

        D.get("/v1/health")
        time.sleep(0.2)
        fds_before = D.fd_count()
        before = state()
        for i in range(20):
            body = {"name": "cycle%d" % i}
            if i % 5 == 0:
                body["network"] = "all"
            s = D.create(body)
            self.assertEqual(s["status"], "running", s)
            out = D.sh(s["id"], "echo %d" % i)
            self.assertEqual(out["stdout"], "%d\n" % i)
            D.put_file(s["id"], "/tmp/f", b"x" * 1000)
            with D.stream("/v1/sandboxes/%s/commands/%s/logs" % (s["id"], out["command"]["id"])) as st:
                self.assertEqual(st.read_all()[-1]["type"], "exit")
            if i % 3 == 1:
                D.post("/v1/sandboxes/%s/kill" % s["id"])
            elif i % 3 == 2 and i < 10:
                D.post("/v1/sandboxes/%s/stop" % s["id"])
            if i % 3 == 0 or i >= 10:
                D.delete("/v1/sandboxes/" + s["id"], query={"force": True})
            else:
                D.delete("/v1/sandboxes/" + s["id"])
        deadline = time.monotonic() + 5
        while D.fd_count() > fds_before and time.monotonic() < deadline:
            time.sleep(0.1)
        fds_after = D.fd_count()
        self.assertLessEqual(fds_after, fds_before, "the daemon's fds: %s" % os.listdir("/proc/%d/fd" % D.pid))
        self.assertEqual(state(), before)


class BadRequestTest(ApiTestCase):
    """Each malformed request: a 4xx with {code, message}, and nothing changed."""

    @classmethod
    def setUpClass(cls):
        cls.ended = D.create({"name": "ended"})
        D.post("/v1/sandboxes/%s/kill" % cls.ended["id"])
        cls.cmd = D.run(SHARED["id"], "true")
        D.get("/v1/sandboxes/%s/commands/%s/wait" % (SHARED["id"], cls.cmd["id"]))
        cls.live = D.run(SHARED["id"], "sleep", "600")

    @classmethod
    def tearDownClass(cls):
        D.request("POST", "/v1/sandboxes/%s/commands/%s/signal" % (SHARED["id"], cls.live["id"]),
                  {"signal": "SIGKILL"})
        D.delete("/v1/sandboxes/" + cls.ended["id"])

    def test_table(self):
        s, e = SHARED["id"], self.ended["id"]
        sb = "/v1/sandboxes"
        cmds = "%s/%s/commands" % (sb, s)
        cmd = "%s/%s" % (cmds, self.cmd["id"])
        live = "%s/%s" % (cmds, self.live["id"])
        unknown = "sb-0123456789abcdef"
        huge = b'{"name": "' + b"x" * (MIB + 10) + b'"}'
        table = [
            # malformed JSON, non-objects
            ("POST", sb, b'{"name":', 400, "BAD_REQUEST"),
            ("POST", sb, b'{"name": "x",}', 400, "BAD_REQUEST"),
            ("POST", sb, b"[]", 400, "BAD_REQUEST"),
            ("POST", sb, b'"str"', 400, "BAD_REQUEST"),
            ("POST", sb, b"42", 400, "BAD_REQUEST"),
            ("POST", sb, b"null", 400, "BAD_REQUEST"),
            ("POST", sb, b'{"name": "\xff\xfe"}', 400, "BAD_REQUEST"),
            ("POST", sb, b'{"name": "a"} {"name": "b"}', 400, "BAD_REQUEST"),
            # unknown fields
            ("POST", sb, {"nmae": "x"}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": {"cpus": 1}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"name": "ok-name", "id": "sb-0000000000000000"}, 400, "BAD_REQUEST"),
            # wrong types
            ("POST", sb, {"name": 5}, 400, "BAD_REQUEST"),
            ("POST", sb, {"image": ["default"]}, 400, "BAD_REQUEST"),
            ("POST", sb, {"timeoutMinutes": "5"}, 400, "BAD_REQUEST"),
            ("POST", sb, {"timeoutMinutes": 1.5}, 400, "BAD_REQUEST"),
            ("POST", sb, {"timeoutMinutes": True}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": []}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": {"vcpus": "1"}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"env": []}, 400, "BAD_REQUEST"),
            ("POST", sb, {"env": {"A": 1}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"env": {"1A": "x"}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"env": {"A=B": "x"}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"env": {"A": "x\u0000y"}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"secrets": {"A": 1}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"secrets": ["A"]}, 400, "BAD_REQUEST"),
            # out-of-range resources and timeouts
            ("POST", sb, {"resources": {"vcpus": 0}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": {"vcpus": os.cpu_count() + 1}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": {"vcpus": -1}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": {"memoryMb": 63}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": {"memoryMb": 1 << 40}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": {"diskGb": 0}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"resources": {"diskGb": 1025}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"timeoutMinutes": 0}, 400, "BAD_REQUEST"),
            ("POST", sb, {"timeoutMinutes": 1441}, 400, "BAD_REQUEST"),
            # bad names and images
            ("POST", sb, {"name": ""}, 400, "BAD_REQUEST"),
            ("POST", sb, {"name": "a b"}, 400, "BAD_REQUEST"),
            ("POST", sb, {"name": "x" * 64}, 400, "BAD_REQUEST"),
            ("POST", sb, {"name": "a/b"}, 400, "BAD_REQUEST"),
            ("POST", sb, {"name": "caf\u00e9"}, 400, "BAD_REQUEST"),
            ("POST", sb, {"name": "shared"}, 409, "CONFLICT"),
            ("POST", sb, {"image": "../images"}, 400, "BAD_REQUEST"),
            ("POST", sb, {"image": "no-such-image"}, None, None),
            # network values
            ("POST", sb, {"network": "some"}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": 5}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": True}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": {"allow": "10.0.0.0/8"}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": {"allow": ["10.0.0.0/33"]}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": {"allow": ["2001:db8::/129"]}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": {"allow": ["example.com"]}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": {"allow": [10]}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": {"deny": ["10.0.0.0/8"]}}, 400, "BAD_REQUEST"),
            ("POST", sb, {"network": {"allow": ["10.0.0.0/8"], "x": 1}}, 400, "BAD_REQUEST"),
            # unknown ids
            ("GET", sb + "/" + unknown, None, 404, "NOT_FOUND"),
            ("GET", sb + "/no-such-name", None, 404, "NOT_FOUND"),
            ("POST", sb + "/%s/stop" % unknown, {}, 404, "NOT_FOUND"),
            ("POST", sb + "/%s/kill" % unknown, {}, 404, "NOT_FOUND"),
            ("POST", sb + "/%s/timeout" % unknown, {"timeoutMinutes": 5}, 404, "NOT_FOUND"),
            ("DELETE", sb + "/" + unknown, None, 404, "NOT_FOUND"),
            ("DELETE", sb + "/%s?force=true" % unknown, None, 404, "NOT_FOUND"),
            ("POST", sb + "/%s/commands" % unknown, {"cmd": "true"}, 404, "NOT_FOUND"),
            ("GET", sb + "/%s/files?path=/etc/hostname" % unknown, None, 404, "NOT_FOUND"),
            ("PUT", sb + "/%s/files?path=/tmp/x" % unknown, b"x", 404, "NOT_FOUND"),
            ("POST", sb + "/%s/fs" % unknown, {"op": "stat", "path": "/"}, 404, "NOT_FOUND"),
            ("GET", cmds + "/cmd-99999", None, 404, "NOT_FOUND"),
            ("GET", cmds + "/cmd-99999/output", None, 404, "NOT_FOUND"),
            ("GET", cmds + "/cmd-99999/logs", None, 404, "NOT_FOUND"),
            ("POST", cmds + "/cmd-99999/signal", {"signal": "SIGTERM"}, 404, "NOT_FOUND"),
            ("POST", cmds + "/cmd-99999/stdin", b"x", 404, "NOT_FOUND"),
            ("POST", sb + "/%s/commands/cmd-1/stdin" % unknown, b"x", 404, "NOT_FOUND"),
            ("POST", sb + "/%s/commands/cmd-1/stdin" % e, b"x", 409, "NOT_RUNNING"),
            # unknown routes
            ("GET", "/", None, 404, "NOT_FOUND"),
            ("GET", "/v1", None, 404, "NOT_FOUND"),
            ("GET", "/v1/nope", None, 404, "NOT_FOUND"),
            ("GET", "/v2/health", None, 404, "NOT_FOUND"),
            ("GET", sb + "/%s/nope" % s, None, 404, "NOT_FOUND"),
            ("GET", cmd + "/nope", None, 404, "NOT_FOUND"),
            ("GET", cmd + "/logs/extra/segments/here", None, 404, "NOT_FOUND"),
            # wrong methods
            ("PUT", sb, b"{}", 405, "METHOD_NOT_ALLOWED"),
            ("DELETE", sb, None, 405, "METHOD_NOT_ALLOWED"),
            ("POST", "/v1/health", {}, 405, "METHOD_NOT_ALLOWED"),
            ("PATCH", sb + "/" + s, {"name": "renamed"}, 405, "METHOD_NOT_ALLOWED"),
            ("POST", sb + "/" + s, {}, 405, "METHOD_NOT_ALLOWED"),
            ("GET", sb + "/%s/stop" % s, None, 405, "METHOD_NOT_ALLOWED"),
            ("GET", sb + "/%s/kill" % s, None, 405, "METHOD_NOT_ALLOWED"),
            ("DELETE", cmds, None, 405, "METHOD_NOT_ALLOWED"),
            ("GET", sb + "/%s/fs" % s, None, 405, "METHOD_NOT_ALLOWED"),
            ("POST", sb + "/%s/files?path=/tmp/x" % s, b"x", 405, "METHOD_NOT_ALLOWED"),
            ("DELETE", sb + "/%s/files?path=/tmp/x" % s, None, 405, "METHOD_NOT_ALLOWED"),
            ("GET", cmd + "/signal", None, 405, "METHOD_NOT_ALLOWED"),
            # bodies over 1 MiB
            ("POST", sb, huge, 413, "TOO_LARGE"),
            ("POST", sb + "/%s/fs" % s, huge, 413, "TOO_LARGE"),
            ("POST", cmds, huge, 413, "TOO_LARGE"),
            ("POST", sb + "/%s/timeout" % s, huge, 413, "TOO_LARGE"),
            # bad query parameters
            ("GET", sb + "?limit=0", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?limit=501", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?limit=abc", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?limit=1.5", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?status=bogus", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?status=running,bogus", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?createdAfter=yesterday", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?createdBefore=-5", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?colour=blue", None, 400, "BAD_REQUEST"),
            ("POST", sb + "?wait=maybe", {}, 400, "BAD_REQUEST"),
            ("POST", sb + "?nowait=1", {}, 400, "BAD_REQUEST"),
            ("DELETE", sb + "/%s?force=maybe" % s, None, 400, "BAD_REQUEST"),
            ("DELETE", sb + "/%s?forse=true" % e, None, 400, "BAD_REQUEST"),
            ("GET", sb + "/%s?x=1" % s, None, 400, "BAD_REQUEST"),
            ("GET", cmd + "/output?encoding=hex", None, 400, "BAD_REQUEST"),
            ("GET", cmd + "/logs?encoding=hex", None, 400, "BAD_REQUEST"),
            ("GET", cmd + "/logs?fromOffset=-1", None, 400, "BAD_REQUEST"),
            ("GET", cmd + "/logs?follow=sometimes", None, 400, "BAD_REQUEST"),
            ("GET", sb + "/%s/files" % s, None, 400, "BAD_REQUEST"),
            ("GET", sb + "/%s/files?path=" % s, None, None, None),
            ("PUT", sb + "/%s/files?path=/tmp/bad&mode=8" % s, b"x", 400, "BAD_REQUEST"),
            ("PUT", sb + "/%s/files?path=/tmp/bad&mode=rw" % s, b"x", 400, "BAD_REQUEST"),
            ("PUT", sb + "/%s/files?path=/tmp/bad&append=true&exclusive=true" % s, b"x", 400, "BAD_REQUEST"),
            ("PUT", sb + "/%s/files?path=/tmp/bad&recursive=perhaps" % s, b"x", 400, "BAD_REQUEST"),
            # bad page tokens
            ("GET", sb + "?pageToken=garbage", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?pageToken=AAAAAAAAAAAAAAAA", None, 400, "BAD_REQUEST"),
            ("GET", sb + "?pageToken=%00%01", None, 400, "BAD_REQUEST"),
            # bad bodies on the other routes
            ("POST", sb + "/%s/stop" % s, {"blocking": "yes"}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/stop" % s, {"force": True}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/stop" % s, b"[true]", 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/kill" % s, {"now": True}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/timeout" % s, {}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/timeout" % s, {"timeoutMinutes": 0}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/timeout" % s, {"timeoutMinutes": 1441}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/timeout" % s, {"timeoutMinutes": "30"}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/timeout" % s, {"timeoutMinutes": 30, "x": 1}, 400, "BAD_REQUEST"),
            ("POST", cmds, {}, 400, "BAD_REQUEST"),
            ("POST", cmds, {"cmd": 5}, 400, "BAD_REQUEST"),
            ("POST", cmds, {"cmd": ""}, None, None),
            ("POST", cmds, {"cmd": "true", "args": "-x"}, 400, "BAD_REQUEST"),
            ("POST", cmds, {"cmd": "true", "args": [1]}, 400, "BAD_REQUEST"),
            ("POST", cmds, {"cmd": "true", "env": {"A": 1}}, 400, "BAD_REQUEST"),
            ("POST", cmds, {"cmd": "true", "timeoutMs": -1}, 400, "BAD_REQUEST"),
            ("POST", cmds, {"cmd": "true", "stdin": "yes"}, 400, "BAD_REQUEST"),
            ("POST", cmds, {"cmd": "true", "detached": False}, 400, "BAD_REQUEST"),
            ("POST", cmds, {"cmd": "true", "bogus": 1}, 400, "BAD_REQUEST"),
            ("POST", live + "/signal", {"signal": "SIGBOGUS"}, 400, "BAD_REQUEST"),
            ("POST", live + "/signal", {"signal": 0}, 400, "BAD_REQUEST"),
            ("POST", live + "/signal", {"signal": 65}, 400, "BAD_REQUEST"),
            ("POST", live + "/signal", {"signal": "SIGTERM", "x": 1}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/fs" % s, {}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/fs" % s, {"op": "format"}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/fs" % s, {"op": "readFile", "path": "/etc/hostname"}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/fs" % s, {"op": "stat"}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/fs" % s, {"op": "stat", "path": 5}, 400, "BAD_REQUEST"),
            ("POST", sb + "/%s/fs" % s, {"op": "stat", "path": "/", "x": 1}, 400, "BAD_REQUEST"),
            # illegal state transitions
            ("POST", sb + "/%s/timeout" % e, {"timeoutMinutes": 5}, 409, "NOT_RUNNING"),
            ("POST", sb + "/%s/commands" % e, {"cmd": "true"}, 409, "NOT_RUNNING"),
            ("POST", sb + "/%s/fs" % e, {"op": "stat", "path": "/"}, 409, "NOT_RUNNING"),
            ("GET", sb + "/%s/files?path=/etc/hostname" % e, None, 409, "NOT_RUNNING"),
            ("DELETE", sb + "/" + s, None, 409, "CONFLICT"),
            ("DELETE", sb + "/shared?force=false", None, 409, "CONFLICT"),
        ]
        before = snapshot(D)
        dirs = D.sandbox_dirs()
        for method, path, body, status, code in table:
            with self.subTest(method=method, path=path, body=body if not isinstance(body, bytes) else body[:60]):
                err = D.error(method, path, body, status=status, code=code, timeout=15)
                self.assertTrue(400 <= err["_status"] < 500, err)
                self.assertTrue(err["message"], err)
                self.assertEqual(snapshot(D), before)
        # The daemon still serves, and the shared sandbox still works.
        self.assertEqual(D.sh(SHARED["id"], "echo alive")["stdout"], "alive\n")
        self.assertEqual(D.sandbox_dirs(), dirs)


class ZzTimeoutLapseTest(ApiTestCase):
    """Last on purpose: the timeoutMinutes=1 sandbox made at the start has had most of its minute by now."""

    def test_lapsed_timeout_cancels(self):
        s = wait_status(D2, EXPIRING["id"], ("running",) + ENDED, timeout=30)
        if s["status"] == "running":
            self.assertAlmostEqual(s["expiresAt"], s["startedAt"] + MINUTE_MS, delta=2000)
            wait = (s["expiresAt"] - time.time() * 1000) / 1000 + 15
            self.assertLess(wait, 80)
            s = wait_status(D2, EXPIRING["id"], ENDED, timeout=max(wait, 1))
        self.assertEqual(s["status"], "cancelled", s)
        self.assertGreaterEqual(s["stoppedAt"], s["expiresAt"])
        self.assertLess(s["stoppedAt"] - s["expiresAt"], 10000, s)
        self.assertEqual(D2.vmm_pids(s["id"]), [])
        D2.delete("/v1/sandboxes/" + s["id"])


if __name__ == "__main__":
    unittest.main()
