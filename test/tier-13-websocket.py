#!/usr/bin/python3
"""Tier 13: websockets through the gate.

A websocket echo server (Debian's python3-websockets) on ::1 runs in a
thread of this process; httpgate (systemd-socket-activate --accept, as
systemd runs it) sits in front. A websocket client (python3-websockets too)
talks to it through the gate: a greeting the server sends with its 101, a
multi-message conversation of text and binary messages, a fragmented one,
large ones (8 MiB each way), pings, and a clean close handshake from either
side; several conversations at once; permessage-deflate and a subprotocol
negotiated end to end. The server records each handshake it gets, so the
tier checks that the gate forwarded the Upgrade request with its own X-Pil
headers (and not the client's forged ones) and the rewritten target.
Ports 20700-20719.
"""
import asyncio
import hashlib
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from gatetest import Gate, ok, done, raw, status_of  # noqa: E402

import websockets  # noqa: E402  (python3-websockets)

WS_PORT, GATE_PORT = 20700, 20701
LARGE = 8 * 1024 * 1024
DEADLINE = time.time() + 140  # the tier ends within 3 minutes, whatever hangs


class EchoServer:
    """websockets echo server on ::1 in its own thread and event loop."""

    def __init__(self, port):
        self.port = port
        self.handshakes = []   # (path, [(name, value), ...]) per opened connection
        self.closed = []       # close codes seen by the server
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("websocket server did not start")

    async def _process_request(self, path, headers):
        self.handshakes.append((path, list(headers.raw_items())))
        return None

    async def _handler(self, ws, path=None):
        path = ws.path
        if path.startswith("/greet"):
            await ws.send("hello from the app")
        if path.startswith("/server-closes"):
            await ws.send("bye")
            await ws.close(4001, "app says bye")
            self.closed.append(ws.close_code)
            return
        try:
            async for msg in ws:
                if msg == "close please":
                    await ws.close(1000, "as you wish")
                    break
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass
        self.closed.append(ws.close_code)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.server = await websockets.serve(
                self._handler, "::1", self.port, process_request=self._process_request,
                max_size=None, subprotocols=["chat.v1"], ping_interval=None)
        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self):
        async def close():
            self.server.close()
            await self.server.wait_closed()
        fut = asyncio.run_coroutine_threadsafe(close(), self.loop)
        try:
            fut.result(5)
        except Exception:  # noqa: BLE001 - the thread is a daemon anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def header(h, name):
    return [v for k, v in h if k.lower() == name.lower()]


