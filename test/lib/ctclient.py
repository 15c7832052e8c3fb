"""ctclient: the clients of the real-systemd tiers, run inside the container.

test/lib/nspawn.py copies this file to /opt/hgtest/client.py in every
container; Container.client("cmd", args...) runs `python3 client.py cmd
args...` inside, which prints one JSON line: what the client saw. Only the
standard library, only the container's loopback and unix sockets.
"""
import concurrent.futures as cf
import json
import re
import socket
import ssl
import sys
import threading
import time


def exchange(data, port=80, src="127.0.0.1", timeout=30, sni=""):
    """Sends data on a new connection (through TLS with SNI sni, if given)
    and reads one response: (status, head, body) or (error, message, "")."""
    try:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout, source_address=(src, 0))
        if sni:
            s = tls_wrap(s, sni)
        s.sendall(data)
        # Read one response; PicoLisp keeps an HTTP/1.1 connection open
        # despite "Connection: close", so the framing decides where it ends.
        got = recv_until(s, complete)
        s.close()
    except OSError as e:
        return (type(e).__name__, str(e), "")
    head, _, rest = got.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if b"chunked" in head.lower():
        rest = dechunk(rest)
    return (parts[1].decode() if len(parts) > 1 else "EMPTY", head.decode("latin-1"), rest.decode("latin-1"))


def http(path, method="GET", body=b"", headers=(), src="127.0.0.1", timeout=30):
    """One request on its own connection: (status, head, body) or (error, message, "")."""
    h = "%s %s HTTP/1.1\r\nHost: hgtest\r\nConnection: close\r\n" % (method, path)
    for x in headers:
        h += x + "\r\n"
    if body:
        h += "Content-Length: %d\r\n" % len(body)
    return exchange(h.encode() + b"\r\n" + body, src=src, timeout=timeout)


def recv_until(s, done):
    """What s sends until done(what came) or it closes."""
    got = b""
    while not done(got):
        d = s.recv(65536)
        if not d:
            break
        got += d
    return got


def complete(data):
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        return len(rest) >= int(m.group(1))
    if re.search(rb"(?im)^transfer-encoding:.*chunked", head):
        return rest.endswith(b"0\r\n\r\n")
    return False


def dechunk(b):
    out = b""
    while b:
        size, _, b = b.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out, b = out + b[:n], b[n + 2:]
    return out


def cmd_get(path):
    t = time.time()
    st, head, body = http(path)
    return {"status": st, "body": body, "head": head, "sec": time.time() - t}


def cmd_post(path, field, value):
    """A form post as a browser sends a PicoLisp <post> form: multipart."""
    body = ("--hgtestB\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n--hgtestB--\r\n"
            % (field, value)).encode()
    st, head, b = http(path, "POST", body, ["Content-Type: multipart/form-data; boundary=hgtestB"])
    return {"status": st, "body": b}


def cmd_together(path, n):
    """n first requests released at the same moment."""
    gate = threading.Barrier(int(n))
    def one(_):
        gate.wait()
        return http(path)[0:3:2]
    with cf.ThreadPoolExecutor(int(n)) as ex:
        res = list(ex.map(one, range(int(n))))
    return {"status": [r[0] for r in res], "body": [r[1] for r in res]}


def cmd_burst(path, n, inflight):
    n, inflight = int(n), int(inflight)
    t = time.time()
    with cf.ThreadPoolExecutor(inflight) as ex:
        res = list(ex.map(lambda i: http(path, timeout=120)[0], range(n)))
    counts = {}
    for r in res:
        counts[r] = counts.get(r, 0) + 1
    return {"counts": counts, "sec": time.time() - t}


def cmd_hold(port, n, hold):
    """Opens n connections as fast as it can, holds them, then counts those
    the server closed (refused) and closes the rest."""
    t, socks = time.time(), []
    for i in range(int(n)):
        try:
            socks.append(socket.create_connection(("127.0.0.1", int(port)), timeout=5))
        except OSError:
            pass
    opened = time.time() - t
    time.sleep(float(hold))
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return {"sec": opened, "connected": len(socks), "refused": closed, "held": len(socks) - closed}


def cmd_launch(name_hex, how="wait"):
    """Talks to the launcher directly: the bytes (hex; "-": hex on stdin, for
    more than a command line holds), then its first answer line.
    how: "wait" for the answer; "shut" ends the writing side first."""
    if name_hex == "-":
        name_hex = sys.stdin.read().strip()
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect("/run/httpgate/launch.sock")
        s.sendall(bytes.fromhex(name_hex))
        if how == "shut":
            s.shutdown(socket.SHUT_WR)
        data = recv_until(s, lambda got: b"\n" in got)
        s.close()
        return {"answer": data.decode("latin-1")}
    except OSError as e:
        return {"error": type(e).__name__}


def tls_wrap(s, sni, ca="/etc/hgtest/ca.pem"):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # the name is checked by the caller, from the certificate
    return ctx.wrap_socket(s, server_hostname=sni or None)


def cmd_raw(data_hex, port=80, tls_sni="", timeout=15):
    """Any bytes as a request (through TLS with SNI tls_sni, if given): the
    status, head and body of the answer, each wait bounded by timeout s."""
    st, head, body = exchange(bytes.fromhex(data_hex), port, timeout=float(timeout), sni=tls_sni)
    return {"status": st, "head": head, "body": body}


def cmd_probe(port, tls_sni, body_file, timeout):
    """POSTs the file body_file to the sandbox probe (test/sandbox-probe.c)
    in an instance's place: the status, head and body of its answer."""
    with open(body_file, "rb") as f:
        body = f.read()
    head = b"POST / HTTP/1.1\r\nHost: probe\r\nContent-Length: %d\r\n\r\n" % len(body)
    st, head, body = exchange(head + body, port, timeout=float(timeout), sni=tls_sni)
    return {"status": st, "head": head, "body": body}


def cmd_hold_send(port, data_hex, seconds, tls_sni=""):
    """A connection that sends data (hex; "-" for none) and then waits
    seconds before it reads the answer: an instance to look at meanwhile."""
    try:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        if tls_sni:
            s = tls_wrap(s, tls_sni)
        if data_hex != "-":
            s.sendall(bytes.fromhex(data_hex))
        time.sleep(float(seconds))
        s.settimeout(1)
        try:
            got = s.recv(65536)
        except OSError as e:
            got = type(e).__name__.encode()
        s.close()
        return {"answer": got.decode("latin-1")[:200]}
    except OSError as e:
        return {"error": type(e).__name__}


def cmd_cert(sni, port=443):
    """A TLS handshake (no SNI when sni is "-"): the certificate served,
    verified against the test CA, and what was negotiated."""
    try:
        s = tls_wrap(socket.create_connection(("127.0.0.1", int(port)), timeout=15), "" if sni == "-" else sni)
        c = s.getpeercert()
        out = {"cn": dict(x[0] for x in c["subject"]).get("commonName"), "serial": c["serialNumber"],
               "version": s.version(), "cipher": s.cipher()[0]}
        s.close()
        return out
    except (OSError, ValueError) as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}


print(json.dumps(globals()["cmd_" + sys.argv[1]](*sys.argv[2:])))
