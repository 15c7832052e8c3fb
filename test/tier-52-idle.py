#!/usr/bin/python3
"""tier-52: idle apps are stopped, in a real systemd (nspawn, as tier-50).

httpgate-idle.service (httpgate-launch --stop-idle, run here by hand where
httpgate-idle.timer would run it) stops an app's unit once it had no
connection and no request for its idle time (/etc/httpgate/idle). Checks:
with no idle file nothing is stopped and the gates leave no marks; a
python http.server started by a request is stopped after its idle time and
says so in the journal; the next request starts it again; a slow download
running past the idle time keeps its app; a PicoLisp app is kept while a
connection to its session's own port is open, and stopped after; an app
whose idle time is 0 is never stopped; the timer is installed and starts.
"""
import os
import re
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "test", "lib"))
from gatetest import done, ok  # noqa: E402
from nspawn import run_tier, text  # noqa: E402

IDLE = 3  # seconds, the idle time of every app but "keep"

# An app that answers at once, or (/slow) with a body that takes 8 s.
APP = r'''#!/usr/bin/python3
import http.server, os, time
port = int(os.environ["PORT"])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        slow = self.path.endswith("/slow")
        body = ("app=%s pid=%d path=%s\n" % (os.environ.get("NAME"), os.getpid(), self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) * 8 if slow else len(body)))
        self.end_headers()
        for i in range(8 if slow else 1):
            self.wfile.write(body)
            self.wfile.flush()
            if slow:
                time.sleep(1)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
'''

PICO_APP = r'''(allowed NIL "!page")
(load "@lib/http.l" "@lib/xhtml.l")
(de page ()
   (app)
   (html 0 "idle" NIL NIL
      (<p> '(id . "port") *Port)
      (<p> '(id . "ses") *SesId) ) )
(de go ()
   (server (format (sys "PORT")) "!page") )
'''

NAMES = """# names file for tier-52
py    4101 hgidle /srv/idle ^ ./app.py
keep  4102 hgidle /srv/idle ^ ./app.py
pl    4103 hgidle /srv/pl ^ ./pil app.l -go -wait
"""
IDLE_FILE = "# tier-52\n*    %ds\nkeep 0\n" % IDLE
MARKS = "/run/httpgate/seen"


def setup(c):
    c.write("/srv/idle/app.py", APP, 0o755)
    c.write("/srv/pl/app.l", PICO_APP)
    c.write("/etc/httpgate/names", NAMES)
    c.sh("useradd --create-home hgidle && chown -R hgidle: /srv/idle && ln -s /usr/bin/pil /srv/pl/pil"
         " && chown -R hgidle: /srv/pl && systemctl start httpgate.socket")


def active(c, key):
    return c.unit_prop("httpgate-app-%s.service" % key, "ActiveState") == "active"


def exists(c, path, kind="-e"):
    """A path inside (/run is the container's own tmpfs, not the overlay)."""
    return c.run(["test", kind, path], check=False).returncode == 0


def check_idle(c):
    """One run of the checker, as the timer starts it."""
    r = c.run(["systemctl", "start", "httpgate-idle.service"], check=False)
    ok(r.returncode == 0, "httpgate-idle.service runs", r.stderr)
    time.sleep(0.5)  # a stop job, queued


def stopped_entries(c, since, key):
    return c.journal_until(lambda es: es, "-t", "httpgate-launch", "HTTPGATE_LAUNCH=stopped-idle",
                           "HTTPGATE_APP=" + key, since=since, timeout=3)


def test_off(c):
    r = c.client("get", "/py/")
    ok(r.get("status") == "200", "an app is started by its first request", r)
    since = time.time()
    time.sleep(IDLE + 1)
    check_idle(c)
    ok(active(c, "py"), "without /etc/httpgate/idle nothing is stopped, however long it idles")
    ok(not exists(c, MARKS), "... and the gates leave no marks (no %s)" % MARKS)
    ok(not c.journal("-t", "httpgate-launch", "HTTPGATE_LAUNCH=stopped-idle", since=since),
       "... nor does the journal say anything was stopped")


