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
        cmd = ["systemd-socket-activate", "--accept", "-l", "127.0.0.1:%d" % port, binary or GATE] + list(args)
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
