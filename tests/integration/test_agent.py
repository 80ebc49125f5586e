"""The guest agent with a real Linux guest (docs/agent-protocol.md): $(BUILD)/images/vmlinux with the
initramfs, whose /init is kvmbox-agent, reached through the monitor's hybrid vsock socket (CONNECT 1024).
One VM serves the whole class; every test talks to it through tests/integration/agentclient.py, which
speaks the protocol as documented (independently of libkvmbox).

Commands: argv without a shell, /bin/sh -c with stdout and stderr interleaved in order, exit codes, killing
signals, signals to a whole process group, env precedence (command over sandbox over defaults), cwd, user
and sudo, stdin fed from a second connection, a timeout, a detached command reattached from a new
connection with replay from a byte offset, the slow-consumer error, listing. Files: 10 MiB written and read
back byte-exact in chunks, and every file call's success and error path with the errno, syscall and path
Linux reported. Bad frames close only their own connection. `shutdown` ends the VM with exit code 0."""
import hashlib
import os
import random
import re
import tempfile
import time
import unittest

from agentclient import DATA, REQUEST, Agent, AgentError, encode
from kvmboxtest import EXIT_OK, IMAGES, VMM, VmmProcess, need

KERNEL = os.path.join(IMAGES, "vmlinux")
INITRD = os.path.join(IMAGES, "initramfs.cpio.gz")
READY = "kvmbox-agent: ready on vsock port 1024"
MIB = 1 << 20


class AgentVm(VmmProcess):
    """The monitor running Linux with the agent as PID 1."""

    def __init__(self, tmp, vmm=VMM, extra_cmdline="", cpus=1):
        self.uds = os.path.join(tmp, "v.sock")
        super().__init__([vmm, "--kernel", need(KERNEL), "--initrd", need(INITRD), "--memory", "256", "--cpus",
                          str(cpus), "--timeout", "300", "--vsock", "cid=3,uds=%s" % self.uds, "--cmdline",
                          ("quiet kvmbox.hostname=agent-test " + extra_cmdline).strip()])

    def wait_ready(self, timeout=30):
        self.wait_for(re.escape(READY), timeout=timeout)

    def connect(self):
        return Agent.connect_vsock(self.uds, timeout=30)


class AgentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.vm = AgentVm(cls.tmp.name)
        cls.vm.wait_ready()
        cls.a = cls.vm.connect()

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.vm.p.poll() is None:
                cls.a.request({"op": "shutdown"})
                rc = cls.vm.finish()
                assert rc == EXIT_OK, "shutdown: the monitor exited %d\n%s" % (rc, cls.vm.report())
        finally:
            if cls.vm.p.poll() is None:
                cls.vm.kill()
            cls.tmp.cleanup()

    def err(self, fn, *args, **kw):
        with self.assertRaises(AgentError) as cm:
            fn(*args, **kw)
        return cm.exception.error

    # ---- commands ----

    def test_hello(self):
        r = self.a.request({"op": "hello", "version": 1})
        self.assertEqual(r["version"], 1)
        self.assertTrue(r["pid1"])
        self.assertEqual(r["pid"], 1)

    def test_hostname_from_cmdline(self):
        res, out, _ = self.a.sh("hostname")
        self.assertEqual(out, b"agent-test\n")

    def test_interleaved_streams_and_offsets(self):
        res, chunks = self.a.run("/bin/sh", "-c", "echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three; "
                                 "sleep 0.05; echo four >&2; exit 7")
        self.assertEqual(res["status"], "finished")
        self.assertEqual(res["exitCode"], 7)
        self.assertEqual([(s, d) for s, d, o in chunks],
                         [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n"), ("stderr", b"four\n")])
        self.assertEqual([o for s, d, o in chunks], [0, 4, 8, 14])
        self.assertEqual(res["outputBytes"], 19)

    def test_argv_without_shell(self):
        res, chunks = self.a.run("echo", "a b", "$HOME", "*")
        self.assertEqual(b"".join(d for s, d, o in chunks), b"a b $HOME *\n")

    def test_exit_codes(self):
        for code in (0, 1, 3, 255):
            res, _, _ = self.a.sh("exit %d" % code)
            self.assertEqual((res["status"], res["exitCode"], res["signal"]), ("finished", code, None))

    def test_killed_by_signal(self):
        res, _, _ = self.a.sh("kill -TERM $$")
        self.assertEqual((res["status"], res["signal"], res["exitCode"]), ("killed", "SIGTERM", 143))

    def test_not_found_and_not_executable(self):
        e = self.err(self.a.run, "no-such-command")
        self.assertEqual((e["code"], e["errno"], e["syscall"], e["path"]), ("ENOENT", 2, "execve", "no-such-command"))
        self.a.write_file("/tmp/notexec", b"#!/bin/sh\n", mode=0o644)
        e = self.err(self.a.run, "/tmp/notexec")
        self.assertEqual((e["code"], e["syscall"]), ("EACCES", "execve"))
        e = self.err(self.a.run, "true", cwd="/no/such/dir")
        self.assertEqual((e["code"], e["syscall"], e["path"]), ("ENOENT", "chdir", "/no/such/dir"))
        e = self.err(self.a.run, "true", user="nobody-here")
        self.assertEqual((e["code"], e["syscall"]), ("ENOENT", "getpwnam"))
        listed = self.a.request({"op": "list"})["commands"]
        self.assertIn("failed", [c["status"] for c in listed])

    def test_env_precedence(self):
        self.a.request({"op": "configure", "env": {"A": "sandbox", "B": "sandbox", "HOME": "/sandbox-home"}})
        try:
            res, out, _ = self.a.sh('echo "$A $B $HOME $USER"', env={"A": "command"})
            self.assertEqual(out, b"command sandbox /sandbox-home root\n")
        finally:
            self.a.request({"op": "configure", "env": {}})
        res, out, _ = self.a.sh('echo "$A|$HOME|$PATH"')
        self.assertEqual(out, b"|/root|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n")

    def test_cwd(self):
        res, out, _ = self.a.sh("pwd", cwd="/tmp")
        self.assertEqual(out, b"/tmp\n")
        res, out, _ = self.a.sh("pwd")
        self.assertEqual(out, b"/root\n")

    def test_user_and_sudo(self):
        res, out, _ = self.a.sh("id -u; echo $HOME", user="user")
        self.assertEqual(out, b"1000\n/home/user\n")
        res, out, _ = self.a.sh("id -u", user="user", sudo=True)
        self.assertEqual(out, b"0\n")
        res, out, err = self.a.sh("touch /root/x", user="user")
        self.assertNotEqual(res["exitCode"], 0)

    def test_stdin_from_second_connection(self):
        r = self.a.request({"op": "run", "cmd": "cat", "stdin": True, "detached": True})
        b = self.vm.connect()
        try:
            payload = bytes(random.Random(1).getrandbits(8) for _ in range(300000))
            b.request({"op": "stdin", "id": r["id"]}, payload[:1000])
            # a big upload in several DATA frames, then eof
            rest = payload[1000:]
            pieces = [rest[i:i + 100000] for i in range(0, len(rest), 100000)]
            b.request({"op": "stdin", "id": r["id"], "eof": True}, pieces[0], chunks=pieces[1:])
            e = self.err(b.request, {"op": "stdin", "id": r["id"]}, b"late")
            self.assertIn(e["code"], ("STDIN_CLOSED", "NOT_RUNNING"))
        finally:
            b.close()
        out = []
        res = self.a.request({"op": "attach", "id": r["id"]}, on_data=lambda m, d: out.append(d))
        self.assertEqual(res["exitCode"], 0)
        self.assertEqual(b"".join(out), payload)
        e = self.err(self.a.request, {"op": "stdin", "id": r["id"]}, b"x")
        self.assertEqual(e["code"], "NOT_RUNNING")

    def test_stdin_not_requested(self):
        r = self.a.request({"op": "run", "cmd": "sleep", "args": ["5"], "detached": True})
        e = self.err(self.a.request, {"op": "stdin", "id": r["id"]}, b"x")
        self.assertEqual(e["code"], "STDIN_CLOSED")
        self.a.request({"op": "signal", "id": r["id"], "signal": "SIGKILL"})
        res = self.a.request({"op": "attach", "id": r["id"], "output": False})
        self.assertEqual((res["status"], res["signal"]), ("killed", "SIGKILL"))

    def test_signal_reaches_process_group(self):
        r = self.a.request({"op": "run", "cmd": "/bin/sh", "detached": True,
                            "args": ["-c", "sleep 101 & sleep 102 & echo started; wait"]})
        got = []
        self.a.request({"op": "attach", "id": r["id"], "follow": False}, on_data=lambda m, d: got.append(d))
        for _ in range(100):
            if b"started" in b"".join(got):
                break
            time.sleep(0.05)
            got = []
            self.a.request({"op": "attach", "id": r["id"], "follow": False}, on_data=lambda m, d: got.append(d))
        self.a.request({"op": "signal", "id": r["id"], "signal": "TERM"})
        res = self.a.request({"op": "attach", "id": r["id"], "output": False})
        self.assertEqual(res["status"], "killed")
        # no sleeper of that group is left (PID 1 reaped them)
        for _ in range(50):
            _, out, _ = self.a.sh("ps -o args | grep -c '^sleep 10[12]' || true")
            if out.strip() == b"0":
                break
            time.sleep(0.05)
        self.assertEqual(out.strip(), b"0")
        e = self.err(self.a.request, {"op": "signal", "id": r["id"], "signal": 15})
        self.assertEqual(e["code"], "NOT_RUNNING")

    def test_timeout_kills_group(self):
        t0 = time.monotonic()
        res, _, _ = self.a.sh("sleep 30 & sleep 30", timeoutMs=300)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual((res["status"], res["timedOut"], res["signal"]), ("killed", True, "SIGKILL"))

    def test_detached_reattach_with_replay(self):
        b = self.vm.connect()
        r = b.request({"op": "run", "cmd": "/bin/sh", "detached": True,
                       "args": ["-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.05; done"]})
        self.assertEqual((r["status"], r["detached"]), ("running", True))
        b.close()  # the command outlives its connection
        c = self.vm.connect()
        try:
            full = []
            res = c.request({"op": "attach", "id": r["id"]}, on_data=lambda m, d: full.append((m["byteOffset"], d)))
            self.assertEqual(res["exitCode"], 0)
            text = b"".join(d for o, d in full)
            self.assertEqual(text, b"".join(b"line%d\n" % i for i in range(1, 6)))
            part = []
            c.request({"op": "attach", "id": r["id"], "fromOffset": 12}, on_data=lambda m, d: part.append(d))
            self.assertEqual(b"".join(part), text[12:])
            e = self.err(c.request, {"op": "attach", "id": r["id"], "fromOffset": 1000})
            self.assertEqual(e["code"], "BAD_REQUEST")
            got = self.a.request({"op": "get", "id": r["id"]})
            self.assertEqual((got["status"], got["outputBytes"]), ("finished", len(text)))
        finally:
            c.close()

    def test_slow_consumer_and_output_gone(self):
        # 4 KiB buffer; the reader only replays after 64 KiB were written: its bytes are gone.
        r = self.a.request({"op": "run", "cmd": "/bin/sh", "args": ["-c", "head -c 65536 /dev/zero"],
                            "detached": True, "outputBufferBytes": 4096})
        res = self.a.request({"op": "attach", "id": r["id"], "output": False})
        self.assertEqual(res["outputBytes"], 65536)
        self.assertEqual(res["bufferStart"], 65536 - 4096)
        e = self.err(self.a.request, {"op": "attach", "id": r["id"]})
        self.assertEqual(e["code"], "OUTPUT_GONE")
        tail = []
        self.a.request({"op": "attach", "id": r["id"], "fromOffset": 65536 - 4096}, on_data=lambda m, d: tail.append(d))
        self.assertEqual(b"".join(tail), b"\0" * 4096)
        # a live reader that does not read falls behind a small buffer; the command itself is unaffected
        b = self.vm.connect()
        try:
            fid = b.new_id()
            b.send(REQUEST, fid, {"op": "run", "cmd": "/bin/sh", "args": ["-c", "head -c 20000000 /dev/zero"],
                                  "outputBufferBytes": 4096})
            time.sleep(1.5)  # not reading: the agent's queue for this connection fills
            e = self.err(b.wait, fid)
            self.assertEqual(e["code"], "SLOW_CONSUMER")
        finally:
            b.close()

    def test_list_statuses(self):
        r = self.a.request({"op": "run", "cmd": "sleep", "args": ["20"], "detached": True})
        statuses = {c["id"]: c["status"] for c in self.a.request({"op": "list"})["commands"]}
        self.assertEqual(statuses[r["id"]], "running")
        self.a.request({"op": "signal", "id": r["id"], "signal": "KILL"})
        self.a.request({"op": "attach", "id": r["id"], "output": False})
        statuses = {c["id"]: c["status"] for c in self.a.request({"op": "list"})["commands"]}
        self.assertEqual(statuses[r["id"]], "killed")
        self.assertEqual(self.err(self.a.request, {"op": "get", "id": "cmd-999999"})["code"], "NOT_FOUND")

    # ---- files ----

    def test_10mib_file_round_trip(self):
        data = random.Random(7).randbytes(10 * MIB + 12345)
        res = self.a.write_file("/tmp/big.bin", data)
        self.assertEqual(res["size"], len(data))
        frames = []
        res = self.a.request({"op": "readFile", "path": "/tmp/big.bin"},
                             on_data=lambda m, d: frames.append((m["offset"], d)))
        self.assertEqual(res["size"], len(data))
        self.assertGreater(len(frames), 10)  # streamed in chunks
        self.assertTrue(all(len(d) <= 256 * 1024 for o, d in frames))
        self.assertEqual(b"".join(d for o, d in frames), data)
        _, out, _ = self.a.sh("md5sum /tmp/big.bin")
        self.assertEqual(out.split()[0].decode(), hashlib.md5(data).hexdigest())
        part = self.a.read_file("/tmp/big.bin", offset=1000, length=5000)
        self.assertEqual(part, data[1000:6000])
        self.a.write_file("/tmp/big.bin", b"tail", op="appendFile")
        self.assertEqual(self.a.fs("stat", path="/tmp/big.bin")["size"], len(data) + 4)
        self.a.fs("unlink", path="/tmp/big.bin")

    def test_fs_calls(self):
        a = self.a
        d = a.fs("mkdtemp", prefix="/tmp/fs-")["path"]
        self.assertTrue(d.startswith("/tmp/fs-"))
        self.assertEqual(a.fs("mkdir", path=d + "/x/y/z", recursive=True)["path"], d + "/x")
        a.write_file(d + "/x/f", b"hello", mode=0o600)
        st = a.fs("stat", path=d + "/x/f")
        self.assertEqual((st["type"], st["size"], st["mode"] & 0o777), ("file", 5, 0o600))
        a.write_file(d + "/deep/er/g", b"g", recursive=True)
        self.assertEqual(a.read_file(d + "/deep/er/g"), b"g")
        entries = a.fs("readdir", path=d + "/x", withFileTypes=True)["entries"]
        self.assertEqual(entries, [{"name": "f", "type": "file"}, {"name": "y", "type": "directory"}])
        self.assertEqual(a.fs("readdir", path=d + "/x")["entries"], ["f", "y"])
        a.fs("symlink", target="f", path=d + "/x/link")
        self.assertEqual(a.fs("readlink", path=d + "/x/link")["target"], "f")
        self.assertEqual(a.fs("lstat", path=d + "/x/link")["type"], "symlink")
        self.assertEqual(a.fs("realpath", path=d + "/x/link")["path"], d + "/x/f")
        a.fs("chmod", path=d + "/x/f", mode=0o640)
        a.fs("chown", path=d + "/x/f", uid=1000, gid=1000)
        st = a.fs("stat", path=d + "/x/f")
        self.assertEqual((st["mode"] & 0o777, st["uid"], st["gid"]), (0o640, 1000, 1000))
        a.fs("copyFile", src=d + "/x/f", dest=d + "/x/copy")
        st2 = a.fs("stat", path=d + "/x/copy")
        self.assertEqual((st2["mode"] & 0o777, st2["uid"], st2["mtimeMs"]), (0o640, 1000, st["mtimeMs"]))
        a.fs("rename", oldPath=d + "/x/copy", newPath=d + "/x/moved")
        self.assertEqual(a.fs("exists", path=d + "/x/copy")["exists"], False)
        self.assertEqual(a.fs("exists", path=d + "/x/moved")["exists"], True)
        a.fs("truncate", path=d + "/x/moved", len=2)
        self.assertEqual(a.read_file(d + "/x/moved"), b"he")
        a.fs("access", path=d + "/x/moved")
        a.fs("unlink", path=d + "/x/moved")
        a.fs("rmdir", path=d + "/x/y/z")
        a.fs("rm", path=d, recursive=True)
        self.assertFalse(a.fs("exists", path=d)["exists"])

    def test_fs_errors(self):
        a = self.a
        d = a.fs("mkdtemp", prefix="/tmp/err-")["path"]
        a.write_file(d + "/file", b"x")
        a.fs("mkdir", path=d + "/dir")
        a.write_file(d + "/dir/inner", b"y")
        cases = [
            ({"op": "readFile", "path": d + "/nope"}, "ENOENT", "open", d + "/nope"),
            ({"op": "readFile", "path": d + "/dir"}, "EISDIR", "read", d + "/dir"),
            ({"op": "writeFile", "path": d + "/nodir/f"}, "ENOENT", "open", d + "/nodir/f"),
            ({"op": "writeFile", "path": d + "/file", "exclusive": True}, "EEXIST", "open", d + "/file"),
            ({"op": "writeFile", "path": d + "/dir"}, "EISDIR", "open", d + "/dir"),
            ({"op": "appendFile", "path": d + "/nodir/f"}, "ENOENT", "open", d + "/nodir/f"),
            ({"op": "mkdir", "path": d + "/dir"}, "EEXIST", "mkdir", d + "/dir"),
            ({"op": "mkdir", "path": d + "/a/b"}, "ENOENT", "mkdir", d + "/a/b"),
            ({"op": "mkdir", "path": d + "/file/sub", "recursive": True}, "ENOTDIR", "mkdir", None),
            ({"op": "readdir", "path": d + "/file"}, "ENOTDIR", "scandir", d + "/file"),
            ({"op": "readdir", "path": d + "/nope"}, "ENOENT", "scandir", d + "/nope"),
            ({"op": "mkdtemp", "prefix": d + "/nope/x-"}, "ENOENT", "mkdtemp", None),
            ({"op": "stat", "path": d + "/nope"}, "ENOENT", "stat", d + "/nope"),
            ({"op": "lstat", "path": d + "/nope"}, "ENOENT", "lstat", d + "/nope"),
            ({"op": "realpath", "path": d + "/nope"}, "ENOENT", "realpath", d + "/nope"),
            ({"op": "rename", "oldPath": d + "/nope", "newPath": d + "/n2"}, "ENOENT", "rename", d + "/nope"),
            ({"op": "rename", "oldPath": d + "/dir", "newPath": d + "/file"}, "ENOTDIR", "rename", d + "/dir"),
            ({"op": "copyFile", "src": d + "/nope", "dest": d + "/n2"}, "ENOENT", "copyfile", d + "/nope"),
            ({"op": "copyFile", "src": d + "/file", "dest": d + "/dir/inner", "exclusive": True}, "EEXIST",
             "copyfile", d + "/file"),
            ({"op": "unlink", "path": d + "/nope"}, "ENOENT", "unlink", d + "/nope"),
            ({"op": "unlink", "path": d + "/dir"}, "EISDIR", "unlink", d + "/dir"),
            ({"op": "rm", "path": d + "/nope"}, "ENOENT", None, d + "/nope"),
            ({"op": "rm", "path": d + "/dir"}, "EISDIR", "rm", d + "/dir"),
            ({"op": "rmdir", "path": d + "/dir"}, "ENOTEMPTY", "rmdir", d + "/dir"),
            ({"op": "rmdir", "path": d + "/file"}, "ENOTDIR", "rmdir", d + "/file"),
            ({"op": "truncate", "path": d + "/nope"}, "ENOENT", "truncate", d + "/nope"),
            ({"op": "truncate", "path": d + "/dir"}, "EISDIR", None, None),
            ({"op": "chmod", "path": d + "/nope", "mode": 0o600}, "ENOENT", "chmod", d + "/nope"),
            ({"op": "chown", "path": d + "/nope", "uid": 1, "gid": 1}, "ENOENT", "chown", d + "/nope"),
            ({"op": "symlink", "target": "x", "path": d + "/file"}, "EEXIST", "symlink", None),
            ({"op": "readlink", "path": d + "/file"}, "EINVAL", "readlink", d + "/file"),
            ({"op": "readlink", "path": d + "/nope"}, "ENOENT", "readlink", d + "/nope"),
            ({"op": "access", "path": d + "/nope"}, "ENOENT", "access", d + "/nope"),
        ]
        for req, code, syscall, path in cases:
            with self.subTest(req=req):
                e = self.err(a.request, req)
                self.assertEqual(e["code"], code, e)
                self.assertEqual(e["errno"], getattr(__import__("errno"), code), e)
                if syscall:
                    self.assertEqual(e["syscall"], syscall, e)
                if path:
                    self.assertEqual(e["path"], path, e)
                self.assertTrue(e["message"].startswith(code + ": "), e)
        self.assertFalse(a.fs("exists", path=d + "/nope")["exists"])
        a.fs("rm", path=d + "/nope", force=True)  # force: a missing path is fine
        a.fs("rm", path=d, recursive=True)

    def test_bad_requests_keep_the_connection(self):
        for req, code in [({"op": "nope"}, "BAD_REQUEST"), ({"op": "stat"}, "BAD_REQUEST"),
                          ({"op": "stat", "path": 5}, "BAD_REQUEST"), ({"op": "stat", "path": "/", "x": 1}, "BAD_REQUEST"),
                          ({"op": "run", "cmd": "true", "timeoutMs": -1}, "BAD_REQUEST")]:
            self.assertEqual(self.err(self.a.request, req)["code"], code)
        self.assertEqual(self.a.fs("exists", path="/")["exists"], True)

    def test_bad_frame_closes_only_that_connection(self):
        b = self.vm.connect()
        b.sock.sendall(b"\x4b\x09" + b"\0" * 14)  # version 9
        with self.assertRaises(EOFError):
            b.recv_frame()
        b.close()
        b = self.vm.connect()
        b.sock.sendall(encode(DATA, 77, None, b"orphan data"))  # DATA for no upload
        with self.assertRaises(EOFError):
            b.recv_frame()
        b.close()
        self.assertEqual(self.a.fs("exists", path="/")["exists"], True)


if __name__ == "__main__":
    unittest.main()
