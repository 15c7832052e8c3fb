#!/usr/bin/python3
"""tier-14 (intake): how httpgate gets its connection, and its command line.

A listening socket from systemd (Accept=no) is refused with exit 65 and a
message that says Accept=yes; inetd mode (a connected socket as fd 0 and 1)
serves a request; a non-socket is refused; --check reports each bad line of a
names file with its number; --help, --version and usage errors exit as the
man page says. Ports 20300-20399.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from gatetest import GATE, HttpBackend, check, done, ok, xpil_lines  # noqa: E402

APP, LISTEN, INETD = 20301, 20302, 20303

# Binds and listens on 127.0.0.1:PORT, passes the socket as fd 3 the way
# systemd does for Accept=no, and execs httpgate (same pid: LISTEN_PID holds).
WRAPPER = r"""
import os, socket, sys
port, argv = int(sys.argv[1]), sys.argv[2:]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(8)
os.dup2(s.fileno(), 3)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["ASAN_OPTIONS"] = "detect_leaks=0"
os.execv(argv[0], argv)
"""


def env():
    e = dict(os.environ)
    e.pop("JOURNAL_STREAM", None)
    e.pop("LISTEN_FDS", None)
    e.pop("LISTEN_PID", None)
    e["ASAN_OPTIONS"] = "detect_leaks=0"
    return e


def listening_socket():
    p = subprocess.run([sys.executable, "-c", WRAPPER, str(LISTEN), GATE, str(APP)], capture_output=True,
                       timeout=20, env=env())
    err = p.stderr.decode("latin-1")
    ok(p.returncode == 65, "listening socket as fd 3 (Accept=no): exit 65", (p.returncode, err[-300:]))
    ok("Accept=yes" in err, "listening socket: the message says to set Accept=yes", err[-300:])
    ok("Sanitizer" not in err, "listening socket: no sanitizer report", err[-300:])


def not_a_socket():
    with open(os.devnull, "rb") as null:
        p = subprocess.run([GATE, str(APP)], stdin=null, capture_output=True, timeout=20, env=env())
    err = p.stderr.decode("latin-1")
    ok(p.returncode == 65 and "socket" in err, "fd 0 not a socket and no LISTEN_FDS: exit 65 with a message",
       (p.returncode, err[-300:]))


def inetd(be):
    """inetd: accept a connection ourselves, run httpgate with it as fd 0 and 1."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", INETD))
    srv.listen(1)
    result = {}

    def client():
        c = socket.create_connection(("127.0.0.1", INETD), timeout=10)
        c.sendall(b"GET /inetd?x=1 HTTP/1.1\r\nHost: h\r\nX-Pil: *Adr=6.6.6.6\r\nConnection: close\r\n\r\n")
        out = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                out += d
        except OSError:
            pass
        result["resp"] = out
        c.close()

    t = threading.Thread(target=client)
    t.start()
    conn, _ = srv.accept()
    n = len(be.reqs)
    p = subprocess.Popen([GATE, str(APP)], stdin=conn, stdout=conn, stderr=subprocess.PIPE, env=env())
    conn.close()
    srv.close()
    try:
        _, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    t.join(15)
    resp = result.get("resp", b"")
    got = be.reqs[n:]
    ok(resp.startswith(b"HTTP/1.1 200 ") and resp.endswith(b"port=%d target=/inetd?x=1\n" % APP),
       "inetd mode (connection as fd 0 and 1): request served", resp[:200])
    ok(len(got) == 1 and xpil_lines(got[0]["head"]) == ["X-Pil: *Gate=http", "X-Pil: *Adr=127.0.0.1"],
       "inetd mode: app sees the client address from the socket, no spoofed X-Pil", got and got[0]["head"])
    ok(p.returncode == 0, "inetd mode: exit 0 after the connection", (p.returncode, err[-300:]))
    ok(b"Sanitizer" not in err, "inetd mode: no sanitizer report", err[-300:])