def test_stopped_after_idle(c):
    c.write("/etc/httpgate/idle", IDLE_FILE)
    check_idle(c)  # on now: makes the marks directory; py idled longer than its idle time already
    ok(exists(c, MARKS, "-d"), "with an idle file the checker makes the marks directory",
       c.run(["journalctl", "--no-pager", "-n", "20", "-u", "httpgate-idle.service"], check=False).stdout)
    st = c.run(["stat", "-c", "%U %a", MARKS], check=False).stdout.split()
    ok(st == ["httpgate", "750"], "... for the gate's user only", st)
    r = c.client("get", "/py/again")
    pid = re.search(r"pid=(\d+)", r.get("body", ""))
    ok(r.get("status") == "200" and pid, "a request for the python app is answered", r)
    ok(exists(c, MARKS + "/py", "-f"), "the gate marked the request (%s/py)" % MARKS)
    check_idle(c)
    ok(active(c, "py"), "within its idle time (%d s) the app runs on" % IDLE)
    since = time.time()
    time.sleep(IDLE + 1)
    check_idle(c)
    ok(not active(c, "py"), "after %d s without a connection or a request it is stopped" % IDLE,
       c.unit_prop("httpgate-app-py.service", "ActiveState"))
    ents = stopped_entries(c, since, "py")
    e = ents[-1] if ents else {}
    ok(e and "idle for" in text(e.get("MESSAGE", "")) and e.get("HTTPGATE_PORT") == "4101"
       and e.get("HTTPGATE_IDLE_LIMIT_SEC") == str(IDLE) and e.get("HTTPGATE_CONNECTIONS") == "0"
       and "4101" in e.get("HTTPGATE_LISTEN_PORTS", ""),
       "the journal says when and why, with the app's fields", {k: v for k, v in e.items() if "HTTPGATE" in k
                                                               or k == "MESSAGE"})
    r = c.client("get", "/py/back")
    pid2 = re.search(r"pid=(\d+)", r.get("body", ""))
    ok(r.get("status") == "200" and pid2 and pid and pid2.group(1) != pid.group(1),
       "the next request starts it again and is answered 200", r)


def test_slow_download(c):
    c.client("get", "/py/warm")
    out = {}
    t = threading.Thread(target=lambda: out.update(c.client("get", "/py/slow")))
    t.start()
    time.sleep(IDLE + 1.5)
    check_idle(c)
    ok(active(c, "py"), "a download running past the idle time keeps its app")
    t.join(30)
    ok(out.get("status") == "200" and out.get("body", "").count("app=py") == 8,
       "... and the download completes", out.get("status"))
    time.sleep(IDLE + 1)
    check_idle(c)
    ok(not active(c, "py"), "once it is over and the idle time passed, the same app is stopped")


def test_picolisp_session(c):
    r = c.client("get", "/pl/")
    port = re.search(r'id="port">(\d+)<', r.get("body", ""))
    ok(r.get("status") == "200" and port and port.group(1) != "4103",
       "the PicoLisp app opens a session on a port of its own", r.get("body", "")[-200:])
    if not port:
        return
    held = {}
    t = threading.Thread(target=lambda: held.update(c.client("hold", port.group(1), 1, IDLE + 4)))
    t.start()
    time.sleep(IDLE + 1.5)
    check_idle(c)
    ok(active(c, "pl"), "while a connection to its session's port (%s) is open it is not stopped" % port.group(1))
    t.join(30)
    ok(held.get("connected") == 1, "(the connection was held)", held)
    since = time.time()
    time.sleep(IDLE + 1)
    check_idle(c)
    ok(not active(c, "pl"), "once it closed and the idle time passed, the PicoLisp app is stopped",
       c.run(["journalctl", "--no-pager", "-n", "20", "-t", "httpgate-launch"], check=False).stdout)
    ents = stopped_entries(c, since, "pl")
    ok(ents and port.group(1) in ents[-1].get("HTTPGATE_LISTEN_PORTS", ""),
       "... and the journal names the session's port among those it watched",
       ents[-1].get("HTTPGATE_LISTEN_PORTS") if ents else ents)


def test_never(c):
    r = c.client("get", "/keep/")
    ok(r.get("status") == "200" and c.client("get", "/py/").get("status") == "200",
       "an app whose idle time is 0 is started, and one with the common idle time", r)
    time.sleep(IDLE + 1)
    check_idle(c)
    ok(active(c, "keep") and not active(c, "py"), "the same run stops the other, and never the one with 0")


def test_timer(c):
    r = c.run(["systemctl", "enable", "--now", "httpgate-idle.timer"], check=False)
    ok(r.returncode == 0 and c.unit_prop("httpgate-idle.timer", "ActiveState") == "active",
       "httpgate-idle.timer is installed and starts", r.stderr)
    failed = c.run(["systemctl", "list-units", "--failed", "--all", "--no-legend", "--plain", "httpgate*"],
                   check=False).stdout.strip()
    ok(failed == "", "no failed httpgate units", failed)


TESTS = (test_off, test_stopped_after_idle, test_slow_download, test_picolisp_session, test_never, test_timer)


if __name__ == "__main__":
    run_tier("tier-52", setup, TESTS, ok)
    done()
