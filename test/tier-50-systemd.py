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
line otherwise. The container (test/lib/nspawn.py) is torn down (nspawn
stopped by PID, overlay unmounted, directory removed) whatever happens, also
on SIGTERM. The clients run inside are test/lib/ctclient.py.
"""
import json
import os
import re
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "test", "lib"))
from gatetest import done, ok  # noqa: E402
from nspawn import run_tier, text  # noqa: E402

BURST = 2000             # connections in the burst
BURST_INFLIGHT = 100     # at once, below MaxConnectionsPerSource=256
# Settings that make systemd build a namespace or a filter for every
# instance, each paid on every connection (httpgate.units(5)): the
# instance units have none of them, the gate confines itself (--sandbox).
PER_INSTANCE_COSTS = {"PrivateTmp": "no", "PrivateDevices": "no", "PrivateUsers": "no", "PrivateMounts": "no",
                      "ProtectSystem": "no", "ProtectHome": "no", "ProtectProc": "default",
                      "ProtectKernelTunables": "no", "ProtectControlGroups": "no", "ProtectHostname": "no",
                      "SystemCallFilter": "~", "RestrictAddressFamilies": "~", "InaccessiblePaths": "",
                      "ReadOnlyPaths": ""}

# ---- what goes into the container -------------------------------------

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

# ---- the checks ---------------------------------------------------------

def setup(c):
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


def test_units(c):
    ok(c.run(["systemctl", "is-active", "httpgate.socket"], check=False).stdout.strip() == "active",
       "httpgate.socket listens on port 80")
    ok(c.run(["systemctl", "is-active", "httpgate-launch.socket"], check=False).stdout.strip() == "active",
       "httpgate-launch.socket came up with it (Wants=)")
    st = c.run(["stat", "-c", "%U %G %a", "/run/httpgate/launch.sock"], check=False).stdout.strip()
    ok(st == "root httpgate 660", "the launcher's socket is root:httpgate 0660", st)
    ok(c.run(["getent", "passwd", "httpgate"], check=False).returncode == 0, "sysusers.d made the user httpgate")
    for unit in ("httpgate@.service", "httpgate-tls@.service"):
        cheap(c, unit)
    print("# httpgate-launch@.service rated %.1f" % c.security("httpgate-launch@.service"))


def cheap(c, unit):
    """The instance unit runs the gate with --sandbox and builds nothing per
    connection; systemd-analyze's rating is reported, not judged: it cannot
    see the gate's own sandbox (tier-51 probes it)."""
    inst = unit.replace("@.", "@probe.")
    got = {k: c.unit_prop(inst, k) for k in PER_INSTANCE_COSTS}
    ok(got == PER_INSTANCE_COSTS, "%s: no setting that systemd builds anew for each connection" % unit,
       {k: v for k, v in got.items() if v != PER_INSTANCE_COSTS[k]})
    ok("--sandbox" in c.unit_prop(inst, "ExecStart"), "%s: the gate confines itself (--sandbox)" % unit,
       c.unit_prop(inst, "ExecStart"))
    print("# %s: systemd-analyze security rates it %.1f (httpgate.units(5) says why)" % (unit, c.security(unit)))


