#!/usr/bin/python3
"""Tier 14: the real PicoLisp demo application behind the gate.

contrib/demo/demo.l (Debian's picolisp) is copied to a directory of its own
and named in a names file as the only (so the default) entry; httpgate runs
under systemd-socket-activate with the launcher that works without systemd
(--launcher=), so the first request starts `pil demo.l -go -wait` as the
user httpgate-test. What PicoLisp really does is followed: the first page
comes from a new session, a child process on a port of its own, and its
<base href> sends every later request through the gate as
/<session port>/<session id>~!demo; the form posts there as
multipart/form-data (as a browser does); a cookie is set and comes back.
Several requests share one kept-alive connection. An ended session gets the
void page (410); a retired app is started again on demand.

Several apps share one connection: the demo, its session, and a bare port
(another app), one after the other and pipelined, with curl as well.

Ports: gate 20800, app 20810, sessions 20811-20849, another app 20850. Needs root.
"""
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from gatetest import (TOP, Conn, Gate, HttpBackend, ok, done, status_of, ensure_user, listening_pids,  # noqa: E402
                      pid_alive, kill_pids)

USER = "httpgate-test"
GATE_PORT, APP_PORT, SES_FIRST, SES_LAST = 20800, 20810, 20811, 20849
OTHER_PORT = 20850  # another app, reached as a bare port
DEMO = os.path.join(TOP, "contrib", "demo")
DEADLINE = time.time() + 150


class Page:
    """What a demo page says, parsed from its HTML."""

    def __init__(self, status, headers, body):
        self.status, self.headers = status, headers
        self.body = body.decode("utf-8", "replace")
        b = self.body

        def find(rx):
            m = re.search(rx, b)
            return m.group(1) if m else None
        self.base = find(r'<base href="([^"]*)"')
        self.action = find(r'<form[^>]*action="([^"]*)"')
        self.css = find(r'<link rel="stylesheet"[^>]*href="([^"]*)"')
        self.sent = find(r'<p id="sent">(.*?)</p>')
        self.cookie = find(r'<p id="cookie">(.*?)</p>')
        self.gate = find(r'<p id="gate">(.*?)</p>')
        m = re.search(r"process (\d+) on port (\d+)", b)
        self.pid, self.port = (int(m.group(1)), int(m.group(2))) if m else (None, None)

    def set_cookie(self):
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    def session_path(self):
        """The form's target through the gate: base href path + action."""
        if not self.base or not self.action:
            return None
        m = re.match(r"http://[^/]+(/.*)$", self.base)
        return (m.group(1) if m else "/") + self.action


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    return Page(r.status, r.getheaders(), data)


def multipart(fields):
    """A multipart/form-data body as a browser sends PicoLisp's <post> form."""
    boundary = "----httpgate" + uuid.uuid4().hex
    out = b""
    for k, v in fields:
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n" % (boundary, k)).encode()
        out += v.encode("utf-8") + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return out, "multipart/form-data; boundary=" + boundary


def connections(gate):
    return len(re.findall(r"^Connection from ", gate.log(), re.M))


def ours(pid, appdir):
    try:
        return os.readlink("/proc/%d/cwd" % pid) == appdir
    except OSError:
        return False


def app_pids(appdir):
    """The demo's server and sessions, by the ports they listen on."""
    pids = set()
    for port in [APP_PORT] + list(range(SES_FIRST, SES_LAST + 1)):
        pids |= {p for p in listening_pids(port) if ours(p, appdir)}
    return pids


