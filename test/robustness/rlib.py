"""rlib: what tier-70 (robustness) needs beyond test/lib/gatetest.py.

GateWatch reads a gate's log (httpgate's plain stderr lines and
systemd-socket-activate's "Child N died with code C") per instance;
StrictBackend is an app that frames requests the strict way and checks every
head it gets for the gate's X-Pil lines; BulkBackend hashes uploads, streams
downloads and echoes; Legit is a well-behaved client that keeps asking while
attacks run; Figures counts cases into the table that tier-70 prints.
Only loopback; every process started here is stopped by PID.
"""
import hashlib
import os
import re
import socket
import struct
import threading
import time

GATE_XPIL = ["X-Pil: *Gate=http", "X-Pil: *Adr=127.0.0.1"]
SANITIZER_WORDS = ("AddressSanitizer", "UndefinedBehaviorSanitizer", "runtime error:", "LeakSanitizer")

RE_REQ = re.compile(r"^httpgate\[(\d+)\]: (\S+) (.*) -> (\S+):(\d+) (forwarded|\d{3})(?: \d{3} \d+ bytes \d+ us)?(?:: (.*))?$")
RE_DONE = re.compile(r"^httpgate\[(\d+)\]: (\S+) done (\S+):(\d+) requests=(\d+) up=(\d+) down=(\d+) (\d+)ms(?: cpu=\S+)? end=(.*)$")
RE_CHILD = re.compile(r"^Child (\d+) died with code (\d+)$")
RE_CONN = re.compile(r"^Connection from 127\.0\.0\.1:(\d+) to ")
RE_SPAWNED = re.compile(r"^Spawned .* as PID (\d+)\.$")
RE_WRAP = re.compile(r"^gate-wrap: pid (\d+) (exit|signal) (\d+)$")
RE_ANY = re.compile(r"^httpgate\[(\d+)\]: (.*)$")


class Instance:
    """What one httpgate instance (one connection) logged."""

    def __init__(self, pid):
        self.pid = pid
        self.reqs = []      # (method+target text, app, port, status "forwarded" or int, why)
        self.lines = []     # every line of this pid, as logged
        self.done = None    # dict from the done line
        self.exit = None    # exit code from systemd-socket-activate

    @property
    def statuses(self):
        return [r[3] for r in self.reqs]

    @property
    def end(self):
        return self.done["end"] if self.done else None

    def text(self):
        return " | ".join(self.lines)


class GateWatch:
    """The log of one Gate, cut into instances. mark() remembers the end;
    instances(since) gives those that logged after it."""

    def __init__(self, gate):
        self.gate = gate

    def mark(self):
        return len(self.gate.log())

    def parse(self, since=0):
        insts = {}
        order = []
        for line in self.gate.log()[since:].splitlines():
            m = RE_CHILD.match(line) or RE_WRAP.match(line)
            if m:
                pid = int(m.group(1))
                if pid not in insts:
                    insts[pid] = Instance(pid)
                    order.append(pid)
                # test/tls/gate-wrap reports the instance it forked; a signal
                # is told as 128 + its number
                insts[pid].exit = int(m.group(2)) if m.re is RE_CHILD else (
                    int(m.group(3)) + (128 if m.group(2) == "signal" else 0))
                continue
            m = RE_ANY.match(line)
            if not m:
                continue
            pid = int(m.group(1))
            if pid not in insts:
                insts[pid] = Instance(pid)
                order.append(pid)
            inst = insts[pid]
            inst.lines.append(m.group(2))
            m2 = RE_DONE.match(line)
            if m2:
                inst.done = {"app": m2.group(3), "port": int(m2.group(4)), "requests": int(m2.group(5)),
                             "up": int(m2.group(6)), "down": int(m2.group(7)), "ms": int(m2.group(8)),
                             "end": m2.group(9)}
                continue
            m2 = RE_REQ.match(line)
            if m2:
                st = m2.group(6)
                inst.reqs.append((m2.group(3), m2.group(4), int(m2.group(5)),
                                  st if st == "forwarded" else int(st), m2.group(7)))
        return [insts[p] for p in order]

    def pid_of(self, client_port):
        """The pid systemd-socket-activate spawned for the latest connection
        from 127.0.0.1:client_port (its "Connection from" line comes before
        the "Spawned ... as PID N." line of that child), or None."""
        pending, pid = None, None
        for line in self.gate.log().splitlines():
            m = RE_CONN.match(line)
            if m:
                pending = int(m.group(1))
                continue
            m = RE_SPAWNED.match(line)
            if m and pending is not None:
                if pending == client_port:
                    pid = int(m.group(1))
                pending = None
        return pid

    def instance(self, client_port, timeout=5.0):
        """The Instance that served the connection from client_port, once it
        has exited (or at the timeout, as far as it got), or None."""
        end = time.time() + timeout
        pid = None
        while True:
            if pid is None:
                pid = self.pid_of(client_port)
            if pid is not None:
                inst = [i for i in self.parse() if i.pid == pid]
                if inst and (inst[0].exit is not None or time.time() > end):
                    return inst[0]
            if time.time() > end:
                return None
            time.sleep(0.03)

    def others(self, since, exclude=("/__legit/",)):
        """Instances after since that are not the legitimate client's."""
        return [i for i in self.parse(since)
                if i.lines and not any(x in ln for ln in i.lines for x in exclude)]

    def wait_instances(self, since, n=1, timeout=5.0, exclude=("/__legit/",)):
        """Waits until n instances (not the legitimate client's) after since
        have exited; returns all of them that have, in order."""
        end = time.time() + timeout
        while True:
            got = [i for i in self.others(since, exclude) if i.exit is not None]
            if len(got) >= n or time.time() > end:
                return got
            time.sleep(0.03)

    def sanitizer_reports(self):
        return [ln for ln in self.gate.log().splitlines() if any(w in ln for w in SANITIZER_WORDS)]


