#!/usr/bin/python3
"""tier-11: the relay moving bytes.

Content-Length and chunked bodies reach the app exactly (chunked with its
framing, trailers dropped), pipelined requests with bodies, a 64 MB upload and
a 100 MB download compared by SHA-256, half-closes both ways, the idle timeout
(traffic either way resets it), and no CPU use while a connection idles.
Ports 20100-20199.
"""
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from gatetest import (Conn, Gate, HttpBackend, check, cpu_ticks, curl, done,  # noqa: E402
                      gate_children, ok, xpil_lines)

REC, BIG = 20101, 20102
G_MAIN, G_IDLE = 20110, 20111
GATE_XPIL = ["X-Pil: *Gate=http", "X-Pil: *Adr=127.0.0.1"]
MB = 1 << 20


class BigBackend:
    """A streaming backend for large transfers and timing games, on ::1.
      PUT|POST /up      hashes the body (Content-Length or chunked),
                        answers "<sha256> <bytes>"; honours Expect: 100-continue
      GET /down/N       N bytes of pseudo-random data; the digest of what it
                        sent is in sent[N]
      GET /slow/N       the same after 0.5 s
      GET /trickle      Content-Length 5, one byte a second
      GET /hang         never answers, and holds on after the gate's half-close
      GET /close        answers with Connection: close and closes"""

    def __init__(self, port):
        self.port, self.sent, self.log = port, {}, []
        self.block = bytearray(os.urandom(MB))
        self.sock = socket.socket(socket.AF_INET6)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("::1", port))
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def data(self, n):
        i = 0
        while n > 0:
            self.block[0:8] = i.to_bytes(8, "big")
            k = min(n, MB)
            yield bytes(self.block[:k])
            n -= k
            i += 1

    def _conn(self, c):
        buf = b""

        def recv():
            d = c.recv(1 << 20)
            if not d:
                raise EOFError
            return d

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    buf += recv()
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                self.log.append(lines[0])
                if method in ("PUT", "POST"):
                    if fields.get("expect", "").lower() == "100-continue":
                        c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    h, n = hashlib.sha256(), 0
                    if fields.get("transfer-encoding", "").lower() == "chunked":
                        while True:
                            while b"\r\n" not in buf:
                                buf += recv()
                            size_line, buf = buf.split(b"\r\n", 1)
                            size = int(size_line.split(b";")[0], 16)
                            if size == 0:
                                while b"\r\n\r\n" not in b"\r\n" + buf:
                                    buf += recv()
                                buf = (b"\r\n" + buf).split(b"\r\n\r\n", 1)[1]
                                break
                            while size > 0:
                                if not buf:
                                    buf = recv()
                                d, buf = buf[:size], buf[size:]
                                h.update(d)
                                n += len(d)
                                size -= len(d)
                            while len(buf) < 2:
                                buf += recv()
                            assert buf[:2] == b"\r\n"
                            buf = buf[2:]
                    else:
                        left = int(fields.get("content-length", "0"))
                        while left > 0:
                            if not buf:
                                buf = recv()
                            d, buf = buf[:left], buf[left:]
                            h.update(d)
                            n += len(d)
                            left -= len(d)
                    out = b"%s %d" % (h.hexdigest().encode(), n)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
                elif target.startswith("/down/") or target.startswith("/slow/"):
                    if target.startswith("/slow/"):
                        time.sleep(0.5)
                    n = int(target.split("/")[2])
                    h = hashlib.sha256()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                    for d in self.data(n):
                        h.update(d)
                        c.sendall(d)
                    self.sent[n] = h.hexdigest()
                elif target == "/trickle":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                    for b in b"abcde":
                        time.sleep(1)
                        c.sendall(bytes([b]))
                elif target == "/hang":
                    try:
                        while True:
                            recv()
                    except EOFError:
                        time.sleep(20)
                elif target == "/close":
                    c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye")
                    return
                else:
                    c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except (EOFError, OSError, ValueError, AssertionError):
            return
        finally:
            c.close()

    def stop(self):
        self.sock.close()