async def conversation(url, n=40, large=True, compression=None, extra=None, subprotocols=None):
    """One echo conversation through the gate. Returns a dict of findings."""
    out = {"echoed": 0, "sent": 0}
    async with websockets.connect(url, max_size=None, compression=compression, extra_headers=extra,
                                  subprotocols=subprotocols, ping_interval=None, open_timeout=10,
                                  close_timeout=5) as ws:
        out["subprotocol"] = ws.subprotocol
        out["extensions"] = [type(e).__name__ for e in ws.extensions]
        for i in range(n):
            msg = ("message %d " % i) + "é€" * (i % 7)
            await ws.send(msg)
            out["sent"] += 1
            if await asyncio.wait_for(ws.recv(), 10) == msg:
                out["echoed"] += 1
        b = bytes(range(256)) * 3
        await ws.send(b)
        out["binary"] = await asyncio.wait_for(ws.recv(), 10) == b
        await ws.send(["frag", "mented ", "message"])
        out["fragmented"] = await asyncio.wait_for(ws.recv(), 10) == "fragmented message"
        pong = await ws.ping(b"are you there")
        try:
            await asyncio.wait_for(pong, 10)
            out["pong"] = True
        except asyncio.TimeoutError:
            out["pong"] = False
        if large:
            big = os.urandom(LARGE)
            t = time.time()
            await ws.send(big)
            back = await asyncio.wait_for(ws.recv(), 60)
            out["large_s"] = time.time() - t
            out["large"] = hashlib.sha256(back).digest() == hashlib.sha256(big).digest() and len(back) == LARGE
            # a large text message too (UTF-8 checked at the far end)
            text = "ünïcödé " * (LARGE // 10 // 8)
            await ws.send(text)
            out["large_text"] = await asyncio.wait_for(ws.recv(), 60) == text
        await ws.close(1000, "done here")
        out["close_code"] = ws.close_code
    return out


def run_async(coro, timeout=60):
    """Runs one client coroutine, bounded so that the whole tier ends in time
    even when every conversation hangs."""
    left = DEADLINE - time.time()
    if left < 1:
        coro.close()
        raise TimeoutError("the tier's time is up")
    return asyncio.run(asyncio.wait_for(coro, min(timeout, left)))


def main():
    server = EchoServer(WS_PORT)
    gate = None
    try:
        gate = Gate(GATE_PORT, [str(WS_PORT)])
        checks(server, gate)
    finally:
        if gate:
            gate.stop()
        server.stop()
    done()


def checks(server, gate):
    base = "ws://127.0.0.1:%d" % GATE_PORT

    # --- a conversation, with a forged X-Pil header from the client
    n0 = len(server.handshakes)
    try:
        r = run_async(conversation(base + "/echo?room=1", extra={"X-Pil": "*Adr=6.6.6.6", "X-Test": "kept"},
                                   subprotocols=["chat.v1"]), timeout=90)
        err = None
    except Exception as e:  # noqa: BLE001 - reported as a failure
        r, err = {}, repr(e)
    ok(not err, "websocket handshake and conversation through the gate", err)
    ok(r.get("echoed") == 40 and r.get("sent") == 40, "40 text messages echoed in order",
       "%s of %s" % (r.get("echoed"), r.get("sent")))
    ok(r.get("binary"), "binary message echoed")
    ok(r.get("fragmented"), "fragmented message echoed whole")
    ok(r.get("pong"), "ping answered with pong through the gate")
    ok(r.get("large"), "8 MiB binary message echoed intact (%.2fs)" % r.get("large_s", 0))
    ok(r.get("large_text"), "large text message echoed intact")
    ok(r.get("close_code") == 1000, "client-initiated close handshake completes (1000)", r.get("close_code"))
    ok(r.get("subprotocol") == "chat.v1", "subprotocol negotiated through the gate", r.get("subprotocol"))

    # --- what the app got
    hs = server.handshakes[n0:]
    ok(len(hs) == 1, "the app got exactly one Upgrade request", len(hs))
    path, h = hs[0] if hs else ("", [])
    ok(path == "/echo?room=1", "Upgrade request target forwarded as /echo?room=1", path)
    ok([v.lower() for v in header(h, "Upgrade")] == ["websocket"], "Upgrade: websocket forwarded", header(h, "Upgrade"))
    ok(any("upgrade" in v.lower() for v in header(h, "Connection")), "Connection: Upgrade forwarded",
       header(h, "Connection"))
    ok(len(header(h, "Sec-WebSocket-Key")) == 1 and header(h, "Sec-WebSocket-Version") == ["13"],
       "Sec-WebSocket-Key and -Version forwarded", header(h, "Sec-WebSocket-Version"))
    ok(header(h, "Sec-WebSocket-Protocol") == ["chat.v1"], "Sec-WebSocket-Protocol forwarded",
       header(h, "Sec-WebSocket-Protocol"))
    ok(header(h, "X-Test") == ["kept"], "other client headers forwarded", header(h, "X-Test"))
    pil = header(h, "X-Pil")
    ok("*Gate=http" in pil, "gate added X-Pil: *Gate=http to the Upgrade request", pil)
    ok("*Adr=127.0.0.1" in pil, "gate added X-Pil: *Adr=127.0.0.1 to the Upgrade request", pil)
    ok(not any("6.6.6.6" in v for v in pil), "client's forged X-Pil header removed", pil)
    ok(len([v for v in pil if v.startswith("*Adr=")]) == 1, "exactly one *Adr", pil)

    # --- permessage-deflate negotiated end to end (the gate does not touch frames)
    try:
        r = run_async(conversation(base + "/deflate", n=10, large=False, compression="deflate"))
        err = None
    except Exception as e:  # noqa: BLE001
        r, err = {}, repr(e)
    ok(not err and r.get("echoed") == 10, "conversation with permessage-deflate", err or r)
    ok("PerMessageDeflate" in r.get("extensions", []), "permessage-deflate negotiated through the gate",
       r.get("extensions"))

    # --- the app speaks first, in the same segment as its 101
    async def greet():
        async with websockets.connect(base + "/greet", ping_interval=None, open_timeout=10) as ws:
            first = await asyncio.wait_for(ws.recv(), 10)
            await ws.send("x")
            second = await asyncio.wait_for(ws.recv(), 10)
            return first, second
    try:
        first, second = run_async(greet())
    except Exception as e:  # noqa: BLE001
        first, second = repr(e), None
    ok(first == "hello from the app" and second == "x", "a message the app sends right after its 101 arrives",
       first)

    # --- the app closes the conversation
    async def app_closes():
        async with websockets.connect(base + "/server-closes", ping_interval=None, open_timeout=10) as ws:
            got = await asyncio.wait_for(ws.recv(), 10)
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed:
                pass
            return got, ws.close_code, ws.close_reason
    try:
        got, code, reason = run_async(app_closes())
    except Exception as e:  # noqa: BLE001
        got, code, reason = repr(e), None, None
    ok(got == "bye" and code == 4001 and reason == "app says bye",
       "app-initiated close reaches the client with its code and reason", (got, code, reason))

    # --- the client asks the app to close (app sends close frame first)
    async def ask_close():
        async with websockets.connect(base + "/echo", ping_interval=None, open_timeout=10) as ws:
            await ws.send("close please")
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed:
                pass
            return ws.close_code
    try:
        code = run_async(ask_close())
    except Exception as e:  # noqa: BLE001
        code = repr(e)
    ok(code == 1000, "close handshake started by the app completes", code)

    # --- several conversations at once, each on its own gate process
    async def many():
        return await asyncio.gather(*[conversation(base + "/echo/%d" % i, n=20, large=False) for i in range(8)],
                                    return_exceptions=True)
    try:
        res = run_async(many())
    except Exception as e:  # noqa: BLE001
        res = [e]
    good = [x for x in res if isinstance(x, dict) and x.get("echoed") == 20 and x.get("close_code") == 1000]
    ok(len(good) == 8, "8 concurrent conversations, 20 messages each", [x for x in res if x not in good][:2])

    # --- a large message while the app also streams: both directions at once
    async def both_ways():
        async with websockets.connect(base + "/echo", max_size=None, ping_interval=None, compression=None,
                                      open_timeout=10) as ws:
            msgs = [os.urandom(256 * 1024) for _ in range(16)]

            async def send_all():
                for m in msgs:
                    await ws.send(m)
            recv = []

            async def recv_all():
                for _ in msgs:
                    recv.append(await asyncio.wait_for(ws.recv(), 30))
            await asyncio.gather(send_all(), recv_all())
            return recv == msgs
    try:
        same = run_async(both_ways())
    except Exception as e:  # noqa: BLE001
        same = repr(e)
    ok(same is True, "16 x 256 KiB sent while echoes stream back, all intact and in order", same)

    # --- the app's refusal of a handshake is passed on as it is (no 101, no tunnel)
    resp = raw(GATE_PORT, b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n", timeout=5, shut=False)
    ok(status_of(resp) in (400, 426), "an Upgrade request the app refuses gets the app's 4xx",
       resp[:100])

    # --- the gate's log: each websocket connection ended and the gate exited cleanly
    time.sleep(0.3)
    log = gate.log()
    ok("ERROR: AddressSanitizer" not in log and "runtime error" not in log, "no sanitizer reports in the gate's log",
       log[-300:])
    codes = [int(x) for x in re.findall(r"Child \d+ died with code (\d+)", log)]
    ok(len(codes) >= 14 and all(c in (0, 1, 3) for c in codes),
       "every gate process exited with a code httpgate(8) lists for a finished connection", codes)


if __name__ == "__main__":
    sys.exit(main())
