#!/usr/bin/python3
"""Tier 12: apps started on demand by the launcher that works without systemd.

httpgate runs under systemd-socket-activate with --launcher= (none), so an
app that does not listen yet is started by the fallback (spawn.c): fork,
setsid, drop to the entry's user, chdir, log file, a clean environment
(NAME HOME PORT LANG PATH), exec through PATH, a lock per port, a wait with
backoff, 503 when the app exits before listening, 504 at --start-timeout.

The apps are one small python script (written below) in several modes; each
run appends a line to "starts" in its directory and reports what it saw
(environment, cwd, ids, open fds) as JSON. They run as the user
httpgate-test (created when missing); the tier needs root, as the gate
needs root to switch users. Ports 20600-20619. Every app is stopped at the
end by the PIDs it wrote, and by whatever still listens on its port.
"""
import json
import os
import pwd
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from gatetest import (Gate, ok, done, raw, status_of, ensure_user, listening_pids,  # noqa: E402
                      pid_alive, kill_pids)

USER = "httpgate-test"
GATE_PORT, GATE_SLOW_PORT = 20600, 20601
PORTS = {"envapp": 20610, "crowd": 20611, "dies": 20612, "mute": 20613,
         "ghost": 20614, "nocmd": 20615, "rootapp": 20616, "nobody-here": 20617,
         "noexec": 20618}

APP = r'''
import json, os, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What the app got from the gate, before python touches anything.
with open("/proc/self/environ", "rb") as f:
    environ = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink("/proc/self/fd/" + fd)
    except OSError:
        pass
seen = {
    "pid": os.getpid(), "sid": os.getsid(0), "ppid": os.getppid(),
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "cwd": os.getcwd(),
    "env": {k.decode(): v.decode("latin-1") for k, v in environ.items()},
    "fds": fds,
}
with open("starts", "a") as f:
    f.write("%d\n" % os.getpid())
mode = sys.argv[1]
print("APP-STDOUT pid=%d mode=%s" % (os.getpid(), mode), flush=True)
print("APP-STDERR pid=%d" % os.getpid(), file=sys.stderr, flush=True)
if mode == "exit":
    sys.exit(3)
if mode == "never":
    time.sleep(60)
    sys.exit(0)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps(dict(seen, path=self.path, now_pid=os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

class S(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 128
S(("::1", int(os.environ["PORT"])), H).serve_forever()
'''


def get(port, path, timeout=10.0):
    """GET through the gate; returns (status, body bytes, raw)."""
    r = raw(port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            timeout=timeout, shut=False)
    body = r.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in r else b""
    return status_of(r), body, r