def cl_bodies(g, rec):
    body = os.urandom(100000) + b"\r\n\r\nGET /evil HTTP/1.1\r\nX-Pil: *Gate=https\r\n\r\n" + os.urandom(1000)
    n = len(rec.reqs)
    c = Conn(g.port)
    c.send(b"POST /%d/cl HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (REC, len(body)) + body)
    r = c.response()
    c.close()
    got = rec.reqs[n:]
    ok(r is not None and r.status == 200, "Content-Length body: answered 200", r and r.raw[:80])
    ok(len(got) == 1 and got[0]["body"] == body, "Content-Length body (binary, with a request inside) reaches the "
       "app exactly, as one request", [(x["head"][:40], len(x["body"])) for x in got])

    # the same body dribbled in pieces with pauses
    n = len(rec.reqs)
    c = Conn(g.port)
    c.send(b"PUT /%d/cl2 HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (REC, len(body)) + body[:10])
    for i in range(10, len(body), 25000):
        time.sleep(0.05)
        c.send(body[i:i + 25000])
    r = c.response()
    c.close()
    got = rec.reqs[n:]
    ok(r is not None and r.status == 200 and len(got) == 1 and got[0]["body"] == body,
       "Content-Length body sent in pieces reaches the app exactly", [len(x["body"]) for x in got])

    # curl with a form body
    n = len(rec.reqs)
    st, _, err = curl("http://127.0.0.1:%d/%d/form" % (g.port, REC), "--data-binary", "a=1&b=%0D%0A&c=3")
    got = rec.reqs[n:]
    ok(st == 200 and len(got) == 1 and got[0]["body"] == b"a=1&b=%0D%0A&c=3", "curl POST body reaches the app",
       (st, err, got and got[0]["body"]))


def chunked_bodies(g, rec, big, tmp):
    plain = b"5\r\nhello\r\n6\r\n world\r\n1a\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"
    n = len(rec.reqs)
    c = Conn(g.port)
    c.send(b"POST /%d/ch HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" % REC + plain)
    r = c.response()
    c.close()
    got = rec.reqs[n:]
    ok(r is not None and r.status == 200, "chunked body: answered 200", r and r.raw[:80])
    ok(len(got) == 1 and got[0]["body"] == plain, "chunked body forwarded with its framing, byte for byte",
       got and got[0]["body"])
    ok(len(got) == 1 and [ln for ln in got[0]["head"].split("\r\n") if ln.lower().startswith("transfer-encoding")]
       == ["Transfer-Encoding: chunked"], "chunked body: Transfer-Encoding: chunked forwarded", got and got[0]["head"])

    ext = b"5;name=val\r\nhello\r\n0\r\nX-Trailer: t\r\nX-Pil: *Gate=https\r\n\r\n"
    n = len(rec.reqs)
    c = Conn(g.port)
    c.send(b"POST /%d/tr HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\r\n" % REC + ext)
    r = c.response()
    c.close()
    got = rec.reqs[n:]
    ok(len(got) == 1 and got[0]["body"] == b"5;name=val\r\nhello\r\n0\r\n\r\n",
       "chunked body: extension kept, trailer fields (X-Pil among them) dropped", got and got[0]["body"])

    # one byte at a time: every state of the framer sees a split
    n = len(rec.reqs)
    c = Conn(g.port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.send(b"POST /%d/bytes HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" % REC)
    data = b"3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n"
    for i in range(len(data)):
        c.send(data[i:i + 1])
        time.sleep(0.005)
    r = c.response()
    c.close()
    got = rec.reqs[n:]
    ok(r is not None and r.status == 200 and len(got) == 1 and got[0]["body"] == b"3;e=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
       "chunked body sent one byte at a time arrives exactly", got and got[0]["body"])

    # curl's own chunked upload, 16 MB from stdin
    path = os.path.join(tmp, "chunked-16m")
    with open(path, "wb") as f:
        f.write(os.urandom(16 * MB))
    want = hashlib.sha256(open(path, "rb").read()).hexdigest()
    with open(path, "rb") as f:
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "-T", "-", "-X", "POST",
                            "-H", "Transfer-Encoding: chunked",
                            "http://127.0.0.1:%d/%d/up" % (g.port, BIG)], stdin=f, capture_output=True, timeout=40)
    ok(p.stdout == b"%s %d" % (want.encode(), 16 * MB), "curl chunked upload of 16 MB arrives byte-identical (sha256)",
       (p.stdout[:100], p.stderr[:200]))

    # one 8 MB chunk: the data is spliced, the framing checked around it
    payload = os.urandom(8 * MB)
    c = Conn(g.port, timeout=10)
    r = None
    try:
        c.send(b"POST /%d/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (BIG, len(payload))
               + payload + b"\r\n0\r\n\r\n")
        r = c.response()
    except OSError:
        pass  # the gate stopped reading: reported below
    c.close()
    ok(r is not None and r.body == b"%s %d" % (hashlib.sha256(payload).hexdigest().encode(), len(payload)),
       "one 8 MB chunk arrives byte-identical (sha256)", r and r.raw[:120])


def pipelined_bodies(g, rec):
    smuggle = b"GET /evil HTTP/1.1\r\nHost: h\r\nX-Pil: *Gate=https\r\n\r\n"
    reqs = [
        (b"POST /%d/p1 HTTP/1.1\r\nHost: h\r\nX-Pil: *Adr=6.6.6.6\r\nContent-Length: 5\r\n\r\n" % REC, b"aaaaa"),
        (b"POST /%d/p2 HTTP/1.1\r\nHost: h\r\nx-pil: evil\r\nTransfer-Encoding: chunked\r\n\r\n" % REC,
         b"3\r\nbbb\r\n0\r\n\r\n"),
        (b"GET /%d/p3 HTTP/1.1\r\nHost: h\r\nX-PIL: evil\r\n\r\n" % REC, b""),
        (b"PUT /%d/p4 HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (REC, len(smuggle)), smuggle),
        (b"POST /%d/p5 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" % REC,
         b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggle), smuggle)),
        (b"GET /%d/p6 HTTP/1.1\r\nHost: h\r\n\r\n" % REC, b""),
    ]
    n = len(rec.reqs)
    c = Conn(g.port)
    c.send(b"".join(h + b for h, b in reqs))
    rs = [c.response() for _ in reqs]
    c.close()
    got = rec.reqs[n:]
    ok([r and r.body for r in rs] == [b"port=%d target=/p%d\n" % (REC, i) for i in range(1, 7)],
       "pipelined with bodies: six responses, in order", [r and r.body for r in rs])
    ok([x["target"] for x in got] == ["/p%d" % i for i in range(1, 7)],
       "pipelined with bodies: the app got exactly the six requests (nothing smuggled)", [x["target"] for x in got])
    ok([x["body"] for x in got] == [b for _, b in reqs], "pipelined with bodies: every body exact",
       [x["body"][:20] for x in got])
    ok(len(got) == 6 and all(xpil_lines(x["head"]) == GATE_XPIL for x in got),
       "pipelined with bodies: X-Pil cleaned on every request", [xpil_lines(x["head"]) for x in got])


