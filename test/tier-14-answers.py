#!/usr/bin/python3
"""tier-14 (answers): the gate's own answers.

Every refusal is a real HTTP answer (status line, Content-Length matching the
body) and a line naming the status goes to the log (stderr, as without
journald). Where the client's stream can no longer be framed (a bad head, a
timeout) the answer says Connection: close and the connection closes; an
answer to a well-formed request without a body (403, 404, 302, 410, 502, 501
for a method not forwarded) keeps the connection, and the next request on it
is served. Error answers to a later request of a kept-alive connection come
after the earlier response, intact.
Ports 20200-20299.
"""
import os
import re
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from gatetest import Conn, Gate, HttpBackend, check, done, ok  # noqa: E402

APP, DENIED, NOTHING, NOTHING_V, ENTRY_V = 20201, 20202, 20299, 20298, 20297
G_MAIN, G_SMALL, G_METH, G_NAMES, G_VOID = 20210, 20211, 20212, 20213, 20214
OK_BODY = b"port=%d target=/ok\n" % APP
GET_OK = b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"
APP_OK = b"GET /app/ok HTTP/1.1\r\nHost: h\r\n\r\n"  # the same, where a names file has no default

# (name, request bytes, status) on G_MAIN
CASES = [
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: h\n\n", 400),
    ("bare LF inside the fields", b"GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n", 400),
    ("bare CR in a field", b"GET / HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n  folded\r\n\r\n", 400),
    ("obs-fold hiding an X-Pil", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n X-Pil: *Gate=https\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    ("space before colon in X-Pil", b"GET / HTTP/1.1\r\nHost: h\r\nX-Pil : *Adr=6.6.6.6\r\n\r\n", 400),
    ("Content-Length with Transfer-Encoding",
     b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding with Content-Length",
     b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("differing Content-Lengths",
     b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    ("hex Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400),
    ("Transfer-Encoding on HTTP/1.0",
     b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n", 400),
    ("negative chunk size", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk data longer than its size",
     b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", 400),
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("control byte in the target", b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ("port below 1024", b"GET /80/x HTTP/1.1\r\nHost: h\r\n\r\n", 403),
    ("port 1023", b"GET /1023/x HTTP/1.1\r\nHost: h\r\n\r\n", 403),
    ("--deny port", b"GET /%d/x HTTP/1.1\r\nHost: h\r\n\r\n" % DENIED, 403),
    ("target over 8 KiB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    ("101 header fields", b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(100))
     + b"\r\n", 431),
    ("head over 16 KiB", b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 431),
    ("method BREW", b"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    ("method TRACE", b"TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    ("method CONNECT", b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n", 501),
    ("lower-case method get", b"get / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    ("unknown transfer coding before chunked",
     b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("transfer coding without chunked last (RFC 9112 6.3)",
     b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("Transfer-Encoding: chunked, identity",
     b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding chunked twice",
     b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    ("HTTP/0.9 version", b"GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505),
    ("nothing listening on a numeric port", b"GET /%d/x HTTP/1.1\r\nHost: h\r\n\r\n" % NOTHING, 502),
    ("session URL, nothing listening", b"GET /%d/~abc HTTP/1.1\r\nHost: h\r\n\r\n" % NOTHING_V, 410),
]

EXIT_CODES = {400: 1, 403: 1, 408: 2, 414: 1, 431: 1, 501: 1, 505: 1, 502: 3}


def well_formed(r, status, kept=False):
    """Status as expected, Content-Length matching the body, Connection:
    close unless the connection is kept."""
    return (r is not None and r.status == status and r.header("Content-Length") == str(len(r.body))
            and (r.header("Connection") or "").lower() == ("" if kept else "close"))


def keeps(name, data, status):
    """The gate's answer keeps the connection: a well-formed request, no body."""
    refused_method = name.startswith("method ") or name.startswith("lower-case method") or "--methods" in name
    return status in (302, 403, 404, 410, 502, 503, 504) or (status == 501 and refused_method)


def logged(gate, since, status):
    """The log line for this status after offset since; returns its pid."""
    end = time.time() + 2
    while time.time() < end:
        m = re.search(r"httpgate\[(\d+)\]: 127\.0\.0\.1 .*-> \S+ %d(:|\n)" % status, gate.log()[since:])
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    return None


def exit_code(gate, pid):
    end = time.time() + 3
    while time.time() < end:
        m = re.search(r"Child %d died with code (\d+)" % pid, gate.log())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    return None


def answer(gate, data, status, name, later=False, timeout=6, first_req=GET_OK, next_req=GET_OK):
    """Sends data (after the good request first_req when later), expects
    the answer."""
    since = len(gate.log())
    c = Conn(gate.port, timeout=timeout)
    try:
        c.send((first_req if later else b"") + data)
        if later:
            first = c.response()
            ok(first is not None and first.status == 200 and first.body == OK_BODY,
               "%s (later request): earlier response arrives first, intact" % name, first and first.raw)
        r = c.response()
        kept = keeps(name, data, status)
        ok(well_formed(r, status, kept), "%s%s: %d with its body, %s" % (
            name, " (later request)" if later else "", status, "keeping the connection" if kept
            else "Connection: close"), r and r.raw[:200])
        if kept:
            c.send(next_req)
            nxt = c.response()
            ok(nxt is not None and nxt.status == 200 and nxt.body == OK_BODY and not c.buf,
               "%s%s: the next request on the connection is served" % (name, " (later request)" if later else ""),
               nxt and nxt.raw[:100])
        else:
            closed = c.closed_within(3)
            ok(closed is not None and not c.buf, "%s%s: gate closes after the answer, nothing more" % (
                name, " (later request)" if later else ""), (closed, c.buf[:100]))
    finally:
        c.close()
    pid = logged(gate, since, status)
    ok(pid is not None, "%s%s: log line with %d" % (name, " (later request)" if later else "", status),
       gate.log()[since:][-300:])
    return r, pid


def main_cases(g):
    for name, data, status in CASES:
        r, pid = answer(g, data, status, name)
        if status == 410:
            ok(r is not None and b"410" in r.body, "session URL without void file: built-in 410 page",
               r and r.body)
        if pid and name in ("bare LF line ends", "port below 1024", "method BREW",
                            "nothing listening on a numeric port", "HTTP/2.0"):
            if keeps(name, data, status):
                # the exit code tells of the connection's last request: make this one the last
                since = len(g.log())
                c = Conn(g.port, timeout=6)
                c.send(data.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
                c.response()
                c.closed_within(3)
                c.close()
                pid = logged(g, since, status)
            ok(pid is not None and exit_code(g, pid) == EXIT_CODES[status],
               "%s: instance exits with %d" % (name, EXIT_CODES[status]), pid and exit_code(g, pid))


def later_cases(g):
    picks = ["bare LF line ends", "space before colon in X-Pil", "differing Content-Lengths", "bad chunk size",
             "port below 1024", "target over 8 KiB", "101 header fields", "method BREW", "HTTP/2.0",
             "nothing listening on a numeric port", "session URL, nothing listening"]
    for name, data, status in CASES:
        if name in picks:
            answer(g, data, status, name, later=True)


def timeouts(g):
    # a client that sends nothing
    since = len(g.log())
    c = Conn(g.port, timeout=8)
    t0 = time.time()
    r = c.response()
    el = time.time() - t0
    c.close()
    ok(well_formed(r, 408), "silent client: 408", r and r.raw[:100])
    ok(1.5 <= el <= 3.5, "silent client: 408 after the 2 s head timeout", "%.2f s" % el)
    pid = logged(g, since, 408)
    ok(pid is not None, "silent client: log line with 408", g.log()[since:][-300:])
    ok(pid is not None and exit_code(g, pid) == 2, "silent client: instance exits with 2", pid and exit_code(g, pid))

    # slowloris: a byte every 0.4 s never completes the head
    since = len(g.log())
    c = Conn(g.port, timeout=8)
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"s" * 100
    t0 = time.time()
    sent = 0
    try:
        for i in range(len(head)):
            c.send(head[i:i + 1])
            sent += 1
            time.sleep(0.4)
            if time.time() - t0 > 8:
                break
    except OSError:
        pass
    r = c.response()
    el = time.time() - t0
    c.close()
    ok(well_formed(r, 408), "slowloris: 408", r and r.raw[:100])
    ok(el <= 4.0 and sent < 12, "slowloris: cut off at the 2 s head timeout, not fed by its bytes",
       "%.2f s, %d bytes" % (el, sent))
    ok(logged(g, since, 408) is not None, "slowloris: log line with 408", g.log()[since:][-300:])

    # a later head that does not complete: counted from its first byte
    since = len(g.log())
    c = Conn(g.port, timeout=8)
    c.send(GET_OK)
    first = c.response()
    time.sleep(2.5)  # idle between requests is not a head timeout
    c.send(b"GET /ok HTTP/1.1\r\nHo")
    t0 = time.time()
    r = c.response()
    el = time.time() - t0
    c.close()
    ok(first is not None and first.body == OK_BODY, "later head timeout: first response intact", first and first.raw)
    ok(well_formed(r, 408) and 1.5 <= el <= 3.5, "later head timeout: 408 two seconds after its first byte",
       (r and r.raw[:60], "%.2f s" % el))
    ok(logged(g, since, 408) is not None, "later head timeout: log line with 408", g.log()[since:][-300:])


def small_head(g):
    answer(g, b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n", 431, "head over --max-head 2048")
    c = Conn(g.port)
    c.send(b"GET /ok HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 1500 + b"\r\n\r\n")
    r = c.response()
    c.close()
    ok(r is not None and r.status == 200 and r.body == OK_BODY, "head under --max-head 2048 forwarded",
       r and r.raw[:100])


def methods_changed(g, be):
    n = len(be.reqs)
    c = Conn(g.port)
    c.send(b"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n")
    r = c.response()
    c.close()
    got = be.reqs[n:]
    ok(r is not None and r.status == 200 and len(got) == 1 and got[0]["head"].startswith("BREW /pot HTTP/1.1\r\n"),
       "--methods GET,BREW: BREW forwarded", (r and r.raw[:80], [x["head"][:30] for x in got]))
    answer(g, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 501, "--methods GET,BREW: POST")
    answer(g, b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 501, "--methods GET,BREW: HEAD")


def names_answers(g, void_text):
    answer(g, b"GET /nothing/here HTTP/1.1\r\nHost: h\r\n\r\n", 404, "names file without default: unknown key",
           next_req=APP_OK)
    r, _ = answer(g, b"GET /go/x HTTP/1.1\r\nHost: h\r\n\r\n", 302, "port-0 entry", next_req=APP_OK)
    ok(r is not None and r.header("Location") == "http://example.org/there", "port-0 entry: Location header",
       r and r.raw[:200])
    r, _ = answer(g, b"GET /sess/~abc HTTP/1.1\r\nHost: h\r\n\r\n", 410, "entry with a void file, session URL",
                  next_req=APP_OK)
    ok(r is not None and r.body == void_text, "410 body is the entry directory's void file", r and r.body[:100])
    answer(g, b"GET /go/x HTTP/1.1\r\nHost: h\r\n\r\n", 302, "port-0 entry", later=True,
           first_req=APP_OK, next_req=APP_OK)


def void_option(g, void_text):
    r, _ = answer(g, b"GET /%d/~s1/page HTTP/1.1\r\nHost: h\r\n\r\n" % NOTHING_V, 410, "--void FILE, session URL")
    ok(r is not None and r.body == void_text, "410 body is the --void file", r and r.body[:100])


def main():
    for p in (NOTHING, NOTHING_V, ENTRY_V):
        s = socket.socket(socket.AF_INET6)
        try:
            s.bind(("::1", p))  # must be free: the 502/410 cases need nobody there
        except OSError:
            print("# warning: port %d in use" % p)
        s.close()
    tmp = tempfile.mkdtemp(prefix="httpgate-t12-")
    os.chmod(tmp, 0o755)
    entry_void = b"<html>entry void \xe2\x9c\x93 " + os.urandom(8).hex().encode() + b"</html>\n"
    opt_void = b"<html>option void " + os.urandom(8).hex().encode() + b"</html>\n"
    with open(os.path.join(tmp, "void"), "wb") as f:
        f.write(entry_void)
    with open(os.path.join(tmp, "optvoid"), "wb") as f:
        f.write(opt_void)
    names = os.path.join(tmp, "names")
    with open(names, "w") as f:
        f.write("app %d nobody /tmp ^ /bin/false\n" % APP)
        f.write("go 0 http://example.org/there\n")
        f.write("sess %d nobody %s ^ /bin/false\n" % (ENTRY_V, tmp))
    be = HttpBackend(APP)
    gates = []
    try:
        gates.append(Gate(G_MAIN, ["--head-timeout", "2", "--deny", str(DENIED), str(APP)]))
        gates.append(Gate(G_SMALL, ["--max-head", "2048", str(APP)]))
        gates.append(Gate(G_METH, ["--methods", "GET,BREW", str(APP)]))
        gates.append(Gate(G_NAMES, ["--start-timeout", "3", "--lock-dir", tmp, names]))
        gates.append(Gate(G_VOID, ["--void", os.path.join(tmp, "optvoid"), str(APP)]))
        check("answers", main_cases, gates[0])
        check("answers on later requests", later_cases, gates[0])
        check("timeouts", timeouts, gates[0])
        check("--max-head", small_head, gates[1])
        check("--methods", methods_changed, gates[2], be)
        check("names answers", names_answers, gates[3], entry_void)
        check("--void", void_option, gates[4], opt_void)
        logs = "".join(g.log() for g in gates)
        ok("AddressSanitizer" not in logs and "runtime error" not in logs, "no sanitizer report in any gate log",
           [ln for ln in logs.splitlines() if "Sanitizer" in ln or "runtime error" in ln][:3])
    finally:
        for g in gates:
            g.stop()
        be.stop()
    done()


if __name__ == "__main__":
    main()
