#!/usr/bin/python3
"""bench/app.py: an app started on demand, for `make bench` only. Sleeps as a
real app's start-up would, listens on PORT (IPv6 and IPv4), writes the
monotonic time it started listening to RECORD, answers one request and
exits, so that the next request has to start it again.

    app.py PORT SLEEP-SECONDS RECORD
"""
import socket
import sys
import time

port, pause, record = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(pause)
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', port))
s.listen(16)
listened = time.clock_gettime(time.CLOCK_MONOTONIC)
with open(record, 'w') as f:
    f.write(repr(listened))
s.settimeout(30)
c, _ = s.accept()
c.settimeout(10)
buf = b''
while b'\r\n\r\n' not in buf:
    d = c.recv(4096)
    if not d:
        break
    buf += d
c.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n')
c.close()
s.close()
