#!/usr/bin/python3
"""tier-15: every request routed on its own, and where each response ends.

One client connection carries requests for several apps; the gate sends each
to its own app, keeps the app connections for their next requests, and
returns the answers in the client's order. Responses are framed (RFC 9112
6.3): Content-Length, chunked with trailers, HEAD, 1xx, 204 and 304,
close-delimited (a real python http.server speaking HTTP/1.0), and what the
gate cannot frame (garbage, a 1 MB head, a reset in the middle) is passed on
to its end, logged, and closes the connection. The gate's own answers (302,
502) come in their turn, keeping the connection. A later Upgrade still becomes a
tunnel. Ports 21500-21599.
"""
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from gatetest import Conn, Gate, HttpBackend, check, done, ok, xpil_lines  # noqa: E402

GATE = 21500
P_A, P_B, P_OLD, P_CHUNK, P_NOBODY, P_GARBAGE, P_RESET, P_BIGHEAD, P_UPG, P_EXTRA, P_UPG2 = range(21501, 21512)
BIG_HEAD = 1 << 20

NAMES = "".join("%s %d nobody /tmp ^ /bin/false\n" % kv for kv in (
    ("a", P_A), ("b", P_B), ("old", P_OLD), ("chunk", P_CHUNK), ("nobody", P_NOBODY), ("garbage", P_GARBAGE),
    ("reset", P_RESET), ("bighead", P_BIGHEAD), ("upg", P_UPG), ("extra", P_EXTRA), ("upg2", P_UPG2))) + "go 0 http://example.org/there\n"
P_NOTHING = 21599

OLD_APP = r'''
import http.server, socket, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"old-style body, ended by the close: " + self.path.encode() + b"\n" * 3)
    def log_message(self, *a):
        pass
class S(http.server.HTTPServer):
    address_family = socket.AF_INET6
S(("::1", int(sys.argv[1])), H).serve_forever()
'''


def scripted(port, answer):
    """An app on ::1 that answers each request with answer(target, method):
    (bytes, then) with then "keep", "close", "reset" (RST after the bytes) or
    "upgrade" (then it echoes upper-cased, as a tunnelled protocol would)."""
    def handler(req, c):
        data, then = answer(req["target"], req["method"])
        c.sendall(data)
        if then == "upgrade":
            while True:
                d = c.recv(65536)
                if not d:
                    return False
                c.sendall(d.upper())
        if then == "reset":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return then == "keep"
    return HttpBackend(port, handler=handler)


def chunk_answer(target, method):
    body = b"5\r\nhello\r\n7;ext=1\r\n, chunk\r\n0\r\nX-Checksum: abc123\r\nX-Other: y\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n" + body, "keep"


