#!/usr/bin/python3
"""tier-50: httpgate under a real systemd, installed as a user installs it.

Boots the machine's own root in a container (systemd-nspawn --boot
--private-network on an overlay: lower "/", upper a temporary directory),
runs `make install DESTDIR=<overlay> PREFIX=/usr`, creates app users and a
names file, starts httpgate.socket on port 80 inside, and checks with
clients run inside (python3, curl, journalctl, systemctl): routing, apps as
transient units under their users, one start for 20 simultaneous first
requests, 503 at once for an app that dies, retirement and restart, the
launcher's refusals, a PicoLisp app with sessions and a form, the journal's
fields, the sandbox rating, and 2000 connections in a burst.

Needs root, systemd-nspawn (systemd-container) and overlayfs; prints a skip
line otherwise. The container is torn down (nspawn stopped by PID, overlay
unmounted, directory removed) whatever happens, also on SIGTERM.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "test", "lib"))
from gatetest import done, ok  # noqa: E402

BOOT_TIMEOUT = 60        # seconds until the container's systemd is up
BURST = 2000             # connections in the burst
BURST_INFLIGHT = 100     # at once, below MaxConnectionsPerSource=256
SCORE_MAX = 2.0          # systemd-analyze security, httpgate@.service

# ---- what goes into the container -------------------------------------

# A boot target with only what the test needs: the machine's own services
# (a web server on port 80, databases) stay off.
TARGET = """[Unit]
Description=httpgate test boot
Requires=basic.target
After=basic.target
AllowIsolate=yes
"""

# A small app: answers with who it is; "exit-after-one" makes it retire
# after its first answer, "slow" makes it take a second before listening.
SERVER = r'''#!/usr/bin/python3
import http.server, os, sys, time, threading
port = int(os.environ["PORT"])
if "slow" in sys.argv:
    time.sleep(1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("app=%s pid=%d uid=%d path=%s\n" % (os.environ.get("NAME"), os.getpid(),
                os.getuid(), self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if "exit-after-one" in sys.argv:
            self.wfile.flush()
            threading.Thread(target=lambda: (time.sleep(0.2), os._exit(0))).start()
    def log_message(self, *a):
        pass
print("listening on", port, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
'''

# A PicoLisp app with sessions and a form, as httpGate serves them: the
# first request starts a session (app) on a port of its own, reached
# through the gate as /<port>/<session id>!page.
PICO_APP = r'''(allowed NIL "!page")
(load "@lib/http.l" "@lib/xhtml.l")
(allow '*Text)
(zero *Posts)
(de page ()
   (app)
   (when *Post (inc '*Posts))
   (html 0 "hgtest" NIL NIL
      (<p> '(id . "port") *Port)
      (<p> '(id . "ses") *SesId)
      (<p> '(id . "posts") *Posts)
      (<p> '(id . "text") (ht:Prin *Text))
      (<p> '(id . "gate") *Gate " " *Adr)
      (<post> NIL "!page"
         (<field> 20 '*Text)
         (<submit> "Send") ) ) )
(de go ()
   (server (format (sys "PORT")) "!page") )
'''

NAMES = """# names file for tier-50
hello    4001 hgapp1 /srv/hello ^ ./server.py
logged   4002 hgapp1 /srv/hello log/logged ./server.py
crash    4003 hgapp1 /srv/hello ^ sh -c echo^dying^now;exit^3
missing  4004 hgapp1 /srv/hello ^ ./no-such-program
nologdir 4005 hgapp1 /srv/hello nodir/log ./server.py
slow     4006 hgapp2 /srv/slow ^ /srv/hello/server.py slow
retiring 4007 hgapp1 /srv/hello ^ ./server.py exit-after-one
direct   4008 hgapp1 /srv/hello ^ ./server.py
rootapp  4009 root /srv/hello ^ ./server.py
pl       4010 hgpil /srv/pl log/pl ./pil app.l -go -wait
"""

# Clients, run inside the container: one command, one JSON line out.
CLIENT = r'''import json, re, socket, sys, time, threading, concurrent.futures as cf

def http(path, method="GET", body=b"", headers=(), src="127.0.0.1", timeout=30):
    """One request on its own connection: (status, head, body) or (error, "", "")."""
    try:
        s = socket.create_connection(("127.0.0.1", 80), timeout=timeout, source_address=(src, 0))
        h = "%s %s HTTP/1.1\r\nHost: hgtest\r\nConnection: close\r\n" % (method, path)
        for x in headers:
            h += x + "\r\n"
        if body:
            h += "Content-Length: %d\r\n" % len(body)
        s.sendall(h.encode() + b"\r\n" + body)
        data = b""
        # Read one response; PicoLisp keeps an HTTP/1.1 connection open
        # despite "Connection: close", so the framing decides where it ends.
        while not complete(data):
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
    except OSError as e:
        return (type(e).__name__, "", "")
    head, _, rest = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if b"chunked" in head.lower():
        rest = dechunk(rest)
    return (parts[1].decode() if len(parts) > 1 else "EMPTY", head.decode("latin-1"), rest.decode("latin-1"))

def complete(data):
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        return len(rest) >= int(m.group(1))
    if re.search(rb"(?im)^transfer-encoding:.*chunked", head):
        return rest.endswith(b"0\r\n\r\n")
    return False

def dechunk(b):
    out = b""
    while b:
        size, _, b = b.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out, b = out + b[:n], b[n + 2:]
    return out

def cmd_get(path):
    t = time.time()
    st, head, body = http(path)
    return {"status": st, "body": body, "head": head, "sec": time.time() - t}

def cmd_post(path, field, value):
    """A form post as a browser sends a PicoLisp <post> form: multipart."""
    body = ("--hgtestB\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n--hgtestB--\r\n"
            % (field, value)).encode()
    st, head, b = http(path, "POST", body, ["Content-Type: multipart/form-data; boundary=hgtestB"])
    return {"status": st, "body": b}

def cmd_together(path, n):
    """n first requests released at the same moment."""
    gate = threading.Barrier(int(n))
    def one(_):
        gate.wait()
        return http(path)[0:3:2]
    with cf.ThreadPoolExecutor(int(n)) as ex:
        res = list(ex.map(one, range(int(n))))
    return {"status": [r[0] for r in res], "body": [r[1] for r in res]}

def cmd_burst(path, n, inflight):
    n, inflight = int(n), int(inflight)
    t = time.time()
    with cf.ThreadPoolExecutor(inflight) as ex:
        res = list(ex.map(lambda i: http(path, timeout=120)[0], range(n)))
    counts = {}
    for r in res:
        counts[r] = counts.get(r, 0) + 1
    return {"counts": counts, "sec": time.time() - t}

def cmd_hold(port, n, hold):
    """Opens n connections as fast as it can, holds them, then counts those
    the server closed (refused) and closes the rest."""
    t, socks = time.time(), []
    for i in range(int(n)):
        try:
            socks.append(socket.create_connection(("127.0.0.1", int(port)), timeout=5))
        except OSError:
            pass
    opened = time.time() - t
    time.sleep(float(hold))
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return {"sec": opened, "connected": len(socks), "refused": closed, "held": len(socks) - closed}

def cmd_launch(name_hex):
    """Talks to the launcher directly: the bytes, then its first answer line."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect("/run/httpgate/launch.sock")
        s.sendall(bytes.fromhex(name_hex))
        data = b""
        while b"\n" not in data:
            d = s.recv(512)
            if not d:
                break
            data += d
        s.close()
        return {"answer": data.decode("latin-1")}
    except OSError as e:
        return {"error": type(e).__name__}