def exit_for(statuses):
    """The exit code httpgate(8) gives for a connection whose requests ended
    with these statuses (the last one decides)."""
    if not statuses or statuses[-1] in ("forwarded", 200):
        return 0
    s = statuses[-1]
    if s == 408:
        return 2
    if s in (501, 505):
        return 1
    return 3 if s >= 500 else 1


# ---- a backend that frames strictly and checks what the gate sends ----

class StrictBackend:
    """An app that reads requests exactly as RFC 9112 frames them (chunked
    when Transfer-Encoding ends in chunked, else Content-Length) and checks
    that every head starts with the request line and the gate's two X-Pil
    lines, has no other X-Pil line, uses CRLF only and carries none of the
    marker SPOOF. Each request is answered 200 with "ok CONN.SEQ TARGET".
    Targets: /big/N streams N bytes (1 MiB blocks); /hold answers after
    the gate closes its side. `reqs` has every request, `problems` every
    violation, `leftover` the connections that ended inside a head."""

    def __init__(self, port, host="::1", marker=b"SPOOF"):
        self.port, self.reqs, self.problems, self.leftover = port, [], [], []
        self.marker = marker
        self.conns = 0
        self.eof_in_body = 0
        self.block = os.urandom(1 << 20)
        self.lock = threading.Lock()
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(512)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                cid = self.conns
            threading.Thread(target=self._conn, args=(c, cid), daemon=True).start()

    def problem(self, cid, what):
        self.problems.append("conn %d: %s" % (cid, what))

    def check_head(self, cid, head):
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        if re.search(r"(?<!\r)\n|\r(?!\n)", text):
            self.problem(cid, "bare CR or LF in a head: %r" % text[:200])
        if not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/1\.\d$", lines[0]):
            self.problem(cid, "not a request line: %r" % lines[0][:200])
        if lines[1:3] != GATE_XPIL:
            self.problem(cid, "head does not start with the gate's X-Pil lines: %r" % text[:300])
        xp = [ln for ln in lines[1:] if ln.split(":", 1)[0].strip().lower() == "x-pil"]
        if xp != GATE_XPIL:
            self.problem(cid, "X-Pil lines other than the gate's: %r" % xp)
        if self.marker and self.marker in head:
            self.problem(cid, "client X-Pil value reached the app: %r" % text[:300])
        return lines

    def _conn(self, c, cid):
        buf = bytearray()
        seq = 0

        def more():
            d = c.recv(1 << 20)
            if not d:
                raise EOFError
            buf.extend(d)

        def take(n):
            while len(buf) < n:
                more()
            out = bytes(buf[:n])
            del buf[:n]
            return out

        def line():
            while True:
                i = buf.find(b"\r\n")
                if i >= 0:
                    out = bytes(buf[:i])
                    del buf[:i + 2]
                    return out
                if len(buf) > 70000:
                    raise ValueError("line too long")
                more()

        try:
            while True:
                in_body = False
                try:
                    while b"\r\n\r\n" not in buf:
                        more()
                except EOFError:
                    if buf:
                        self.leftover.append((cid, bytes(buf[:200])))
                        self.problem(cid, "connection ended inside a head: %r" % bytes(buf[:200]))
                    return
                i = buf.find(b"\r\n\r\n")
                head = bytes(buf[:i])
                del buf[:i + 4]
                lines = self.check_head(cid, head)
                fields = [ln.partition(":") for ln in lines[1:]]
                te = ",".join(v for k, _, v in fields if k.lower() == "transfer-encoding")
                cl = [v.strip() for k, _, v in fields if k.lower() == "content-length"]
                method, target = (lines[0].split(" ") + ["", ""])[:2]
                req = {"cid": cid, "seq": seq, "head": head.decode("latin-1"), "method": method,
                       "target": target, "body": b"", "complete": False}
                self.reqs.append(req)
                in_body = True
                body = bytearray()
                if te.strip():
                    codings = [x.strip().lower() for x in te.split(",") if x.strip()]
                    if codings[-1:] != ["chunked"] or codings.count("chunked") != 1:
                        self.problem(cid, "a Transfer-Encoding the gate should have refused: %r" % te)
                        return
                    while True:
                        sl = line()
                        body += sl + b"\r\n"
                        m = re.match(rb"^([0-9A-Fa-f]{1,15})[ \t]*(;.*)?$", sl)
                        if not m:
                            self.problem(cid, "bad chunk-size line from the gate: %r" % sl[:100])
                            return
                        size = int(m.group(1), 16)
                        if size == 0:
                            t = line()
                            body += b"\r\n"
                            if t:
                                self.problem(cid, "a trailer reached the app: %r" % t[:100])
                            break
                        d = take(size + 2)
                        if d[-2:] != b"\r\n":
                            self.problem(cid, "chunk data not followed by CRLF")
                            return
                        body += d
                elif cl:
                    if len(set(cl)) != 1 or not cl[0].isdigit():
                        self.problem(cid, "a Content-Length the gate should have refused: %r" % cl)
                        return
                    n = int(cl[0])
                    while n > 0:
                        if not buf:
                            more()
                        k = min(n, len(buf))
                        if len(body) < (1 << 20):
                            body += buf[:k]
                        del buf[:k]
                        n -= k
                req["body"] = bytes(body)
                req["complete"] = True
                in_body = False
                seq += 1
                close = any(k.lower() == "connection" and "close" in v.lower() for k, _, v in fields) or (
                    lines[0].endswith("HTTP/1.0") and not any(
                        k.lower() == "connection" and "keep-alive" in v.lower() for k, _, v in fields))
                if target.startswith("/big/"):
                    n = int(target.split("/")[2])
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                    while n > 0:
                        k = min(n, len(self.block))
                        c.sendall(self.block[:k])
                        n -= k
                else:
                    out = b"ok %d.%d %s\n" % (cid, seq, target.encode("latin-1"))
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
                        len(out), b"Connection: close\r\n" if close else b"", b"" if method == "HEAD" else out))
                if close:
                    return
        except EOFError:
            if in_body:
                self.eof_in_body += 1
            return
        except (OSError, ValueError) as e:
            if not isinstance(e, (ConnectionResetError, BrokenPipeError)):
                self.problem(cid, "backend: %r" % e)
            return
        finally:
            c.close()

    def stop(self):
        self.sock.close()


