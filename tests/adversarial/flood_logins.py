"""A login flood from its own process: rounds of N connections, each a full handshake and a
bogus login.

Usage: python flood_logins.py HOST PORT COUNT PARALLEL
Prints "ready", then runs one round for each line read on stdin and prints one
JSON line per round: how the server answered ({"answers": {"auth_failed": n,
"busy": n, ...}}) and when the round ran ("start", "end": time.monotonic(), one
clock across processes). Ends at the end of stdin. Between rounds it only
waits on stdin, so the caller can measure quiet windows between flood windows
with this process alive and idle.
Its own process, so the flood's client-side crypto does not share the server's interpreter.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections import Counter

from schat.protocol import events, messages
from schat.protocol.connection import ClientConnection


def one_login(host: str, port: int, i: int) -> str:
    conn = ClientConnection()
    try:
        with socket.create_connection((host, port), timeout=20) as sock:
            while True:
                ev = conn.next_event()
                if ev is None:
                    data = sock.recv(65536)
                    if not data:
                        return "closed"
                    conn.receive_data(data)
                    continue
                if isinstance(ev, events.ServerKeyReceived):
                    conn.accept_server_key()
                    sock.sendall(conn.data_to_send())
                elif isinstance(ev, events.HandshakeComplete):
                    conn.send(messages.Login(user=f"bogus{i}", password="no-such-pass-1"))
                    sock.sendall(conn.data_to_send())
                elif isinstance(ev, events.MessageReceived):
                    if isinstance(ev.message, messages.Error):
                        return ev.message.code
                elif isinstance(ev, events.ConnectionClosed):
                    return "closed"
    except Exception as err:  # noqa: BLE001 - counted, the flood goes on
        return type(err).__name__


def flood(host: str, port: int, count: int, parallel: int) -> dict:
    """One round: ``count`` bogus logins from ``parallel`` threads."""
    results: Counter = Counter()
    lock = threading.Lock()
    numbers = iter(range(count))

    def worker():
        while True:
            with lock:
                i = next(numbers, None)
            if i is None:
                return
            code = one_login(host, port, i)
            with lock:
                results[code] += 1
    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"answers": dict(results), "start": start, "end": time.monotonic()}


def main() -> int:
    # The flood stands in for machines elsewhere: its own client-side crypto
    # yields the shared cores to the server and the members being measured.
    os.nice(19)
    host, port, count, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    print("ready", flush=True)
    for _ in sys.stdin:
        print(json.dumps(flood(host, port, count, parallel)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
