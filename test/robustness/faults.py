"""faults: tier-70's faulty apps (test/robustness/faultyapp.py, started by
the gate as httpgate-test), faulty names files, and a launcher that is down,
refuses or misbehaves."""
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import threading
import time

import faultyapp
from common import (APP_PORTS, FIG, G_APPS, G_LAUNCH, G_NBROKEN, G_NDIR, G_NEMPTY, G_NEMPTYDEF, G_NFIFO, G_NHUGE,
                    G_NMISSING, G_NOLAUNCH, G_NOROOT, G_NUNREAD, G_STALE, GATE_WRAP, IDLE_TIMEOUT, LAUNCH_PORTS,
                    P_FALLBACK, P_FALLBACK2, P_LEGIT, P_NOBODY, START_TIMEOUT, USER, Case, config_case, legit_body,
                    one, parse_response, well_formed)
from gatetest import (GATE, Conn, Gate, HttpBackend, ensure_user, kill_pids, listening_pids, ok, pid_alive)
from rlib import GateWatch, Legit

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# Faulty apps: names-file entries whose apps (test/robustness/faultyapp.py)
# misbehave, started by the gate's fallback launcher as httpgate-test.

def app_setup(ctx):
    """The app program, one directory per app, and the names file."""
    pw = ensure_user(USER)
    tmp = ctx["tmp"]
    app = os.path.join(tmp, "faultyapp.py")
    shutil.copy(os.path.join(HERE, "faultyapp.py"), app)
    os.chmod(app, 0o644)
    locks = os.path.join(tmp, "locks")
    os.mkdir(locks)
    os.chmod(locks, 0o1777)
    dirs = {}
    for k in list(APP_PORTS) + ["fallback", "nobody"]:
        d = dirs[k] = os.path.join(tmp, "app-" + k)
        os.mkdir(d)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    os.chmod(dirs["nobody"], 0o777)
    ctx.update(app=app, app_dirs=dirs, locks=locks, pw=pw)

    def stop_apps():
        pids = []
        for k, d in dirs.items():
            try:
                with open(os.path.join(d, "starts")) as f:
                    pids += [int(x) for x in f.read().split()]
            except OSError:
                pass
        for port in list(APP_PORTS.values()) + [P_FALLBACK, P_NOBODY, P_FALLBACK2]:
            pids += list(listening_pids(port))
        kill_pids([p for p in pids if pid_alive(p) and _cmdline_has(p, app)])
    ctx["cleanup"].append(stop_apps)


def _cmdline_has(pid, s):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return s.encode() in f.read()
    except OSError:
        return False