print(json.dumps(globals()["cmd_" + sys.argv[1]](*sys.argv[2:])))
'''


# ---- the container ----------------------------------------------------

class Container:
    """A booted overlay of "/" with its own systemd. stop() undoes it all."""

    def __init__(self):
        self.base = self.nspawn = None
        self.leader = 0
        self.mounted = False

    def _mount(self):
        # The upper directory cannot be on an overlay itself (a container's
        # root often is): try places in turn.
        for parent in ("/var/tmp", "/tmp", "/dev/shm"):
            try:
                base = tempfile.mkdtemp(prefix="httpgate-tier50-", dir=parent)
            except OSError:
                continue
            for d in ("upper", "work", "root"):
                os.mkdir(os.path.join(base, d))
            r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                                "lowerdir=/,upperdir=%s/upper,workdir=%s/work" % (base, base),
                                base + "/root"], capture_output=True, text=True)
            if r.returncode == 0:
                self.base, self.mounted = base, True
                return True
            shutil.rmtree(base, ignore_errors=True)
        return False

    @property
    def root(self):
        return self.base + "/root"

    def write(self, path, text, mode=0o644):
        p = self.root + path
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def start(self):
        if not self._mount():
            return "cannot mount an overlay of /"
        r = subprocess.run(["make", "-s", "-C", TOP, "install", "DESTDIR=" + self.root, "PREFIX=/usr"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return "make install failed: " + (r.stderr or r.stdout)[-500:]
        self.write("/etc/systemd/system/hgtest.target", TARGET)
        self.write("/etc/hgtest-machine", "")  # marks the overlay as ours
        name = "hgtest-%d" % os.getpid()
        self.log = open(self.base + "/console.log", "w")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", self.root, "-M", name, "--boot", "--private-network",
             "--register=no", "--keep-unit", "--console=passive", "systemd.unit=hgtest.target"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.time() + BOOT_TIMEOUT
        while time.time() < end and self.nspawn.poll() is None:
            if not self.leader:
                try:
                    kids = open("/proc/%d/task/%d/children" % (self.nspawn.pid, self.nspawn.pid)).read().split()
                    self.leader = int(kids[0]) if kids else 0
                except OSError:
                    pass
            if self.leader:
                r = self.run(["systemctl", "is-system-running"], check=False)
                if r.stdout.strip() in ("running", "degraded"):
                    return None
            time.sleep(0.1)
        return "the container did not boot within %ds: %s" % (
            BOOT_TIMEOUT, open(self.base + "/console.log").read()[-800:])

    def run(self, argv, check=True, timeout=300, user=None, stdin=None):
        pre = ["nsenter", "-t", str(self.leader), "-a"]
        if user:
            pre += ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups"]
        r = subprocess.run(pre + argv, capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()[-300:]))
        return r

    def sh(self, script, check=True):
        return self.run(["sh", "-c", script], check=check)

    def client(self, *args, user=None):
        r = self.run(["/usr/bin/python3", "/opt/hgtest/client.py"] + [str(a) for a in args], check=False, user=user)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"error": (r.stdout + r.stderr)[-300:]}

    def journal(self, *args):
        """Entries as dicts (journalctl -o json)."""
        r = self.run(["journalctl", "--no-pager", "-o", "json"] + list(args), check=False)
        out = []
        for line in r.stdout.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self):
        if self.nspawn and self.nspawn.poll() is None:
            self.nspawn.terminate()  # nspawn powers the container off
            try:
                self.nspawn.wait(15)
            except subprocess.TimeoutExpired:
                for pid in (self.leader, self.nspawn.pid):
                    try:
                        os.kill(pid, signal.SIGKILL) if pid else None
                    except ProcessLookupError:
                        pass
                self.nspawn.wait(15)
        if self.mounted:
            for _ in range(50):
                if subprocess.run(["umount", self.root], capture_output=True).returncode == 0:
                    self.mounted = False
                    break
                time.sleep(0.2)
            if self.mounted:
                subprocess.run(["umount", "-l", self.root], capture_output=True)
                self.mounted = False
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


def text(value):
    return value if isinstance(value, str) else str(value)


# ---- the checks ---------------------------------------------------------

def setup(c):
    c.write("/opt/hgtest/client.py", CLIENT)
    c.write("/srv/hello/server.py", SERVER, 0o755)
    c.write("/srv/pl/app.l", PICO_APP)
    os.makedirs(c.root + "/srv/hello/log", exist_ok=True)
    os.makedirs(c.root + "/srv/slow", exist_ok=True)
    os.makedirs(c.root + "/srv/pl/log", exist_ok=True)
    c.write("/etc/hgtest-victim", "root's file\n", 0o600)
    c.write("/etc/httpgate/names", NAMES)
    c.sh("useradd --create-home hgapp1 && useradd --create-home hgapp2 && useradd --create-home hgpil"
         " && chown -R hgapp1: /srv/hello && chown -R hgapp2: /srv/slow"
         " && ln -s /usr/bin/pil /srv/pl/pil && chown -R hgpil: /srv/pl"
         " && systemctl start httpgate.socket")


def unit_prop(c, unit, prop):
    return c.run(["systemctl", "show", "-P", prop, unit], check=False).stdout.strip()


def test_units(c):
    ok(c.run(["systemctl", "is-active", "httpgate.socket"], check=False).stdout.strip() == "active",
       "httpgate.socket listens on port 80")
    ok(c.run(["systemctl", "is-active", "httpgate-launch.socket"], check=False).stdout.strip() == "active",
       "httpgate-launch.socket came up with it (Wants=)")
    st = c.run(["stat", "-c", "%U %G %a", "/run/httpgate/launch.sock"], check=False).stdout.strip()
    ok(st == "root httpgate 660", "the launcher's socket is root:httpgate 0660", st)
    ok(c.run(["getent", "passwd", "httpgate"], check=False).returncode == 0, "sysusers.d made the user httpgate")
    r = c.run(["systemd-analyze", "security", "--no-pager", "httpgate@.service"], check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    score = float(m.group(1)) if m else 99
    ok(score <= SCORE_MAX, "systemd-analyze security rates httpgate@.service %.1f (at most %.1f)" % (score, SCORE_MAX),
       r.stdout[-300:])
    r = c.run(["systemd-analyze", "security", "--no-pager", "httpgate-launch@.service"], check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    print("# httpgate@.service rated %.1f, httpgate-launch@.service %s" % (score, m.group(1) if m else "?"))


def test_first_start(c):
    ok(unit_prop(c, "httpgate-app-hello.service", "ActiveState") in ("inactive", ""), "hello is not running yet")
    r = c.client("get", "/hello/first")
    ok(r.get("status") == "200" and "app=hello" in r.get("body", "") and "path=/first" in r.get("body", ""),
       "a request for a stopped app is answered by it (/hello/first -> /first)", r)
    print("# first request, app started on demand: %.3f s" % r.get("sec", -1))
    unit = "httpgate-app-hello.service"
    ok(unit_prop(c, unit, "ActiveState") == "active", "the app runs as " + unit)
    ok(unit_prop(c, unit, "User") == "hgapp1", "the unit has the entry's user (systemctl show)")
    pid = unit_prop(c, unit, "MainPID")
    owner = c.run(["ps", "-o", "user=", "-p", pid], check=False).stdout.strip()
    ok(owner == "hgapp1", "its process runs as hgapp1", owner)
    ok(unit_prop(c, unit, "WorkingDirectory") == "/srv/hello", "WorkingDirectory= is the entry's directory")
    env = unit_prop(c, unit, "Environment")
    ok(all(x in env for x in ("NAME=hello", "HOME=/home/hgapp1", "PORT=4001", "LANG=", "PATH=/usr/local/sbin:")),
       "Environment= has NAME HOME PORT LANG PATH", env)
    ok(unit_prop(c, unit, "KillMode") == "mixed" and unit_prop(c, unit, "CollectMode") == "inactive-or-failed",
       "KillMode=mixed, CollectMode=inactive-or-failed")
    ok("path=/srv/hello/server.py" in unit_prop(c, unit, "ExecStart"),
       "./server.py is resolved against the entry's directory")
    time.sleep(0.3)
    out = c.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit], check=False).stdout
    ok("listening on 4001" in out, "the app's output is in the journal (-u %s)" % unit, out[-200:])
    r = c.client("get", "/hello/again")
    ok(r.get("status") == "200", "a second request goes to the running app")


def test_log_file(c):
    # The app's user owns the log directory: a symlink there must not make
    # anyone with more rights write through it (systemd's append: would,
    # as root).
    c.sh("ln -s /etc/hgtest-victim /srv/hello/log/logged")
    r = c.client("get", "/logged/")
    ok(r.get("status") == "503", "a log file that is a symlink to root's file: 503", r)
    victim = c.run(["cat", "/etc/hgtest-victim"], check=False).stdout
    ok(victim == "root's file\n", "... and root's file is untouched", victim)
    ents = c.journal("-t", "httpgate-launch", "HTTPGATE_APP=logged")
    ok(any("could not open its log file /srv/hello/log/logged" in text(e.get("MESSAGE", ""))
           for e in ents), "... with the reason in the journal", [e.get("MESSAGE") for e in ents])
    c.sh("rm /srv/hello/log/logged")
    r = c.client("get", "/logged/")
    ok(r.get("status") == "200", "an entry with a relative log file starts", r)
    time.sleep(0.3)
    log = c.run(["cat", "/srv/hello/log/logged"], check=False).stdout
    ok("listening on 4002" in log, "its output is appended to DIR/log/logged", log)
    owner = c.run(["stat", "-c", "%U", "/srv/hello/log/logged"], check=False).stdout.strip()
    ok(owner == "hgapp1", "the log file belongs to the app's user, as with httpGate", owner)
    ok("--append-output /srv/hello/log/logged" in unit_prop(c, "httpgate-app-logged.service", "ExecStart"),
       "the unit opens it as the app's user (httpgate-launch --append-output)")


def test_refusals_before_start(c):
    for app, words in (("missing", "program ./no-such-program not found"),
                       ("nologdir", "log directory"), ("rootapp", "root")):
        r = c.client("get", "/%s/" % app)
        ok(r.get("status") == "503", "%s: 503" % app, r)
        ents = c.journal("-t", "httpgate-launch", "HTTPGATE_LAUNCH=refused", "HTTPGATE_APP=" + app)
        ok(any(words in text(e.get("MESSAGE", "")) for e in ents),
           "%s: the launcher logs a clear refusal (%s)" % (app, words),
           [e.get("MESSAGE") for e in ents])
        ok(unit_prop(c, "httpgate-app-%s.service" % app, "LoadState") != "loaded",
           "%s: no unit was made" % app)


def test_crash(c):
    r = c.client("get", "/crash/")
    ok(r.get("status") == "503" and r.get("sec", 99) < 1.0,
       "an app that exits at once gets 503 within a second (%.3f s)" % r.get("sec", -1), r)
    time.sleep(0.2)
    ents = c.journal("-t", "httpgate-launch", "HTTPGATE_APP=crash")
    ok(any("exit status 3" in text(e.get("MESSAGE", "")) for e in ents),
       "the launcher logs why: exit status 3", [e.get("MESSAGE") for e in ents])
    ents = c.journal("-t", "httpgate", "HTTPGATE_APP=crash", "HTTPGATE_STATUS=503")
    ok(any("exit status 3" in text(e.get("HTTPGATE_REASON", "")) for e in ents),
       "the gate's 503 entry carries the reason", [e.get("HTTPGATE_REASON") for e in ents])
    out = c.run(["journalctl", "--no-pager", "-o", "cat", "-u", "httpgate-app-crash.service"], check=False).stdout
    ok("dying now" in out, "the dying app's output is in the journal", out[-300:])


def test_together(c):
    r = c.client("together", "/slow/x", 20)
    sts = r.get("status", [])
    ok(sts == ["200"] * 20, "20 simultaneous first requests for a stopped app all get 200", sts)
    pids = {re.search(r"pid=(\d+)", b).group(1) for b in r.get("body", []) if "pid=" in b}
    ok(len(pids) == 1, "... from one process", pids)
    started = [e for e in c.journal("-u", "httpgate-app-slow.service")
               if e.get("MESSAGE_ID") == "39f53479d3a045ac8e11786248231fbf"]
    ok(len(started) == 1, "... and systemd started httpgate-app-slow.service exactly once", len(started))
    launches = c.journal("-t", "httpgate-launch", "HTTPGATE_APP=slow")
    kinds = [e.get("HTTPGATE_LAUNCH") for e in launches]
    ok(kinds.count("started") == 1 and "failed" not in kinds,
       "one launcher started it; the others found it starting (%d running)" % kinds.count("running"), kinds)
    ok(unit_prop(c, "httpgate-app-slow.service", "User") == "hgapp2", "slow runs as its own user, hgapp2")


def test_retire(c):
    r1 = c.client("get", "/retiring/")
    pid1 = re.search(r"pid=(\d+)", r1.get("body", ""))
    ok(r1.get("status") == "200" and pid1, "an app that retires after one answer serves it", r1)
    end = time.time() + 10
    while time.time() < end and unit_prop(c, "httpgate-app-retiring.service", "ActiveState") == "active":
        time.sleep(0.1)
    state = unit_prop(c, "httpgate-app-retiring.service", "ActiveState")
    ok(state in ("inactive", ""), "after retiring its unit is gone (collected)", state)
    r2 = c.client("get", "/retiring/")
    pid2 = re.search(r"pid=(\d+)", r2.get("body", ""))
    ok(r2.get("status") == "200" and pid2 and pid1 and pid2.group(1) != pid1.group(1),
       "the next request starts it again (a new process)", (r1, r2))


def test_stop(c):
    unit = "httpgate-app-hello.service"
    pid = unit_prop(c, unit, "MainPID")
    r = c.run(["systemctl", "stop", unit], check=False)
    ok(r.returncode == 0 and unit_prop(c, unit, "ActiveState") in ("inactive", ""),
       "systemctl stop %s stops it" % unit, r.stderr)
    ok(pid.isdigit() and c.run(["kill", "-0", pid], check=False).returncode != 0, "its process is gone")
    failed = c.run(["systemctl", "list-units", "--failed", "--all", "--no-legend", "--plain", "httpgate-app-*"],
                   check=False).stdout.strip()
    ok(failed == "", "a stopped app is not a failed unit", failed)
    r = c.client("get", "/hello/back")
    ok(r.get("status") == "200", "the next request starts it again")


def test_launcher_refusals(c):
    cases = [("overlong", b"a" * 100 + b"\n", "400"), ("control character", b"hel\x01lo\n", "400"),
             ("unknown", b"nosuchapp\n", "404"), ("empty", b"\n", "400")]
    for what, data, want in cases:
        r = c.client("launch", data.hex())
        ok(r.get("answer", "").startswith(want + " "), "the launcher refuses a %s name with %s" % (what, want), r)
    ents = c.journal("-t", "httpgate-launch", "HTTPGATE_LAUNCH=refused")
    msgs = [text(e.get("MESSAGE", "")) for e in ents]
    for what, needle in (("overlong", "longer than 64 bytes"), ("control character", "control character"),
                         ("unknown", "'nosuchapp': no such app")):
        ok(any(needle in m for m in msgs), "... and logs the %s one" % what, msgs[-6:])
    ok(any("hel\\x01lo" in m for m in msgs), "control characters are escaped in the log")
    r = c.client("launch", b"hello\n".hex(), user="hgapp1")
    ok(r.get("error") == "PermissionError", "another user cannot connect to the launcher", r)
    r = c.client("launch", b"nosuchapp\n".hex(), user="httpgate")
    ok(r.get("answer", "").startswith("404 "), "the gate's user can", r)


def test_picolisp(c):
    r = c.client("get", "/pl/")
    body = r.get("body", "")
    port = re.search(r'id="port">(\d+)<', body)
    ses = re.search(r'id="ses">([^<]+)<', body)
    ok(r.get("status") == "200" and port and ses, "PicoLisp app: the first page opens a session", r)
    if not (port and ses):
        return
    ok(port.group(1) != "4010", "the session has a port of its own (%s)" % port.group(1))
    ok('id="gate">http 127.0.0.1<' in body, "the app sees X-Pil *Gate=http and *Adr", body[-300:])
    base = re.search(r'<base href="http://[^/"]+(/\d+/)"', body)
    action = re.search(r'<form [^>]*action="([^"]+)"', body)
    ok(base and action and base.group(1) == "/%s/" % port.group(1),
       "its links lead through the gate to the session's port (<base href=.../%s/>)" % port.group(1), body[:400])
    if not (base and action):
        return
    url = base.group(1) + action.group(1)
    r = c.client("post", url, "*Text", "hello gate")
    ok(r.get("status") == "200" and 'id="posts">1<' in r.get("body", "")
       and 'id="text">hello gate<' in r.get("body", ""), "its form, posted to the session, arrives", r)
    r = c.client("get", url)
    ok(r.get("status") == "200" and 'id="posts">1<' in r.get("body", "")
       and 'id="text">hello gate<' in r.get("body", ""), "the session keeps its state", r)
    ok(unit_prop(c, "httpgate-app-pl.service", "User") == "hgpil", "the PicoLisp app runs as hgpil")
    ok("/srv/pl/pil ./pil app.l" in unit_prop(c, "httpgate-app-pl.service", "ExecStart"),
       "./pil is taken from the entry's directory")
    tree = c.run(["systemd-cgls", "--no-pager", "-u", "httpgate-app-pl.service"], check=False).stdout
    ok(tree.count("picolisp") >= 2, "the session process lives in the app's unit", tree)


def test_journal_fields(c):
    mark = "jf%d" % os.getpid()
    for i in range(3):
        c.client("get", "/hello/%s-%d" % (mark, i))
    time.sleep(0.5)
    ents = [e for e in c.journal("-t", "httpgate") if mark in text(e.get("HTTPGATE_TARGET", ""))]
    ok(len(ents) == 3, "the journal holds one entry per request (%d)" % len(ents))
    want = ("HTTPGATE_APP", "HTTPGATE_PORT", "HTTPGATE_CLIENT", "HTTPGATE_METHOD", "HTTPGATE_TARGET",
            "HTTPGATE_STATUS")
    ok(ents and all(all(k in e for k in want) for e in ents), "... with the fields " + " ".join(want),
       ents[:1])
    ok(ents and all(e.get("HTTPGATE_APP") == "hello" and e.get("HTTPGATE_PORT") == "4001"
                    and e.get("HTTPGATE_CLIENT") == "127.0.0.1" and e.get("HTTPGATE_METHOD") == "GET"
                    for e in ents), "... and the right values")
    ok(ents and all(text(e.get("_SYSTEMD_UNIT", "")).startswith("httpgate@") for e in ents),
       "... from httpgate@ instances")
    pids = {e.get("_PID") for e in ents}
    ends = [e for e in c.journal("-t", "httpgate") if e.get("_PID") in pids and "HTTPGATE_BYTES_DOWN" in e]
    ok(len(ends) == 3, "each connection's end is logged with its byte counts", len(ends))


def test_fallback(c):
    c.run(["systemctl", "stop", "httpgate-launch.socket"], check=False)
    r = c.client("get", "/direct/")
    time.sleep(0.3)
    ents = c.journal("-t", "httpgate", "--grep", "no launcher at /run/httpgate/launch.sock")
    ok(any("direct" in text(e.get("MESSAGE", "")) for e in ents),
       "without the launcher's socket the gate says so and starts the app itself", r)
    c.run(["systemctl", "start", "httpgate-launch.socket"], check=False)


def test_flood(c):
    # The same socket with systemd's defaults, beside ours, for comparison.
    c.sh("sed -e 's/^ListenStream=80$/ListenStream=8082/' -e '/^MaxConnections/d;/^TriggerLimit/d'"
         " -e '/^Wants=/d;/^After=/d;/^Also=/d' /lib/systemd/system/httpgate.socket"
         " >/etc/systemd/system/hgdefault.socket"
         " && cp /lib/systemd/system/httpgate@.service /etc/systemd/system/hgdefault@.service"
         " && systemctl daemon-reload && systemctl start hgdefault.socket")
    r = c.client("hold", 8082, 1000, 2)
    state = unit_prop(c, "hgdefault.socket", "ActiveState") + "/" + unit_prop(c, "hgdefault.socket", "Result")
    print("# flood of 1000 connections in %.2f s on systemd's defaults: %s, socket %s" % (r.get("sec", 0), r, state))
    ok(state == "failed/trigger-limit-hit",
       "(systemd 252's defaults: the same flood fails the socket, port closed: %s)" % state)
    c.run(["systemctl", "stop", "hgdefault.socket"], check=False)
    r = c.client("hold", 80, 1000, 2)
    print("# flood of 1000 connections in %.2f s on httpgate.socket: %s" % (r.get("sec", 0), r))
    ok(unit_prop(c, "httpgate.socket", "ActiveState") == "active",
       "a flood of 1000 connections in %.2f s leaves httpgate.socket listening" % r.get("sec", 0))
    ok(r.get("held") == 256, "one address holds at most 256 of them (MaxConnectionsPerSource=)", r)
    end = time.time() + 60
    while time.time() < end and c.run(["systemctl", "list-units", "--no-legend", "--plain", "httpgate@*"],
                                      check=False).stdout.strip():
        time.sleep(0.5)
    r = c.client("get", "/hello/after-flood")
    ok(r.get("status") == "200", "requests are served after the flood")


def pid1_ticks(c):
    """CPU ticks of the container's PID 1: its own, and its reaped children's
    (every instance, from fork to exit, sandbox set-up included)."""
    f = open("/proc/%d/stat" % c.leader).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


def test_by_hand(c):
    # A gate run by hand (as `make run` does) with a names file the
    # launcher does not read: the launcher answers 404, the gate starts the
    # app itself.
    c.write("/etc/hgtest-other-names", "other 4011 hgapp1 /srv/hello ^ ./server.py\n")
    c.run(["systemd-run", "--unit=hgtest-by-hand", "systemd-socket-activate", "--accept", "-l", "127.0.0.1:8081",
           "/usr/bin/httpgate", "/etc/hgtest-other-names"], check=False)
    time.sleep(0.3)
    r = c.run(["curl", "-sS", "http://127.0.0.1:8081/other/x"], check=False)
    ok("app=other" in r.stdout, "a gate with another names file starts its app itself", r.stdout + r.stderr)
    ents = c.journal("-u", "hgtest-by-hand", "--grep", "does not know other")
    ok(len(ents) >= 1, "... after the launcher said it does not know it (logged)")
    c.run(["systemctl", "stop", "hgtest-by-hand"], check=False)


def test_tls(c):
    c.sh("cd /etc/httpgate && certtool --generate-privkey --key-type=ecdsa --outfile key.pem 2>/dev/null"
         " && chmod 600 key.pem && printf 'cn=localhost\\ndns_name=localhost\\nexpiration_days=2\\ntls_www_server\\n'"
         " >/tmp/cert.tmpl && certtool --generate-self-signed --load-privkey key.pem --template /tmp/cert.tmpl"
         " --outfile cert.pem 2>/dev/null && systemctl start httpgate-tls.socket")
    r = c.run(["curl", "-sS", "--cacert", "/etc/httpgate/cert.pem", "-o", "/dev/null", "-w", "%{http_code}",
               "https://localhost/hello/tls"], check=False)
    ok(r.stdout == "200", "HTTPS through httpgate-tls.socket on port 443 (curl verifies the certificate)",
       r.stdout + r.stderr)
    r = c.run(["cat", "/etc/httpgate/key.pem"], user="httpgate", check=False)
    ok(r.returncode != 0, "the user httpgate cannot read the key file: the instance gets it from LoadCredential=")
    ents = [e for e in c.journal("-t", "httpgate", "HTTPGATE_TARGET=/hello/tls")
            if text(e.get("_SYSTEMD_UNIT", "")).startswith("httpgate-tls@")]
    ok(len(ents) == 1, "the request is logged by an httpgate-tls@ instance", len(ents))
    r = c.run(["systemd-analyze", "security", "--no-pager", "httpgate-tls@.service"], check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    score = float(m.group(1)) if m else 99
    ok(score <= SCORE_MAX, "systemd-analyze security rates httpgate-tls@.service %.1f" % score)


def test_burst(c):
    before = int(unit_prop(c, "httpgate.socket", "NAccepted") or 0)
    t0 = pid1_ticks(c)
    r = c.client("burst", "/hello/b", BURST, BURST_INFLIGHT)
    t1 = pid1_ticks(c)
    counts, sec = r.get("counts", {}), r.get("sec", 0)
    hz = os.sysconf("SC_CLK_TCK")
    print("# burst: %d connections, %d at a time, in %.1f s (%.0f/s): %s" % (
        BURST, BURST_INFLIGHT, sec, BURST / sec if sec else 0, counts))
    print("# CPU per connection: PID 1 %.1f ms, the instance (sandbox set-up included) %.1f ms" % (
        (t1[0] - t0[0]) * 1000 / hz / BURST, (t1[1] - t0[1]) * 1000 / hz / BURST))
    ok(counts.get("200") == BURST, "%d connections in a burst all get 200" % BURST, counts)
    accepted = int(unit_prop(c, "httpgate.socket", "NAccepted") or 0) - before
    ok(accepted >= BURST, "systemd accepted them all (%d)" % accepted)
    ok(c.run(["systemctl", "is-active", "httpgate.socket"], check=False).stdout.strip() == "active",
       "httpgate.socket is still listening (not failed by a trigger limit)")
    time.sleep(1)
    failed = c.run(["systemctl", "list-units", "--failed", "--all", "--no-legend", "--plain", "httpgate*"],
                   check=False).stdout.strip()
    ok(failed == "", "no failed httpgate units remain", failed[:300])
    left = c.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", "httpgate@*"],
                 check=False).stdout.strip().splitlines()
    ok(len(left) < 10, "finished instances are collected (%d left)" % len(left))


def main():
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn") or not shutil.which("nsenter"):
        print("# skip tier-50: needs root, systemd-nspawn (systemd-container) and nsenter")
        return
    c = Container()

    def bye(signum, frame):
        raise SystemExit(1)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, bye)
    t0 = time.time()
    try:
        why = c.start()
        if not ok(why is None, "a container with httpgate installed boots (%.1f s)" % (time.time() - t0), why):
            return
        setup(c)
        for test in (test_units, test_first_start, test_log_file, test_refusals_before_start, test_crash,
                     test_together, test_retire, test_stop, test_launcher_refusals, test_picolisp,
                     test_journal_fields, test_fallback, test_by_hand, test_tls, test_flood, test_burst):
            try:
                test(c)
            except Exception as e:  # a broken step is a failure, and the rest still runs
                ok(False, "%s ran to its end" % test.__name__, repr(e))
    finally:
        c.stop()
        print("# tier-50 took %.1f s, container torn down" % (time.time() - t0))
    ok(c.base is None and not c.mounted, "the container is gone")


if __name__ == "__main__":
    main()
    done()