# ---- a backend for large transfers ----

class BulkBackend:
    """Large transfers on ::1:
      POST|PUT /up        answers "<sha256 hex> <bytes>" of the body
                          (Content-Length or chunked, de-chunked)
      GET /down/N/SEED    N bytes of a stream defined by SEED; the sha256 of
                          what was sent is kept in sent[(N, SEED)]
      POST /echo          Content-Length body sent back as it arrives
    """

    def __init__(self, port, host="::1"):
        self.port, self.sent = port, {}
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        rd = _Buf(c)
        try:
            while True:
                head = rd.until(b"\r\n\r\n")
                if head is None:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                if target == "/up":
                    h, n = hashlib.sha256(), 0
                    if fields.get("transfer-encoding", "").lower() == "chunked":
                        while True:
                            sl = rd.until(b"\r\n")
                            size = int(sl.split(b";")[0], 16)
                            if size == 0:
                                while rd.until(b"\r\n"):
                                    pass
                                break
                            for d in rd.stream(size):
                                h.update(d)
                                n += len(d)
                            if rd.take(2) != b"\r\n":
                                raise ValueError("chunk not followed by CRLF")
                    else:
                        for d in rd.stream(int(fields.get("content-length", "0"))):
                            h.update(d)
                            n += len(d)
                    out = b"%s %d" % (h.hexdigest().encode(), n)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
                elif target.startswith("/down/"):
                    _, _, n, seed = target.split("/")
                    n = int(n)
                    h = hashlib.sha256()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                    for d in stream_data(n, seed):
                        h.update(d)
                        c.sendall(d)
                    self.sent[(n, seed)] = h.hexdigest()
                elif target == "/echo":
                    n = int(fields.get("content-length", "0"))
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                    for d in rd.stream(n):
                        c.sendall(d)
                else:
                    c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except (OSError, ValueError, EOFError):
            return
        finally:
            c.close()

    def stop(self):
        self.sock.close()


