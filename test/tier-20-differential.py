#!/usr/bin/python3
"""Tier 20: differential routing test against the original httpGate.

The same table of request lines goes through PicoLisp's httpGate (Debian's
/usr/lib/picolisp/bin/httpGate, started as `httpGate PORT DEFAULT [PEM
[DENY...]]`) and through httpgate (systemd-socket-activate --accept), both
in front of the same recording backends on ::1. For each row both must reach
the same backend port with the same forwarded request line, or both must
refuse (httpGate closes without a word, httpgate answers 4xx/5xx). Where
httpgate differs on purpose, the row says so and why (the WHY_* table of
deliberate differences below), and httpgate's documented behaviour is
asserted there instead; httpGate's own behaviour is asserted for every row
too, so that the table stays true. A summary table ends the output; -v adds
timings and httpgate's log.

Sets: A names file with "@", plain, /prefix, numeric (< 1024 and >= 1024),
mixed-case, duplicate and port-0 keys, a denied port and a void file; B
several entries and no "@"; C an "@/prefix" default; E a single entry; D
httpGate's positional numeric DEFAULT; F the A file inside 1200 more
entries (over 64 KiB: httpgate's lookup index).

httpGate listens on all addresses and daemonizes, so the whole tier runs in
new network, PID and mount namespaces (it re-executes itself under unshare):
the only addresses are loopback, and when this process (the namespace's
init) exits, the kernel ends httpGate's daemon with it. Needs root.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NS_FLAG = "HTTPGATE_DIFF_NS"
ORIG = os.environ.get("HTTPGATE_ORIG", "/usr/lib/picolisp/bin/httpGate")

if os.environ.get(NS_FLAG) != "1":
    if os.geteuid() != 0:
        print("not ok - tier-20 needs root for unshare --net --pid (run under make check as root)")
        sys.exit(1)
    os.environ[NS_FLAG] = "1"
    sys.stdout.flush()
    try:
        os.execvp("unshare", ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
                              "/usr/bin/python3", os.path.abspath(__file__)] + sys.argv[1:])
    except OSError as e:
        print("not ok - cannot run unshare: %s" % e)
        sys.exit(1)

sys.path.insert(0, os.path.join(HERE, "lib"))
from gatetest import GATE, Gate, Recorder, ok, done, status_of, wait_port  # noqa: E402

VERBOSE = "-v" in sys.argv
DEADLINE = time.time() + 90  # the tier must end within 2 minutes, whatever hangs
HOST = "gate.test"
VOID = b"<html>VOID-MARKER session expired</html>\n"
DENY = 21081            # passed to both as a denied port; a Recorder listens there
TRUNC16 = 65536 + 21001  # httpGate: htons((unsigned short)port) -> 21001
TRUNC32 = (1 << 32) + 21001  # httpGate: (int)strtol(...) -> 21001

# ---------------------------------------------------------------- outcomes
# ("fwd", port, request line)    a Recorder on that port got the request,
#                                Host header and body intact
# ("drop",)                      closed without an answer, nothing forwarded
# ("status", code, extra)        answered, nothing forwarded; extra is the
#                                Location of a 3xx, "void" for the void file


def F(port, line):
    return ("fwd", port, line)


DROP = ("drop",)


def S(code, extra=None):
    return ("status", code, extra)


def show(o):
    if o[0] == "fwd":
        return "%d %s" % (o[1], o[2] if len(o[2]) <= 60 else o[2][:40] + "..." + o[2][-16:])
    if o[0] == "drop":
        return "closed silently"
    if o[0] == "status":
        return "%d%s" % (o[1], " " + o[2] if o[2] else "")
    return repr(o)[:80]


def req(method, target, body=b"", version="HTTP/1.1", host=True, extra=b""):
    h = b"%s %s %s\r\n" % (method.encode(), target.encode("latin-1"), version.encode())
    if host:
        h += b"Host: %s\r\n" % HOST.encode()
    if body:
        h += b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n" % len(body)
    return h + extra + b"\r\n" + body


# ---------------------------------------------------------------- rows
# Each row: (label, request bytes, spec). A spec is one of
#   same(outcome)         both behave so (a "status" outcome is httpGate's too)
#   refused(status)       httpGate closes silently, httpgate answers status
#   differs(orig, gate, why)   a deliberate difference, listed with its reason

def same(o):
    return ("same", o, o)


def refused(status):
    return ("refused", DROP, S(status))


def differs(o, g, why):
    return ("differs", o, g, why)


GET = lambda t, **k: req("GET", t, **k)  # noqa: E731
LONG = "/21001/" + "a" * 3000
LONGER = "/21001/" + "b" * 5000            # over httpGate's 4096-byte line buffer
LONGEST = "/21001/" + "c" * 9000           # over both bounds
FORM = b"name=Pico&x=1"

# The deliberate differences, each with its reason (httpgate(8) DIFFERENCES
# FROM httpGate and ANSWERS, httpgate.names(5) "Differences from httpGate").
WHY_METHOD = "httpgate forwards every standard method; httpGate drops HEAD and OPTIONS (httpgate(8))"
WHY_PORT = "a port number above 65535 is a key for httpgate; httpGate truncates it (int, then 16 bits)"
WHY_SIGN = "httpgate reads a port as plain digits; httpGate's strtol() takes a sign ('+8080', '-1')"
WHY_NODEFAULT = "several entries and no '@': httpgate has no default (404); httpGate used the first entry's port"
WHY_GLUE = "'@/prefix' default: httpgate puts '/' between prefix and path; httpGate glues them"
WHY_STRICT = "httpgate parses the request line strictly (RFC 9112): CRLF only, visible ASCII, SP-separated"
WHY_ABS = "httpgate accepts absolute-form targets (RFC 9112 3.2.2) and routes by their path"
WHY_LINE = "httpgate's request line bound is 8 KiB; httpGate drops a first line over its 4 KiB buffer"

NAMES_A = [
    "# names A: plain keys, a key with /prefix, numeric keys below 1024,",
    "# a numeric key >= 1024, a port-0 redirect, mixed case, and '@'",
    "app 21011 {user} {dir} app.log ./app.l",
    "prefixed/pre/fix 21012 {user} {dir} ^ ./app.l",
    "MiXed 21013 {user} {dir} ^ ./app.l",
    "123 21014 {user} {dir} ^ ./app.l",
    "999/lp 21016 {user} {dir} ^ ./app.l",
    "21017 21018 {user} {dir} ^ ./app.l",
    "denied 21081 {user} {dir} ^ ./app.l",
    "redir 0 http://example.org/moved",
    "321 0 http://example.org/three",
    "twice 21002 {user} {dir} ^ ./app.l",
    "TWICE/second 21017 {user} {dir} ^ ./app.l",
    "@ 21015 {user} {dir} ^ ./app.l",
]

ROWS_A = [
    ("port, path", GET("/21001/rest"), same(F(21001, "GET /rest HTTP/1.1"))),
    ("port, query", GET("/21001?x=1"), same(F(21001, "GET /?x=1 HTTP/1.1"))),
    ("port alone", GET("/21001"), same(F(21001, "GET / HTTP/1.1"))),
    ("port, slash", GET("/21001/"), same(F(21001, "GET / HTTP/1.1"))),
    ("port, query with slash", GET("/21001?a/b"), same(F(21001, "GET /?a/b HTTP/1.1"))),
    ("port, leading zero", GET("/021001/x"), same(F(21001, "GET /x HTTP/1.1"))),
    ("port, POST form", req("POST", "/21002/form", FORM), same(F(21002, "POST /form HTTP/1.1"))),
    ("port, HTTP/1.0 no Host", GET("/21002/x", version="HTTP/1.0", host=False),
     same(F(21002, "GET /x HTTP/1.0"))),
    ("port, session URL ~", GET("/21001/~3F2A/!work?*Menu"), same(F(21001, "GET /~3F2A/!work?*Menu HTTP/1.1"))),
    ("port, long path 3000", GET(LONG), same(F(21001, "GET /" + "a" * 3000 + " HTTP/1.1"))),
    ("port, digits then letters", GET("/21001abc/x"), same(F(21015, "GET /21001abc/x HTTP/1.1"))),
    ("key, path", GET("/app/rest"), same(F(21011, "GET /rest HTTP/1.1"))),
    ("key, query", GET("/app?x"), same(F(21011, "GET /?x HTTP/1.1"))),
    ("key alone", GET("/app"), same(F(21011, "GET / HTTP/1.1"))),
    ("key, slash", GET("/app/"), same(F(21011, "GET / HTTP/1.1"))),
    ("key, double slash", GET("/app//x"), same(F(21011, "GET //x HTTP/1.1"))),
    ("key upper case", GET("/APP/x"), same(F(21011, "GET /x HTTP/1.1"))),
    ("key, POST form", req("POST", "/app/form?s=1", FORM), same(F(21011, "POST /form?s=1 HTTP/1.1"))),
    ("key, PUT", req("PUT", "/app/doc", b"data"), same(F(21011, "PUT /doc HTTP/1.1"))),
    ("key, PATCH", req("PATCH", "/app/doc", b"data"), same(F(21011, "PATCH /doc HTTP/1.1"))),
    ("key, DELETE", req("DELETE", "/app/doc"), same(F(21011, "DELETE /doc HTTP/1.1"))),
    ("key, session URL ~", GET("/app/~sess/x.l"), same(F(21011, "GET /~sess/x.l HTTP/1.1"))),
    ("key/prefix, path", GET("/prefixed/x"), same(F(21012, "GET /pre/fix/x HTTP/1.1"))),
    ("key/prefix alone", GET("/prefixed"), same(F(21012, "GET /pre/fix HTTP/1.1"))),
    ("key/prefix, slash", GET("/prefixed/"), same(F(21012, "GET /pre/fix/ HTTP/1.1"))),
    ("key/prefix, query", GET("/prefixed?y=2"), same(F(21012, "GET /pre/fix?y=2 HTTP/1.1"))),
    ("key/prefix upper case", GET("/PREFIXED/x"), same(F(21012, "GET /pre/fix/x HTTP/1.1"))),
    ("mixed-case key, lower", GET("/mixed/x"), same(F(21013, "GET /x HTTP/1.1"))),
    ("mixed-case key, upper", GET("/MIXED?q"), same(F(21013, "GET /?q HTTP/1.1"))),
    ("numeric key < 1024", GET("/123/x"), same(F(21014, "GET /x HTTP/1.1"))),
    ("numeric key < 1024 alone", GET("/123"), same(F(21014, "GET / HTTP/1.1"))),
    ("numeric key/prefix < 1024", GET("/999/x"), same(F(21016, "GET /lp/x HTTP/1.1"))),
    ("numeric key/prefix, query", GET("/999?x"), same(F(21016, "GET /lp?x HTTP/1.1"))),
    ("numeric key >= 1024 is a port", GET("/21017/x"), same(F(21017, "GET /x HTTP/1.1"))),
    ("key of a denied port", GET("/denied/x"), same(F(21081, "GET /x HTTP/1.1"))),
    ("key '@' named", GET("/@/x"), same(F(21015, "GET /x HTTP/1.1"))),
    ("key twice: the first line wins", GET("/Twice/x"), same(F(21002, "GET /x HTTP/1.1"))),
    ("unknown key -> @", GET("/unknown/x"), same(F(21015, "GET /unknown/x HTTP/1.1"))),
    ("root -> @", GET("/"), same(F(21015, "GET / HTTP/1.1"))),
    ("root query -> @", GET("/?q"), same(F(21015, "GET /?q HTTP/1.1"))),
    ("file -> @", GET("/index.html"), same(F(21015, "GET /index.html HTTP/1.1"))),
    ("empty segment -> @", GET("//x"), same(F(21015, "GET /x HTTP/1.1"))),
    ("two slashes -> @", GET("//"), same(F(21015, "GET / HTTP/1.1"))),
    ("key with %2F -> @", GET("/app%2Fx"), same(F(21015, "GET /app%2Fx HTTP/1.1"))),
    ("key with # -> @", GET("/app#frag"), same(F(21015, "GET /app#frag HTTP/1.1"))),
    ("POST -> @", req("POST", "/?login", FORM), same(F(21015, "POST /?login HTTP/1.1"))),
    ("redirect key", GET("/redir/x"), same(S(302, "http://example.org/moved"))),
    ("redirect key upper case", GET("/REDIR"), same(S(302, "http://example.org/moved"))),
    ("numeric redirect key < 1024", GET("/321/x"), same(S(302, "http://example.org/three"))),
    ("privileged port 80", GET("/80/x"), refused(403)),
    ("privileged port 1023", GET("/1023"), refused(403)),
    ("port 0", GET("/0/x"), refused(403)),
    ("0123 is not key 123", GET("/0123/x"), refused(403)),
    ("denied port", GET("/%d/x" % DENY), refused(403)),
    ("denied port, query", GET("/%d?x" % DENY), refused(403)),
    ("port nobody listens on", GET("/21999/x"), refused(502)),
    ("dead port, session URL ~ -> void", GET("/21999/~ABC/x"), same(S(410, "void"))),
    ("lower-case method", req("get", "/app/x"), refused(501)),
    ("TRACE", req("TRACE", "/app/x"), refused(501)),
    ("request line over both bounds", GET(LONGEST), refused(414)),
    ("HEAD", req("HEAD", "/app/x"), differs(DROP, F(21011, "HEAD /x HTTP/1.1"), WHY_METHOD)),
    ("OPTIONS", req("OPTIONS", "/app/x"), differs(DROP, F(21011, "OPTIONS /x HTTP/1.1"), WHY_METHOD)),
    ("OPTIONS *", req("OPTIONS", "*"), differs(DROP, F(21015, "OPTIONS * HTTP/1.1"), WHY_METHOD)),
    ("+port", GET("/+21001/x"), differs(F(21001, "GET /x HTTP/1.1"), F(21015, "GET /+21001/x HTTP/1.1"), WHY_SIGN)),
    ("-1 as port", GET("/-1/x"), differs(DROP, F(21015, "GET /-1/x HTTP/1.1"), WHY_SIGN)),
    ("port 65536+21001", GET("/%d/x" % TRUNC16),
     differs(F(21001, "GET /x HTTP/1.1"), F(21015, "GET /%d/x HTTP/1.1" % TRUNC16), WHY_PORT)),
    ("port 2^32+21001", GET("/%d/x" % TRUNC32),
     differs(F(21001, "GET /x HTTP/1.1"), F(21015, "GET /%d/x HTTP/1.1" % TRUNC32), WHY_PORT)),
    ("port 99999999999999999999", GET("/99999999999999999999/x"),
     differs(DROP, F(21015, "GET /99999999999999999999/x HTTP/1.1"), WHY_PORT)),
    ("absolute-form target", GET("http://%s/app/x" % HOST),
     differs(DROP, F(21011, "GET /x HTTP/1.1"), WHY_ABS)),
    ("request line over 4 KiB", GET(LONGER),
     differs(DROP, F(21001, "GET /" + "b" * 5000 + " HTTP/1.1"), WHY_LINE)),
    ("bare LF line ends", b"GET /app/x HTTP/1.1\nHost: gate.test\n\n",
     differs(F(21011, "GET /x HTTP/1.1"), S(400), WHY_STRICT)),
    ("space before the port", b"GET / 21001/x HTTP/1.1\r\nHost: gate.test\r\n\r\n",
     differs(F(21001, "GET /x HTTP/1.1"), S(400), WHY_STRICT)),
    ("non-ASCII byte in path", b"GET /app/\xc3\xa4 HTTP/1.1\r\nHost: gate.test\r\n\r\n",
     differs(F(21011, "GET /\xc3\xa4 HTTP/1.1"), S(400), WHY_STRICT)),
]

NAMES_B = [
    "# names B: several entries, no '@'",
    "first 21021 {user} {dir} ^ ./app.l",
    "second/pp 21022 {user} {dir} ^ ./app.l",
    "Third 21023 {user} {dir} ^ ./app.l",
]

ROWS_B = [
    ("key, path", GET("/first/x"), same(F(21021, "GET /x HTTP/1.1"))),
    ("key/prefix, path", GET("/second/x"), same(F(21022, "GET /pp/x HTTP/1.1"))),
    ("key/prefix alone", GET("/second"), same(F(21022, "GET /pp HTTP/1.1"))),
    ("mixed-case key", GET("/THIRD?x"), same(F(21023, "GET /?x HTTP/1.1"))),
    ("port", GET("/21002/x"), same(F(21002, "GET /x HTTP/1.1"))),
    ("privileged port", GET("/80/x"), refused(403)),
    ("'@' is no key here", GET("/@/x"),
     differs(F(21021, "GET /@/x HTTP/1.1"), S(404), WHY_NODEFAULT)),
    ("unknown key", GET("/unknown/x"), differs(F(21021, "GET /unknown/x HTTP/1.1"), S(404), WHY_NODEFAULT)),
    ("root", GET("/"), differs(F(21021, "GET / HTTP/1.1"), S(404), WHY_NODEFAULT)),
    ("root query", GET("/?q"), differs(F(21021, "GET /?q HTTP/1.1"), S(404), WHY_NODEFAULT)),
    ("POST file", req("POST", "/index.html", FORM),
     differs(F(21021, "POST /index.html HTTP/1.1"), S(404), WHY_NODEFAULT)),
]

NAMES_C = [
    "# names C: a default with a prefix",
    "@/pfx 21031 {user} {dir} ^ ./app.l",
    "plain 21032 {user} {dir} ^ ./app.l",
    "k/kp 21033 {user} {dir} ^ ./app.l",
]

ROWS_C = [
    ("root -> @/pfx", GET("/"), same(F(21031, "GET /pfx HTTP/1.1"))),
    ("root query -> @/pfx", GET("/?q=1"), same(F(21031, "GET /pfx?q=1 HTTP/1.1"))),
    ("key '@' named", GET("/@/x"), same(F(21031, "GET /pfx/x HTTP/1.1"))),
    ("key '@' named alone", GET("/@"), same(F(21031, "GET /pfx HTTP/1.1"))),
    # No deliberate difference covers these two: the "/" that httpgate puts
    # between a default's prefix and the path is there already.
    ("empty segment -> @/pfx", GET("//x"), same(F(21031, "GET /pfx/x HTTP/1.1"))),
    ("two slashes -> @/pfx", GET("//"), same(F(21031, "GET /pfx/ HTTP/1.1"))),
    ("key", GET("/plain/x"), same(F(21032, "GET /x HTTP/1.1"))),
    ("key/prefix", GET("/k/x"), same(F(21033, "GET /kp/x HTTP/1.1"))),
    ("port", GET("/21001/x"), same(F(21001, "GET /x HTTP/1.1"))),
    ("file -> @/pfx", GET("/index.html"),
     differs(F(21031, "GET /pfxindex.html HTTP/1.1"), F(21031, "GET /pfx/index.html HTTP/1.1"), WHY_GLUE)),
    ("unknown key -> @/pfx", GET("/unknown/x"),
     differs(F(21031, "GET /pfxunknown/x HTTP/1.1"), F(21031, "GET /pfx/unknown/x HTTP/1.1"), WHY_GLUE)),
]

NAMES_E = [
    "# names E: a single entry is the default",
    "only 21041 {user} {dir} ^ ./app.l",
]

ROWS_E = [
    ("the key", GET("/only/x"), same(F(21041, "GET /x HTTP/1.1"))),
    ("unknown key -> the only entry", GET("/other/x"), same(F(21041, "GET /other/x HTTP/1.1"))),
    ("root -> the only entry", GET("/"), same(F(21041, "GET / HTTP/1.1"))),
    ("empty segment -> the only entry", GET("//x?y"), same(F(21041, "GET /x?y HTTP/1.1"))),
    ("port", GET("/21002/x"), same(F(21002, "GET /x HTTP/1.1"))),
]

ROWS_D = [
    ("file -> default port", GET("/index.html"), same(F(21051, "GET /index.html HTTP/1.1"))),
    ("root -> default port", GET("/"), same(F(21051, "GET / HTTP/1.1"))),
    ("name -> default port", GET("/app/x"), same(F(21051, "GET /app/x HTTP/1.1"))),
    ("empty segment -> default port", GET("//x"), same(F(21051, "GET /x HTTP/1.1"))),
    ("POST -> default port", req("POST", "/?f", FORM), same(F(21051, "POST /?f HTTP/1.1"))),
    ("port", GET("/21002/x"), same(F(21002, "GET /x HTTP/1.1"))),
    ("privileged port, no names", GET("/123/x"), refused(403)),
    ("denied port", GET("/%d/x" % DENY), refused(403)),
]

# names F: names A inside 1200 more entries (over 64 KiB, so httpgate looks
# keys up through its index, index.c), with the same rows and one more.
FILLER_BEFORE = ["fill%04d 21002 {user} {dir} fill.log ./app.l -main -go -wait" % i for i in range(600)]
FILLER_AFTER = ["zfill%04d/zp 21002 {user} {dir} fill.log ./app.l -main -go -wait" % i for i in range(600)]
NAMES_F = FILLER_BEFORE + NAMES_A + FILLER_AFTER
ROWS_F = ROWS_A + [
    ("filler key", GET("/FILL0417/x"), same(F(21002, "GET /x HTTP/1.1"))),
    ("filler key/prefix", GET("/zfill0599"), same(F(21002, "GET /zp HTTP/1.1"))),
]

RECORDER_PORTS = [21001, 21002, 21011, 21012, 21013, 21014, 21015, 21016, 21017, 21018,
                  21021, 21022, 21023, 21031, 21032, 21033, 21041, 21051, DENY]


# ---------------------------------------------------------------- machinery

class LenientRecorder(Recorder):
    """gatetest's Recorder, but a head may also end in a bare "\n\n":
    httpGate passes bare-LF heads on as they came, and the row that sends
    one must see where httpGate took it."""

    END = re.compile(rb"\r?\n\r?\n")

    def _conn(self, c):
        buf = b""
        try:
            while True:
                m = self.END.search(buf)
                while not m:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                    m = self.END.search(buf)
                head, buf = buf[:m.start()], buf[m.end():]
                self.heads.append(head.decode("latin-1"))
                n = 0
                for line in re.split(rb"\r?\n", head)[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v.strip())
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                self.bodies.append(buf[:n])
                buf = buf[n:]
                body = b"port=%d\n" % self.port
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            return
        finally:
            c.close()


def pick_user():
    """A user httpGate accepts in a names file: exists, uid and gid not 0."""
    import pwd
    for name in ("httpgate-test", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if pw.pw_uid != 0 and pw.pw_gid != 0:
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "httpgate-test"], check=True)
    return "httpgate-test"


class Orig:
    """The original httpGate on [::]:port (inside this namespace). It forks a
    daemon and its parent exits; the daemon is found by PID among this
    namespace's processes (all of them ours) and stopped by that PID."""

    def __init__(self, port, args, cwd):
        self.port = port
        # The daemon keeps stdout and stderr: a file, not a pipe to wait on.
        with open(os.path.join(cwd, "httpGate-%d.log" % port), "wb") as log:
            r = subprocess.run([ORIG, str(port)] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=log, timeout=10)
        if r.returncode != 0:
            raise RuntimeError("httpGate exited %d" % r.returncode)
        if not wait_port("127.0.0.1", port):
            raise RuntimeError("httpGate did not listen on %d" % port)
        self.pid = None
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [ORIG.encode(), str(port).encode()]:
                self.pid = int(p)
                break

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
                os.waitpid(self.pid, 0)  # we are the namespace's init: it is our child now
            except (ProcessLookupError, ChildProcessError):
                pass


