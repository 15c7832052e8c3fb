"""hostile: tier-70's hostile clients. Malformed and over-long heads,
framing and smuggling attempts, X-Pil spoofing, slow, silent, resetting and
half-closed clients, pipelining, and load (connections held open, an army of
slow clients, a flood of new connections)."""
import os
import random
import socket
import threading
import time

from common import (FIG, G_LOAD, HEAD_TIMEOUT, IDLE_TIMEOUT, N_FLOOD, N_HELD, N_PIPELINE, N_SLOW_ARMY, P, P_LEGIT,
                    P_STRICT, SM, Case, _get, client_port, parse_response, reset, vm, well_formed)
from gatetest import Conn, Gate, gate_children, ok, pid_alive
from rlib import GateWatch, Legit, exit_for

# ---------------------------------------------------------------------------
# Hostile clients, one connection per case, in sequence on G_HOSTILE.
# spec: what the gate logs for the connection, in order: F = forwarded and
# answered by the app (the client gets a 200), f = forwarded but the app
# never answers (its body never completes), a number = the gate's answer.

def cases_bounds():
    line = lambda n: b"GET /" + b"a" * (n - 16) + b" HTTP/1.1\r\n"  # noqa: E731 - a request line of n bytes
    head = lambda n: (b"GET / HTTP/1.1\r\nHost: h\r\nX-Fill: " +  # noqa: E731 - a head of n bytes
                      b"f" * (n - len(b"GET / HTTP/1.1\r\nHost: h\r\nX-Fill: \r\n\r\n")) + b"\r\n\r\n")
    fields = lambda n: b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(n - 1)) + b"\r\n"  # noqa: E731
    ext = lambda n: (P + b"Transfer-Encoding: chunked\r\n\r\n5;" + b"e" * (n - 4) +  # noqa: E731 - size line of n bytes
                     b"\r\nhello\r\n0\r\n\r\n")
    return [
        ("request line of 8192 bytes (the limit)", line(8192) + b"Host: h\r\n\r\n", "F"),
        ("request line of 8193 bytes", line(8193) + b"Host: h\r\n\r\n", "414"),
        ("request line of 9000 bytes without an end", b"GET /" + b"a" * 9000, "414"),
        ("head of 16384 bytes (--max-head)", head(16384), "F"),
        ("head of 16385 bytes", head(16385), "431"),
        ("100 header fields (the limit)", fields(100), "F"),
        ("101 header fields", fields(101), "431"),
        ("10 000 tiny header fields", b"GET / HTTP/1.1\r\nHost: h\r\n" + b"a:b\r\n" * 10000 + b"\r\n", "431"),
        ("one field line of 20 000 bytes", b"GET / HTTP/1.1\r\nHost: h\r\nX-L: " + b"l" * 20000 + b"\r\n\r\n", "431"),
        ("10 000 empty lines before the request line", b"\r\n" * 10000 + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "F"),
        ("method of 100 letters", b"A" * 100 + b" / HTTP/1.1\r\nHost: h\r\n\r\n", "501"),
        ("absolute-form target over 8 KiB", b"GET http://h/" + b"a" * 8200 + b" HTTP/1.1\r\nHost: h\r\n\r\n", "414"),
        ("chunk-size line of 256 bytes (the limit)", ext(256) + SM, "F F"),
        ("chunk-size line of 257 bytes", ext(257), "f 400"),
        ("chunk size of 16 hex digits (overflow)", P + b"Transfer-Encoding: chunked\r\n\r\n"
         b"10000000000000005\r\nhello\r\n0\r\n\r\n", "f 400"),
        ("trailer section over 8 KiB", P + b"Transfer-Encoding: chunked\r\n\r\n0\r\n" +
         b"".join(b"T%d: %s\r\n" % (i, b"t" * 90) for i in range(100)) + b"\r\n", "f 400"),
        ("Content-Length of 20 digits", P + b"Content-Length: 99999999999999999999\r\n\r\n", "400"),
        ("Content-Length 2^64", P + b"Content-Length: 18446744073709551616\r\n\r\n", "400"),
        ("Content-Length 2^62 + 1", P + b"Content-Length: 4611686018427387905\r\n\r\n", "400"),
        ("Content-Length 2^62 (the largest), the client sends 5 bytes and stops",
         P + b"Content-Length: 4611686018427387904\r\n\r\nhello", "f"),
    ]