def large(g, big, tmp):
    path = os.path.join(tmp, "upload-64m")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for d in big.data(64 * MB):
            f.write(d)
            h.update(d)
    t0 = time.time()
    p = subprocess.run(["curl", "-sS", "--max-time", "30", "-T", path, "http://127.0.0.1:%d/%d/up" % (g.port, BIG)],
                       capture_output=True, timeout=60)
    ok(p.stdout == b"%s %d" % (h.hexdigest().encode(), 64 * MB),
       "64 MB upload with Content-Length (curl -T) arrives byte-identical (sha256)",
       (p.stdout[:100], p.stderr[:200], "%.1fs" % (time.time() - t0)))
    os.unlink(path)

    n = 100 * MB
    t0 = time.time()
    proc = subprocess.Popen(["curl", "-sS", "--max-time", "40", "http://127.0.0.1:%d/%d/down/%d" % (g.port, BIG, n)],
                            stdout=subprocess.PIPE)
    h, got = hashlib.sha256(), 0
    while True:
        d = proc.stdout.read(MB)
        if not d:
            break
        h.update(d)
        got += len(d)
    rc = proc.wait(timeout=30)
    ok(rc == 0 and got == n and h.hexdigest() == big.sent.get(n),
       "100 MB download arrives byte-identical (sha256)", (rc, got, "%.1fs" % (time.time() - t0)))

    # the same with a raw client that reads slowly at first: back-pressure, no loss
    c = Conn(g.port, timeout=30)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.send(b"GET /%d/down/%d HTTP/1.1\r\nHost: h\r\n\r\n" % (BIG, 20 * MB))
    time.sleep(1.5)
    r = c.response()
    c.close()
    ok(r is not None and len(r.body) == 20 * MB and hashlib.sha256(r.body).hexdigest() == big.sent.get(20 * MB),
       "20 MB download to a client that waits before reading: byte-identical", r and len(r.body))


