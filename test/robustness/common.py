"""common: what every part of tier-70 shares: the numbers and ports, the
figures (FIG) and the Case that counts into them, and small client helpers.
See test/tier-70-robustness.py for the whole."""
import os
import socket
import struct
import sys
import time

TESTDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTDIR, "lib"))
from gatetest import TOP, Conn, ok, _results  # noqa: E402
from rlib import Figures, GateWatch  # noqa: E402

FULL = os.environ.get("ROBUSTNESS_FULL") == "1"
FUZZ_SECONDS = int(os.environ.get("ROBUSTNESS_FUZZ_SECONDS", "30" if FULL else "3"))
FIGURES_PATH = os.environ.get("ROBUSTNESS_FIGURES", os.path.join(TOP, "build", "robustness-figures.md"))
USER = "httpgate-test"

# the numbers
N_HELD = 1000 if FULL else 300
N_FLOOD = 5000 if FULL else 2000
N_SLOW_ARMY = 300 if FULL else 100
N_PIPELINE = 1000 if FULL else 100
BULK_MB = 2048 if FULL else 256

# ports
P_STRICT, P_LEGIT, P_BULK = 23001, 23002, 23003
G_HOSTILE, G_LOAD, G_APPS, G_BULK, G_LAUNCH = 23010, 23011, 23012, 23013, 23014
G_NOLAUNCH, G_STALE, G_NOROOT = 23015, 23016, 23017
G_NMISSING, G_NUNREAD, G_NEMPTY, G_NEMPTYDEF, G_NHUGE, G_NBROKEN, G_NFIFO, G_NDIR = range(23020, 23028)
APP_PORTS = {"never": 23100, "exit": 23101, "crash": 23102, "silent": 23103, "garbage": 23104,
             "rst": 23105, "closer": 23106, "hugehead": 23107, "slowstart": 23108}
LAUNCH_PORTS = {"lrefuse": 23120, "lfail": 23121, "lsilent": 23122, "lclose": 23123, "lgarbage": 23124,
                "llong": 23125, "lstop": 23126, "lnever": 23127, "lgood": 23128}
P_FALLBACK, P_NOBODY, P_FALLBACK2 = 23130, 23131, 23132

HEAD_TIMEOUT, IDLE_TIMEOUT, START_TIMEOUT = 2, 3, 2

FIG = Figures()
# A request to hide in bodies and after framing tricks: should it ever reach
# the app as a head the gate did not clean, the app sees SPOOF (rlib.py's
# StrictBackend reports it).
SM = b"GET /smuggled HTTP/1.1\r\nHost: h\r\nX-Pil: *Adr=SPOOF\r\nX-Pil: *Gate=SPOOF\r\n\r\n"
P = b"POST /c HTTP/1.1\r\nHost: h\r\n"  # the start of a head with a body


def failed():
    return _results["failed"]


class Case:
    """Counts one case into a category of the figures: it passed when none
    of the assertions made inside failed."""

    def __init__(self, cat):
        self.cat = cat

    def __enter__(self):
        self.before = failed()
        return self

    def __exit__(self, typ, val, tb):
        if typ is not None:
            import traceback
            ok(False, "%s: case raised %s" % (self.cat, typ.__name__), traceback.format_exc().splitlines()[-1])
        FIG.case(self.cat, failed() == self.before)
        return True  # a case that raised is one failure; the tier goes on


def client_port(conn):
    return conn.sock.getsockname()[1]


def well_formed(r, status):
    """A whole answer: the status, a Content-Length matching the body, and
    Connection: close, or nothing where the gate keeps the connection (a
    well-framed request without a body; tier-14 checks which)."""
    return (r is not None and r.status == status and r.header("Content-Length") == str(len(r.body))
            and (r.header("Connection") or "close").lower() == "close")


def vm(pid):
    """(VmRSS, VmHWM) in kB, or None when the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            d = dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
        return int(d["VmRSS"].split()[0]), int(d["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


def reset(sock):
    """Close with SO_LINGER 0: the peer gets a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _get(port, target, timeout=10):
    c = Conn(port, timeout=timeout)
    try:
        c.send(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        r = c.response()
        return (r.status if r else None), r, client_port(c)
    finally:
        c.close()


GATE_WRAP = os.path.join(TESTDIR, "tls", "gate-wrap")


def one(gate, target, timeout=6):
    """One GET on its own connection; (status, Response, Instance, seconds).
    The instance is the one that logged this target after the request
    began (found so, not by pid, since gate-wrap forks the instance)."""
    gw = GateWatch(gate)
    mark = gw.mark()
    c = Conn(gate.port, timeout=timeout)
    t = time.time()
    try:
        c.send(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        r = c.response()
    finally:
        c.close()
    el = time.time() - t
    end = time.time() + 3
    inst = None
    while inst is None and time.time() < end:
        mine = [i for i in gw.others(mark) if i.exit is not None and any(
            q[0].split(" ")[-1] == target.decode("latin-1") for q in i.reqs)]
        inst = mine[0] if mine else None
        if inst is None:
            time.sleep(0.03)
    return (r.status if r else None), r, inst, el


def config_case(cat, gate, target, status, what, log_has=None, body=None, code=None, within=2.0, timeout=6):
    with Case(cat):
        st, r, inst, el = one(gate, target, timeout=timeout)
        ok(st == status and el < within, "%s: %s: %s gets %d (%.2f s)" % (cat, what, target.decode(), status, el),
           (st, r and r.raw[:100]))
        if body is not None:
            ok(r is not None and r.body == body, "%s: %s: %s reaches the right app and path" % (
                cat, what, target.decode()), r and r.body)
        if log_has:
            ok(inst is not None and log_has in inst.text(), "%s: %s: the log says %r" % (cat, what, log_has),
               inst and inst.text()[:400])
        if code is not None:
            ok(inst is not None and inst.exit == code, "%s: %s: the instance exits with %d" % (cat, what, code),
               inst and inst.exit)
        return inst


def legit_body(t):
    return b"port=%d target=%s\n" % (P_LEGIT, t)


def parse_response(raw_bytes):
    """A Response from bytes already read (None when there is no head)."""
    c = Conn.__new__(Conn)
    c.buf, c.sock = raw_bytes, None
    try:
        return c.response()
    except Exception:  # noqa: BLE001 - no socket: what is there is all there is
        return None
