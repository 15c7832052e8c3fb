#!/usr/bin/python3
"""faultyapp MODE: an app that misbehaves in one way, for tier-70.

Started by the gate from a names-file entry, as the entry's user, with PORT
in its environment; appends its pid to ./starts (its working directory).
  serve      answers every request "serve PID TARGET"
  slowstart  the same, but listens only after a second
  exit       exits at once (status 3)
  never      runs, never listens
  crash      answers 200 with Content-Length 10 MB, sends 1 MB, dies
  silent     accepts, reads, never answers
  garbage    answers 100 000 bytes of garbage (garbage(TARGET)) and closes
  rst        answers 200 with Content-Length 10 MB, sends 1 MB, resets
  closer     reads the head and closes without a word
  hugehead   answers with a 1 MB header field, then "ok"
"""
import hashlib
import os
import socket
import struct
import sys
import threading
import time


def garbage(seed, n=100000):
    """n bytes that are no HTTP at all, the same for the same seed."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(b"%s/%d" % (seed, i)).digest()
        i += 1
    return out[:n]


def read_head(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return None
        buf += d
    return buf.split(b"\r\n\r\n", 1)[0]


def serve(c, mode):
    try:
        while True:
            head = read_head(c)
            if head is None:
                return
            target = head.split(b" ")[1]
            if mode in ("serve", "slowstart"):
                body = b"%s %d %s\n" % (mode.encode(), os.getpid(), target)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                if b"\r\nconnection: close" in head.lower():
                    return
            elif mode == "crash":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000000)
                os._exit(1)
            elif mode == "rst":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000000)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            elif mode == "silent":
                while c.recv(65536):
                    pass
                return
            elif mode == "garbage":
                c.sendall(garbage(target))
                return
            elif mode == "closer":
                return
            elif mode == "hugehead":
                c.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * (1 << 20) + b"\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        return
    finally:
        c.close()


def main():
    mode = sys.argv[1]
    with open("starts", "a") as f:
        f.write("%d\n" % os.getpid())
    if mode == "exit":
        sys.exit(3)
    if mode == "never":
        time.sleep(3600)
        sys.exit(0)
    if mode == "slowstart":
        time.sleep(1.0)
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::1", int(os.environ["PORT"])))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, mode), daemon=True).start()


if __name__ == "__main__":
    main()