def _starts(d):
    try:
        with open(os.path.join(d, "starts")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _raw_until_close(port, data, timeout):
    """Sends data; returns (every byte until the gate closes, seconds, client
    port)."""
    s_ = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    cport = s_.getsockname()[1]
    t = time.time()
    out = b""
    try:
        s_.sendall(data)
        while True:
            d = s_.recv(1 << 20)
            if not d:
                break
            out += d
    except OSError:
        pass
    finally:
        s_.close()
    return out, time.time() - t, cport


def faulty_apps(ctx):
    cat = "faults: apps"
    app, dirs = ctx["app"], ctx["app_dirs"]
    names = os.path.join(ctx["tmp"], "names-apps")
    with open(names, "w") as f:
        for mode, port in APP_PORTS.items():
            f.write("%s %d %s %s %s.log python3 %s %s\n" % (mode, port, USER, dirs[mode], mode, app, mode))
    g = Gate(G_APPS, ["--launcher=", "--lock-dir=" + ctx["locks"], "--start-timeout", str(START_TIMEOUT),
                      "--idle-timeout", str(IDLE_TIMEOUT), names])
    ctx["gates"].append(g)
    gw = GateWatch(g)
    legit = Legit(G_APPS, P_LEGIT)
    ctx["legits"].append(("the faulty apps", legit))
    legit.start()
    req = lambda t, extra=b"": b"GET " + t + b" HTTP/1.1\r\nHost: h\r\n" + extra + b"\r\n"  # noqa: E731
    res = {}

    def run(name, target, extra=b"", timeout=15):
        try:
            res[name] = _raw_until_close(G_APPS, req(target, extra), timeout)
        except Exception as e:  # noqa: BLE001 - reported below
            res[name] = e
    # The gate's own answers keep a connection (httpgate(8), ANSWERS): the
    # requests that get one say they are the client's last.
    last = b"Connection: close\r\n"
    jobs = [("never", b"/never/x", last), ("exit", b"/exit/x", last), ("crash", b"/crash/x"), ("silent", b"/silent/x"),
            ("garbage", b"/garbage/g1"), ("rst", b"/rst/x"), ("closer", b"/closer/x", last),
            ("slowstart", b"/slowstart/x", b"Connection: close\r\n")]
    th = [threading.Thread(target=run, args=j) for j in jobs]
    for t in th:
        t.start()
    for t in th:
        t.join(30)

    def expect(name, what, checks, statuses, end, code, why=None):
        with Case(cat):
            r = res.get(name)
            if not isinstance(r, tuple):
                ok(False, "%s: %s: ran" % (cat, what), repr(r))
                return None
            out, el, cport = r
            inst = gw.instance(cport, timeout=8)
            for cond, text, detail in checks(out, el):
                ok(cond, "%s: %s: %s" % (cat, what, text), detail)
            ok(inst is not None and inst.statuses == statuses,
               "%s: %s: the log says %s" % (cat, what, " ".join(map(str, statuses))), inst and inst.text())
            if why:
                ok(inst is not None and any(why in (x[4] or "") for x in inst.reqs),
                   "%s: %s: the log gives the reason (%s)" % (cat, what, why), inst and inst.text())
            if end:
                # "app closed" and "closed" differ only in who closed first
                ends = ("app closed", "closed") if end == "app closed" else (end,)
                ok(inst is not None and inst.end in ends, "%s: %s: the log says it ended: %s" % (cat, what, end),
                   inst and inst.text())
            ok(inst is not None and inst.exit == code, "%s: %s: the instance exits with %d" % (cat, what, code),
               inst and inst.exit)
            return inst

    st = START_TIMEOUT
    expect("never", "an app that never listens", lambda out, el: [
        (well_formed(parse_response(out), 504), "504", out[:100]),
        (st - 0.2 <= el <= st + 1.5, "at the %d s start timeout (%.2f s)" % (st, el), el)],
        [504], "answered with an error", 3, "did not listen on port %d within %ds" % (APP_PORTS["never"], st))
    expect("exit", "an app that exits at once", lambda out, el: [
        (well_formed(parse_response(out), 503), "503", out[:100]),
        (el < 1.0, "within a second (%.2f s)" % el, el)],
        [503], "answered with an error", 3, "exited before listening")
    expect("crash", "an app that crashes mid-response", lambda out, el: [
        (out.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n") and
         len(out.split(b"\r\n\r\n", 1)[1]) == 1000000,
         "the client gets what the app sent (the head and 1 MB of 10)", len(out)),
        (el < START_TIMEOUT + 3, "and the connection closes (%.2f s)" % el, el)],
        ["forwarded"], "app closed", 0)
    expect("silent", "an app that accepts and never answers", lambda out, el: [
        (out == b"", "the client gets nothing", out[:100]),
        (IDLE_TIMEOUT - 0.3 <= el <= IDLE_TIMEOUT + START_TIMEOUT + 2,
         "closed at the %d s idle timeout (%.2f s)" % (IDLE_TIMEOUT, el), el)],
        ["forwarded"], "idle timeout", 2)
    expect("garbage", "an app that answers garbage", lambda out, el: [
        (out == faultyapp.garbage(b"/g1"), "the client gets its 100 000 bytes exactly (%d)" % len(out),
         out[:40])], ["forwarded"], "app closed", 0)
    expect("rst", "an app that resets mid-response", lambda out, el: [
        (out.startswith(b"HTTP/1.1 200 OK\r\n") and len(out) <= 1000000 + 64,
         "the client gets at most what the app sent (%d bytes)" % len(out), len(out)),
        (el < START_TIMEOUT + 3, "and the connection closes (%.2f s)" % el, el)],
        ["forwarded"], "app closed", 0)
    expect("closer", "an app that closes without answering", lambda out, el: [
        (well_formed(parse_response(out), 502), "the client gets 502", out[:100]),
        (el < START_TIMEOUT + 2, "at once (%.2f s)" % el, el)],
        [502], "answered with an error", 3, "closed the connection without answering")
    expect("slowstart", "an app that listens after a second", lambda out, el: [
        (parse_response(out) is not None and parse_response(out).status == 200, "200", out[:100]),
        (1.0 <= el <= START_TIMEOUT + 0.5, "after its second (%.2f s)" % el, el)],
        ["forwarded"], "app closed", 0)
    # crashed apps are started again on demand
    with Case(cat):
        out, el, cport = _raw_until_close(G_APPS, req(b"/crash/again"), 15)
        ok(len(_starts(dirs["crash"])) == 2 and out.startswith(b"HTTP/1.1 200 OK\r\n"),
           "%s: the crashed app is started again by the next request" % cat, (_starts(dirs["crash"]), out[:60]))
    # a response head of 1 MB passes (too long to frame: passed on as it comes)
    with Case(cat):
        c = Conn(G_APPS, timeout=15)
        c.send(req(b"/hugehead/x"))
        r = c.response()
        c.close()
        ok(r is not None and r.status == 200 and len(r.header("X-Big") or "") == 1 << 20 and r.body == b"ok",
           "%s: an app that answers with a 1 MB header field: it passes whole" % cat, r and r.raw[:80])
    with Case(cat):
        bad = [i for i in gw.parse() if i.exit is not None and i.exit not in (0, 1, 2, 3)]
        ok(not bad, "%s: no instance crashed or exited otherwise than 0-3" % cat, [(i.pid, i.exit) for i in bad])


def configs(ctx):
    cat = "faults: configs"
    tmp = ctx["tmp"]
    base = ["--launcher=", "--lock-dir=" + ctx["locks"]]
    # -- missing
    missing = os.path.join(tmp, "no-such-dir", "names")
    g = Gate(G_NMISSING, base + ["--names=" + missing])
    ctx["gates"].append(g)
    config_case(cat, g, b"/app/x", 503, "missing names file", "names file %s: No such file or directory" % missing,
                code=78)
    config_case(cat, g, b"/%d/x" % P_LEGIT, 200, "missing names file, numeric port still served",
                body=legit_body(b"/x"), code=0)
    # -- unreadable by the gate's user (the gate runs as httpgate-test)
    unread = os.path.join(tmp, "names-unreadable")
    with open(unread, "w") as f:
        f.write("app %d nobody /tmp ^ /bin/false\n" % P_LEGIT)
    os.chmod(unread, 0o600)
    g = Gate(G_NUNREAD, ["--user", USER, "--", GATE] + base + ["--names=" + unread], binary=GATE_WRAP)
    ctx["gates"].append(g)
    config_case(cat, g, b"/app/x", 503, "names file the gate may not read",
                "names file %s: Permission denied" % unread, code=78)
    config_case(cat, g, b"/%d/x" % P_LEGIT, 200, "unreadable names file, numeric port still served",
                body=legit_body(b"/x"), code=0)
    # -- a directory, and a FIFO (whose open would wait for a writer)
    g = Gate(G_NDIR, base + ["--names=" + tmp])
    ctx["gates"].append(g)
    config_case(cat, g, b"/app/x", 503, "names file that is a directory", "names file %s: " % tmp, code=78)
    fifo = os.path.join(tmp, "names-fifo")
    os.mkfifo(fifo)
    g = Gate(G_NFIFO, base + ["--names=" + fifo])
    ctx["gates"].append(g)
    config_case(cat, g, b"/app/x", 503, "names file that is a FIFO (never a hang)", "names file %s: " % fifo,
                code=78, timeout=3)
    config_case(cat, g, b"/%d/x" % P_LEGIT, 200, "names file that is a FIFO, numeric port still served",
                body=legit_body(b"/x"), code=0, timeout=3)
    # -- empty
    empty = os.path.join(tmp, "names-empty")
    open(empty, "w").close()
    g = Gate(G_NEMPTY, base + [empty])
    ctx["gates"].append(g)
    config_case(cat, g, b"/app/x", 404, "empty names file, no default", "404: no such app and no default", code=1)
    g = Gate(G_NEMPTYDEF, base + ["-p", str(P_LEGIT), "--names=" + empty])
    ctx["gates"].append(g)
    config_case(cat, g, b"/app/x", 200, "empty names file, default port", body=legit_body(b"/app/x"), code=0)
    broken_lines(ctx, cat, base)
    huge_names(ctx, cat, base)


def broken_lines(ctx, cat, base):
    tmp = ctx["tmp"]
    ok_line = "%s %d nobody /tmp ^ /bin/false"
    lines = [
        ("# broken lines among good ones", None),
        (ok_line % ("ok1/p1", P_LEGIT), "ok1"),
        ("nport", "missing port"),
        ("badport abc nobody /tmp ^ x", "port is not a number"),
        ("bigport 70000 nobody /tmp ^ x", "port is not a number"),
        (ok_line % ("ok2/p2", P_LEGIT), "ok2"),
        ("redir0 0", "port 0 needs a URL"),
        ("redir2 0 http://a/ http://b/", "port 0 takes only a URL"),
        ("nocmd %d nobody /tmp ^" % P_LEGIT, "missing command"),
        ("fewtok %d nobody /tmp" % P_LEGIT, "needs user, directory, log and command"),
        ("reldir %d nobody tmp ^ /bin/false" % P_LEGIT, "directory must be an absolute path"),
        ("nouser %d ^ /tmp ^ /bin/false" % P_LEGIT, "user and directory cannot be empty"),
        ("long %d nobody /tmp ^ %s" % (P_LEGIT, "x" * 5000), "longer than 4095"),
        ("nul\0key %d nobody /tmp ^ /bin/false" % P_LEGIT, "NUL byte"),
        ("manyargs %d nobody /tmp ^ %s" % (P_LEGIT, " ".join(["a"] * 70)), "too many command arguments"),
        ("/p %d nobody /tmp ^ /bin/false" % P_LEGIT, "empty key"),
        ("ok3/p3\t%d\tnobody\t/tmp\t^\t/bin/false\r" % P_LEGIT, "ok3"),
        ("   " + ok_line % ("ok4/p4", P_LEGIT) + "   ", "ok4"),
        ("", None),
        (ok_line % ("ok5/p5", P_LEGIT), "ok5"),
        (ok_line % ("OK5/dup", P_LEGIT), "dup"),
        ("redir 0 http://example.org/there", "redir"),
    ]
    path = os.path.join(tmp, "names-broken")
    with open(path, "w") as f:
        f.write("\n".join(ln for ln, _ in lines) + "\n")
    bad = {i + 1: w for i, (ln, w) in enumerate(lines) if w and w not in ("ok1", "ok2", "ok3", "ok4", "ok5",
                                                                         "dup", "redir")}
    g = Gate(G_NBROKEN, base + [path])
    ctx["gates"].append(g)
    for k in ("ok1", "ok2", "ok3", "ok4", "ok5"):
        inst = config_case(cat, g, b"/%s/x" % k.encode(), 200, "names file with %d broken lines" % len(bad),
                           body=legit_body(b"/p%s/x" % k[2:].encode()), code=0)
    with Case(cat):
        st, r, inst, _ = one(g, b"/redir/x")
        ok(st == 302 and r.header("Location") == "http://example.org/there",
           "%s: broken lines: the redirect entry after them works" % cat, r and r.raw[:200])
    for k in ("nport", "badport", "nocmd", "reldir", "long"):
        config_case(cat, g, b"/%s/x" % k.encode(), 404, "a broken line's key is not served",
                    "404: no such app and no default", code=1)
    with Case(cat):
        reported = {}
        for ln in inst.lines if inst else []:
            m = re.match(r"^%s:(\d+): (.*) \(line skipped\)$" % re.escape(path), ln)
            if m:
                reported[int(m.group(1))] = m.group(2)
        ok(sorted(reported) == sorted(bad), "%s: every connection's log names each broken line by number "
           "(%s)" % (cat, sorted(bad)), reported)
        wrong = {n: (reported.get(n), w) for n, w in bad.items() if w not in (reported.get(n) or "")}
        ok(not wrong, "%s: and says what is wrong with it" % cat, wrong)
    with Case(cat):
        p = subprocess.run([GATE, "--check", path], capture_output=True, text=True, timeout=30)
        nums = sorted({int(m) for m in re.findall(r"^%s:(\d+):" % re.escape(path), p.stdout, re.M)})
        ok(p.returncode == 78 and set(bad) <= set(nums), "%s: --check names every broken line and exits 78" % cat,
           (p.returncode, nums, p.stdout[-300:]))
    FIG.add("names broken lines", len(bad))


def huge_names(ctx, cat, base):
    tmp = ctx["tmp"]
    n = 100000
    path = os.path.join(tmp, "names-huge")
    cache = os.path.join(tmp, "cache")
    os.mkdir(cache)
    broken = set(range(5000, n, 10000))
    with open(path, "w") as f:
        for i in range(n):
            if i in broken:
                f.write("broken%d notaport nobody /tmp ^ /bin/false\n" % i)
            else:
                f.write("k%d/p%d %d nobody /tmp ^ /bin/false\n" % (i, i, P_LEGIT))
            if i == n // 2:
                f.write("@/dflt %d nobody /tmp ^ /bin/false\n" % P_LEGIT)
    g = Gate(G_NHUGE, base + [path], env={"CACHE_DIRECTORY": cache})
    ctx["gates"].append(g)
    what = "names file of %d entries" % n
    t = time.time()
    inst = config_case(cat, g, b"/k0/x", 200, what + " (first connection builds the index)",
                       body=legit_body(b"/p0/x"), code=0, within=10)
    first = time.time() - t
    with Case(cat):
        # Whichever connection came first built the index and logged them (the
        # gate's own readiness probe may have been first): the whole log counts.
        reported = sorted(set(int(m) for m in re.findall(r"%s:(\d+): port is not a number" % re.escape(path),
                                                         g.log())))
        want = sorted(i + 1 if i <= n // 2 else i + 2 for i in broken)
        ok(reported == want, "%s: %s: the log names its %d broken lines" % (cat, what, len(broken)), reported)
    rnd = random.Random(7)
    keys = [rnd.randrange(n) for _ in range(40)] + [n - 1, n // 2, 1]
    keys = [k for k in keys if k not in broken]
    good, ms = 0, []
    for k in keys:
        st, r, i, _ = one(g, b"/K%d/x" % k)
        good += st == 200 and r.body == legit_body(b"/p%d/x" % k)
        if i is not None and i.done:
            ms.append(i.done["ms"])
    each = sum(ms) / max(len(ms), 1)
    with Case(cat):
        ok(good == len(keys), "%s: %s: %d random keys (upper-case) reach their own lines" % (cat, what, len(keys)),
           good)
        ok(len(ms) == len(keys) and max(ms) < 200, "%s: %s: a connection takes %.1f ms on average, %d ms at most, "
           "once indexed (the first one, building the index: %.2f s)" % (cat, what, each, max(ms or [0]), first), ms)
    FIG.set("names entries", n)
    FIG.set("names ms", each)
    config_case(cat, g, b"/broken5000/x", 200, what + ": a broken line's key goes to the default",
                body=legit_body(b"/dflt/broken5000/x"), code=0)
    config_case(cat, g, b"/nosuchkey/x", 200, what + ": an unknown key goes to the default",
                body=legit_body(b"/dflt/nosuchkey/x"), code=0)
    time.sleep(0.01)
    with open(path, "a") as f:
        f.write("knew/pnew %d nobody /tmp ^ /bin/false\n" % P_LEGIT)
    config_case(cat, g, b"/knew/x", 200, what + ": an entry appended is served by the next connection",
                body=legit_body(b"/pnew/x"), code=0, within=10)


# ---------------------------------------------------------------------------
# The launcher down, refusing or misbehaving (src/launch.c's protocol: the
# gate writes NAME "\n", the launcher answers STATUS " " REASON "\n", and
# after a 200 may push one more "503 REASON" line).

class LauncherStub:
    """A unix-socket launcher that misbehaves as the app's name says."""

    def __init__(self, path):
        self.path, self.asked, self.started = path, [], []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _hold(self, c):
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass

    def _conn(self, c):
        try:
            buf = b""
            while b"\n" not in buf and len(buf) < 200:
                d = c.recv(256)
                if not d:
                    break
                buf += d
            name = buf.split(b"\n")[0].decode("latin-1")
            self.asked.append(buf)
            if name == "lrefuse":
                c.sendall(b"403 lrefuse is not in the launcher's names file\n")
            elif name == "lfail":
                c.sendall(b"500 StartTransientUnit failed: Access denied\n")
            elif name == "lsilent":
                self._hold(c)
            elif name == "lclose":
                pass
            elif name == "lgarbage":
                c.sendall(b"hello there\n")
            elif name == "llong":
                c.sendall(b"200 " + b"x" * 4000)
                self._hold(c)
            elif name == "lstop":
                c.sendall(b"200 started\n")
                time.sleep(0.3)
                c.sendall(b"503 httpgate-app-lstop.service failed: exit-code\n")
                self._hold(c)
            elif name == "lnever":
                c.sendall(b"200 started\n")
                self._hold(c)
            elif name == "lgood":
                self.started.append(HttpBackend(LAUNCH_PORTS["lgood"]))
                c.sendall(b"200 started\n")
                self._hold(c)
        finally:
            c.close()

    def stop(self):
        self.sock.close()
        for b in self.started:
            b.stop()


def launcher(ctx):
    cat = "faults: launcher"
    tmp, app, dirs = ctx["tmp"], ctx["app"], ctx["app_dirs"]
    sock = os.path.join(tmp, "launch.sock")
    stub = LauncherStub(sock)
    ctx["cleanup"].append(stub.stop)
    names = os.path.join(tmp, "names-launch")
    long_key = "l" + "o" * 69
    with open(names, "w") as f:
        for k, port in LAUNCH_PORTS.items():
            f.write("%s %d %s %s ^ python3 %s serve\n" % (k, port, USER, dirs["fallback"], app))
        f.write("%s %d %s %s ^ python3 %s serve\n" % (long_key, 23129, USER, dirs["fallback"], app))
    g = Gate(G_LAUNCH, ["--launcher=" + sock, "--start-timeout", str(START_TIMEOUT), "--lock-dir=" + ctx["locks"],
                        names])
    ctx["gates"].append(g)
    st = START_TIMEOUT
    cases = [
        ("lrefuse", "a launcher that refuses", 503, 1.0, "launcher: lrefuse is not in the launcher's names file"),
        ("lfail", "a launcher whose start fails", 503, 1.0, "launcher: StartTransientUnit failed: Access denied"),
        ("lsilent", "a launcher that never answers", 504, st + 1.5,
         "launcher did not answer for lsilent within %ds" % st),
        ("lclose", "a launcher that hangs up at once", 503, 1.0, "launcher %s: " % sock),
        ("lgarbage", "a launcher that answers garbage", 503, 1.0, "launcher %s: Protocol error" % sock),
        ("llong", "a launcher that answers 4000 bytes without a newline", 503, 1.0,
         "launcher %s: Protocol error" % sock),
        ("lstop", "a launcher whose unit stops before it listens", 503, 1.5,
         "httpgate-app-lstop.service failed: exit-code"),
        ("lnever", "a launcher that says started, and nothing listens", 504, st + 1.5,
         "lnever did not listen on port %d within %ds" % (LAUNCH_PORTS["lnever"], st)),
    ]
    res = {}

    def run(key):
        try:
            res[key] = one(g, b"/%s/x" % key.encode(), timeout=st + 5)
        except Exception as e:  # noqa: BLE001
            res[key] = e
    th = [threading.Thread(target=run, args=(k,)) for k, *_ in cases]
    for t in th:
        t.start()
    for t in th:
        t.join(30)
    # instances are told apart by their targets (they run at once)
    end = time.time() + 5
    while True:
        parsed = [i for i in GateWatch(g).parse() if i.reqs]
        if time.time() > end or (len(parsed) >= len(cases) and all(i.exit is not None for i in parsed)):
            break
        time.sleep(0.05)
    insts = {i.reqs[0][0].split()[-1]: i for i in parsed}
    for key, what, status, within, why in cases:
        with Case(cat):
            r = res.get(key)
            if not isinstance(r, tuple):
                ok(False, "%s: %s: ran" % (cat, what), repr(r))
                continue
            s_, resp, _, el = r
            inst = insts.get("/%s/x" % key)
            ok(s_ == status and well_formed(resp, status) and el <= within,
               "%s: %s: %d within %.1f s (%.2f s)" % (cat, what, status, within, el), (s_, resp and resp.raw[:80]))
            ok(inst is not None and inst.statuses == [status] and why in (inst.reqs[0][4] or ""),
               "%s: %s: the log says %d: %s" % (cat, what, status, why), inst and inst.text())
            ok(inst is not None and inst.exit == 3, "%s: %s: the instance exits with 3" % (cat, what),
               inst and (inst.exit, inst.text()))
            ok(("%s\n" % key).encode() in stub.asked, "%s: %s: the gate asked for %r and nothing else" % (
                cat, what, key), stub.asked)
    with Case(cat):
        st_, r, inst, el = one(g, b"/lgood/x")
        ok(st_ == 200 and r.body == b"port=%d target=/x\n" % LAUNCH_PORTS["lgood"],
           "%s: a launcher that starts the app: answered by the app (%.2f s)" % (cat, el), r and r.raw[:100])
    with Case(cat):
        n = len(stub.asked)
        st_, r, inst, el = one(g, b"/%s/x" % long_key.encode())
        ok(st_ == 503 and inst is not None and "app name longer than 64 bytes" in inst.text()
           and not any(long_key.encode()[:10] in a for a in stub.asked),
           "%s: an app name over 64 bytes: 503, and the name never goes on the wire" % cat,
           (st_, inst and inst.text(), stub.asked[n:]))
        ok(all(a == b"" or (a.endswith(b"\n") and a.count(b"\n") == 1 and len(a) <= 65) for a in stub.asked),
           "%s: every request on the wire is one name and a newline" % cat, stub.asked)

    # -- no launcher: the fallback starts the app itself (DESIGN.md)
    fb = "lfb %d %s %s fb.log python3 %s serve\n" % (P_FALLBACK, USER, dirs["fallback"], app)
    names_fb = os.path.join(tmp, "names-fallback")
    with open(names_fb, "w") as f:
        f.write(fb)
        f.write("lfb2 %d %s %s fb.log python3 %s serve\n" % (P_FALLBACK2, USER, dirs["fallback"], app))
        f.write("lnobody %d nobody %s ^ python3 %s serve\n" % (P_NOBODY, dirs["nobody"], app))
    os.chmod(names_fb, 0o644)
    none = os.path.join(tmp, "no-launcher.sock")
    stale = os.path.join(tmp, "stale.sock")
    x = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    x.bind(stale)
    x.close()  # the file stays; nobody listens
    for port, path, key, what in ((G_NOLAUNCH, none, b"lfb", "no launcher socket"),
                                  (G_STALE, stale, b"lfb2", "a launcher socket nobody listens on")):
        g = Gate(port, ["--launcher=" + path, "--lock-dir=" + ctx["locks"], "--start-timeout", str(START_TIMEOUT),
                        names_fb])
        ctx["gates"].append(g)
        with Case(cat):
            st_, r, inst, el = one(g, b"/%s/x" % key, timeout=10)
            ok(st_ == 200 and r.body.startswith(b"serve "), "%s: %s: the gate starts the app itself (200, %.2f s)" % (
                cat, what, el), r and r.raw[:100])
            ok(inst is not None and "no launcher at %s" % path in inst.text(),
               "%s: %s: the log says so" % (cat, what), inst and inst.text())
    # -- the same, with the gate not root (as under systemd): it cannot start
    # an app as the entry's user, and must not start it as its own
    g = Gate(G_NOROOT, ["--user", USER, "--", GATE, "--launcher=" + none, "--lock-dir=" + ctx["locks"],
                        "--start-timeout", str(START_TIMEOUT), names_fb], binary=GATE_WRAP)
    ctx["gates"].append(g)
    with Case(cat):
        st_, r, inst, el = one(g, b"/lnobody/x", timeout=10)
        time.sleep(0.3)
        owners = {}
        for pid in listening_pids(P_NOBODY):
            try:
                with open("/proc/%d/status" % pid) as f:
                    owners[pid] = [ln.split()[1] for ln in f if ln.startswith("Uid:")][0]
            except OSError:
                pass
        wrong = {p: u for p, u in owners.items() if int(u) != pwd.getpwnam("nobody").pw_uid}
        ok(st_ == 503 and el < 2, "%s: no launcher and a gate that is not root: 503 at once (%.2f s)" % (cat, el),
           (st_, r and r.raw[:100], inst and inst.text()))
        ok(not wrong, "%s: no launcher and a gate that is not root: the app does not run as the gate's user "
           "(%s) instead of its entry's (nobody)" % (cat, USER), owners)
