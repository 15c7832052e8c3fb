"""gatetest: what every integration tier shares.

Starting httpgate exactly as systemd would (systemd-socket-activate --accept
on a loopback port), recording backends, a raw-socket client, and TAP-style
reporting that test/run-all.sh counts ("ok - ..." / "not ok - ...").
Only loopback addresses; every process started here is stopped by PID.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GATE = os.environ.get("HTTPGATE", os.path.join(TOP, "build", "httpgate-san"))

_results = {"passed": 0, "failed": 0}


def ok(cond, name, detail=""):
    """Report one assertion; never raises, so a tier runs to its end."""
    if cond:
        _results["passed"] += 1
        print("ok - " + name, flush=True)
    else:
        _results["failed"] += 1
        print("not ok - " + name + (("  # " + str(detail)[:300]) if detail else ""), flush=True)
    return cond


def done():
    sys.exit(0 if _results["failed"] == 0 else 1)


def wait_port(host, port, timeout=5.0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.connect((host, port))
                return True
        except OSError:
            time.sleep(0.01)
    return False


class Gate:
    """httpgate under systemd-socket-activate --accept on 127.0.0.1:port."""

    def __init__(self, port, args, env=None, binary=None, log=None):
        self.port = port
        self.log_path = log or "/tmp/httpgate-test-%d.log" % port
        e = dict(os.environ)
        e.pop("JOURNAL_STREAM", None)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=0")
        if env:
            e.update(env)
        self.logf = open(self.log_path, "w")
        # systemd-socket-activate passes the gate only LISTEN_* and what -E names.
        passed = ["-E", "ASAN_OPTIONS=" + e["ASAN_OPTIONS"]]
        for k, v in (env or {}).items():
            passed += ["-E", "%s=%s" % (k, v)]
        cmd = (["systemd-socket-activate", "--accept", "-l", "127.0.0.1:%d" % port] + passed +
               [binary or GATE] + list(args))
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=e,
                                     start_new_session=True)
        if not wait_port("127.0.0.1", port):
            raise RuntimeError("gate did not listen on %d" % port)
        time.sleep(0.05)

    def log(self):
        if not self.logf.closed:
            self.logf.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)
        self.logf.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


class Recorder:
    """A backend on ::1 (or 127.0.0.1) that records each request head it
    gets and answers with a short response naming its port and the target.
    `heads` holds the raw heads in arrival order."""

    def __init__(self, port, host="::1", keep_alive=True):
        self.port, self.heads, self.bodies = port, [], []
        self.keep_alive = keep_alive
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.heads.append(head.decode("latin-1"))
                n = 0
                for line in head.split(b"\r\n")[1:]:
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
                target = head.split(b" ")[1]
                body = b"port=%d target=%s\n" % (self.port, target)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
                    len(body), b"" if self.keep_alive else b"Connection: close\r\n", body))
                if not self.keep_alive:
                    return
        except OSError:
            return
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


def raw(port, data, timeout=5.0, shut=True, host="127.0.0.1"):
    """Sends bytes, half-closes (when shut), returns everything read until
    the gate closes or the timeout."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        end = time.time() + timeout
        while time.time() < end:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
        return out
    finally:
        s.close()


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


# ---- appended: persistent clients, a framing-aware backend, process probes ----

