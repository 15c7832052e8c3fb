#!/usr/bin/python3
"""tier-30-tls: HTTPS and WSS through httpgate under systemd-socket-activate.

Certificates are made here with certtool (a test CA; a.test, b.test and a
default name; an expired one; a key that does not match; a renewal), then the
gate is run in each certificate form (key,cert; one PEM in either order;
--tls-dir by SNI) and checked with curl, gnutls-cli, Python's ssl and
python3-websockets: versions, ALPN, the headers the app sees, resumption
across instances through the shared ticket key, a replaced ticket key and a
replaced certificate, a large transfer, the handshake time bound, and clear
refusals of unusable certificates without crashes.

Every instance runs through test/tls/gate-wrap, which gives it the
environment (systemd-socket-activate hands its children only LISTEN_* and
-E variables) and logs its exit status. Ports 22300-22399.
"""
import asyncio
import hashlib
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from gatetest import GATE, TOP, Gate, Recorder, done, ok, wait_port  # noqa: E402

WRAP = os.path.join(HERE, "tls", "gate-wrap")
PLAIN_GATE = os.path.join(TOP, "httpgate")
HANDSHAKE_BOUND = 10.0   # TLS_HANDSHAKE_TIMEOUT_MS in src/httpgate.h, seconds

P_REC, P_WS, P_BIG, P_CLOSE = 22300, 22301, 22302, 22303
G_DIR, G_PAIR, G_KC, G_CK = 22310, 22311, 22312, 22313
G_TK1, G_TK2, G_TK3 = 22314, 22315, 22316
G_MISSING, G_UNREAD, G_MISMATCH, G_EXPIRED, G_ERRDIR = 22320, 22321, 22322, 22323, 22324
G_LEAK, G_TIME, P_CONTROL = 22330, 22340, 22390

T0 = time.time()
TMP = tempfile.mkdtemp(prefix="httpgate-tls-")
os.chmod(TMP, 0o755)   # the unreadable-key case runs the gate as nobody
CA = os.path.join(TMP, "ca.pem")
gates = []


def note(msg):
    print("# " + msg, flush=True)


def path(*p):
    return os.path.join(TMP, *p)


