#!/usr/bin/python3
"""tier-10: routing through the gate and the head the app gets.

Real clients (curl, raw sockets) through httpgate under
systemd-socket-activate --accept to recording backends: numeric ports, names
entries, the default "@", prefixes, the forwarded request line and Host, the
X-Pil headers on every request of a connection, --forwarded, and every
standard method. Ports 20000-20099.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from gatetest import (Conn, Gate, HttpBackend, check, curl, done, ok,  # noqa: E402
                      status_of, xpil_lines)

P_NUM, P_APP, P_DEF, P_PRE, P_LOW = 20001, 20002, 20003, 20004, 20005
GATE_NAMES, GATE_FWD, GATE_PORT = 20010, 20011, 20012
GATE_URL = "http://127.0.0.1:%d" % GATE_NAMES
GATE_XPIL = ["X-Pil: *Gate=http", "X-Pil: *Adr=127.0.0.1"]

NAMES = """# routing table for tier-10
app      %d nobody /tmp ^ /bin/false
pre/base %d nobody /tmp ^ /bin/false
81       %d nobody /tmp ^ /bin/false
@        %d nobody /tmp ^ /bin/false
""" % (P_APP, P_PRE, P_LOW, P_DEF)


def field(head, name):
    vals = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")[1:]
            if ln.split(":", 1)[0].strip().lower() == name.lower()]
    return vals


def ask(port, data):
    """One request on its own connection; the raw bytes of the one response
    (the client does not half-close: tier-11 tests that)."""
    c = Conn(port)
    try:
        c.send(data)
        r = c.response()
        return r.raw if r else b""
    finally:
        c.close()


def reqline(head):
    return head.split("\r\n", 1)[0]


def routing(b):
    cases = [
        ("/%d/x?q=1" % P_NUM, P_NUM, "/x?q=1", "numeric port"),
        ("/%d" % P_NUM, P_NUM, "/", "numeric port without rest"),
        ("/app/y/z", P_APP, "/y/z", "names-file app"),
        ("/APP/y", P_APP, "/y", "names-file key, other case"),
        ("/app?x=1", P_APP, "/?x=1", "names-file app with query only"),
        ("/pre/z", P_PRE, "/base/z", "prefix entry"),
        ("/81/w", P_LOW, "/w", "numeric key below 1024 as a name"),
        ("/other/z", P_DEF, "/other/z", "default @ (no key)"),
        ("/", P_DEF, "/", "default @ for /"),
    ]
    for target, port, fwd, what in cases:
        n = len(b[port].reqs)
        st, body, err = curl(GATE_URL + target)
        got = b[port].reqs[n:]
        ok(st == 200 and body == b"port=%d target=%s\n" % (port, fwd.encode()),
           "route %s: %s reaches port %d" % (what, target, port), (st, body, err))
        ok(len(got) == 1 and reqline(got[0]["head"]) == "GET %s HTTP/1.1" % fwd,
           "route %s: app gets request line GET %s HTTP/1.1" % (what, fwd),
           [reqline(r["head"]) for r in got])
        ok(len(got) == 1 and field(got[0]["head"], "Host") == ["127.0.0.1:%d" % GATE_NAMES],
           "route %s: Host forwarded unchanged" % what, got and field(got[0]["head"], "Host"))
    # absolute-form target (RFC 9112 3.2.2): routed by its path
    n = len(b[P_APP].reqs)
    r = ask(GATE_NAMES, b"GET http://example.org/app/abs HTTP/1.1\r\nHost: example.org\r\n\r\n")
    got = b[P_APP].reqs[n:]
    ok(status_of(r) == 200 and len(got) == 1 and reqline(got[0]["head"]) == "GET /abs HTTP/1.1",
       "route absolute-form target by its path", (r[:80], [reqline(g["head"]) for g in got]))


def xpil_first(b):
    n = len(b[P_APP].reqs)
    st, body, err = curl(GATE_URL + "/app/x", "-H", "X-Pil: *Gate=https", "-H", "x-pil: *Adr=6.6.6.6",
                         "-H", "X-PIL: *Cipher=evil", "-H", "X-pIl:evil2")
    got = b[P_APP].reqs[n:]
    ok(st == 200 and len(got) == 1, "X-Pil spoofing request via curl answered 200", (st, err))
    if got:
        h = got[0]["head"]
        ok(xpil_lines(h) == GATE_XPIL, "X-Pil: first request, app sees exactly the gate's two", xpil_lines(h))
        ok("6.6.6.6" not in h and "evil" not in h and "https" not in h,
           "X-Pil: first request, no client value survives in any spelling", h)


def xpil_pipelined(b):
    spellings = [b"X-Pil: *Gate=https", b"x-pil: *Adr=6.6.6.6", b"X-PIL: evil", b"x-Pil:\tevil", b"X-PIL:evil"]
    reqs = b""
    for i, t in enumerate([b"/app/a", b"/app/b", b"/app/c"]):
        reqs += b"GET " + t + b" HTTP/1.1\r\nHost: h\r\n" + b"\r\n".join(spellings[i:] + spellings[:i]) + \
            b"\r\nX-Seq: %d\r\n\r\n" % i
    n = len(b[P_APP].reqs)
    c = Conn(GATE_NAMES)
    c.send(reqs)
    rs = [c.response() for _ in range(3)]
    c.close()
    got = b[P_APP].reqs[n:]
    ok([r and r.status for r in rs] == [200, 200, 200], "X-Pil pipelined: three responses 200",
       [r and r.status for r in rs])
    ok([r and r.body for r in rs] == [b"port=%d target=/%s\n" % (P_APP, x) for x in (b"a", b"b", b"c")],
       "X-Pil pipelined: responses in order, targets /a /b /c", [r and r.body for r in rs])
    ok([reqline(g["head"]) for g in got] == ["GET /a HTTP/1.1", "GET /b HTTP/1.1", "GET /c HTTP/1.1"],
       "pipelined: each later target rewritten the same way (/app/x -> /x)", [reqline(g["head"]) for g in got])
    for i, g in enumerate(got):
        ok(xpil_lines(g["head"]) == GATE_XPIL, "X-Pil pipelined request %d: exactly the gate's two" % (i + 1),
           xpil_lines(g["head"]))
        ok("evil" not in g["head"] and "6.6.6.6" not in g["head"],
           "X-Pil pipelined request %d: no client X-Pil value" % (i + 1), g["head"])


def xpil_keepalive(b):
    """Sequential requests on one kept-alive connection (not pipelined)."""
    n = len(b[P_PRE].reqs)
    c = Conn(GATE_NAMES)
    bodies = []
    for i, t in enumerate([b"/pre/one", b"/pre/two", b"/pre/three"]):
        c.send(b"GET " + t + b" HTTP/1.1\r\nHost: h\r\nX-PIL: *Adr=9.9.9.%d\r\nx-pil: *Gate=https\r\n\r\n" % i)
        r = c.response()
        bodies.append(r and r.body)
    c.close()
    got = b[P_PRE].reqs[n:]
    ok(bodies == [b"port=%d target=/base/%s\n" % (P_PRE, x) for x in (b"one", b"two", b"three")],
       "keep-alive: three sequential requests on one connection answered", bodies)
    ok([reqline(g["head"]) for g in got] == ["GET /base/one HTTP/1.1", "GET /base/two HTTP/1.1",
                                             "GET /base/three HTTP/1.1"],
       "keep-alive: prefix rewritten on every request (/pre/x -> /base/x)", [reqline(g["head"]) for g in got])
    ok(len(got) == 3 and all(xpil_lines(g["head"]) == GATE_XPIL for g in got),
       "keep-alive: X-Pil on every request is exactly the gate's two", [xpil_lines(g["head"]) for g in got])
    ok(b[P_PRE].conns >= 1 and len(got) == 3, "keep-alive: the app got all three requests", len(got))


def switch_apps(b):
    """A later request for another app: the gate finishes with the first and
    connects to the second, with the same cleaning."""
    n1, n2 = len(b[P_APP].reqs), len(b[P_NUM].reqs)
    c = Conn(GATE_NAMES)
    c.send(b"GET /app/first HTTP/1.1\r\nHost: h\r\n\r\n"
           b"GET /%d/second HTTP/1.1\r\nHost: h\r\nX-Pil: *Gate=evil\r\n\r\n" % P_NUM)
    r1, r2 = c.response(), c.response()
    c.close()
    ok(r1 is not None and r1.body == b"port=%d target=/first\n" % P_APP,
       "switch apps: first request answered by the first app", r1 and r1.raw)
    ok(r2 is not None and r2.body == b"port=%d target=/second\n" % P_NUM,
       "switch apps: later request for another port answered by it", r2 and r2.raw)
    got = b[P_NUM].reqs[n2:]
    ok(len(got) == 1 and xpil_lines(got[0]["head"]) == GATE_XPIL,
       "switch apps: the second app sees only the gate's X-Pil", got and got[0]["head"])
    ok(len(b[P_APP].reqs) - n1 == 1, "switch apps: the first app got only its request", len(b[P_APP].reqs) - n1)


def unclaimed_later(b):
    """A later head that names no key stays with the connected app, target
    unchanged (httpgate(8), "One connection"); so does OPTIONS *."""
    n, d = len(b[P_APP].reqs), len(b[P_DEF].reqs)
    c = Conn(GATE_NAMES)
    c.send(b"GET /app/a HTTP/1.1\r\nHost: h\r\n\r\nGET /zzz/b?c HTTP/1.1\r\nHost: h\r\nX-Pil: x\r\n\r\n"
           b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    rs = [c.response() for _ in range(3)]
    c.close()
    got = b[P_APP].reqs[n:]
    ok([r and r.status for r in rs] == [200, 200, 200], "unclaimed later path: three responses",
       [r and r.status for r in rs])
    ok([reqline(g["head"]) for g in got] == ["GET /a HTTP/1.1", "GET /zzz/b?c HTTP/1.1", "OPTIONS * HTTP/1.1"],
       "unclaimed later path and OPTIONS * stay with the connected app, unchanged",
       [reqline(g["head"]) for g in got])
    ok(len(got) == 3 and xpil_lines(got[1]["head"]) == GATE_XPIL, "unclaimed later path: X-Pil cleaned",
       got and got[-1]["head"])
    ok(len(b[P_DEF].reqs) == d, "unclaimed later path: the default app got nothing", len(b[P_DEF].reqs) - d)


def forwarded(b):
    spoof = ["-H", "Forwarded: for=6.6.6.6;proto=https", "-H", "X-Forwarded-For: 6.6.6.6",
             "-H", "x-forwarded-proto: https", "-H", "X-Forwarded-Host: evil.example"]
    n = len(b[P_NUM].reqs)
    st, body, err = curl("http://127.0.0.1:%d/%d/f" % (GATE_FWD, P_NUM), *spoof)
    got = b[P_NUM].reqs[n:]
    ok(st == 200 and len(got) == 1, "--forwarded: request answered", (st, err))
    if got:
        h = got[0]["head"]
        ok(field(h, "Forwarded") == ["for=127.0.0.1;proto=http"], "--forwarded: one Forwarded: for=127.0.0.1;proto=http",
           field(h, "Forwarded"))
        ok(field(h, "X-Forwarded-For") == ["127.0.0.1"], "--forwarded: one X-Forwarded-For: 127.0.0.1",
           field(h, "X-Forwarded-For"))
        ok(field(h, "X-Forwarded-Proto") == ["http"], "--forwarded: one X-Forwarded-Proto: http",
           field(h, "X-Forwarded-Proto"))
        ok("6.6.6.6" not in h and "evil" not in h and "https" not in h,
           "--forwarded: client-sent Forwarded/X-Forwarded-* dropped", h)
        ok(xpil_lines(h) == GATE_XPIL, "--forwarded: X-Pil still the gate's two", xpil_lines(h))
    # a later request on the same connection gets the same treatment
    n = len(b[P_NUM].reqs)
    c = Conn(GATE_FWD)
    c.send(b"GET /%d/a HTTP/1.1\r\nHost: h\r\n\r\n"
           b"GET /%d/b HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nFORWARDED: for=6.6.6.6\r\n\r\n" % (P_NUM, P_NUM))
    r1, r2 = c.response(), c.response()
    c.close()
    got = b[P_NUM].reqs[n:]
    ok(r1 and r2 and r1.status == 200 and r2.status == 200 and len(got) == 2,
       "--forwarded: two pipelined requests answered", (r1 and r1.status, r2 and r2.status, len(got)))
    if len(got) == 2:
        h = got[1]["head"]
        ok(field(h, "X-Forwarded-For") == ["127.0.0.1"] and field(h, "Forwarded") == ["for=127.0.0.1;proto=http"]
           and "6.6.6.6" not in h, "--forwarded: later request cleaned and stamped too", h)
    # without --forwarded nothing is added and the client's fields pass
    n = len(b[P_NUM].reqs)
    st, body, err = curl("http://127.0.0.1:%d/%d/nf" % (GATE_NAMES, P_NUM), "-H", "X-Forwarded-For: 1.2.3.4")
    got = b[P_NUM].reqs[n:]
    ok(st == 200 and len(got) == 1 and field(got[0]["head"], "X-Forwarded-For") == ["1.2.3.4"]
       and field(got[0]["head"], "Forwarded") == [],
       "without --forwarded: no Forwarded added, client X-Forwarded-For untouched", got and got[0]["head"])


def methods(b):
    url = "http://127.0.0.1:%d/m" % GATE_PORT
    for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]:
        n = len(b[P_NUM].reqs)
        args = ["-X", m]
        if m == "HEAD":
            args = ["-I"]
        if m in ("POST", "PUT", "PATCH"):
            args += ["--data-binary", "body-of-" + m]
        st, body, err = curl(url, *args)
        got = b[P_NUM].reqs[n:]
        ok(st == 200 and len(got) == 1 and reqline(got[0]["head"]) == "%s /m HTTP/1.1" % m,
           "method %s forwarded: app gets '%s /m HTTP/1.1', client 200" % (m, m),
           (st, err, [reqline(g["head"]) for g in got]))
        if m in ("POST", "PUT", "PATCH") and got:
            ok(got[0]["body"] == b"body-of-" + m.encode(), "method %s: body reaches the app" % m, got[0]["body"])
    n = len(b[P_NUM].reqs)
    r = ask(GATE_PORT, b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    got = b[P_NUM].reqs[n:]
    ok(status_of(r) == 200 and len(got) == 1 and reqline(got[0]["head"]) == "OPTIONS * HTTP/1.1",
       "OPTIONS * forwarded as 'OPTIONS * HTTP/1.1'", (r[:60], [reqline(g["head"]) for g in got]))
    # HEAD then GET on one connection: the HEAD response has no body, the GET's follows intact
    c = Conn(GATE_PORT)
    c.send(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /g HTTP/1.1\r\nHost: h\r\n\r\n")
    r1 = c.response(head_request=True)
    r2 = c.response()
    c.close()
    ok(r1 and r1.status == 200 and r2 and r2.body == b"port=%d target=/g\n" % P_NUM,
       "HEAD then GET pipelined: both answered, GET body intact", (r1 and r1.raw, r2 and r2.raw))


def main():
    tmp = tempfile.mkdtemp(prefix="httpgate-t10-")
    names = os.path.join(tmp, "names")
    with open(names, "w") as f:
        f.write(NAMES)
    b = {p: HttpBackend(p) for p in (P_NUM, P_APP, P_DEF, P_PRE, P_LOW)}
    gates = []
    try:
        gates.append(Gate(GATE_NAMES, [names]))
        gates.append(Gate(GATE_FWD, ["--forwarded", "--default-port", str(P_NUM)]))
        gates.append(Gate(GATE_PORT, [str(P_NUM)]))
        check("routing", routing, b)
        check("X-Pil first", xpil_first, b)
        check("X-Pil pipelined", xpil_pipelined, b)
        check("X-Pil keep-alive", xpil_keepalive, b)
        check("switch apps", switch_apps, b)
        check("unclaimed later path", unclaimed_later, b)
        check("forwarded", forwarded, b)
        check("methods", methods, b)
        log = gates[0].log()
        ok("forwarded" in log and "AddressSanitizer" not in log and "runtime error" not in log,
           "gate log: requests logged, no sanitizer report", log[-500:])
    finally:
        for g in gates:
            g.stop()
        for x in b.values():
            x.stop()
    done()


if __name__ == "__main__":
    main()
