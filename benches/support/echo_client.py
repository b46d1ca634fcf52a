#!/usr/bin/env python3
"""A WebSocket echo client for profiling: opens N sessions, then sends one
message on each and reads every answer, M times (one round trip per session
per round, all sessions in flight at once).

Usage: echo_client.py PORT N M [floor]

With M = `hold`, it sends nothing: it prints `opened` once the N sessions
are open (a SockJS one read up to its `o`), waits for a line on stdin,
closes them all (a FIN each, nothing unread) and prints `closed`; with
M = `keep`, it keeps them open until it is killed (profile_setup.sh).

Without `floor`, it speaks SockJS to `/echo/000/<id>/websocket` (our
`sockjs_bench`); with it, plain WebSocket text to `/echo/websocket`
(`ws_floor`). Used by profile_echo.sh and profile_setup.sh.
"""
import base64
import json
import os
import socket
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
hold = sys.argv[3] in ("hold", "keep")
rounds = 0 if hold else int(sys.argv[3])
floor = len(sys.argv) > 4


def connect(i):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    path = "/echo/websocket" if floor else f"/echo/000/e{i}x{os.getpid()}/websocket"
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    return [s, buf.split(b"\r\n\r\n", 1)[1]]


def read_frame(c):
    s, buf = c
    while True:
        if len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):
            size = buf[1] & 0x7F
            data, c[1] = buf[2:2 + size], buf[2 + size:]
            return data.decode()
        buf += s.recv(65536)
        c[1] = buf


conns = [connect(i) for i in range(n)]
if not floor:
    for c in conns:
        assert read_frame(c) == "o"
if hold:
    print("opened", flush=True)
    if sys.argv[3] == "keep":
        while True:
            time.sleep(3600)
    sys.stdin.readline()
    for c in conns:
        c[0].close()
    print("closed", flush=True)
for k in range(rounds):
    text = f"m{k}" if floor else json.dumps([f"m{k}"])
    expect = f"m{k}" if floor else f'a["m{k}"]'
    for c in conns:
        payload = text.encode()
        c[0].sendall(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
    for c in conns:
        assert read_frame(c) == expect