def write(p, data, mode=0o644):
    with open(p, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.chmod(p, mode)


def read(p, binary=False):
    with open(p, "rb" if binary else "r") as f:
        return f.read()


# ---- certificates --------------------------------------------------------

def certtool(*args):
    subprocess.run(["certtool"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_key(name):
    certtool("--generate-privkey", "--key-type", "ecdsa", "--no-text", "--outfile", path(name + ".key"))
    os.chmod(path(name + ".key"), 0o600)


def make_cert(name, cn, serial, key=None, dates=None):
    """Certificate name.pem for cn, signed by the test CA, with key.key."""
    tmpl = 'cn = "%s"\ndns_name = "%s"\nserial = %d\ntls_www_server\nsigning_key\n' % (cn, cn, serial)
    tmpl += ('activation_date = "%s"\nexpiration_date = "%s"\n' % dates) if dates else "expiration_days = 30\n"
    write(path(name + ".tmpl"), tmpl)
    certtool("--generate-certificate", "--no-text", "--load-privkey", path((key or name) + ".key"),
             "--load-ca-certificate", CA, "--load-ca-privkey", path("ca.key"),
             "--template", path(name + ".tmpl"), "--outfile", path(name + ".pem"))


def make_certs():
    make_key("ca")
    write(path("ca.tmpl"), 'cn = "httpgate test CA"\nca\ncert_signing_key\nexpiration_days = 30\n')
    certtool("--generate-self-signed", "--no-text", "--load-privkey", path("ca.key"),
             "--template", path("ca.tmpl"), "--outfile", CA)
    for name, cn, serial in (("a", "a.test", 0x101), ("b", "b.test", 0x102), ("d", "default.test", 0x1d),
                             ("a2", "a.test", 0x201)):
        make_key(name)
        make_cert(name, cn, serial)
    make_cert("expired", "a.test", 0x103, key="a", dates=("2020-01-01 00:00:00", "2021-01-01 00:00:00"))
    write(path("garbage.pem"), "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                               "-----END CERTIFICATE-----\n")
    ca = read(CA)
    # httpGate's single-file form, in both orders, with the chain.
    write(path("a-keycert.pem"), read(path("a.key")) + read(path("a.pem")) + ca, 0o600)
    write(path("a-certkey.pem"), read(path("a.pem")) + ca + read(path("a.key")), 0o600)
    # certbot's layout.
    for host, name in (("a.test", "a"), ("b.test", "b"), ("default", "d")):
        install(path("live", host), name)
    for host, key, cert in (("default", "d", "d"), ("expired.test", "a", "expired"),
                            ("mismatch.test", "b", "a"), ("garbage.test", "a", "garbage")):
        os.makedirs(path("bad", host))
        write(path("bad", host, "privkey.pem"), read(path(key + ".key")), 0o600)
        write(path("bad", host, "fullchain.pem"), read(path(cert + ".pem")) + ca)


def install(d, name):
    """Key and chain into d as certbot renews them: each file replaced whole."""
    os.makedirs(d, exist_ok=True)
    for src, dst, mode in ((name + ".key", "privkey.pem", 0o600), (name + ".pem", "fullchain.pem", 0o644)):
        data = read(path(src)) + (read(CA) if dst == "fullchain.pem" else "")
        write(os.path.join(d, dst + ".new"), data, mode)
        os.rename(os.path.join(d, dst + ".new"), os.path.join(d, dst))


# ---- gates and backends ---------------------------------------------------

def start_gate(port, args, env=None, user=None, binary=None, leaks=False):
    e = {"ASAN_OPTIONS": "detect_leaks=%d" % (1 if leaks else 0)}
    e.update(env or {})
    pre = (["--user", user] if user else []) + ["%s=%s" % kv for kv in e.items()] + ["--", binary or GATE]
    g = Gate(port, pre + list(args), binary=WRAP, log=path("gate-%d.log" % port))
    gates.append(g)
    return g


def wait_log(gate, pattern, timeout=5.0, since=0):
    """The first match of pattern in the gate's log (from offset since), waiting for it."""
    end = time.time() + timeout
    while True:
        m = re.search(pattern, gate.log()[since:])
        if m or time.time() > end:
            return m
        time.sleep(0.02)


def exit_of(gate, pid, timeout=5.0):
    m = wait_log(gate, r"gate-wrap: pid %d (exit|signal) (\d+)" % pid, timeout)
    return (m.group(1), int(m.group(2))) if m else None


class BigBackend:
    """On ::1: GET answers with blob, POST with the sha256 of the body."""

    def __init__(self, port, blob):
        self.blob = blob
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
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

    def _conn(self, c):
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, rest = buf.split(b"\r\n\r\n", 1)
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if head.startswith(b"POST") and m:
                n, h = int(m.group(1)), hashlib.sha256(rest)
                got = len(rest)
                while got < n:
                    d = c.recv(1 << 20)
                    if not d:
                        return
                    h.update(d)
                    got += len(d)
                body = h.hexdigest().encode()
            else:
                body = self.blob
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            c.sendall(body)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.sock.close()


def ws_server(port, paths):
    import websockets

    async def echo(ws, p=None):
        paths.append(ws.path)
        async for m in ws:
            await ws.send(m)

    loop = asyncio.new_event_loop()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(websockets.serve(echo, "::1", port))
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    return wait_port("::1", port)


# ---- clients --------------------------------------------------------------

def client_ctx(version=None, alpn=None, sni=True):
    ctx = ssl.create_default_context(cafile=CA)
    if not sni:
        ctx.check_hostname = False   # still verified against the CA
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class Result:
    pass


def https(port, target="/", sni="a.test", ctx=None, session=None, headers="", method="GET", body=b""):
    """One request over one TLS connection (Python's ssl). Returns a Result
    with status, body, version, cipher, alpn, cert, reused, session,
    handshake (seconds); raises ssl.SSLError / OSError when refused."""
    ctx = ctx or client_ctx(sni=bool(sni))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = None
    try:
        s = ctx.wrap_socket(raw, server_hostname=sni or None, session=session, do_handshake_on_connect=False)
        t = time.perf_counter()
        s.do_handshake()
        r = Result()
        r.handshake = time.perf_counter() - t
        r.version, r.cipher, r.alpn = s.version(), s.cipher()[0], s.selected_alpn_protocol()
        r.cert, r.reused = s.getpeercert(), s.session_reused
        host = sni or "127.0.0.1"
        s.sendall(("%s %s HTTP/1.1\r\nHost: %s:%d\r\n%sContent-Length: %d\r\n\r\n" % (
            method, target, host, port, headers, len(body))).encode() + body)
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                break
            rest += d
        r.status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None
        r.body = rest
        r.session = s.session   # TLS 1.3: the ticket came with the response
        return r
    finally:
        (s or raw).close()   # wrap_socket detaches raw: close the TLS socket itself


def try_https(*a, **k):
    try:
        return https(*a, **k), None
    except (ssl.SSLError, OSError) as e:
        return None, e


def cn_serial(r):
    if not r or not r.cert:
        return None, None
    cn = [v for rdn in r.cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return (cn[0] if cn else None), int(r.cert.get("serialNumber", "0"), 16)


def curl(port, target, sni="a.test", extra=()):
    return subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", CA, "--resolve",
                           "%s:%d:127.0.0.1" % (sni, port), "https://%s:%d%s" % (sni, port, target)] + list(extra),
                          capture_output=True, timeout=40)


def gnutls_cli(port, *args, sni="a.test"):
    return subprocess.run(["gnutls-cli", "--x509cafile", CA, "--sni-hostname", sni, "--verify-hostname", sni,
                           "-p", str(port)] + list(args) + ["127.0.0.1"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)


def suite_parts(name):
    name = re.sub(r"AES_(\d+)", r"AES\1", (name or "").upper())  # IANA AES_256 = OpenSSL AES256
    return set(re.split(r"[-_]", name)) - {"TLS", "WITH", ""}


def norm(s):
    return re.sub(r"[^a-z0-9]", "", (s or "").lower())


def hello_bytes():
    """A real ClientHello, for the client that sends it one byte at a time."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    o = client_ctx().wrap_bio(inc, out, server_hostname="a.test")
    try:
        o.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def close_time(port, trickle=None, limit=15.0):
    """Seconds until the gate closes a connection that sends nothing (or
    trickle, one byte a second); None when still open after limit."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.time()
    s.settimeout(0.2)
    i = 0
    try:
        while time.time() - t0 < limit:
            if trickle and i < len(trickle) and time.time() - t0 >= i:
                try:
                    s.send(trickle[i:i + 1])
                except OSError:
                    return time.time() - t0
                i += 1
            try:
                d = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return time.time() - t0
            if not d:
                return time.time() - t0
        return None
    finally:
        s.close()


def background(fn, *a):
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("v", fn(*a)), daemon=True)
    th.start()
    return th, box


# ---- the tests ------------------------------------------------------------

def test_forms():
    note("certificate forms: key,cert; one PEM key first; one PEM cert first")
    g1 = start_gate(G_PAIR, ["22300", path("a.key") + "," + path("a.pem")])
    g2 = start_gate(G_KC, ["22300", path("a-keycert.pem")])
    g3 = start_gate(G_CK, ["22300", path("a-certkey.pem")])
    for g, form in ((g1, "key,cert"), (g2, "one PEM, key then chain"), (g3, "one PEM, chain then key")):
        p = curl(g.port, "/form")
        ok(p.returncode == 0 and p.stdout == b"port=22300 target=/form\n",
           "curl over HTTPS with the test CA gets the app's answer, PEM as %s" % form,
           (p.returncode, p.stdout, p.stderr, g.log()[-400:]))
        r, e = try_https(g.port, "/form2")
        ok(r and cn_serial(r) == ("a.test", 0x101), "%s: the served certificate is a.test's" % form, e or cn_serial(r))
    return g2


def test_sni(g):
    note("--tls-dir: one certificate per host name, by SNI")
    got = {}
    for sni in ("a.test", "b.test", "A.TEST", "c.test", None):
        # c.test: verified against the CA, but the name cannot match the default's
        r, e = try_https(g.port, "/sni", sni=sni, ctx=client_ctx(sni=sni not in (None, "c.test")))
        got[sni] = (cn_serial(r), r.status if r else e)
    ok(got["a.test"] == (("a.test", 0x101), 200), "SNI a.test gets a.test's certificate and the app", got["a.test"])
    ok(got["b.test"] == (("b.test", 0x102), 200), "SNI b.test on the same port gets b.test's certificate",
       got["b.test"])
    ok(got["A.TEST"][0] == ("a.test", 0x101), "SNI is case-insensitive (A.TEST gets a.test's)", got["A.TEST"])
    ok(got[None] == (("default.test", 0x1d), 200), "no SNI gets DIR/default's certificate", got[None])
    ok(got["c.test"][0] == ("default.test", 0x1d), "an unknown SNI name gets DIR/default's certificate",
       got["c.test"])
    p = gnutls_cli(g.port, "--print-cert", sni="b.test")
    ok(p.returncode == 0 and "subject `CN=b.test'" in p.stdout, "gnutls-cli with SNI b.test sees CN=b.test",
       p.stdout[-300:] + p.stderr[-300:])
    p = gnutls_cli(g.port, "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2", "--rehandshake")
    ok("Handshake was completed" in p.stdout and "ReHandshake has failed" in p.stdout + p.stderr,
       "TLS 1.2: a client's renegotiation is refused (gnutls-cli --rehandshake)", (p.stdout + p.stderr)[-300:])
    p = curl(g.port, "/sni-b", sni="b.test")
    ok(p.returncode == 0 and p.stdout == b"port=22300 target=/sni-b\n",
       "curl --resolve b.test verifies and gets the app",
       (p.returncode, p.stderr))


def test_versions(g):
    note("protocol versions and ALPN")
    vers = {}
    for v in ("TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3"):
        p = gnutls_cli(g.port, "--priority", "NORMAL:-VERS-ALL:+VERS-" + v)
        vers[v] = (p.returncode, "Handshake was completed" in p.stdout, (p.stdout + p.stderr)[-200:])
    # The same client does speak the old versions (a peer that allows them):
    ctl = subprocess.Popen(["gnutls-serv", "--x509keyfile", path("a.key"), "--x509certfile", path("a.pem"),
                            "-p", str(P_CONTROL), "--priority", "NORMAL:+VERS-TLS1.0:+VERS-TLS1.1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", P_CONTROL)
        c10 = gnutls_cli(P_CONTROL, "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.0")
    finally:
        ctl.terminate()
        ctl.wait(timeout=5)
    control = "Handshake was completed" in c10.stdout
    for v in ("TLS1.0", "TLS1.1"):
        ok(vers[v][0] != 0 and not vers[v][1] and control,
           "%s refused (gnutls-cli --priority ...+VERS-%s fails; it succeeds against gnutls-serv)" % (v, v),
           (vers[v], "control ok" if control else "control failed: " + c10.stdout[-200:]))
    for v in ("TLS1.2", "TLS1.3"):
        ok(vers[v][0] == 0 and vers[v][1], "%s accepted (gnutls-cli)" % v, vers[v])
    ok(wait_log(g, r"unsupported version") is not None, "the refusal of an old version is logged as such",
       g.log()[-300:])
    for ver, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        r, e = try_https(g.port, "/v", ctx=client_ctx(version=ver))
        ok(r and r.version == name and r.status == 200, "Python ssl pinned to %s: handshake and answer" % name,
           e or (r.version, r.status))
    r, e = try_https(g.port, "/alpn", ctx=client_ctx(alpn=["h2", "http/1.1"]))
    ok(r and r.alpn == "http/1.1" and r.status == 200, "ALPN offered h2,http/1.1: http/1.1 negotiated",
       e or r.alpn)
    p = gnutls_cli(g.port, "--alpn", "http/1.1")
    ok("Application protocol: http/1.1" in p.stdout, "gnutls-cli --alpn http/1.1 sees it negotiated", p.stdout[-300:])


def test_headers(g, rec):
    note("what the app sees")
    spoof = "X-Pil: *Gate=http\r\nX-Pil: *Cipher=NULL\r\nX-Forwarded-Proto: http\r\n"
    for ver, tag in ((ssl.TLSVersion.TLSv1_3, "13"), (ssl.TLSVersion.TLSv1_2, "12")):
        r, e = try_https(g.port, "/hdr" + tag, ctx=client_ctx(version=ver), headers=spoof)
        heads = [h for h in rec.heads if h.startswith("GET /hdr%s " % tag)]
        h = heads[-1] if heads else ""
        lines = h.split("\r\n")
        ok(r and r.status == 200 and lines.count("X-Pil: *Gate=https") == 1 and "X-Pil: *Gate=http" not in lines,
           "TLS 1.%s: the app sees X-Pil: *Gate=https, once, and not the client's *Gate=http" % tag[1], h or e)
        cip = [ln.split("=", 1)[1] for ln in lines if ln.startswith("X-Pil: *Cipher=")]
        ok(len(cip) == 1 and cip[0] != "NULL", "TLS 1.%s: the app sees one X-Pil: *Cipher=, the gate's" % tag[1], cip)
        # The gate gives the IANA name (TLS_ECDHE_ECDSA_WITH_..._SHA256), the
        # client OpenSSL's (ECDHE-ECDSA-...): the parts must agree.
        ok(r and len(cip) == 1 and suite_parts(r.cipher) <= suite_parts(cip[0]) and cip[0].startswith("TLS_"),
           "TLS 1.%s: *Cipher names the negotiated suite" % tag[1],
           "gate says %s, client negotiated %s" % (cip, r.cipher if r else e))
        ok(lines.count("X-Forwarded-Proto: https") == 1 and "X-Forwarded-Proto: http" not in lines,
           "TLS 1.%s: --forwarded gives X-Forwarded-Proto: https (the client's dropped)" % tag[1], h)
        ok(any(ln.startswith("Forwarded: ") and "proto=https" in ln for ln in lines),
           "TLS 1.%s: --forwarded gives Forwarded: ...;proto=https" % tag[1], h)


def test_resumption(g, state):
    note("resumption across instances through the shared ticket key")
    key = os.path.join(state, "ticket.key")
    st = os.stat(key) if os.path.exists(key) else None
    ok(st is not None and st.st_size == 64 and (st.st_mode & 0o777) == 0o600,
       "the ticket key was created in $STATE_DIRECTORY: 64 bytes, mode 0600",
       st and (st.st_size, oct(st.st_mode & 0o777)) or os.listdir(state))
    k1 = read(key, True) if st else b""
    for ver in ("TLS1.3", "TLS1.2"):
        p = gnutls_cli(g.port, "--resume", "--priority", "NORMAL:-VERS-ALL:+VERS-" + ver)
        ok(p.returncode == 0 and "This is a resumed session" in p.stdout,
           "%s: gnutls-cli --resume: the second connection (another process) resumes the first's session" % ver,
           (p.returncode, p.stdout[-300:], p.stderr[-200:]))
    ok(os.path.exists(key) and read(key, True) == k1, "the ticket key is kept, not recreated, by later instances")
    ctx = client_ctx()
    r1, e1 = try_https(g.port, "/t1", ctx=ctx)
    r2, e2 = try_https(g.port, "/t2", ctx=ctx, session=r1 and r1.session)
    ok(r1 and r2 and not r1.reused and r2.reused and r2.status == 200,
       "Python ssl: a ticket from one instance resumes in the next", (e1, e2, r2 and r2.reused))
    new = os.urandom(64)
    write(key + ".new", new, 0o600)
    os.rename(key + ".new", key)
    since = len(g.log())
    r3, e3 = try_https(g.port, "/t3", ctx=ctx, session=r2 and r2.session)
    ok(r3 and not r3.reused and r3.status == 200,
       "after the ticket key is replaced, an old ticket falls back to a full handshake that works",
       e3 or (r3.reused, r3.status))
    time.sleep(0.2)
    log = g.log()[since:]
    ok(not re.search(r"(?i)ticket|error|fatal", log),
       "the fallback leaves no error in the log", log[-400:])
    ok(read(key, True) == new, "the gate uses the replaced key file as it is (does not overwrite it)")
    p = gnutls_cli(g.port, "--resume")
    ok("This is a resumed session" in p.stdout, "resumption works again under the new key", p.stdout[-300:])


def test_wss(g, paths):
    note("websocket over TLS")
    import websockets

    async def talk():
        got = []
        async with websockets.connect("wss://a.test:%d/%d/echo" % (g.port, P_WS), ssl=client_ctx(),
                                      host="127.0.0.1", port=g.port, server_hostname="a.test",
                                      open_timeout=10, close_timeout=5) as ws:
            big = os.urandom(200000)
            for m in ("hello", "über TLS", big, "bye"):
                await ws.send(m)
                got.append((await asyncio.wait_for(ws.recv(), 10)) == m)
        return got

    try:
        got = asyncio.run(asyncio.wait_for(talk(), 30))
        err = None
    except Exception as e:   # noqa: BLE001 — any failure is the assertion's detail
        got, err = [], e
    ok(len(got) == 4 and all(got), "a websocket conversation over WSS through the gate echoes 4 messages (one 200 kB)",
       err or got)
    ok("/echo" in paths, "the websocket app saw the rewritten path /echo", paths)


def test_big(g, blob):
    note("large transfers over TLS")
    want = hashlib.sha256(blob).hexdigest()
    out = path("download")
    t = time.time()
    p = curl(g.port, "/%d/blob" % P_BIG, extra=["-o", out])
    dt = time.time() - t
    got = hashlib.sha256(read(out, True)).hexdigest() if os.path.exists(out) else None
    ok(p.returncode == 0 and got == want, "a %d MiB download over TLS arrives intact (sha256)" % (len(blob) >> 20),
       (p.returncode, p.stderr[-200:], os.path.getsize(out) if os.path.exists(out) else None))
    note("measured: %d MiB download over TLS (sanitizer build) in %.2f s, %.0f MiB/s" % (
        len(blob) >> 20, dt, (len(blob) >> 20) / dt))
    up = blob[: 8 << 20]
    write(path("upload"), up)
    p = curl(g.port, "/%d/up" % P_BIG, extra=["--data-binary", "@" + path("upload"),
                                              "-H", "Content-Type: application/octet-stream"])
    ok(p.returncode == 0 and p.stdout.decode() == hashlib.sha256(up).hexdigest(),
       "an 8 MiB upload over TLS arrives intact (sha256)", (p.returncode, p.stdout[:80], p.stderr[-200:]))


def test_renewal(g_dir, g_kc):
    note("a certificate replaced on disk is served by the next connection")
    r0, _ = try_https(g_dir.port, "/before")
    install(path("live", "a.test"), "a2")
    r1, e1 = try_https(g_dir.port, "/after")
    ok(cn_serial(r0) == ("a.test", 0x101) and cn_serial(r1) == ("a.test", 0x201) and r1.status == 200,
       "--tls-dir: after the renewal the very next connection gets the new certificate (serial 0x101 -> 0x201)",
       (cn_serial(r0), e1 or cn_serial(r1)))
    r0, _ = try_https(g_kc.port, "/before")
    write(path("a-keycert.pem.new"), read(path("a2.key")) + read(path("a2.pem")) + read(CA), 0o600)
    os.rename(path("a-keycert.pem.new"), path("a-keycert.pem"))
    r1, e1 = try_https(g_kc.port, "/after")
    ok(cn_serial(r0) == ("a.test", 0x101) and cn_serial(r1) == ("a.test", 0x201),
       "single PEM: a replaced file is served by the very next connection",
       (cn_serial(r0), e1 or cn_serial(r1)))


def test_errors():
    note("unusable certificates: a clear log line and a refused handshake, never a crash")
    unreadable_key = path("a-unreadable.key")
    write(unreadable_key, read(path("a.key")), 0o600 if os.geteuid() == 0 else 0o000)
    user = "nobody" if os.geteuid() == 0 else None
    cases = [
        ("missing", start_gate(G_MISSING, ["22300", path("nonexistent.pem")]), "a.test",
         path("nonexistent.pem"), r"No such file"),
        ("unreadable", start_gate(G_UNREAD, ["22300", unreadable_key + "," + path("a.pem")], user=user,
                                  env={"STATE_DIRECTORY": TMP}), "a.test",
         unreadable_key, r"Permission denied"),
        ("mismatched", start_gate(G_MISMATCH, ["22300", path("b.key") + "," + path("a.pem")]), "a.test",
         path("a.pem"), r"does not (belong|match)"),
        ("expired", start_gate(G_EXPIRED, ["22300", path("a.key") + "," + path("expired.pem")]), "a.test",
         path("expired.pem"), r"expired"),
    ]
    gd = start_gate(G_ERRDIR, ["--tls-dir", path("bad"), "22300"])
    cases += [
        ("expired (--tls-dir)", gd, "expired.test", path("bad", "expired.test", "fullchain.pem"), r"expired"),
        ("mismatched (--tls-dir)", gd, "mismatch.test", path("bad", "mismatch.test", "privkey.pem"),
         r"does not (belong|match)"),
        ("not a certificate (--tls-dir)", gd, "garbage.test", path("bad", "garbage.test", "fullchain.pem"),
         r"(?i)unusable|parse|PEM|decod"),
    ]
    exits = {}
    for name, g, sni, fname, reason in cases:
        since = len(g.log())
        r, e = try_https(g.port, "/err", sni=sni)
        ok(r is None and isinstance(e, (ssl.SSLError, ConnectionError, OSError)),
           "%s certificate: the handshake is refused" % name, r and cn_serial(r))
        m = wait_log(g, r"httpgate\[(\d+)\]: [^\n]*%s[^\n]*" % re.escape(fname), since=since)
        line = m.group(0) if m else ""
        ok(m and re.search(reason, line), "%s certificate: one log line names %s and says why" % (
            name, os.path.relpath(fname, TMP)), line or g.log()[since:][-400:])
        exits[name] = exit_of(g, int(m.group(1))) if m else None
        ok(exits[name] is not None and exits[name][0] == "exit",
           "%s certificate: the instance exits, no crash" % name, exits[name])
        # The gate still serves good names afterwards (per-connection reading).
        if g is gd and sni == "garbage.test":
            r, e = try_https(g.port, "/ok", sni=None)
            ok(r and r.status == 200 and cn_serial(r)[0] == "default.test",
               "the same --tls-dir gate still serves its good default certificate", e)
    ok(all(v == ("exit", 78) for v in exits.values()),
       "an unusable certificate ends the instance with exit 78 (EXIT_CONFIG, httpgate(8): 'the TLS "
       "certificate, key or priority string could not be used')", exits)
    p = subprocess.run(["gnutls-cli", "--x509cafile", CA, "-p", str(G_EXPIRED), "127.0.0.1"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    ok(p.returncode != 0 and "Handshake was completed" not in p.stdout,
       "gnutls-cli against the expired certificate's gate fails the handshake", p.stdout[-200:])


def test_ticket_option():
    note("--tls-ticket-key FILE")
    write(path("tk.key"), os.urandom(64), 0o600)
    pem = path("a.key") + "," + path("a.pem")
    g1 = start_gate(G_TK1, ["--tls-ticket-key", path("tk.key"), "22300", pem])
    start_gate(G_TK2, ["--tls-ticket-key", path("tk.key"), "22300", pem])
    g3 = start_gate(G_TK3, ["--tls-ticket-key", path("no-such.key"), "22300", pem])
    ctx = client_ctx()
    r1, e1 = try_https(G_TK1, "/tk1", ctx=ctx)
    r2, e2 = try_https(G_TK2, "/tk2", ctx=ctx, session=r1 and r1.session)
    ok(r2 and r2.reused and r2.status == 200, "two gates given the same --tls-ticket-key resume each other's sessions",
       e1 or e2 or r2.reused)
    r3, e3 = try_https(G_DIR, "/tk3", ctx=ctx, session=r2 and r2.session)
    ok(r3 and not r3.reused and r3.status == 200,
       "a gate with another ticket key does not, and the full handshake works",
       e3 or r3.reused)
    since = len(g3.log())
    r4, e4 = try_https(G_TK3, "/tk4")
    m = wait_log(g3, r"[^\n]*ticket key[^\n]*", since=since)
    ok(r4 and r4.status == 200 and m is not None,
       "an unusable --tls-ticket-key is logged and the connection still works (full handshake)",
       e4 or g3.log()[since:][-300:])
    ok(not os.path.exists(path("no-such.key")), "a configured ticket key is never created by the gate")
    return g1


def test_linger(g):
    note("the instance ends when the client has closed")
    since = len(g.log())
    r, e = try_https(g.port, "/linger")
    m = wait_log(g, r"httpgate\[(\d+)\]: [^\n]*GET /linger", since=since)
    x = exit_of(g, int(m.group(1)), timeout=3) if m else None
    ok(r and r.status == 200 and x is not None,
       "after a request the client closes: the instance ends within 3 s (keep-alive app)",
       (e, x, "instance %s still running" % (m and m.group(1))))


def test_leaks():
    note("the sanitizer build with leak detection on (as plain Gate() runs it)")
    g = start_gate(G_LEAK, [str(P_CLOSE), path("a.key") + "," + path("a.pem")], leaks=True)
    since = len(g.log())
    r, e = try_https(G_LEAK, "/leak")
    m = wait_log(g, r"httpgate\[(\d+)\]: [^\n]*GET /leak", since=since)
    x = exit_of(g, int(m.group(1))) if m else None
    time.sleep(0.2)
    log = g.log()[m.start() if m else since:]
    ok(r and r.status == 200 and x == ("exit", 0) and "LeakSanitizer" not in log,
       "a served TLS connection exits 0 without a LeakSanitizer report",
       (e, x, re.findall(r"(?m)^(?:Direct leak.*|    #1 .*|SUMMARY.*)$", log)[:4]))


def measure_handshakes():
    """Full against resumed handshake, release build, each a new instance."""
    st = path("state-time")
    os.makedirs(st)
    # Without gate-wrap, so that only the gate starts per connection: the
    # environment goes through systemd-socket-activate's own -E.
    g = Gate(G_TIME, [PLAIN_GATE if os.access(PLAIN_GATE, os.X_OK) else GATE, "22300",
                      path("a.key") + "," + path("a.pem")], binary="-ESTATE_DIRECTORY=" + st,
             log=path("gate-%d.log" % G_TIME))
    gates.append(g)
    full, res = [], []
    ctx = client_ctx()
    prev = None
    for _ in range(15):
        r, _e = try_https(g.port, "/time", ctx=client_ctx())
        if r:
            full.append(r.handshake)
        r, _e = try_https(g.port, "/time", ctx=ctx, session=prev)
        if r:
            (res if r.reused else full).append(r.handshake)
            prev = r.session
    if full and res:
        note("measured: TLS 1.3 handshake, each in a new instance (release build, client-side, "
             "incl. the instance's start): "
             "full %.1f ms, resumed %.1f ms (medians of %d / %d)" % (
                 1000 * statistics.median(full), 1000 * statistics.median(res), len(full), len(res)))


def main():
    make_certs()
    note("certificates made in %.2f s" % (time.time() - T0))
    rec = Recorder(P_REC)
    rec_close = Recorder(P_CLOSE, keep_alive=False)   # answers, then closes
    paths = []
    ws_ok = ws_server(P_WS, paths)
    blob = os.urandom(32 << 20)
    big = BigBackend(P_BIG, blob)
    state = path("state")
    os.makedirs(state)
    ok(ws_ok, "websocket echo server listens on ::1")
    g = start_gate(G_DIR, ["--tls-dir", path("live"), "--forwarded", "22300"], env={"STATE_DIRECTORY": state})

    # The time bounds run meanwhile.
    idle = background(close_time, G_DIR)
    trickle = background(close_time, G_DIR, hello_bytes())

    p = curl(G_DIR, "/hello")
    ok(p.returncode == 0 and p.stdout == b"port=22300 target=/hello\n",
       "curl --cacert --resolve a.test: HTTPS through the gate gets the app's answer", (p.returncode, p.stderr))
    g_kc = test_forms()
    test_sni(g)
    test_versions(g)
    test_headers(g, rec)
    test_resumption(g, state)
    test_wss(g, paths)
    test_big(g, blob)
    test_renewal(g, g_kc)
    test_errors()
    test_ticket_option()
    test_linger(g)
    test_leaks()
    measure_handshakes()

    idle[0].join(20)
    t = idle[1].get("v")
    ok(t is not None and HANDSHAKE_BOUND - 1 <= t <= HANDSHAKE_BOUND + 2,
       "a client that connects and sends nothing is closed at the handshake bound (~10 s)", t)
    if t is not None:
        note("measured: silent client closed after %.1f s" % t)
    ok(wait_log(g, r"TLS handshake timed out") is not None, "the handshake timeout is logged")
    trickle[0].join(20)
    t = trickle[1].get("v")
    ok(t is not None and t <= HANDSHAKE_BOUND + 2,
       "a client that trickles its ClientHello (a byte a second) is closed within the bound too", t)
    if t is not None:
        note("measured: trickling client closed after %.1f s" % t)

    time.sleep(0.3)
    bad = []
    for gg in gates:
        log = gg.log()
        for pat in (r"ERROR: AddressSanitizer", r"runtime error:", r"gate-wrap: pid \d+ signal \d+"):
            bad += ["%d: %s" % (gg.port, m.group(0)) for m in re.finditer(pat, log)]
    n = sum(len(re.findall(r"gate-wrap: pid", gg.log())) for gg in gates)
    ok(not bad, "no instance of %d (sanitizer build) crashed or reported ASan/UBSan errors" % n, bad[:5])
    for gg in gates:
        gg.stop()
    rec.stop()
    rec_close.stop()
    big.stop()
    note("tier time %.1f s" % (time.time() - T0))


if __name__ == "__main__":
    try:
        main()
    finally:
        for gg in gates:
            if gg.proc.poll() is None:
                gg.stop()
        if not os.environ.get("KEEP_TMP"):   # KEEP_TMP=1 keeps certificates and gate logs
            shutil.rmtree(TMP, ignore_errors=True)
    done()