def test_first_start(c):
    ok(c.unit_prop("httpgate-app-hello.service", "ActiveState") in ("inactive", ""), "hello is not running yet")
    r = c.client("get", "/hello/first")
    ok(r.get("status") == "200" and "app=hello" in r.get("body", "") and "path=/first" in r.get("body", ""),
       "a request for a stopped app is answered by it (/hello/first -> /first)", r)
    print("# first request, app started on demand: %.3f s" % r.get("sec", -1))
    unit = "httpgate-app-hello.service"
    ok(c.unit_prop(unit, "ActiveState") == "active", "the app runs as " + unit)
    ok(c.unit_prop(unit, "User") == "hgapp1", "the unit has the entry's user (systemctl show)")
    pid = c.unit_prop(unit, "MainPID")
    owner = c.run(["ps", "-o", "user=", "-p", pid], check=False).stdout.strip()
    ok(owner == "hgapp1", "its process runs as hgapp1", owner)
    ok(c.unit_prop(unit, "WorkingDirectory") == "/srv/hello", "WorkingDirectory= is the entry's directory")
    env = c.unit_prop(unit, "Environment")
    ok(all(x in env for x in ("NAME=hello", "HOME=/home/hgapp1", "PORT=4001", "LANG=", "PATH=/usr/local/sbin:")),
       "Environment= has NAME HOME PORT LANG PATH", env)
    ok(c.unit_prop(unit, "KillMode") == "mixed" and c.unit_prop(unit, "CollectMode") == "inactive-or-failed",
       "KillMode=mixed, CollectMode=inactive-or-failed")
    ok("path=/srv/hello/server.py" in c.unit_prop(unit, "ExecStart"),
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
    ok("--append-output /srv/hello/log/logged" in c.unit_prop("httpgate-app-logged.service", "ExecStart"),
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
        ok(c.unit_prop("httpgate-app-%s.service" % app, "LoadState") != "loaded",
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
    ok(c.unit_prop("httpgate-app-slow.service", "User") == "hgapp2", "slow runs as its own user, hgapp2")


def test_retire(c):
    r1 = c.client("get", "/retiring/")
    pid1 = re.search(r"pid=(\d+)", r1.get("body", ""))
    ok(r1.get("status") == "200" and pid1, "an app that retires after one answer serves it", r1)
    end = time.time() + 10
    while time.time() < end and c.unit_prop("httpgate-app-retiring.service", "ActiveState") == "active":
        time.sleep(0.1)
    state = c.unit_prop("httpgate-app-retiring.service", "ActiveState")
    ok(state in ("inactive", ""), "after retiring its unit is gone (collected)", state)
    r2 = c.client("get", "/retiring/")
    pid2 = re.search(r"pid=(\d+)", r2.get("body", ""))
    ok(r2.get("status") == "200" and pid2 and pid1 and pid2.group(1) != pid1.group(1),
       "the next request starts it again (a new process)", (r1, r2))


def test_stop(c):
    unit = "httpgate-app-hello.service"
    pid = c.unit_prop(unit, "MainPID")
    r = c.run(["systemctl", "stop", unit], check=False)
    ok(r.returncode == 0 and c.unit_prop(unit, "ActiveState") in ("inactive", ""),
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
    ok(c.unit_prop("httpgate-app-pl.service", "User") == "hgpil", "the PicoLisp app runs as hgpil")
    ok("/srv/pl/pil ./pil app.l" in c.unit_prop("httpgate-app-pl.service", "ExecStart"),
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
    ok(ents and all(e.get("HTTPGATE_APP_STATUS") == "200" and int(e.get("HTTPGATE_RESPONSE_BYTES", "0")) > 50
                    and 0 < int(e.get("HTTPGATE_FIRST_BYTE_USEC", "0")) <= int(e.get("HTTPGATE_DURATION_USEC", "0"))
                    and e.get("HTTPGATE_PROTOCOL") == "HTTP/1.1" for e in ents),
       "... with the app's answer: APP_STATUS 200, RESPONSE_BYTES, FIRST_BYTE_USEC <= DURATION_USEC",
       [{k: v for k, v in e.items() if k.startswith("HTTPGATE_")} for e in ents[:1]])
    pids = {e.get("_PID") for e in ents}
    ends = [e for e in c.journal("-t", "httpgate") if e.get("_PID") in pids and "HTTPGATE_BYTES_DOWN" in e]
    ok(len(ends) == 3, "each connection's end is logged with its byte counts", len(ends))


def test_access_log(c):
    """contrib/httpgate-clf turns the journal into the Combined Log Format,
    and goaccess (Debian's) reads it: its totals are the requests made."""
    mark = "clf%d" % os.getpid()
    with open(os.path.join(TOP, "contrib", "httpgate-clf")) as f:
        c.write("/opt/hgtest/httpgate-clf", f.read(), 0o755)
    url = "http://127.0.0.1"
    # one kept-alive connection: 2 answers of the gate (404: no such key, and
    # no app before it to stay with), then 4 of the app; then another app
    c.run(["curl", "-s", "-o", "/dev/null", "-A", "hgtest-agent/1.0", "-e", "http://referer.example/"] +
          [url + p for p in ["/nosuch/%s-1" % mark, "/nosuch/%s-2" % mark, "/hello/%s-3" % mark,
                             "/hello/%s-4" % mark, "/hello/%s-5" % mark, "/hello/%s-6" % mark]], check=False)
    c.run(["curl", "-s", "-o", "/dev/null", url + "/logged/%s-7" % mark], check=False)
    c.journal_until(lambda es: sum(mark in text(e.get("HTTPGATE_TARGET", "")) for e in es) >= 7, "-t", "httpgate")
    log = c.sh("/opt/hgtest/httpgate-clf | grep %s > /tmp/access.log; cat /tmp/access.log" % mark,
               check=False).stdout
    lines = log.splitlines()
    ok(len(lines) == 7 and all(re.match(r'127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                                        r'"GET /\S+ HTTP/1\.1" \d{3} \d+ "[^"]*" "[^"]*"$', ln) for ln in lines),
       "httpgate-clf: one Combined Log Format line per request", log)
    ok(len(lines) == 7 and '"http://referer.example/" "hgtest-agent/1.0"' in lines[0],
       "... with the client's Referer and User-Agent", lines[:1])
    r = c.run(["goaccess", "/tmp/access.log", "--log-format=COMBINED", "-o", "/tmp/report.json"], check=False)
    try:
        rep = json.loads(c.run(["cat", "/tmp/report.json"], check=False).stdout)
    except ValueError as e:
        ok(False, "goaccess wrote its report", (r.returncode, r.stderr[-300:], e))
        return
    gen = rep.get("general", {})
    codes = {i["data"].split()[0]: i["hits"]["count"] for d in rep.get("status_codes", {}).get("data", [])
             for i in d.get("items", [])}
    ok(gen.get("total_requests") == 7 and gen.get("valid_requests") == 7 and gen.get("failed_requests") == 0,
       "goaccess reads every line: 7 requests, none failed", gen)
    ok(codes == {"200": 5, "404": 2}, "goaccess counts 5 answers 200 and 2 answers 404", codes)
    ok(gen.get("bandwidth", 0) > 0, "goaccess sums the response bytes", gen.get("bandwidth"))


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
    state = c.unit_prop("hgdefault.socket", "ActiveState") + "/" + c.unit_prop("hgdefault.socket", "Result")
    print("# flood of 1000 connections in %.2f s on systemd's defaults: %s, socket %s" % (r.get("sec", 0), r, state))
    ok(state == "failed/trigger-limit-hit",
       "(systemd 252's defaults: the same flood fails the socket, port closed: %s)" % state)
    c.run(["systemctl", "stop", "hgdefault.socket"], check=False)
    r = c.client("hold", 80, 1000, 2)
    print("# flood of 1000 connections in %.2f s on httpgate.socket: %s" % (r.get("sec", 0), r))
    ok(c.unit_prop("httpgate.socket", "ActiveState") == "active",
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


def test_burst(c):
    before = int(c.unit_prop("httpgate.socket", "NAccepted") or 0)
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
    accepted = int(c.unit_prop("httpgate.socket", "NAccepted") or 0) - before
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


TESTS = (test_units, test_first_start, test_log_file, test_refusals_before_start, test_crash, test_together,
         test_retire, test_stop, test_launcher_refusals, test_picolisp, test_journal_fields, test_access_log, test_fallback,
         test_by_hand, test_tls, test_flood, test_burst)


if __name__ == "__main__":
    run_tier("tier-50", setup, TESTS, ok)
    done()