def exchange(port, data, timeout=3.0):
    """Sends data, half-closes, reads until close. A reset (the peer closed
    with unread input) counts as a close."""
    out = b""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        end = time.time() + timeout
        while time.time() < end:
            try:
                d = s.recv(65536)
            except (socket.timeout, OSError):
                break
            if not d:
                break
            out += d
    finally:
        s.close()
    return out


def observe(recs, port, data):
    snap = {p: len(r.heads) for p, r in recs.items()}
    resp = exchange(port, data)
    got = [(p, r.heads[snap[p]:], r.bodies[snap[p]:]) for p, r in recs.items() if len(r.heads) > snap[p]]
    if resp is None:
        return ("no connection",)
    if got:
        if len(got) > 1 or len(got[0][1]) != 1:
            return ("several", [(p, h[0].split("\r\n")[0]) for p, h, _ in got])
        p, heads, bodies = got[0]
        lines = re.split(r"\r?\n", heads[0])
        sent_body = LenientRecorder.END.split(data, 1)[1] if LenientRecorder.END.search(data) else b""
        sent_host = b"Host: %s" % HOST.encode() in data
        intact = (("Host: %s" % HOST) in lines[1:]) == sent_host and (bodies[0] == sent_body or not sent_body)
        o = ("fwd", p, lines[0])
        return o if intact else ("fwd, head or body changed", p, lines[0])
    if resp == b"":
        return DROP
    code = status_of(resp)
    extra = None
    head, _, body = resp.partition(b"\r\n\r\n")
    if code is not None and 300 <= code < 400:
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"location":
                extra = v.strip().decode("latin-1")
    elif VOID in body:
        extra = "void"
    return ("status", code, extra)