def stream_data(n, seed):
    """n bytes of a cheap pseudo-random stream: 1 MiB blocks of the seed's
    digest-derived bytes, each block tagged with its index."""
    base = hashlib.sha256(str(seed).encode()).digest() * 32768  # 1 MiB
    i = 0
    while n > 0:
        k = min(n, len(base))
        yield struct.pack(">Q", i) + base[8:k] if k >= 8 else base[:k]
        n -= k
        i += 1


class _Buf:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _more(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError
        self.buf += d

    def until(self, sep):
        try:
            while sep not in self.buf:
                self._more()
        except EOFError:
            return None
        out, self.buf = self.buf.split(sep, 1)
        return out

    def take(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def stream(self, n):
        while n > 0:
            if not self.buf:
                self._more()
            d, self.buf = self.buf[:n], self.buf[n:]
            n -= len(d)
            yield d


# ---- a well-behaved client that keeps asking ----

class Legit(threading.Thread):
    """GET /PORT/__legit/N on a new connection every `pause` seconds through
    the gate; each answer must be 200 from the app on PORT. Counts answers,
    failures and the slowest answer."""

    def __init__(self, gate_port, app_port, pause=0.05, timeout=10.0):
        super().__init__(daemon=True)
        self.gate_port, self.app_port, self.pause, self.timeout = gate_port, app_port, pause, timeout
        self.n = self.good = 0
        self.fails = []
        self.slowest = 0.0
        self.stopping = threading.Event()

    def one(self):
        self.n += 1
        path = b"/%d/__legit/%d" % (self.app_port, self.n)
        want = b"port=%d target=/__legit/%d\n" % (self.app_port, self.n)
        t = time.time()
        try:
            s = socket.create_connection(("127.0.0.1", self.gate_port), timeout=self.timeout)
            try:
                s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: legit\r\nConnection: close\r\n\r\n")
                out = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    out += d
            finally:
                s.close()
        except OSError as e:
            self.fails.append(repr(e))
            return
        el = time.time() - t
        self.slowest = max(self.slowest, el)
        if out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\n" + want):
            self.good += 1
        else:
            self.fails.append(out[:120])

    def run(self):
        while not self.stopping.is_set():
            self.one()
            self.stopping.wait(self.pause)

    def stop(self):
        self.stopping.set()
        self.join(30)
        return self


# ---- the figures ----

class Figures:
    """Cases per category, and the numbers the table reports."""

    def __init__(self):
        self.cats = {}      # category -> [tried, passed]
        self.nums = {}      # name -> value (int or text)
        self.order = []

    def case(self, cat, passed):
        if cat not in self.cats:
            self.cats[cat] = [0, 0]
            self.order.append(cat)
        self.cats[cat][0] += 1
        self.cats[cat][1] += 1 if passed else 0

    def add(self, name, n):
        self.nums[name] = self.nums.get(name, 0) + n

    def set(self, name, v):
        self.nums[name] = v

    def get(self, name, default=0):
        return self.nums.get(name, default)