def starts(d):
    try:
        with open(os.path.join(d, "starts")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def main():
    if os.geteuid() != 0:
        ok(False, "tier-12 runs as root (the gate switches to the entry's user)")
        done()
    pw = ensure_user(USER)
    top = tempfile.mkdtemp(prefix="httpgate-t12.")
    os.chmod(top, 0o755)
    app = os.path.join(top, "app.py")
    with open(app, "w") as f:
        f.write(APP)
    os.chmod(app, 0o644)
    dirs = {}
    for k in PORTS:
        d = dirs[k] = os.path.join(top, k)
        os.mkdir(d)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    # envapp: a relative log in a subdirectory, with an earlier line in it
    os.mkdir(os.path.join(dirs["envapp"], "logs"))
    os.chown(os.path.join(dirs["envapp"], "logs"), pw.pw_uid, pw.pw_gid)
    envlog = os.path.join(dirs["envapp"], "logs", "env.log")
    with open(envlog, "w") as f:
        f.write("EARLIER LINE\n")
    os.chown(envlog, pw.pw_uid, pw.pw_gid)
    # noexec: a program that exists but may not be executed
    with open(os.path.join(dirs["noexec"], "prog"), "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(os.path.join(dirs["noexec"], "prog"), 0o644)
    locks = os.path.join(top, "locks")
    os.mkdir(locks)

    names = os.path.join(top, "names")
    with open(names, "w") as f:
        f.write("# tier-12 apps\n")
        f.write("envapp %d %s %s logs/env.log python3 %s serve\n" % (PORTS["envapp"], USER, dirs["envapp"], app))
        f.write("crowd %d %s %s crowd.log python3 %s serve 0.4\n" % (PORTS["crowd"], USER, dirs["crowd"], app))
        f.write("dies %d %s %s dies.log python3 %s exit\n" % (PORTS["dies"], USER, dirs["dies"], app))
        f.write("mute %d %s %s mute.log python3 %s never\n" % (PORTS["mute"], USER, dirs["mute"], app))
        f.write("ghost %d %s %s ^ /nonexistent/httpgate-no-such-program\n" % (PORTS["ghost"], USER, dirs["ghost"]))
        f.write("nocmd %d %s %s ^ httpgate-no-such-command-in-path --flag\n" % (PORTS["nocmd"], USER, dirs["nocmd"]))
        f.write("noexec %d %s %s ^ ./prog\n" % (PORTS["noexec"], USER, dirs["noexec"]))
        f.write("rootapp %d root %s ^ python3 %s serve\n" % (PORTS["rootapp"], dirs["rootapp"], app))
        f.write("nobody-here %d httpgate-no-such-user %s ^ python3 %s serve\n" % (
            PORTS["nobody-here"], dirs["nobody-here"], app))

    common = ["--launcher=", "--lock-dir=" + locks]
    gates = []
    try:
        g = Gate(GATE_PORT, common + [names])
        gates.append(g)
        gslow = Gate(GATE_SLOW_PORT, common + ["--start-timeout", "1", names])
        gates.append(gslow)
        run(g, gslow, dirs, pw, envlog)
    finally:
        for x in gates:
            x.stop()
        pids = []
        for k, d in dirs.items():
            pids += [p for p in starts(d) if pid_alive(p) and _is_ours(p, app)]
            pids += [p for p in listening_pids(PORTS[k]) if _is_ours(p, app)]
        kill_pids(pids)
        shutil.rmtree(top, ignore_errors=True)
    done()


def _is_ours(pid, app):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return app.encode() in f.read()
    except OSError:
        return False


def run(g, gslow, dirs, pw, envlog):
    # --- first request starts the app and is answered
    t = time.time()
    st, body, r = get(GATE_PORT, "/envapp/hello?x=1")
    elapsed = time.time() - t
    ok(st == 200, "first request to a stopped app starts it and is answered 200", r[:200])
    try:
        seen = json.loads(body)
    except ValueError:
        seen = {}
    ok(seen.get("path") == "/hello?x=1", "the started app got the request, rewritten to /hello?x=1", seen.get("path"))
    ok(elapsed < 5, "start and answer within 5 s (%.2fs)" % elapsed)
    env = seen.get("env", {})
    ok(env.get("NAME") == "envapp", "app environment: NAME is the key", env.get("NAME"))
    ok(env.get("PORT") == str(PORTS["envapp"]), "app environment: PORT is the entry's port", env.get("PORT"))
    ok(env.get("HOME") == pw.pw_dir, "app environment: HOME is the user's home from passwd", env.get("HOME"))
    ok(bool(env.get("LANG")), "app environment: LANG is set", env.get("LANG"))
    ok(bool(env.get("PATH")) and "/usr/bin" in env.get("PATH", "").split(":"),
       "app environment: PATH is set", env.get("PATH"))
    extra = sorted(set(env) - {"NAME", "HOME", "PORT", "LANG", "PATH"})
    ok(not extra, "app environment: nothing of the gate's (no LISTEN_*, ASAN_*, ...)", extra)
    ok(seen.get("cwd") == dirs["envapp"], "app runs in the entry's directory", seen.get("cwd"))
    ok(seen.get("uid") == pw.pw_uid and seen.get("euid") == pw.pw_uid and seen.get("gid") == pw.pw_gid,
       "app runs as the entry's user and group (%s)" % USER,
       "uid=%s gid=%s" % (seen.get("uid"), seen.get("gid")))
    ok(0 not in seen.get("groups", [0]), "app keeps no supplementary group of root", seen.get("groups"))
    ok(seen.get("sid") == seen.get("pid"), "app leads a session of its own (setsid)",
       "sid=%s pid=%s" % (seen.get("sid"), seen.get("pid")))
    socks = {fd: v for fd, v in seen.get("fds", {}).items() if v.startswith("socket:")}
    ok(not socks, "no socket of the gate reaches the app (fds %s)" % sorted(seen.get("fds", {})), socks)
    ok(seen.get("fds", {}).get("0") == "/dev/null", "app's stdin is /dev/null", seen.get("fds", {}).get("0"))

    time.sleep(0.2)
    with open(envlog) as f:
        logtext = f.read()
    ok(logtext.startswith("EARLIER LINE\n"), "log file appended to, not truncated", logtext[:80])
    ok("APP-STDOUT pid=%s" % seen.get("pid") in logtext,
       "app's stdout went to the entry's log (relative path resolved in its directory)", logtext[:200])
    ok("APP-STDERR pid=%s" % seen.get("pid") in logtext, "app's stderr went to the same log", logtext[:200])
    ok(not os.path.exists(os.path.join(os.path.dirname(dirs["envapp"]), "logs")),
       "relative log path not resolved against the gate's directory")
    ok("APP-STDOUT" not in g.log(), "app's output is not in the gate's log")

    # --- the app outlives the connection (and the gate process) that started it
    pid = seen.get("pid")
    time.sleep(0.3)
    ok(pid is not None and pid_alive(pid), "app still runs after the connection that started it closed")
    st2, body2, _ = get(GATE_PORT, "/envapp/again")
    try:
        seen2 = json.loads(body2)
    except ValueError:
        seen2 = {}
    ok(st2 == 200 and seen2.get("pid") == pid, "a later connection reaches the same app (no second start)",
       "status=%s pid=%s first=%s" % (st2, seen2.get("pid"), pid))
    ok(starts(dirs["envapp"]) == [pid], "envapp started exactly once", starts(dirs["envapp"]))

    # --- 20 concurrent first requests start exactly one app
    results = [None] * 20
    barrier = threading.Barrier(20)

    def one(i):
        try:
            barrier.wait(timeout=10)
            s, b, _ = get(GATE_PORT, "/crowd/n%d" % i, timeout=15)
            results[i] = (s, json.loads(b).get("pid") if s == 200 else None)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = (None, repr(e))
    th = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    t = time.time()
    for x in th:
        x.start()
    for x in th:
        x.join(30)
    elapsed = time.time() - t
    oks = [r for r in results if r and r[0] == 200]
    ok(len(oks) == 20, "20 concurrent first requests all answered 200 (%.2fs)" % elapsed, results)
    ok(len(starts(dirs["crowd"])) == 1, "20 concurrent first requests started the app exactly once",
       starts(dirs["crowd"]))
    ok(len({r[1] for r in oks}) == 1, "all 20 were served by that one app", {r[1] for r in oks})
    ok(len(listening_pids(PORTS["crowd"])) == 1, "one process listens on the crowd port",
       listening_pids(PORTS["crowd"]))

    # --- an app that exits at once: 503 within about a second
    t = time.time()
    st, _, r = get(GATE_PORT, "/dies/")
    elapsed = time.time() - t
    ok(st == 503, "app that exits before listening: 503", r[:120])
    ok(elapsed < 1.5, "the 503 comes within about a second, not at the start timeout (%.2fs)" % elapsed)
    ok(len(starts(dirs["dies"])) == 1, "the dying app was started once", starts(dirs["dies"]))
    ok("dies" in g.log() and "exited" in g.log(), "gate's log says the app exited before listening",
       _tail(g.log()))

    # --- an app that never listens: 504 at --start-timeout 1
    t = time.time()
    st, _, r = get(GATE_SLOW_PORT, "/mute/")
    elapsed = time.time() - t
    ok(st == 504, "app that never listens: 504", r[:120])
    ok(0.9 <= elapsed < 2.5, "the 504 comes at --start-timeout 1 (%.2fs)" % elapsed)
    ok(len(starts(dirs["mute"])) == 1, "the mute app was started once", starts(dirs["mute"]))
    ok("mute" in gslow.log() and "1s" in gslow.log(), "gate's log says the app did not listen in time",
       _tail(gslow.log()))

    # --- a missing program: 503 with the reason in the gate's log
    for key, what in (("ghost", "an absolute path that does not exist"),
                      ("nocmd", "a command not found in PATH"),
                      ("noexec", "a file that is not executable")):
        before = len(g.log())
        t = time.time()
        st, _, r = get(GATE_PORT, "/%s/" % key)
        elapsed = time.time() - t
        log = g.log()[before:]
        ok(st == 503, "missing program (%s): 503" % what, r[:120])
        ok(elapsed < 1.5, "missing program (%s): answered at once (%.2fs)" % (what, elapsed))
        ok(key in log and ("exec" in log) and ("No such file" in log or "Permission denied" in log),
           "missing program (%s): the gate's log gives the reason" % what, _tail(log))

    # --- an entry whose user is root is refused; nothing runs as root
    before = len(g.log())
    st, _, r = get(GATE_PORT, "/rootapp/")
    log = g.log()[before:]
    time.sleep(0.3)
    ok(st == 503, "entry with user root: refused with 503", r[:120])
    ok(starts(dirs["rootapp"]) == [] and not listening_pids(PORTS["rootapp"]),
       "entry with user root: nothing was started", starts(dirs["rootapp"]))
    ok("root" in log, "entry with user root: the gate's log says why", _tail(log))

    # --- an entry whose user does not exist
    before = len(g.log())
    st, _, r = get(GATE_PORT, "/nobody-here/")
    log = g.log()[before:]
    ok(st == 503 and starts(dirs["nobody-here"]) == [], "entry with an unknown user: 503, nothing started", r[:120])
    ok("exist" in log or "unknown" in log, "entry with an unknown user: the gate's log says why", _tail(log))


def _tail(s, n=400):
    return s[-n:].replace("\n", " | ")


if __name__ == "__main__":
    main()