def run_config(name, recs, tmp, names_lines, orig_default, gate_default, rows, lport, table, user,
               gate_env=None):
    if names_lines is not None:
        path = os.path.join(tmp, "names-" + name.split(" ")[0])
        with open(path, "w") as f:
            f.write("\n".join(l.format(user=user, dir=tmp) for l in names_lines) + "\n")
        orig_default = gate_default = path
    orig_args = [orig_default, "", str(DENY)]
    gate_args = ["--void=" + os.path.join(tmp, "void"), gate_default, "", str(DENY)]
    orig = gate = None
    try:
        orig = Orig(lport, orig_args, tmp)
        gate = Gate(lport + 100, gate_args, env=gate_env)
    except Exception as e:  # noqa: BLE001 - say why and go on with the next set
        ok(False, "%s: start httpGate and httpgate" % name, e)
        if orig:
            orig.stop()
        return
    try:
        for label, data, spec in rows:
            if time.time() > DEADLINE:
                ok(False, "%s: %s: not run, the tier is over its time budget" % (name, label))
                continue
            t0 = time.time()
            o = observe(recs, lport, data)
            t1 = time.time()
            g = observe(recs, lport + 100, data)
            if VERBOSE:
                print("# timing %s: httpGate %.3f s, httpgate %.3f s" % (label, t1 - t0, time.time() - t1))
            kind, want_o, want_g = spec[0], spec[1], spec[2]
            why = spec[3] if kind == "differs" else ""
            ok(o == want_o, "%s: %s: httpGate -> %s" % (name, label, show(want_o)), "got " + show(o))
            if kind == "differs":
                what = "httpgate differs on purpose -> %s (%s)" % (show(want_g), why)
            elif kind == "refused":
                what = "both refuse (httpgate %s)" % show(want_g)
            else:
                what = "httpgate same as httpGate -> %s" % show(want_g)
            ok(g == want_g, "%s: %s: %s" % (name, label, what), "got " + show(g) + "; httpGate " + show(o))
            table.append((name, label, show(o), show(g), kind, o == want_o and g == want_g, why))
    finally:
        gate_log = gate.log()
        gate.stop()
        orig.stop()
        if VERBOSE:
            sys.stdout.write("".join("# " + l + "\n" for l in gate_log.splitlines()[-40:]))