def cases_syntax():
    g = b"GET / HTTP/1.1\r\nHost: h\r\n"
    return [
        ("NUL in the target", b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("NUL in the method", b"G\x00T / HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("NUL in the version", b"GET / HTTP/1\x00.1\r\nHost: h\r\n\r\n", "400"),
        ("NUL in a field value", g + b"X-A: a\x00b\r\n\r\n", "400"),
        ("NUL in a field name", g + b"X-\x00A: b\r\n\r\n", "400"),
        ("bare CR in the request line", b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("bare CR ending the request line", b"GET / HTTP/1.1\rHost: h\r\n\r\n", "400"),
        ("bare CR in a field", g + b"X-A: a\rX-B: b\r\n\r\n", "400"),
        ("CR CR LF ending a field", g + b"X-A: a\r\r\n\r\n", "400"),
        ("bare LF ending the request line", b"GET / HTTP/1.1\nHost: h\r\n\r\n", "400"),
        ("bare LF ending a field", g + b"X-A: a\n\r\n", "400"),
        ("bare LF ending the head", g + b"\n", "400"),
        ("LF only throughout", b"GET / HTTP/1.1\nHost: h\n\n", "400"),
        ("obs-fold (space)", g + b"X-A: a\r\n b\r\n\r\n", "400"),
        ("obs-fold (tab)", g + b"X-A: a\r\n\tb\r\n\r\n", "400"),
        ("whitespace line right after the request line", b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", "400"),
        ("UTF-8 in the target", "GET /caf\u00e9 HTTP/1.1\r\nHost: h\r\n\r\n".encode(), "400"),
        ("Latin-1 byte in the target", b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("non-ASCII in the method", b"G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("non-ASCII in the version", b"GET / HTTP/1.\xb9\r\nHost: h\r\n\r\n", "400"),
        ("DEL in the target", b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("ESC in a field value", g + b"X-A: \x1b[31m\r\n\r\n", "400"),
        ("obs-text in a field value (allowed, RFC 9110 5.5)", g + b"X-A: caf\xe9\r\n\r\n", "F"),
        ("tab between method and target", b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("two spaces between method and target", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("leading space", b" GET / HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("trailing space after the version", b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", "400"),
        ("no version (HTTP/0.9 form)", b"GET /\r\n\r\n", "400"),
        ("method only", b"GET\r\n\r\n", "400"),
        ("version HTTP/1.10", b"GET / HTTP/1.10\r\nHost: h\r\n\r\n", "400"),
        ("version http/1.1 (lower case)", b"GET / http/1.1\r\nHost: h\r\n\r\n", "400"),
        ("version HTTP/1", b"GET / HTTP/1\r\nHost: h\r\n\r\n", "400"),
        ("version HTTP/2.0", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", "505"),
        ("version HTTP/1.2 (a later 1.x)", b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", "F"),
        ("space inside a field name", g + b"X A: b\r\n\r\n", "400"),
        ("empty field name", g + b": b\r\n\r\n", "400"),
        ("field line without a colon", g + b"Xyz\r\n\r\n", "400"),
        ("( in a field name", g + b"X(A): b\r\n\r\n", "400"),
        ("non-ASCII in a field name", g + b"X-\xc4: b\r\n\r\n", "400"),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", "400"),
        ("two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
        ("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n", "F"),
        ("GET * (asterisk-form)", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("OPTIONS * (asterisk-form)", b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "F"),
        ("authority-form target", b"GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("head in one-byte writes", [bytes([b]) for b in b"GET /bytes HTTP/1.1\r\nHost: h\r\n\r\n"], "F"),
    ]


def cases_framing():
    te = P + b"Transfer-Encoding: chunked\r\n\r\n"
    return [
        ("negative chunk size", te + b"-5\r\nhello\r\n0\r\n\r\n", "f 400"),
        ("hex chunk size with 0x", te + b"0x5\r\nhello\r\n0\r\n\r\n", "f 400"),
        ("chunk size with +", te + b"+5\r\nhello\r\n0\r\n\r\n", "f 400"),
        ("chunk size with a space before the digits", te + b" 5\r\nhello\r\n0\r\n\r\n", "f 400"),
        ("chunk size, whitespace, extension (BWS, RFC 9112 7.1.1)", te + b"5 \t;e\r\nhello\r\n0\r\n\r\n" + SM,
         "F F"),
        ("chunk size followed by whitespace only", te + b"5 \r\nhello\r\n0\r\n\r\n", "f 400"),
        ("upper- and lower-case hex chunk sizes", te + b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n" + SM,
         "F F"),
        ("chunk-size line ended by a bare LF", te + b"5\nhello\r\n0\r\n\r\n", "f 400"),
        ("chunk data not followed by CRLF", te + b"5\r\nhelloX\r\n0\r\n\r\n", "f 400"),
        ("chunk extensions", te + b"5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n" + SM, "F F"),
        ("chunk extension with a control byte", te + b"5;a=\x01\r\nhello\r\n0\r\n\r\n", "f 400"),
        ("trailers (dropped)", te + b"5\r\nhello\r\n0\r\nX-T: 1\r\nContent-Length: 50\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n" + SM, "F F"),
        ("trailer line ended by a bare LF", te + b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n", "f 400"),
        # After the last chunk comes the trailer section: a request there is
        # read as trailer lines and dropped, never forwarded as a head.
        ("a request where the trailer section goes (dropped with it)", te + b"0\r\n" + SM, "F"),
        ("Content-Length -1", P + b"Content-Length: -1\r\n\r\n", "400"),
        ("Content-Length +5", P + b"Content-Length: +5\r\n\r\nhello", "400"),
        ("Content-Length 0x10", P + b"Content-Length: 0x10\r\n\r\n", "400"),
        ("Content-Length 1e3", P + b"Content-Length: 1e3\r\n\r\n", "400"),
        ("Content-Length empty", P + b"Content-Length: \r\n\r\n", "400"),
        ("Content-Length '5 5'", P + b"Content-Length: 5 5\r\n\r\nhello", "400"),
        ("Content-Length list '5, 5'", P + b"Content-Length: 5, 5\r\n\r\nhello", "400"),
        ("Content-Length with OWS", P + b"Content-Length:  5 \t\r\n\r\nhello" + SM, "F F"),
        ("Content-Length 007 (leading zeros)", P + b"Content-Length: 007\r\n\r\nhello12" + SM, "F F"),
        ("Content-Length with 20 leading zeros", P + b"Content-Length: 000000000000000000005\r\n\r\nhello" + SM,
         "F F"),
        ("GET with a Content-Length body", b"GET /g HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + SM,
         "F F"),
        ("CRLF after a body (RFC 9112 2.2)", P + b"Content-Length: 5\r\n\r\nhello\r\n" + SM, "F F"),
        ("body holding a whole request (Content-Length)", P + b"Content-Length: %d\r\n\r\n" % len(SM) + SM, "F"),
        ("body holding a whole request (chunked)", te + b"%x\r\n" % len(SM) + SM + b"\r\n0\r\n\r\n", "F"),
    ]


def cases_smuggling():
    h = b"POST /s HTTP/1.1\r\nHost: h\r\n"
    ch = b"5\r\nhello\r\n0\r\n\r\n"
    return [
        ("CL then TE", h + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SM, "400"),
        ("TE then CL", h + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n" + SM, "400"),
        ("TE and CL 0", h + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n" + ch + SM, "400"),
        ("two differing Content-Lengths", h + b"Content-Length: 5\r\nContent-Length: 50\r\n\r\nhello" + SM, "400"),
        ("two equal Content-Lengths", h + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + SM, "F F"),
        ("Content-Length shorter than the body: the rest is the next head (method loGET: 501)",
         h + b"Content-Length: 3\r\n\r\nhel" + b"lo" + SM, "F 501"),
        ("Content-Length shorter than the body: the rest is the next head (garbage: 400)",
         h + b"Content-Length: 3\r\n\r\nhel" + b"lo/" + SM, "F 400"),
        ("TE: chunked, identity", h + b"Transfer-Encoding: chunked, identity\r\n\r\n" + ch + SM, "400"),
        ("TE: identity, chunked", h + b"Transfer-Encoding: identity, chunked\r\n\r\n" + ch + SM, "501"),
        ("TE: identity", h + b"Transfer-Encoding: identity\r\n\r\n" + ch + SM, "400"),
        ("TE: gzip, chunked", h + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + ch + SM, "501"),
        ("TE: CHUNKED (case)", h + b"Transfer-Encoding: CHUNKED\r\n\r\n" + ch + SM, "F F"),
        ("TE: Chunked (case)", h + b"transfer-encoding: Chunked\r\n\r\n" + ch + SM, "F F"),
        ("TE with spaces around chunked", h + b"Transfer-Encoding:    chunked   \r\n\r\n" + ch + SM, "F F"),
        ("TE with a tab before chunked", h + b"Transfer-Encoding:\tchunked\r\n\r\n" + ch + SM, "F F"),
        ("TE with empty list elements", h + b"Transfer-Encoding: ,chunked,\r\n\r\n" + ch + SM, "F F"),
        ("'Transfer-Encoding : chunked' (space before colon)",
         h + b"Transfer-Encoding : chunked\r\n\r\n" + ch + SM, "400"),
        ("'Transfer-Encoding\\t: chunked' (tab before colon)",
         h + b"Transfer-Encoding\t: chunked\r\n\r\n" + ch + SM, "400"),
        ("TE folded onto the next line", h + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + ch + SM, "400"),
        ("TE hidden in a folded line", h + b"X-A: a\r\n Transfer-Encoding: chunked\r\n\r\n" + ch + SM, "400"),
        ("Transfer_Encoding (another field) without Content-Length",
         h + b"Transfer_Encoding: chunked\r\n\r\n0\r\n\r\n" + SM, "F 400"),
        ("Transfer_Encoding (another field) with Content-Length",
         h + b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SM, "F F"),
        ("TE: xchunked", h + b"Transfer-Encoding: xchunked\r\n\r\n" + ch + SM, "400"),
        ("TE: \"chunked\" (quoted)", h + b"Transfer-Encoding: \"chunked\"\r\n\r\n" + ch + SM, "400"),
        ("TE: chunked;q=1", h + b"Transfer-Encoding: chunked;q=1\r\n\r\n" + ch + SM, "400"),
        ("TE chunked in two fields", h + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
         + ch + SM, "400"),
        ("TE chunked, then TE gzip in a second field",
         h + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n" + ch + SM, "400"),
        ("TE with a vertical tab", h + b"Transfer-Encoding:\x0bchunked\r\n\r\n" + ch + SM, "400"),
        ("TE with a NUL", h + b"Transfer-Encoding: chunked\x00\r\n\r\n" + ch + SM, "400"),
        ("TE on HTTP/1.0", b"POST /s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + ch + SM, "400"),
        ("TE on HTTP/1.0 with keep-alive", b"POST /s HTTP/1.0\r\nConnection: keep-alive\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n" + ch + SM, "400"),
        ("'Content-Length:5' (no space)", h + b"Content-Length:5\r\n\r\nhello" + SM, "F F"),
        ("content-length in lower case", h + b"content-length: 5\r\n\r\nhello" + SM, "F F"),
        ("Content-Length 0 then a request", b"GET /z HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n" + SM, "F F"),
        ("Upgrade the app refuses, then a request",
         b"GET /u HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n" + SM, "F F"),
        ("a request after Connection: close is not processed (RFC 9112 9.6)",
         b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + SM, "F"),
        ("a request after an HTTP/1.0 request without keep-alive is not processed (RFC 9112 9.3)",
         b"GET /c HTTP/1.0\r\n\r\n" + SM, "F"),
    ]


XPIL_DROPPED = [
    ("X-Pil", b"X-Pil: *Adr=SPOOF"),
    ("x-pil", b"x-pil: *Adr=SPOOF"),
    ("X-PIL", b"X-PIL: *Gate=SPOOF"),
    ("x-PiL without a space", b"x-PiL:*Adr=SPOOF"),
    ("X-Pil with a tab", b"X-Pil:\t*Adr=SPOOF"),
    ("X-Pil with spaces around the value", b"X-Pil:    *Adr=SPOOF   "),
    ("X-Pil *Cipher", b"X-Pil: *Cipher=SPOOF"),
    ("X-Pil empty", b"X-Pil:"),
    ("X-Pil twice", b"X-Pil: *Adr=SPOOF\r\nX-Pil: *Gate=SPOOF"),
    ("X-Pil as a list", b"X-Pil: *Gate=http, *Adr=SPOOF"),
    ("X-Pil among many fields", b"X-A: 1\r\nX-Pil: *Adr=SPOOF\r\nX-B: 2\r\nx-pil: *Gate=SPOOF\r\nX-C: 3"),
]
XPIL_REFUSED = [
    ("'X-Pil :' (space before colon)", b"X-Pil : *Adr=SPOOF"),
    ("'X-Pil\\t:' (tab before colon)", b"X-Pil\t: *Adr=SPOOF"),
    ("X-Pil folded onto a field", b"X-A: a\r\n X-Pil: *Adr=SPOOF"),
    ("X-Pil value folded", b"X-Pil: *Gate=http\r\n *Adr=SPOOF"),
    ("X-Pil with a bare LF", b"X-A: a\nX-Pil: *Adr=SPOOF"),
    ("X-Pil with a bare CR", b"X-A: a\rX-Pil: *Adr=SPOOF"),
    ("X-Pil with a NUL", b"X-Pil\x00: *Adr=SPOOF"),
]


def wait_heads(sb, n, timeout=2.0):
    end = time.time() + timeout
    while len(sb.reqs) < n and time.time() < end:
        time.sleep(0.01)
    return len(sb.reqs)


def run_case(ctx, cat, name, phases, spec, nodelay=False):
    """phases: bytes, a list of byte strings (one write each), or a list of
    (bytes, responses to read before the next phase)."""
    g, gw, sb = ctx["gate"], ctx["watch"], ctx["strict"]
    want_log = spec.split()
    want_log = ["forwarded" if x in ("F", "f") else int(x) for x in want_log]
    want_client = [200 if x == "F" else int(x) for x in spec.split() if x != "f"]
    if isinstance(phases, bytes):
        phases = [(phases, len(want_client))]
    elif phases and isinstance(phases[0], bytes):
        phases = [(b, 0) for b in phases[:-1]] + [(phases[-1], len(want_client))]
        nodelay = True
    with Case(cat):
        heads0 = len(sb.reqs)
        c = Conn(g.port, timeout=3)
        if nodelay:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = client_port(c)
        rs = []
        try:
            for data, n in phases:
                try:
                    c.send(data)
                except OSError:
                    pass  # the gate may have answered and closed already
                for _ in range(n):
                    rs.append(c.response())
            # The client finishes: whatever else comes is unexpected.
            try:
                c.shut()
            except OSError:
                pass
            rest = c.read_all(3)
        finally:
            c.close()
        inst = gw.instance(port, timeout=5)
        got = [r.status if r else None for r in rs]
        ok(got == want_client, "%s: %s: client gets %s" % (cat, name, want_client or "no answer"),
           (got, [r.raw[:120] for r in rs if r]))
        errs = [r for r in rs if r and r.status and r.status >= 400]
        for r in errs:
            ok(well_formed(r, r.status), "%s: %s: the %d is a whole answer (Connection: close, or the connection kept)" % (
                cat, name, r.status), r.raw[:200])
        ok(rest == b"", "%s: %s: nothing more after that, then a clean close" % (cat, name), rest[:200])
        ok(inst is not None and inst.statuses == want_log,
           "%s: %s: the log says %s" % (cat, name, " ".join(str(x) for x in want_log) or "nothing forwarded"),
           inst and inst.text())
        ok(inst is not None and inst.exit == exit_for(want_log),
           "%s: %s: the instance exits with %d" % (cat, name, exit_for(want_log)), inst and inst.exit)
        fwd = sum(1 for x in want_log if x == "forwarded")
        n = wait_heads(sb, heads0 + fwd) - heads0
        ok(n == fwd, "%s: %s: the app got %d head%s" % (cat, name, fwd, "" if fwd == 1 else "s"), n)
        return inst


def xpil_cases(ctx):
    cat = "hostile: X-Pil spoofing"
    g = b"GET /x%d HTTP/1.1\r\nHost: h\r\n%s\r\n\r\n"
    for name, spoof in XPIL_DROPPED:
        # first request, a pipelined second, then a third after the answers
        run_case(ctx, cat, name + " on the first, a pipelined and a later request",
                 [(g % (1, spoof) + g % (2, spoof), 2), (g % (3, spoof), 1)], "F F F")
    for name, spoof in XPIL_REFUSED:
        run_case(ctx, cat, name + " on the first request", g % (1, spoof), "400")
        run_case(ctx, cat, name + " on a later request", [(g % (1, b"X-A: a"), 1), (g % (2, spoof), 1)], "F 400")
    run_case(ctx, cat, "X-Pil in chunked trailers (dropped)",
             P + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Pil: *Adr=SPOOF\r\n"
             b"x-pil: *Gate=SPOOF\r\n\r\n", "F")
    # Another field name: it reaches the app as itself, never as X-Pil.
    run_case(ctx, cat, "X_Pil (another field name) passes as itself", g % (1, b"X_Pil: *Adr=other"), "F")
    with Case(cat):
        mine = [r for r in ctx["strict"].reqs if "X_Pil: *Adr=other" in r["head"]]
        ok(len(mine) == 1 and mine[0]["head"].split("\r\n")[1:3] == ["X-Pil: *Gate=http", "X-Pil: *Adr=127.0.0.1"],
           "%s: X_Pil reaches the app unchanged, after the gate's own X-Pil lines" % cat, mine and mine[0]["head"])


def hostile_sequence(ctx):
    for cat, cases in (("hostile: bounds", cases_bounds()), ("hostile: syntax", cases_syntax()),
                       ("hostile: framing", cases_framing()), ("hostile: smuggling", cases_smuggling())):
        for name, data, spec in cases:
            run_case(ctx, cat, name, data, spec)
    xpil_cases(ctx)
    # What a client sends reaches the log bounded and escaped.
    cat = "hostile: bounds"
    inst = run_case(ctx, cat, "a target of 8000 bytes with escapes, logged",
                    b"GET /" + b"%0a\\" * 1600 + b" HTTP/1.1\r\nHost: h\r\n\r\n", "F")
    with Case(cat):
        t = inst.reqs[0][0] if inst and inst.reqs else ""
        ok(t.startswith("GET /%0a\\x5c") and t.endswith("...") and len(t) < 4 * 512 + 20,
           "%s: the log holds the target escaped and cut (%d bytes of 8000)" % (cat, len(t)), t[:80])



# ---------------------------------------------------------------------------
# Slow, silent, half-closed and resetting clients, all at once on G_HOSTILE.

def _silent(port):
    c = Conn(port, timeout=10)
    t = time.time()
    closed = c.closed_within(HEAD_TIMEOUT + 4)
    return {"port": client_port(c), "el": closed and time.time() - t, "got": c.buf}


def _trickle(port, first, data, every):
    """Sends first, then data one byte every `every` seconds until the gate
    answers or closes."""
    c = Conn(port, timeout=10)
    t = time.time()
    sent = 0
    if first:
        c.send(first)
    t_first = time.time()
    for b in data:
        try:
            c.send(bytes([b]))
        except OSError:
            break
        sent += 1
        c.sock.settimeout(every)
        try:
            d = c.sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        c.buf += d
        break
    closed = c.closed_within(HEAD_TIMEOUT + 4)
    return {"port": client_port(c), "el": time.time() - t, "el_first": time.time() - t_first,
            "closed": closed, "sent": sent, "got": c.buf}


def _later_slowloris(port):
    c = Conn(port, timeout=10)
    c.send(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
    r1 = c.response()
    time.sleep(0.5)
    t = time.time()
    c.sock.settimeout(0.5)
    for b in b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n":
        try:
            c.send(bytes([b]))
            d = c.sock.recv(65536)
            if d:
                c.buf += d
                break
        except socket.timeout:
            continue
        except OSError:
            break
    closed = c.closed_within(HEAD_TIMEOUT + 4)
    return {"port": client_port(c), "r1": r1, "el": time.time() - t, "closed": closed, "got": c.buf}


def _partial(port, how):
    c = Conn(port, timeout=10)
    c.send(b"GET / HTTP/1.1\r\nHo")
    time.sleep(0.2)
    t = time.time()
    if how == "shut":
        c.shut()
        got = c.read_all(5)
        out = {"port": client_port(c), "got": got, "el": time.time() - t}
        c.close()
        return out
    port_ = client_port(c)
    reset(c.sock)
    return {"port": port_, "got": b""}


def _body_stall(port):
    c = Conn(port, timeout=10)
    c.send(P + b"Content-Length: 1000\r\n\r\nabc")
    t = time.time()
    closed = c.closed_within(IDLE_TIMEOUT + 4)
    return {"port": client_port(c), "el": closed and time.time() - t, "got": c.buf}


def _shut_first(port):
    c = Conn(port, timeout=10)
    c.shut()
    got = c.read_all(5)
    return {"port": client_port(c), "got": got}


def _half_close_pipelined(port):
    c = Conn(port, timeout=10)
    c.send(b"".join(b"GET /hc%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3)))
    c.shut()
    rs = [c.response() for _ in range(3)]
    rest = c.read_all(5)
    return {"port": client_port(c), "rs": rs, "rest": rest}


def _reset_mid_request(port):
    c = Conn(port, timeout=10)
    c.send(P + b"Content-Length: 50000000\r\n\r\n")
    chunk = b"x" * (1 << 20)
    for _ in range(5):
        c.send(chunk)
    port_ = client_port(c)
    t = time.time()
    reset(c.sock)
    return {"port": port_, "t": t}


def _reset_mid_response(port):
    c = Conn(port, timeout=10)
    c.send(b"GET /big/200000000 HTTP/1.1\r\nHost: h\r\n\r\n")
    got = 0
    while got < (2 << 20):
        d = c.sock.recv(1 << 20)
        if not d:
            break
        got += len(d)
    port_ = client_port(c)
    t = time.time()
    reset(c.sock)
    return {"port": port_, "got": got, "t": t}


def _reads_nothing(port, watch):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    cport = s.getsockname()[1]
    s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: h\r\n\r\n" % (1 << 30))
    t = time.time()
    pid = None
    samples = []
    while time.time() - t < IDLE_TIMEOUT + 8:
        if pid is None:
            pid = watch.pid_of(cport)
        if pid is not None:
            v = vm(pid)
            if v is None or not pid_alive(pid):
                break
            samples.append((time.time() - t,) + v)
        time.sleep(0.1)
    el = time.time() - t
    s.close()
    return {"port": cport, "el": el, "samples": samples, "pid": pid}


def timed(ctx):
    cat = "hostile: slow, silent, resets"
    g, gw = ctx["gate"], ctx["watch"]
    req = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    jobs = {
        "silent": (_silent, (g.port,)),
        "slowloris": (_trickle, (g.port, b"", req, 1.0)),
        "slow fields": (_trickle, (g.port, b"GET / HTTP/1.1\r\n", b"Host: h\r\n\r\n", 1.0)),
        "endless empty lines": (_trickle, (g.port, b"", b"\r\n" * 40, 0.3)),
        "later slowloris": (_later_slowloris, (g.port,)),
        "partial head, half-close": (_partial, (g.port, "shut")),
        "partial head, reset": (_partial, (g.port, "reset")),
        "body stalls": (_body_stall, (g.port,)),
        "half-close at once": (_shut_first, (g.port,)),
        "half-close after 3 pipelined": (_half_close_pipelined, (g.port,)),
        "reset mid-request": (_reset_mid_request, (g.port,)),
        "reset mid-response": (_reset_mid_response, (g.port,)),
        "reads nothing": (_reads_nothing, (g.port, gw)),
    }
    res = {}

    def run(name, fn, args):
        try:
            res[name] = fn(*args)
        except Exception as e:  # noqa: BLE001 - reported below
            res[name] = e
    th = [threading.Thread(target=run, args=(k, f, a)) for k, (f, a) in jobs.items()]
    for t in th:
        t.start()
    for t in th:
        t.join(60)
    ht, it = HEAD_TIMEOUT, IDLE_TIMEOUT

    def expect(name, checks, statuses, end, code):
        with Case(cat):
            r = res.get(name)
            if isinstance(r, Exception) or r is None:
                ok(False, "%s: %s: ran" % (cat, name), repr(r))
                return
            inst = gw.instance(r["port"], timeout=8)
            for cond, what, detail in checks(r):
                ok(cond, "%s: %s: %s" % (cat, name, what), detail)
            ok(inst is not None and inst.statuses == statuses,
               "%s: %s: the log says %s" % (cat, name, " ".join(map(str, statuses)) or "no request"),
               inst and inst.text())
            ok(inst is not None and inst.end == end, "%s: %s: the log says it ended: %s" % (cat, name, end),
               inst and inst.text())
            ok(inst is not None and inst.exit == code, "%s: %s: the instance exits with %d" % (cat, name, code),
               inst and inst.exit)
            return inst

    def answered408(r, within=(ht - 0.3, ht + 1.5)):
        a = parse_response(r["got"])
        return [(well_formed(a, 408), "gets a whole 408 answer", r["got"][:120]),
                (r["el"] is not None and within[0] <= r["el"] <= within[1],
                 "cut off at the %d s head timeout (%.2f s)" % (ht, r["el"] or -1), r["el"])]

    err408 = "answered with an error"
    expect("silent", answered408, [408], err408, 2)
    expect("slowloris", lambda r: answered408(r) + [
        (r["sent"] <= ht + 1, "the slowloris sent only %d bytes before the cut" % r["sent"], r["sent"])],
        [408], err408, 2)
    expect("slow fields", answered408, [408], err408, 2)
    expect("endless empty lines", answered408, [408], err408, 2)
    expect("later slowloris", lambda r: [
        (r["r1"] is not None and r["r1"].status == 200, "the first request is answered", r["r1"] and r["r1"].raw),
        (well_formed(parse_response(r["got"]), 408), "the later trickled head gets a whole 408", r["got"][:120]),
        (ht - 0.3 <= r["el"] <= ht + 1.5, "cut off %d s after the later head's first byte (%.2f s)" % (ht, r["el"]),
         r["el"])], ["forwarded", 408], err408, 2)
    expect("partial head, half-close", lambda r: [
        (well_formed(parse_response(r["got"]), 400), "gets a whole 400", r["got"][:120]),
        (r["el"] < 1, "at once (%.2f s)" % r["el"], r["el"])], [400], err408, 1)
    inst = expect("partial head, reset", lambda r: [], [], "client reset", 0)
    ok(inst is not None and inst.done and inst.done["ms"] < 1500,
       "%s: partial head, reset: the instance leaves at once" % cat, inst and inst.done)
    expect("body stalls", lambda r: [
        (r["got"] == b"", "gets no answer (the app has not answered)", r["got"][:120]),
        (r["el"] is not None and it - 0.3 <= r["el"] <= it + 1.5,
         "closed at the %d s idle timeout (%.2f s)" % (it, r["el"] or -1), r["el"])],
        ["forwarded"], "idle timeout", 2)
    expect("half-close at once", lambda r: [(r["got"] == b"", "gets nothing, then a clean close", r["got"])],
           [], "client closed", 0)
    expect("half-close after 3 pipelined", lambda r: [
        ([x and x.status for x in r["rs"]] == [200] * 3, "gets all three answers",
         [x and x.raw[:60] for x in r["rs"]]),
        (r["rest"] == b"", "then a clean close", r["rest"][:100])],
        ["forwarded"] * 3, "closed", 0)
    for name in ("reset mid-request", "reset mid-response"):
        inst = expect(name, lambda r: [], ["forwarded"], "client reset", 0)
        ok(inst is not None and inst.done and inst.done["ms"] < 3000 and inst.exit is not None,
           "%s: %s: the instance leaves at once, not at the idle timeout" % (cat, name), inst and inst.done)
    r = res.get("reads nothing")
    inst = expect("reads nothing", lambda r: [
        (r["samples"], "the instance's memory was sampled (%d samples)" % len(r["samples"]), r),
        (r["el"] <= it + 3, "the instance left at the %d s idle timeout (%.2f s)" % (it, r["el"]), r["el"])],
        ["forwarded"], "idle timeout", 2)
    if isinstance(r, dict) and r["samples"]:
        # (seconds, VmRSS, VmHWM): growth is measured from half a second on,
        # when the instance runs and the buffers between it and both peers
        # are full, to the end
        hwm = max(x[2] for x in r["samples"])
        steady = [x for x in r["samples"] if x[0] >= 0.5] or r["samples"]
        rss0, rss1 = steady[0][1], max(x[1] for x in steady)
        FIG.set("reads-nothing VmHWM kB", hwm)
        with Case(cat):
            ok(hwm < 32 * 1024, "%s: reads nothing while 1 GiB is sent: the instance's peak memory (VmHWM) "
               "stays at %d kB (under 32 MiB)" % (cat, hwm), r["samples"][-5:])
            ok(rss1 - rss0 < 4096, "%s: reads nothing: its VmRSS grows by %d kB only" % (cat, rss1 - rss0),
               (rss0, rss1))
            ok(inst is not None and inst.done and inst.done["down"] < 16 << 20,
               "%s: reads nothing: the gate took only %s bytes of the response (buffers, not the whole)" % (
                   cat, inst and inst.done and inst.done["down"]), inst and inst.done)


# ---------------------------------------------------------------------------
# Pipelining: N requests in one write, and the same in random fragments.

def pipeline_stream(n, rnd):
    reqs, want = [], []
    for i in range(n):
        t = b"/pipe/%d" % i
        k = i % 4
        if k == 0:
            reqs.append(b"GET " + t + b" HTTP/1.1\r\nHost: h\r\nX-Pil: *Adr=SPOOF\r\n\r\n")
            want.append((t, b""))
        elif k == 1:
            body = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 3000))) + SM
            reqs.append(b"POST " + t + b" HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            want.append((t, body))
        elif k == 2:
            body = b""
            for _ in range(rnd.randrange(1, 6)):
                d = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 700)))
                body += b"%x%s\r\n" % (len(d), b";x=1" if rnd.random() < 0.3 else b"") + d + b"\r\n"
            body += b"0\r\n\r\n"
            reqs.append(b"PUT " + t + b" HTTP/1.1\r\nHost: h\r\nx-pil: *Gate=SPOOF\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + body)
            want.append((t, body))
        else:
            reqs.append(b"DELETE " + t + b" HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
            want.append((t, b""))
    return b"".join(reqs), want


def pipelining(ctx):
    cat = "hostile: pipelining"
    g, gw, sb = ctx["gate"], ctx["watch"], ctx["strict"]
    rnd = random.Random(70)
    for how in ("in one write", "in random fragments of 1 to 64 bytes"):
        with Case(cat):
            data, want = pipeline_stream(N_PIPELINE, rnd)
            heads0 = len(sb.reqs)
            c = Conn(g.port, timeout=10)
            port = client_port(c)
            if how == "in one write":
                c.send(data)
            else:
                c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

                def frag():
                    i = 0
                    while i < len(data):
                        k = rnd.randrange(1, 65)
                        c.sock.sendall(data[i:i + k])
                        i += k
                th = threading.Thread(target=frag)
                th.start()
            rs = [c.response() for _ in range(len(want))]
            if how != "in one write":
                th.join(60)
            c.shut()
            rest = c.read_all(5)
            c.close()
            inst = gw.instance(port, timeout=8)
            targets = [r and r.body.split(b" ")[-1].strip() for r in rs]
            ok(targets == [t for t, _ in want], "%s: %d requests %s: %d answers, in order" % (
                cat, N_PIPELINE, how, len(want)), [t for t in targets if t][:5])
            ok(rest == b"", "%s: %s: nothing after the last answer" % (cat, how), rest[:100])
            ok(inst is not None and inst.statuses == ["forwarded"] * len(want) and inst.exit == 0,
               "%s: %s: the log says %d forwarded, exit 0" % (cat, how, len(want)), inst and inst.text()[:300])
            wait_heads(sb, heads0 + len(want), 5)
            got = sb.reqs[heads0:heads0 + len(want) + 1]
            ok([(r["target"].encode(), r["body"]) for r in got] == want,
               "%s: %s: the app got each head and body exactly, in order" % (cat, how),
               [(r["target"], len(r["body"])) for r in got][:5])
            FIG.add("pipelined requests", len(want))


# ---------------------------------------------------------------------------
# Load on G_LOAD: connections held open, an army of slow clients, a flood of
# new connections; a legitimate client asks all along.

def load(ctx):
    cat = "load"
    g = Gate(G_LOAD, ["--launcher=", "-p", str(P_LEGIT), "--head-timeout", "3", "--idle-timeout", "60"])
    ctx["gates"].append(g)
    gw = GateWatch(g)
    legit = Legit(G_LOAD, P_LEGIT, pause=0.05, timeout=30)
    ctx["legits"].append(("the load", legit))
    legit.start()
    body = lambda t: b"port=%d target=%s\n" % (P_LEGIT, t)  # noqa: E731

    # -- N_HELD connections open at once, each with a request before and after
    with Case(cat):
        conns = []
        t = time.time()
        try:
            for i in range(N_HELD):
                c = Conn(G_LOAD, timeout=60)
                c.send(b"GET /held/%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
                conns.append(c)
            rs = [c.response() for c in conns]
            good1 = sum(1 for i, r in enumerate(rs) if r and r.status == 200 and r.body == body(b"/held/%d" % i))
            kids = gate_children(g)
            alive = len(kids)
            rss = [v[0] for v in (vm(p) for p in kids) if v]
            n_legit = legit.n
            time.sleep(1.0)
            ok(legit.n > n_legit, "%s: legitimate requests are answered while %d connections are held" % (
                cat, N_HELD), (n_legit, legit.n, legit.fails[:2]))
            for i, c in enumerate(conns):
                c.send(b"GET /again/%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)
            rs = [c.response() for c in conns]
            good2 = sum(1 for i, r in enumerate(rs) if r and r.status == 200 and r.body == body(b"/again/%d" % i))
        finally:
            for c in conns:
                c.close()
        el = time.time() - t
        ok(alive >= N_HELD, "%s: %d instances alive at once (one per held connection)" % (cat, alive), alive)
        ok(good1 == N_HELD and good2 == N_HELD, "%s: %d held connections: every first and second request "
           "answered (%d + %d, %.1f s)" % (cat, N_HELD, good1, good2, el))
        FIG.set("held connections", min(alive, N_HELD))
        FIG.set("held rss MiB", sum(rss) / 1024.0)
        FIG.add("held requests", good1 + good2)

    # -- N_SLOW_ARMY slowloris clients at once: each gets its 408
    with Case(cat):
        army = []
        t0 = time.time()
        for i in range(N_SLOW_ARMY):
            s_ = socket.create_connection(("127.0.0.1", G_LOAD), timeout=30)
            s_.sendall(b"GET /slow/%d HTTP/1.1\r\n" % i)
            s_.setblocking(False)
            army.append([s_, b"", None])
        import select
        end = time.time() + 15
        while time.time() < end and any(a[2] is None for a in army):
            r, _, _ = select.select([a[0] for a in army if a[2] is None], [], [], 1.0)
            for a in army:
                if a[0] in r:
                    try:
                        d = a[0].recv(65536)
                    except OSError:
                        d = b""
                    if d:
                        a[1] += d
                    else:
                        a[2] = time.time() - t0
            for a in army:
                if a[2] is None:
                    try:
                        a[0].send(b"X")  # a field name that never ends
                    except OSError:
                        pass
        for a in army:
            a[0].close()
        got408 = sum(1 for a in army if a[1].startswith(b"HTTP/1.1 408 "))
        times = sorted(a[2] for a in army if a[2] is not None)
        ok(got408 == N_SLOW_ARMY, "%s: %d slowloris clients at once: each gets its 408" % (cat, N_SLOW_ARMY),
           [a[1][:40] for a in army if not a[1].startswith(b"HTTP/1.1 408 ")][:3])
        ok(times and times[0] >= 2.7 and times[-1] <= 3 + 4,
           "%s: slowloris army: cut off at the 3 s head timeout (%.1f to %.1f s)" % (
               cat, times[0] if times else -1, times[-1] if times else -1), times[:3] + times[-3:])
        FIG.set("slowloris at once", N_SLOW_ARMY)

    # -- a flood of new connections, as fast as possible from 8 threads
    with Case(cat):
        end = time.time() + 15
        while time.time() < end and len(gate_children(g)) > 1:
            time.sleep(0.1)  # the army's instances leave first, so that the counts below are the flood's
        mark = gw.mark()
        before = set(gate_children(g))
        counts = {"get": [0, 0], "close": [0, 0], "reset": [0, 0], "garbage": [0, 0]}
        errors = []
        lock = threading.Lock()
        n_threads = 8

        def flood(k):
            for i in range(k, N_FLOOD, n_threads):
                mode = ("get", "close", "reset", "garbage")[i % 4]
                good = False
                try:
                    s_ = socket.create_connection(("127.0.0.1", G_LOAD), timeout=60)
                    if mode == "get":
                        s_.sendall(b"GET /flood/%d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % i)
                        out = b""
                        while True:
                            d = s_.recv(65536)
                            if not d:
                                break
                            out += d
                        good = out.startswith(b"HTTP/1.1 200 ") and out.endswith(body(b"/flood/%d" % i))
                        s_.close()
                    elif mode == "close":
                        s_.close()
                        good = True
                    elif mode == "reset":
                        reset(s_)
                        good = True
                    else:
                        s_.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n")
                        out = b""
                        while True:
                            d = s_.recv(65536)
                            if not d:
                                break
                            out += d
                        good = out.startswith(b"HTTP/1.1 400 ")
                        s_.close()
                except OSError as e:
                    with lock:
                        errors.append(repr(e))
                with lock:
                    counts[mode][0] += 1
                    counts[mode][1] += 1 if good else 0
        t = time.time()
        th = [threading.Thread(target=flood, args=(k,)) for k in range(n_threads)]
        for x in th:
            x.start()
        for x in th:
            x.join(600)
        el = time.time() - t
        end = time.time() + 60
        while time.time() < end and gate_children(g):
            time.sleep(0.2)
        left = gate_children(g)
        time.sleep(0.3)
        insts = [i for i in gw.parse(mark) if i.exit is not None]
        flood_insts = [i for i in insts if i.pid not in before and not any("/__legit/" in ln for ln in i.lines)]
        codes = {}
        for i in flood_insts:
            codes[i.exit] = codes.get(i.exit, 0) + 1
        ok(all(c[0] == c[1] for c in counts.values()) and not errors,
           "%s: a flood of %d new connections in %.1f s (%.0f/s): GETs answered 200, garbage 400, closes and "
           "resets taken" % (cat, N_FLOOD, el, N_FLOOD / el), (counts, errors[:3]))
        ok(not left, "%s: flood: every instance has exited afterwards" % cat, left[:5])
        ok(len(flood_insts) >= N_FLOOD, "%s: flood: %d instances logged and exited (one per connection)" % (
            cat, len(flood_insts)), len(flood_insts))
        ok(set(codes) <= {0, 1}, "%s: flood: instances exit 0 (done, closed, reset) or 1 (garbage refused) "
           "only" % cat, codes)
        st, _, _ = _get(G_LOAD, b"/after/flood")
        ok(st == 200, "%s: the gate still answers after the flood" % cat, st)
        FIG.set("flood connections", N_FLOOD)
        FIG.set("flood seconds", el)


def strict_totals(ctx):
    """After every hostile case: the app's view of the whole run."""
    cat = "hostile: the app's view"
    gw, sb = ctx["watch"], ctx["strict"]
    with Case(cat):
        time.sleep(0.3)
        fwd = sum(1 for i in gw.parse() for r in i.reqs if r[3] == "forwarded" and r[2] == P_STRICT)
        ok(len(sb.reqs) == fwd, "%s: the app got exactly as many heads (%d) as the gate logged forwarded (%d)" % (
            cat, len(sb.reqs), fwd))
        ok(not sb.problems, "%s: every head the app got starts with the gate's X-Pil lines, has no client "
           "X-Pil and no bare CR or LF, and is framed as the gate framed it (%d heads)" % (cat, len(sb.reqs)),
           sb.problems[:5])
        ok(not sb.leftover, "%s: no connection to the app ended inside a head" % cat, sb.leftover[:3])