def nobody_answer(target, method):
    if method == "HEAD":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n", "keep"
    if target.endswith("/204"):
        return b"HTTP/1.1 204 No Content\r\nX-Empty: yes\r\n\r\n", "keep"
    if target.endswith("/304"):
        return b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n", "keep"
    if target.endswith("/100"):
        return (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"), "keep"
    return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "keep"


GARBAGE = b"this is not HTTP at all\r\nsome more bytes\r\n\r\nand a tail"
RESET_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
BIGHEAD = b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * BIG_HEAD + b"\r\nContent-Length: 4\r\n\r\nbody"
UPGRADE_ANSWER = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"


def req(path, extra=b""):
    return b"GET %s HTTP/1.1\r\nHost: h\r\n%s\r\n" % (path.encode(), extra)


def log_since(g, since, pattern, timeout=3):
    end = time.time() + timeout
    while time.time() < end:
        m = re.search(pattern, g.log()[since:])
        if m:
            return m
        time.sleep(0.05)
    return None


def pipelined_apps(g, a, b):
    na, nb, ca, cb = len(a.reqs), len(b.reqs), a.conns, b.conns
    c = Conn(g.port)
    c.send(req("/a/1") + req("/b/2") + req("/a/3") + req("/b/4"))
    rs = [c.response() for _ in range(4)]
    c.send(req("/a/5"))
    r5 = c.response()
    c.close()
    want = [b"port=%d target=/%d\n" % (p, i) for p, i in ((P_A, 1), (P_B, 2), (P_A, 3), (P_B, 4), (P_A, 5))]
    got = [r and r.body for r in rs + [r5]]
    ok(got == want, "pipelined requests for two apps: each answered by its own app, in the client's order", got)
    ok(a.conns - ca == 1 and b.conns - cb == 1, "one connection per app, kept for its next requests",
       (a.conns - ca, b.conns - cb))
    heads = a.reqs[na:] + b.reqs[nb:]
    ok(len(heads) == 5 and all(xpil_lines(h["head"]) == ["X-Pil: *Gate=http", "X-Pil: *Adr=127.0.0.1"]
                               for h in heads), "every request carries the gate's X-Pil lines",
       [xpil_lines(h["head"]) for h in heads])


def curl_one_connection(g):
    base = "http://127.0.0.1:%d" % g.port
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                          "-w", "%{http_code} %{num_connects}\\n", base + "/a/x", base + "/b/y", base + "/a/z"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    ok(out == ["200", "1", "200", "0", "200", "0"], "curl: three requests for two apps over one connection", out)


def gate_answer_in_turn(g):
    c = Conn(g.port)
    c.send(req("/a/before") + req("/go/x") + req("/%d/x" % P_NOTHING) + req("/b/after"))
    rs = [c.response() for _ in range(4)]
    c.send(req("/a/again"))
    rs.append(c.response())
    c.close()
    ok([r and r.status for r in rs] == [200, 302, 502, 200, 200] and rs[3].body == b"port=%d target=/after\n" % P_B,
       "the gate's 302 and 502 come in their turn between two apps' answers", [r and r.raw[:60] for r in rs])
    ok(all(r is not None and (r.header("Connection") or "") == "" for r in rs[1:3]),
       "... and keep the connection", [r and r.raw[:200] for r in rs[1:3]])


def close_delimited(g):
    since = len(g.log())
    c = Conn(g.port, timeout=10)
    c.send(req("/b/first") + req("/old/page"))
    r1, r2 = c.response(), c.response()
    closed = c.closed_within(3)
    c.close()
    ok(r1 is not None and r1.body == b"port=%d target=/first\n" % P_B, "before an HTTP/1.0 app: the first answer",
       r1 and r1.raw[:80])
    ok(r2 is not None and r2.status == 200 and r2.raw.startswith(b"HTTP/1.0 200") and
       r2.body == b"old-style body, ended by the close: /page" + b"\n" * 3,
       "python http.server's close-delimited HTTP/1.0 answer arrives whole", r2 and r2.raw[-80:])
    ok(closed is not None, "... and the connection closes after it", closed)
    ok(log_since(g, since, r"GET /old/page -> old:%d forwarded 200 \d+ bytes" % P_OLD),
       "log: the app's status and bytes", g.log()[since:][-300:])


def chunked_trailers(g):
    c = Conn(g.port)
    c.send(req("/chunk/t") + req("/a/next"))
    r1, r2 = c.response(), c.response()
    c.close()
    ok(r1 is not None and r1.body == b"hello, chunk" and r1.raw.endswith(b"0\r\nX-Checksum: abc123\r\nX-Other: y\r\n\r\n"),
       "a chunked answer with trailers passes whole, trailers included", r1 and r1.raw[-60:])
    ok(r2 is not None and r2.body == b"port=%d target=/next\n" % P_A, "... and the next answer follows it",
       r2 and r2.raw[:80])


def no_bodies(g):
    c = Conn(g.port)
    c.send(b"HEAD /nobody/h HTTP/1.1\r\nHost: h\r\n\r\n" + req("/nobody/204") + req("/nobody/304") +
           req("/nobody/100") + req("/a/end"))
    r1 = c.response(head_request=True)
    r2, r3 = c.response(), c.response()
    i1, i2, r4 = c.response(), c.response(), c.response()
    r5 = c.response()
    c.close()
    ok(r1 is not None and r1.status == 200 and r1.header("Content-Length") == "1000" and r1.body == b"",
       "HEAD: Content-Length 1000 and no body", r1 and r1.raw)
    ok(r2 is not None and r2.status == 204 and r3 is not None and r3.status == 304 and r3.body == b"",
       "204 and 304 (with a Content-Length): no body", (r2 and r2.raw, r3 and r3.raw))
    ok([x and x.status for x in (i1, i2, r4)] == [100, 103, 200] and r4.body == b"final",
       "100 and 103 pass before the final answer", [x and x.raw for x in (i1, i2, r4)])
    ok(r5 is not None and r5.body == b"port=%d target=/end\n" % P_A, "... and the answer after them is intact",
       r5 and r5.raw[:80])


def faulty(g):
    for key, sent, why in (("garbage", GARBAGE, "response is not HTTP/1.x"),
                           ("bighead", BIGHEAD, "response head too long")):
        since = len(g.log())
        c = Conn(g.port, timeout=10)
        c.send(req("/a/ok") + req("/%s/x" % key))
        r1 = c.response()
        rest = c.read_all(10)
        c.close()
        ok(r1 is not None and r1.body == b"port=%d target=/ok\n" % P_A, "%s app: the answer before it intact" % key,
           r1 and r1.raw[:80])
        ok(rest == sent, "%s app: its bytes passed on as they came, to its end (%d bytes), then close" % (
            key, len(sent)), (len(rest), rest[:60]))
        ok(log_since(g, since, re.escape(why)), "%s app: logged (%s)" % (key, why), g.log()[since:][-300:])
    since = len(g.log())
    c = Conn(g.port, timeout=10)
    c.send(req("/reset/x") + req("/a/never"))
    rest = c.read_all(10)
    c.close()
    ok(rest.startswith(RESET_HEAD) and len(rest) == len(RESET_HEAD) + 10 and b"never" not in rest,
       "app reset inside its answer: what it sent, then close; the request after it is not answered", rest[:80])
    ok(log_since(g, since, r"GET /reset/x .*closed inside its response"), "app reset: logged",
       g.log()[since:][-300:])
    c = Conn(g.port)
    c.send(req("/a/after"))
    r = c.response()
    c.close()
    ok(r is not None and r.status == 200, "after the faulty apps, the gate serves the next connection", r and r.raw)


EXTRA = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA-BYTES-NOBODY-ASKED-FOR"


def beyond_response(g):
    since = len(g.log())
    c = Conn(g.port)
    c.send(req("/extra/1"))
    r1 = c.response()
    time.sleep(0.3)
    c.send(req("/extra/2"))
    r2 = c.response()
    c.send(req("/a/3"))
    r3 = c.response()
    c.close()
    ok(r1 is not None and r1.body == b"ok" and r2 is not None and r2.body == b"ok" and r3 is not None and
       r3.status == 200 and b"EXTRA" not in c.buf,
       "an app sends bytes beyond its response: the client gets the response only, and the connection goes on",
       (r1 and r1.raw, r2 and r2.raw, c.buf))
    ok(log_since(g, since, r"sent (\d+ bytes beyond its response|bytes without a request)"), "bytes beyond a response: logged",
       g.log()[since:][-300:])


def later_upgrade(g):
    c = Conn(g.port)
    c.send(req("/a/page"))
    r1 = c.response()
    c.send(b"GET /upg/chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
    r2 = c.response()
    c.send(b"hello tunnel")
    end, got = time.time() + 3, c.buf
    c.sock.settimeout(0.5)
    while time.time() < end and len(got) < 12:
        try:
            d = c.sock.recv(100)
        except socket.timeout:
            continue
        if not d:
            break
        got += d
    c.close()
    ok(r1 is not None and r1.status == 200 and r2 is not None and r2.status == 101 and got == b"HELLO TUNNEL",
       "an Upgrade after another app's answer: 101, then a tunnel", (r1 and r1.status, r2 and r2.raw, got))
    # the app's first tunnel bytes in the same segment as its 101
    c = Conn(g.port)
    c.send(b"GET /upg2/chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
    c.sock.settimeout(3)
    got = b""
    while b"WELCOME" not in got:
        d = c.sock.recv(1000)
        if not d:
            break
        got += d
    c.close()
    ok(got == UPGRADE_ANSWER + b"WELCOME", "a 101 with the tunnel's first bytes behind it: both reach the client",
       got)


def response_log(g):
    since = len(g.log())
    c = Conn(g.port)
    c.send(req("/a/logged"))
    r = c.response()
    c.close()
    m = log_since(g, since, r"GET /a/logged -> a:%d forwarded (\d+) (\d+) bytes (\d+) us" % P_A)
    ok(m is not None and r is not None and int(m.group(1)) == 200 and int(m.group(2)) == len(r.raw),
       "log: the app's status and the response's bytes", (m and m.group(0), r and len(r.raw)))


def main():
    top = tempfile.mkdtemp(prefix="httpgate-t15.")
    names = os.path.join(top, "names")
    with open(names, "w") as f:
        f.write(NAMES)
    a, b = HttpBackend(P_A), HttpBackend(P_B)
    scripted(P_CHUNK, chunk_answer)
    scripted(P_NOBODY, nobody_answer)
    scripted(P_GARBAGE, lambda t, m: (GARBAGE, "close"))
    scripted(P_RESET, lambda t, m: (RESET_HEAD + b"0123456789", "reset"))
    scripted(P_BIGHEAD, lambda t, m: (BIGHEAD, "close"))
    scripted(P_UPG, lambda t, m: (UPGRADE_ANSWER, "upgrade"))
    scripted(P_UPG2, lambda t, m: (UPGRADE_ANSWER + b"WELCOME", "upgrade"))
    scripted(P_EXTRA, lambda t, m: (EXTRA, "keep"))
    old = subprocess.Popen([sys.executable, "-c", OLD_APP, str(P_OLD)])
    try:
        with Gate(GATE, [names]) as g:
            check("pipelined apps", pipelined_apps, g, a, b)
            check("curl one connection", curl_one_connection, g)
            check("gate answer in turn", gate_answer_in_turn, g)
            check("close-delimited", close_delimited, g)
            check("chunked trailers", chunked_trailers, g)
            check("no bodies", no_bodies, g)
            check("faulty apps", faulty, g)
            check("beyond a response", beyond_response, g)
            check("later upgrade", later_upgrade, g)
            check("response log", response_log, g)
    finally:
        old.kill()
        old.wait()
    done()


if __name__ == "__main__":
    main()