def error_after_large(g, big):
    """A refused head pipelined behind a large response: the response comes
    whole first, then the gate's answer in its turn; the connection stays
    (the refused request had no body), and the request after it is served."""
    n = 10 * MB
    c = Conn(g.port, timeout=10)
    c.send(b"GET /%d/down/%d HTTP/1.1\r\nHost: h\r\n\r\nBREW /pot HTTP/1.1\r\nHost: h\r\n\r\n"
           b"GET /%d/down/5 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % (BIG, n, BIG))
    r1 = c.response()
    r2 = c.response()
    r3 = c.response()
    closed = c.closed_within(3)
    c.close()
    ok(r1 is not None and len(r1.body) == n and hashlib.sha256(r1.body).hexdigest() == big.sent.get(n),
       "10 MB response followed by a refused head: the response arrives whole", r1 and len(r1.body))
    ok(r2 is not None and r2.status == 501 and b"connection: close" not in r2.raw.lower(),
       "10 MB response followed by a refused head: then 501, keeping the connection", r2 and r2.raw[:160])
    ok(r3 is not None and r3.status == 200 and len(r3.body) == 5 and closed is not None,
       "... then the request after it is answered, then close (it asked)", (r3 and r3.raw[:80], closed))


def half_close(g, rec, big):
    # the client half-closes right after its request
    c = Conn(g.port, timeout=6)
    c.send(b"GET /%d/hc HTTP/1.1\r\nHost: h\r\n\r\n" % REC)
    c.shut()
    r = c.response()
    closed = c.closed_within(4)
    c.close()
    ok(r is not None and r.status == 200 and r.body == b"port=%d target=/hc\n" % REC,
       "client half-close after its request: full response", r and r.raw)
    ok(closed is not None, "client half-close after its request: the app sees the close, the connection ends "
       "(keep-alive app)", "no EOF within 4 s")

    # half-close after the head went out and the app was already writing
    c = Conn(g.port, timeout=6)
    c.send(b"GET /%d/hc2 HTTP/1.1\r\nHost: h\r\n\r\n" % REC)
    time.sleep(0.3)
    c.shut()
    r = c.response()
    closed = c.closed_within(4)
    c.close()
    ok(r is not None and r.status == 200 and closed is not None,
       "client half-close 0.3 s after its request: response, then the connection ends", (r and r.raw, closed))

    # a POST whose body ends the client's sending
    n = len(rec.reqs)
    c = Conn(g.port, timeout=6)
    c.send(b"POST /%d/hcb HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody" % REC)
    c.shut()
    r = c.response()
    closed = c.closed_within(4)
    c.close()
    got = rec.reqs[n:]
    ok(r is not None and r.status == 200 and len(got) == 1 and got[0]["body"] == b"body" and closed is not None,
       "client half-close with a body: body delivered, response, end", (r and r.status, got and got[0]["body"], closed))

    # the app answers slowly and at length after the client's half-close
    c = Conn(g.port, timeout=30)
    c.send(b"GET /%d/slow/%d HTTP/1.1\r\nHost: h\r\n\r\n" % (BIG, 10 * MB))
    c.shut()
    r = c.response()
    closed = c.closed_within(4)
    c.close()
    ok(r is not None and len(r.body) == 10 * MB and hashlib.sha256(r.body).hexdigest() == big.sent.get(10 * MB),
       "client half-close, slow 10 MB answer: arrives whole", r and len(r.body))
    ok(closed is not None, "client half-close, slow 10 MB answer: connection ends after it", closed)

    # the app closes after its answer: the gate closes the client side
    c = Conn(g.port, timeout=6)
    c.send(b"GET /%d/close HTTP/1.1\r\nHost: h\r\n\r\n" % BIG)
    r = c.response()
    closed = c.closed_within(3)
    c.close()
    ok(r is not None and r.body == b"bye", "app that closes after its answer: answer arrives", r and r.raw)
    ok(closed is not None and closed < 2, "app that closes after its answer: gate closes the client side", closed)


def idle(g, rec, big):
    since = len(g.log())
    c = Conn(g.port, timeout=10)
    c.send(b"GET /%d/i HTTP/1.1\r\nHost: h\r\n\r\n" % REC)
    r = c.response()
    closed = c.closed_within(8)
    c.close()
    ok(r is not None and r.status == 200, "idle timeout: first response", r and r.raw)
    ok(closed is not None and 1.5 <= closed <= 3.5, "--idle-timeout 2: kept-alive idle connection closed after ~2 s",
       closed)
    end = time.time() + 2
    while "idle timeout" not in g.log()[since:] and time.time() < end:
        time.sleep(0.05)
    ok("end=idle timeout" in g.log()[since:], "idle timeout: logged as the end", g.log()[since:][-300:])

    # the app trickles a byte a second: the connection lives past the timeout
    t0 = time.time()
    c = Conn(g.port, timeout=10)
    c.send(b"GET /%d/trickle HTTP/1.1\r\nHost: h\r\n\r\n" % BIG)
    r = c.response()
    el = time.time() - t0
    c.close()
    ok(r is not None and r.body == b"abcde" and el >= 4, "app trickling a byte a second keeps the connection past "
       "--idle-timeout 2", (r and r.raw, "%.1fs" % el))

    # the client trickles its body a byte a second
    n = len(rec.reqs)
    t0 = time.time()
    c = Conn(g.port, timeout=10)
    c.send(b"POST /%d/slowbody HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n" % REC)
    try:
        for b in b"vwxyz":
            time.sleep(1)
            c.send(bytes([b]))
    except OSError:
        pass
    r = c.response()
    el = time.time() - t0
    c.close()
    got = rec.reqs[n:]
    ok(r is not None and r.status == 200 and len(got) == 1 and got[0]["body"] == b"vwxyz" and el >= 4,
       "client trickling its body a byte a second keeps the connection past --idle-timeout 2",
       (r and r.status, got and got[0]["body"], "%.1fs" % el))

    # an app that accepts and never answers: cut at the idle timeout
    c = Conn(g.port, timeout=10)
    c.send(b"GET /%d/hang HTTP/1.1\r\nHost: h\r\n\r\n" % BIG)
    closed = c.closed_within(8)
    c.close()
    ok(closed is not None and 1.5 <= closed <= 3.5, "app that never answers: connection closed at ~2 s", closed)


def live_child(g, before):
    """The instance serving the connection just opened."""
    end = time.time() + 3
    while time.time() < end:
        new = [p for p in gate_children(g) if p not in before and cpu_ticks(p) is not None]
        if len(new) == 1:
            return new[0]
        time.sleep(0.05)
    return None


def cpu(g, rec, big):
    hz = os.sysconf("SC_CLK_TCK")
    setups = [
        ("kept-alive after a response", [b"GET /%d/c HTTP/1.1\r\nHost: h\r\n\r\n" % REC], True, False),
        ("inside a request head", [b"GET /%d/c HTTP/1.1\r\nHost: h\r\nX-Half: " % REC], False, False),
        ("inside a request body", [b"POST /%d/c HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789" % REC],
         False, False),
        ("inside a chunked body", [b"POST /%d/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"
                                   % REC], False, False),
        ("waiting for an app that does not answer", [b"GET /%d/hang HTTP/1.1\r\nHost: h\r\n\r\n" % BIG], False, False),
        ("client half-closed, app silent", [b"GET /%d/hang HTTP/1.1\r\nHost: h\r\n\r\n" % BIG], False, True),
    ]
    for name, sends, read, shut in setups:
        before = gate_children(g)
        c = Conn(g.port, timeout=5)
        for s in sends:
            c.send(s)
        if read:
            c.response()
        if shut:
            c.shut()
        pid = live_child(g, before)
        time.sleep(0.3)
        t1 = cpu_ticks(pid) if pid else None
        time.sleep(2)
        t2 = cpu_ticks(pid) if pid else None
        c.close()
        ok(pid is not None and t1 is not None and t2 is not None and t2 - t1 <= 1,
           "idle connection %s: no CPU over 2 s (%s ticks, %d/s)" % (name, None if t1 is None or t2 is None
                                                                    else t2 - t1, hz), (pid, t1, t2))


def main():
    tmp = tempfile.mkdtemp(prefix="httpgate-t11-")
    rec, big = HttpBackend(REC), BigBackend(BIG)
    gates = []
    try:
        gates.append(Gate(G_MAIN, [str(REC)]))
        gates.append(Gate(G_IDLE, ["--idle-timeout", "2", str(REC)]))
        check("Content-Length bodies", cl_bodies, gates[0], rec)
        check("chunked bodies", chunked_bodies, gates[0], rec, big, tmp)
        check("pipelined bodies", pipelined_bodies, gates[0], rec)
        check("large transfers", large, gates[0], big, tmp)
        check("error after a large response", error_after_large, gates[0], big)
        check("half-close", half_close, gates[0], rec, big)
        check("idle timeout", idle, gates[1], rec, big)
        check("cpu", cpu, gates[0], rec, big)
        logs = "".join(g.log() for g in gates)
        ok("AddressSanitizer" not in logs and "runtime error" not in logs, "no sanitizer report in any gate log",
           [ln for ln in logs.splitlines() if "Sanitizer" in ln or "runtime error" in ln][:3])
    finally:
        for g in gates:
            g.stop()
        rec.stop()
        big.stop()
        subprocess.run(["rm", "-rf", tmp])
    done()


if __name__ == "__main__":
    main()