def check_option(tmp):
    good = os.path.join(tmp, "good")
    with open(good, "w") as f:
        f.write("# comment\n\n"
                "app 20310 nobody /tmp ^ /bin/sleep 1\n"
                "app2/prefix 20311 nobody /tmp app2.log /bin/echo a^b c\n"
                "@ 20312 nobody /tmp ^ /bin/true\n"
                "go 0 http://example.org/\n")
    p = subprocess.run([GATE, "--check", good], capture_output=True, timeout=20, env=env())
    out = p.stdout.decode("latin-1")
    ok(p.returncode == 0, "--check good file: exit 0", (p.returncode, out, p.stderr[-200:]))
    ok(not re.search(r":\d+:", out), "--check good file: no line reported", out)

    bad = os.path.join(tmp, "bad")
    lines = [
        "# line 1 comment",
        "ok1 20320 nobody /tmp ^ /bin/true",       # 2 good
        "lonely",                                   # 3 missing port
        "x 99999 nobody /tmp ^ /bin/true",          # 4 port out of range
        "y 20321 nobody relative ^ /bin/true",      # 5 relative directory
        "z 20322 root /tmp ^ /bin/true",            # 6 uid 0
        "w 20323 no-such-user-xyz /tmp ^ /bin/true",  # 7 unknown user
        "ok1 20324 nobody /tmp ^ /bin/true",        # 8 duplicate key
        "r 0",                                      # 9 redirect without URL
        "v 20325 nobody /tmp ^",                    # 10 missing command
        "ok2 20326 nobody /tmp ^ /bin/true",        # 11 good
        "u abc nobody /tmp ^ /bin/true",            # 12 port not a number
    ]
    with open(bad, "w") as f:
        f.write("\n".join(lines) + "\n")
    p = subprocess.run([GATE, "--check", bad], capture_output=True, timeout=20, env=env())
    out = p.stdout.decode("latin-1") + p.stderr.decode("latin-1")
    reported = sorted({int(m) for m in re.findall(r"%s:(\d+):" % re.escape(bad), out)})
    ok(p.returncode != 0, "--check bad file: non-zero exit", (p.returncode, out[-300:]))
    ok(reported == [3, 4, 5, 6, 7, 8, 9, 10, 12], "--check bad file: each bad line reported with its number, "
       "good lines not", (reported, out[-600:]))

    p = subprocess.run([GATE, "--check", os.path.join(tmp, "missing")], capture_output=True, timeout=20, env=env())
    ok(p.returncode != 0, "--check missing file: non-zero exit", p.returncode)


def command_line():
    p = subprocess.run([GATE, "--help"], capture_output=True, timeout=20, env=env())
    ok(p.returncode == 0 and b"usage" in p.stdout and b"--idle-timeout" in p.stdout, "--help: exit 0, usage text",
       (p.returncode, p.stdout[:100]))
    p = subprocess.run([GATE, "--version"], capture_output=True, timeout=20, env=env())
    ok(p.returncode == 0 and re.match(rb"httpgate \d+\.\d+", p.stdout), "--version: exit 0, version",
       (p.returncode, p.stdout))
    p = subprocess.run([GATE], capture_output=True, timeout=20, env=env())
    ok(p.returncode == 64, "no arguments: usage error, exit 64", (p.returncode, p.stderr[-200:]))
    p = subprocess.run([GATE, "--idle-timeout", "x", str(APP)], capture_output=True, timeout=20, env=env())
    ok(p.returncode == 64 and b"idle" in p.stderr, "bad option value: exit 64 naming the option",
       (p.returncode, p.stderr[-200:]))


def main():
    tmp = tempfile.mkdtemp(prefix="httpgate-t13-")
    be = HttpBackend(APP)
    try:
        check("listening socket", listening_socket)
        check("not a socket", not_a_socket)
        check("inetd", inetd, be)
        check("--check", check_option, tmp)
        check("command line", command_line)
    finally:
        be.stop()
        subprocess.run(["rm", "-rf", tmp])
    done()


if __name__ == "__main__":
    main()