class Response:
    """One parsed HTTP response: status, headers [(name, value)], body
    (de-chunked), raw (bytes as they arrived)."""

    def __init__(self, status, headers, body, raw):
        self.status, self.headers, self.body, self.raw = status, headers, body, raw

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Conn:
    """A raw client connection that keeps its unread bytes, so that several
    responses of one keep-alive connection can be read one by one."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def shut(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _more(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _take(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def response(self, head_request=False):
        """Reads one response; None when the connection closes before a
        status line, or the timeout expires. Bodies framed by Content-Length,
        chunked, or the end of the connection."""
        try:
            while b"\r\n\r\n" not in self.buf:
                self._more()
        except (EOFError, OSError):
            return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        raw_head = head + b"\r\n\r\n"
        lines = head.split(b"\r\n")
        st = status_of(lines[0])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
        r = Response(st, headers, b"", raw_head)
        cl, te = r.header("content-length"), r.header("transfer-encoding")
        try:
            if head_request or (st is not None and (st < 200 or st in (204, 304))):
                pass
            elif te and "chunked" in te.lower():
                while True:
                    size_line = self._line()
                    r.raw += size_line + b"\r\n"
                    size = int(size_line.split(b";")[0], 16)
                    if size == 0:
                        while True:
                            t = self._line()
                            r.raw += t + b"\r\n"
                            if not t:
                                break
                        break
                    data = self._take(size + 2)
                    r.raw += data
                    r.body += data[:-2]
            elif cl is not None:
                r.body = self._take(int(cl))
                r.raw += r.body
            else:
                try:
                    while True:
                        self._more()
                except (EOFError, OSError):
                    pass
                r.body, self.buf = self.buf, b""
                r.raw += r.body
        except (EOFError, OSError, ValueError):
            r.body += self.buf
            self.buf = b""
            r.status = r.status if r.status else None
        return r

    def read_all(self, timeout=5.0):
        """Everything until the peer closes (or the timeout)."""
        self.sock.settimeout(timeout)
        end = time.time() + timeout
        try:
            while time.time() < end:
                self._more()
        except (EOFError, OSError):
            pass
        out, self.buf = self.buf, b""
        return out

    def closed_within(self, timeout):
        """Seconds until the peer closed (EOF or reset), or None. Data that
        arrives meanwhile is kept in buf."""
        t0 = time.time()
        self.sock.settimeout(0.2)
        while time.time() - t0 < timeout:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return time.time() - t0
            if not d:
                return time.time() - t0
            self.buf += d
        return None

    def close(self):
        self.sock.close()


class HttpBackend:
    """A backend that understands request framing (Content-Length and
    chunked): each request is recorded as (head, raw body as received, with
    chunked framing), and answered by handler(req, conn) or by a short 200
    naming the port and the target (closing after it when the request said
    Connection: close). Listens on ::1 unless told otherwise."""

    def __init__(self, port, host="::1", handler=None):
        self.port, self.reqs, self.handler = port, [], handler
        self.conns = 0
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def heads(self):
        return [r["head"] for r in self.reqs]

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        rd = _Reader(c)
        try:
            while True:
                head = rd.until(b"\r\n\r\n")
                if head is None:
                    return
                text = head.decode("latin-1")
                lines = text.split("\r\n")
                method, target = lines[0].split(" ")[0], lines[0].split(" ")[1]
                fields = [ln.partition(":") for ln in lines[1:]]
                cl = [v.strip() for k, _, v in fields if k.strip().lower() == "content-length"]
                te = [v.strip() for k, _, v in fields if k.strip().lower() == "transfer-encoding"]
                body = b""
                if te and te[-1].lower() == "chunked":
                    while True:
                        size_line = rd.until(b"\r\n")
                        if size_line is None:
                            return
                        body += size_line + b"\r\n"
                        size = int(size_line.split(b";")[0], 16)
                        if size == 0:
                            while True:
                                t = rd.until(b"\r\n")
                                if t is None:
                                    return
                                body += t + b"\r\n"
                                if not t:
                                    break
                            break
                        d = rd.take(size + 2)
                        if d is None:
                            return
                        body += d
                elif cl:
                    body = rd.take(int(cl[0]))
                    if body is None:
                        return
                req = {"head": text, "method": method, "target": target, "body": body}
                self.reqs.append(req)
                if self.handler:
                    if self.handler(req, c) is False:
                        return
                    continue
                out = b"port=%d target=%s\n" % (self.port, target.encode("latin-1"))
                close = any(k.strip().lower() == "connection" and "close" in v.lower() for k, _, v in fields)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
                    len(out), b"Connection: close\r\n" if close else b"", b"" if method == "HEAD" else out))
                if close:
                    return
        except OSError:
            return
        finally:
            c.close()

    def stop(self):
        self.sock.close()


class _Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def until(self, sep):
        while sep not in self.buf:
            d = self.sock.recv(1 << 20)
            if not d:
                return None
            self.buf += d
        out, self.buf = self.buf.split(sep, 1)
        return out

    def take(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(1 << 20)
            if not d:
                return None
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def gate_children(gate):
    """PIDs of the httpgate instances systemd-socket-activate has running."""
    pids = []
    try:
        for t in os.listdir("/proc/%d/task" % gate.proc.pid):
            with open("/proc/%d/task/%s/children" % (gate.proc.pid, t)) as f:
                pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks; None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def curl(url, *args, timeout=30):
    """Runs curl; returns (http status, body bytes, stderr text)."""
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}"]
                       + list(args) + [url], capture_output=True, timeout=timeout + 10)
    body, _, code = p.stdout.rpartition(b"\n")
    try:
        return int(code), body, p.stderr.decode("latin-1")
    except ValueError:
        return 0, body, p.stderr.decode("latin-1")


def xpil_lines(head):
    """The X-Pil field lines of a request head, as the app saw them."""
    return [ln for ln in head.split("\r\n")[1:] if ln.split(":", 1)[0].strip().lower() == "x-pil"]


def check(name, fn, *args):
    """Runs one test section; an exception is one failed assertion."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - a tier must run to its end
        import traceback
        ok(False, name + " raised " + type(e).__name__, traceback.format_exc().splitlines()[-1])


# ---- apps started by the gate (tiers 12-14) ----

def ensure_user(name):
    """The pwd entry of a system user for apps, created (no home, no login)
    when missing. Needs root for the creation."""
    import pwd
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                   check=True, stdout=subprocess.DEVNULL)
    return pwd.getpwnam(name)


def listening_pids(port):
    """PIDs of the processes holding a TCP socket that listens on port (any
    address), found through /proc/net/tcp{,6} and /proc/*/fd."""
    inodes = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    p = line.split()
                    if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(p[9])
        except OSError:
            pass
    pids = set()
    if not inodes:
        return pids
    want = {"socket:[%s]" % i for i in inodes}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % d):
                if os.readlink("/proc/%s/fd/%s" % (d, fd)) in want:
                    pids.add(int(d))
                    break
        except OSError:
            continue
    return pids


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pids(pids, timeout=3.0):
    """SIGTERM each pid, SIGKILL what is left after timeout."""
    pids = [p for p in set(pids) if p and p > 1]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.time() + timeout
    while time.time() < end and any(pid_alive(p) for p in pids):
        time.sleep(0.02)
    for p in pids:
        if pid_alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
