"""integrity: tier-70's large transfers through the gate compared by
SHA-256 end to end, and the fuzz targets run briefly (test/fuzz/run.sh)."""
import hashlib
import os
import random
import re
import socket
import subprocess
import threading

from common import BULK_MB, FIG, FUZZ_SECONDS, G_BULK, P_BULK, P_LEGIT, Case
from gatetest import TOP, Conn, Gate, ok
from rlib import BulkBackend, Legit, stream_data

# ---------------------------------------------------------------------------
# Byte integrity: large uploads and downloads through the gate, compared by
# SHA-256 end to end.

class Stream:
    """A client connection read as a stream: heads, then bodies hashed as
    they arrive (nothing large is kept)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def _more(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError
        self.buf += d

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            self._more()
        h, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = h.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        return int(lines[0].split(" ")[1]), fields

    def body_sha(self, n):
        h, got = hashlib.sha256(), 0
        while got < n:
            if not self.buf:
                self._more()
            d, self.buf = self.buf[:n - got], self.buf[n - got:]
            h.update(d)
            got += len(d)
        return h.hexdigest(), got

    def response(self):
        st, f = self.head()
        return st, self.body_sha(int(f.get("content-length", "0")))

    def close(self):
        self.sock.close()


def sha_of(n, seed):
    h = hashlib.sha256()
    for d in stream_data(n, seed):
        h.update(d)
    return h.hexdigest()


def chunked_of(n, seed, rnd):
    """The chunked framing of stream_data(n, seed), chunks of random sizes."""
    data = b"".join(stream_data(n, seed))
    i = 0
    while i < n:
        k = min(n - i, rnd.choice((1, 7, 100, 4096, 65536, 1 << 20, rnd.randrange(1, 1 << 20))))
        yield b"%x%s\r\n" % (k, b";ext=1" if rnd.random() < 0.1 else b"") + data[i:i + k] + b"\r\n"
        i += k
    yield b"0\r\n\r\n"


def integrity(ctx):
    cat = "bytes end to end"
    be = BulkBackend(P_BULK)
    ctx["cleanup"].append(be.stop)
    g = Gate(G_BULK, ["--launcher=", "-p", str(P_BULK)])
    ctx["gates"].append(g)
    legit = Legit(G_BULK, P_LEGIT, pause=0.1)
    ctx["legits"].append(("the large transfers", legit))
    legit.start()
    MB = 1 << 20
    q = BULK_MB * MB
    rnd = random.Random(256)
    compared = 0

    # uploads with Content-Length, two on one connection
    sizes = [q // 4, q // 8]
    want = [b"%s %d" % (sha_of(n, "up%d" % i).encode(), n) for i, n in enumerate(sizes)]
    with Case(cat):
        c = Conn(G_BULK, timeout=120)
        good = 0
        for i, n in enumerate(sizes):
            c.send(b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % n)
            for d in stream_data(n, "up%d" % i):
                c.sock.sendall(d)
            r = c.response()
            good += r is not None and r.body == want[i]
        c.close()
        ok(good == len(sizes), "%s: uploads of %s MiB with Content-Length on one connection arrive unchanged "
           "(SHA-256)" % (cat, " + ".join(str(n // MB) for n in sizes)), good)
        if good == len(sizes):
            compared += sum(sizes)
    # a chunked upload of random chunk sizes
    with Case(cat):
        n = q // 8
        c = Conn(G_BULK, timeout=120)
        c.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in chunked_of(n, "chunked", rnd):
            c.sock.sendall(piece)
        r = c.response()
        c.close()
        ok(r is not None and r.body == b"%s %d" % (sha_of(n, "chunked").encode(), n),
           "%s: a chunked upload of %d MiB (chunks of 1 byte to 1 MiB, some with extensions) arrives "
           "unchanged" % (cat, n // MB), r and r.body)
        if r is not None and r.body == b"%s %d" % (sha_of(n, "chunked").encode(), n):
            compared += n
    # downloads, two on one connection
    with Case(cat):
        c = Stream(G_BULK)
        sizes = [q // 4, q // 8]
        good = 0
        for i, n in enumerate(sizes):
            c.sock.sendall(b"GET /down/%d/dn%d HTTP/1.1\r\nHost: h\r\n\r\n" % (n, i))
            st, (sha, got) = c.response()
            good += st == 200 and got == n and sha == sha_of(n, "dn%d" % i) == be.sent.get((n, "dn%d" % i))
        c.close()
        ok(good == len(sizes), "%s: downloads of %s MiB on one connection arrive unchanged" % (
            cat, " + ".join(str(n // MB) for n in sizes)), good)
        if good == len(sizes):
            compared += sum(sizes)
    # both directions at once: the app echoes the body while it arrives
    with Case(cat):
        n = q // 16
        c = Stream(G_BULK)
        c.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % n)

        def send():
            for d in stream_data(n, "echo"):
                c.sock.sendall(d)
        th = threading.Thread(target=send)
        th.start()
        st, (sha, got) = c.response()
        th.join(120)
        c.close()
        good = st == 200 and got == n and sha == sha_of(n, "echo")
        ok(good, "%s: %d MiB up and echoed down at the same time: both directions unchanged" % (cat, n // MB),
           (st, got))
        if good:
            compared += 2 * n
    # many bodies pipelined, in random fragments
    with Case(cat):
        reqs, want = [], []
        for i in range(50):
            n = rnd.randrange(0, 256 * 1024)
            if i % 2:
                reqs.append(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % n
                            + b"".join(stream_data(n, "p%d" % i)))
            else:
                reqs.append(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + b"".join(chunked_of(n, "p%d" % i, rnd)))
            want.append(b"%s %d" % (sha_of(n, "p%d" % i).encode(), n))
        data = b"".join(reqs)
        c = Conn(G_BULK, timeout=60)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def frag():
            i = 0
            while i < len(data):
                k = rnd.randrange(1, 100000)
                c.sock.sendall(data[i:i + k])
                i += k
        th = threading.Thread(target=frag)
        th.start()
        rs = [c.response() for _ in want]
        th.join(60)
        c.close()
        got = [r and r.body for r in rs]
        ok(got == want, "%s: 50 pipelined uploads (Content-Length and chunked, 0 to 256 KiB, in random "
           "fragments) each arrive unchanged" % cat, sum(1 for a, b in zip(got, want) if a == b))
        if got == want:
            compared += sum(int(w.split()[1]) for w in want)
    FIG.add("bytes compared", compared)


# ---------------------------------------------------------------------------
# Fuzzing: test/fuzz/run.sh for each target, briefly.

def fuzz(ctx):
    cat = "fuzz"
    if FUZZ_SECONDS <= 0:
        print("# fuzzing skipped (ROBUSTNESS_FUZZ_SECONDS=0)")
        return
    total = 0
    per = {}
    for t in ("request", "chunked", "names"):
        with Case(cat):
            b = os.path.join(TOP, "build", "fuzz-" + t)
            if not os.path.exists(b):
                subprocess.run(["make", "-s", "-C", TOP, "build/fuzz-" + t], capture_output=True, timeout=600)
            p = subprocess.run([os.path.join(TOP, "test", "fuzz", "run.sh"), t], capture_output=True, text=True,
                               env=dict(os.environ, FUZZ_SECONDS=str(FUZZ_SECONDS)), timeout=FUZZ_SECONDS + 300)
            m = re.search(r"^fuzz %s: (\d+) runs$" % t, p.stdout, re.M)
            n = int(m.group(1)) if m else 0
            ok(p.returncode == 0 and n > 0, "%s: %s: %d executions in %d s, no crash, kept crash inputs replayed" % (
                cat, t, n, FUZZ_SECONDS), p.stdout[-400:])
            per[t] = n
            total += n
    FIG.set("fuzz runs", total)
    FIG.set("fuzz per", per)