def environ_of(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return dict(kv.decode("latin-1").split("=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    except OSError:
        return {}


def uid_of(pid):
    try:
        return os.stat("/proc/%d" % pid).st_uid
    except OSError:
        return None


def main():
    if os.geteuid() != 0:
        ok(False, "tier-14-picolisp runs as root (the gate switches to the entry's user)")
        done()
    if not shutil.which("pil"):
        ok(False, "pil (Debian's picolisp) is installed")
        done()
    pw = ensure_user(USER)
    top = tempfile.mkdtemp(prefix="httpgate-t14.")
    os.chmod(top, 0o755)
    appdir = os.path.join(top, "demo")
    os.mkdir(appdir)
    for f in ("demo.l", "void"):
        shutil.copy(os.path.join(DEMO, f), appdir)
        os.chmod(os.path.join(appdir, f), 0o644)
    logdir = os.path.join(top, "log")
    os.mkdir(logdir)
    os.chown(logdir, pw.pw_uid, pw.pw_gid)
    locks = os.path.join(top, "locks")
    os.mkdir(locks)
    names = os.path.join(top, "names")
    with open(names, "w") as f:
        f.write("demo %d %s %s %s/demo.log pil demo.l -sessions %d %d -go -wait\n" % (
            APP_PORT, USER, appdir, logdir, SES_FIRST, SES_LAST))
    gate = None
    other = HttpBackend(OTHER_PORT)
    try:
        gate = Gate(GATE_PORT, ["--launcher=", "--lock-dir=" + locks, "--void=" + os.path.join(appdir, "void"),
                                names])
        run(gate, pw, appdir, logdir)
    finally:
        if gate:
            gate.stop()
        kill_pids(app_pids(appdir))
        other.stop()
        shutil.rmtree(top, ignore_errors=True)
    done()


def run(gate, pw, appdir, logdir):
    ok(not listening_pids(APP_PORT), "nothing listens on the demo's port before the first request")

    # ---- one kept-alive connection: start, session, form, stylesheet
    conns = connections(gate)
    c = http.client.HTTPConnection("127.0.0.1", GATE_PORT, timeout=20)
    t = time.time()
    p1 = request(c, "GET", "/", headers={"X-Pil": "*Adr=6.6.6.6", "Accept": "text/html"})
    elapsed = time.time() - t
    ok(p1.status == 200 and "httpgate demo" in p1.body, "first request starts the PicoLisp app and gets its page",
       "%s %s" % (p1.status, p1.body[:200]))
    ok(elapsed < 10, "PicoLisp started and answered within 10 s (%.2fs)" % elapsed)
    server = [p for p in listening_pids(APP_PORT)]
    ok(len(server) == 1, "one PicoLisp server listens on the entry's port", server)
    spid = server[0] if server else None
    ok(spid is not None and uid_of(spid) == pw.pw_uid, "the PicoLisp server runs as %s" % USER, uid_of(spid))
    env = environ_of(spid) if spid else {}
    ok(env.get("NAME") == "demo" and env.get("PORT") == str(APP_PORT),
       "PicoLisp got NAME=demo and PORT (so (retire) is active)", {k: env.get(k) for k in ("NAME", "PORT")})
    ok(p1.port is not None and SES_FIRST <= p1.port <= SES_LAST and p1.pid != spid,
       "the page comes from a session: a child process on a port of its own", (p1.pid, p1.port))
    ok(p1.base == "http://127.0.0.1:%d/%s/" % (GATE_PORT, p1.port),
       "PicoLisp's <base href> sends the session's requests through the gate (/PORT/)", p1.base)
    ok(p1.css == "http://127.0.0.1:%d/demo/@lib.css" % GATE_PORT,
       "its static URLs go through the gate under the app's key (/demo/)", p1.css)
    ok(p1.action and re.fullmatch(r"\d+~!demo", p1.action or ""), "the form posts to the session id (ID~!demo)",
       p1.action)
    ok(p1.gate == "Reached through: http, client 127.0.0.1",
       "the app saw the gate's X-Pil *Gate and *Adr, not the client's forged *Adr", p1.gate)
    cookies = p1.set_cookie()
    ok(len(cookies) == 1 and cookies[0].startswith("demo=visitor-"), "Set-Cookie passed to the client", cookies)
    cookie = cookies[0].split(";")[0] if cookies else ""

    spath = p1.session_path() or "/"
    p2 = request(c, "GET", spath, headers={"Cookie": cookie})
    ok(p2.status == 200 and p2.pid == p1.pid, "the session URL reaches the same session process", (p2.status, p2.pid))
    ok(p2.cookie == "Cookie: " + cookie.split("=", 1)[-1], "the cookie came back to the app", p2.cookie)
    ok(p2.sent == "Nothing sent yet.", "nothing posted yet", p2.sent)

    body, ctype = multipart([("*Text", "hello gate & <b>bold</b> ünï"), ("*JS", "")])
    p3 = request(c, "POST", spath, body=body, headers={"Content-Type": ctype, "Cookie": cookie})
    ok(p3.status == 200 and p3.pid == p1.pid, "form POST answered by the session", (p3.status, p3.pid))
    ok(p3.sent == "You sent: <b>hello gate &amp; &lt;b&gt;bold&lt;/b&gt; ünï</b> (post 1 of this session)",
       "the posted value comes back (escaped, UTF-8 intact)", p3.sent)
    body, ctype = multipart([("*Text", "second")])
    p4 = request(c, "POST", spath, body=body, headers={"Content-Type": ctype, "Cookie": cookie})
    ok(p4.sent == "You sent: <b>second</b> (post 2 of this session)", "the session keeps its state across posts",
       p4.sent)
    ok('value="second"' in p4.body, "the field shows the session's value", re.findall(r'<input type="text"[^>]*>', p4.body))
    p5 = request(c, "GET", "/demo/@lib.css")
    ok(p5.status == 200 and dict((k.lower(), v) for k, v in p5.headers).get("content-type", "").startswith("text/css"),
       "the stylesheet through the app's key on the same connection", p5.status)
    p6 = request(c, "GET", "/%d/other" % OTHER_PORT)
    ok(p6.status == 200 and p6.body == "port=%d target=/other\n" % OTHER_PORT,
       "another app (a bare port) on the same connection", (p6.status, p6.body[:100]))
    p7 = request(c, "GET", spath, headers={"Cookie": cookie})
    ok(p7.status == 200 and p7.pid == p1.pid, "then the session again, on the same connection", (p7.status, p7.pid))
    c.close()
    time.sleep(0.3)
    ok(connections(gate) - conns == 1, "all seven requests went over one kept-alive connection",
       connections(gate) - conns)
    m = re.findall(r"done .*requests=(\d+)", gate.log())
    ok(m and m[-1] == "7", "the gate's log counts 7 requests on that connection", m[-1:] if m else gate.log()[-300:])

    # ---- the same three apps, pipelined: sent at once, answered in order
    pc = Conn(GATE_PORT, timeout=20)
    pc.send(b"GET /demo/@lib.css HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /%d/piped HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET %s HTTP/1.1\r\nHost: h\r\nCookie: %s\r\n\r\n" % (OTHER_PORT, spath.encode(), cookie.encode()))
    q1, q2, q3 = pc.response(), pc.response(), pc.response()
    pc.close()
    q3p = Page(q3.status, q3.headers, q3.body) if q3 else None
    ok(q1 is not None and q1.status == 200 and b"Software Lab" in q1.body and
       q2 is not None and q2.body == b"port=%d target=/piped\n" % OTHER_PORT and
       q3p is not None and q3p.status == 200 and q3p.pid == p1.pid,
       "pipelined: the app's stylesheet, another app, the session: each answered, in order",
       [x and x.raw[:80] for x in (q1, q2, q3)])

    # ---- curl, one connection for the start page, a session page and another app
    out = subprocess.run(["curl", "-s", "-m", "20", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                          "-w", "%{http_code} %{num_connects}\\n", "-b", cookie,
                          "http://127.0.0.1:%d/" % GATE_PORT, "http://127.0.0.1:%d%s" % (GATE_PORT, spath),
                          "http://127.0.0.1:%d/%d/curl" % (GATE_PORT, OTHER_PORT)],
                         capture_output=True, text=True).stdout.split()
    ok(out == ["200", "1", "200", "0", "200", "0"],
       "curl: start page, session page and another app over one connection", out)

    # ---- a browser's POST: the body arrives after the head (separate segments)
    s = socket.create_connection(("127.0.0.1", GATE_PORT), timeout=10)
    body, ctype = multipart([("*Text", "late body")])
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: %s\r\nContent-Type: %s\r\n"
            "Content-Length: %d\r\n\r\n" % (spath, GATE_PORT, cookie, ctype, len(body))).encode()
    s.sendall(head)
    time.sleep(0.3)
    t = time.time()
    s.sendall(body)
    resp = b""
    try:
        while b"</html>" not in resp:
            d = s.recv(65536)
            if not d:
                break
            resp += d
    except socket.timeout:
        pass
    elapsed = time.time() - t
    s.close()
    ok(status_of(resp) == 200 and b"You sent: <b>late body</b> (post 3" in resp and elapsed < 5,
       "a POST whose body arrives after its head is answered at once (%.2fs)" % elapsed, resp[-200:])

    # ---- curl, as a user would
    jar = os.path.join(logdir, "jar")
    r = subprocess.run(["curl", "-s", "-m", "20", "-c", jar, "-b", jar, "http://127.0.0.1:%d/" % GATE_PORT],
                       capture_output=True)
    pc = Page(200, [], r.stdout)
    r = subprocess.run(["curl", "-s", "-m", "20", "-c", jar, "-b", jar, "-F", "*Text=from curl",
                        "http://127.0.0.1:%d%s" % (GATE_PORT, pc.session_path() or "/")], capture_output=True)
    pc2 = Page(200, [], r.stdout)
    ok(pc2.sent == "You sent: <b>from curl</b> (post 1 of this session)" and pc2.cookie.startswith("Cookie: visitor-"),
       "curl with a cookie jar: new session, form posted, cookie returned", (pc2.sent, pc2.cookie))
    ok(pc.pid != p1.pid, "a second visitor gets a session of its own", (pc.pid, p1.pid))

    # ---- the app's log: PicoLisp's session lines, appended by the gate's launcher
    with open(os.path.join(logdir, "demo.log")) as f:
        log = f.read()
    ok("%d = %d %s" % (p1.pid, p1.port, p1.action.split("~")[0] + "~" if p1.action else "?") in log,
       "PicoLisp's stderr (session started) is in the entry's log file", log[-200:])

    # ---- an ended session: the void page (410)
    sespids = [p for p in listening_pids(p1.port) if ours(p, appdir)]
    kill_pids(sespids)
    c = http.client.HTTPConnection("127.0.0.1", GATE_PORT, timeout=20)
    pv = request(c, "GET", spath)
    c.close()
    ok(pv.status == 410 and 'id="void"' in pv.body, "an ended session's URL gets 410 with the void page",
       "%s %s" % (pv.status, pv.body[:120]))

    # ---- retirement: the server is gone, the next request starts it again
    kill_pids([p for p in listening_pids(APP_PORT) if ours(p, appdir)])
    ok(not listening_pids(APP_PORT), "the PicoLisp server retired (stopped)")
    c = http.client.HTTPConnection("127.0.0.1", GATE_PORT, timeout=20)
    p6 = request(c, "GET", "/")
    c.close()
    again = [p for p in listening_pids(APP_PORT)]
    ok(p6.status == 200 and p6.port and again and again[0] != spid,
       "after retirement the next request starts the app again", (p6.status, again, spid))
    ok(gate.log().count("started demo") == 2, "the gate's log shows two starts", gate.log().count("started demo"))
    ok(time.time() < DEADLINE, "tier finished in time")


if __name__ == "__main__":
    main()