def main():
    os.environ["LANG"] = os.environ.get("LANG") or "C.UTF-8"  # httpGate: strlen(getenv("LANG"))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for binary in (ORIG, GATE):
        if not os.access(binary, os.X_OK):
            ok(False, "tier-20 needs %s" % binary, "install picolisp / run make build/httpgate-san")
            done()
    start = time.time()
    user = pick_user()
    tmp = tempfile.mkdtemp(prefix="httpgate-diff-")
    with open(os.path.join(tmp, "void"), "wb") as f:
        f.write(VOID)
    recs = {p: LenientRecorder(p, "::1") for p in RECORDER_PORTS}
    table = []
    configs = [
        ("A (names, @)", NAMES_A, None, None, ROWS_A),
        ("B (names, no @)", NAMES_B, None, None, ROWS_B),
        ("C (names, @/prefix)", NAMES_C, None, None, ROWS_C),
        ("E (names, one entry)", NAMES_E, None, None, ROWS_E),
        ("D (default port 21051)", None, "21051", "21051", ROWS_D),
        ("F (big names, index)", NAMES_F, None, None, ROWS_F),
    ]
    cache = os.path.join(tmp, "cache")
    os.mkdir(cache)
    for i, (name, lines, od, gd, rows) in enumerate(configs):
        run_config(name, recs, tmp, lines, od, gd, rows, 21100 + i, table, user,
                   gate_env={"CACHE_DIRECTORY": cache})
    if not any(f.endswith(".idx") for f in os.listdir(cache)):
        ok(False, "F (big names, index): httpgate wrote a lookup index", os.listdir(cache))
    for r in recs.values():
        r.stop()
    print("# %-24s %-34s %-40s %-40s %s" % ("set", "request", "httpGate", "httpgate", "verdict"))
    for name, label, o, g, kind, good, why in table:
        print("# %-24s %-34s %-40s %-40s %s%s" % (name.split(" ")[0], label[:34], o[:40], g[:40],
                                                  "ok" if good else "FAIL",
                                                  "" if kind != "differs" else " (intended)"))
    print("# %d rows in %.1f s" % (len(table), time.time() - start))
    shutil.rmtree(tmp, ignore_errors=True)
    done()


main()
