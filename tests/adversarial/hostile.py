"""Hostile peers on raw sockets, and honest members who keep chatting beside them.

``RawPeer`` speaks schat/1 through the sans-I/O client connection but hands
every byte to the test, so records can be flipped, replayed, swapped or
dropped and frames cut anywhere. ``Chatter`` keeps a few real clients talking
for the whole test and checks at the end that every line reached everyone.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Dict, List, Optional

from chatkit import PASSWORDS, WAIT, Client, RunningServer
from schat.client.session import Disconnected
from schat.errors import ConnectionFailed
from schat.protocol import events, messages
from schat.protocol.connection import ClientConnection

SOCK_TIMEOUT = 10.0


def fd_count() -> int:
    """Open file descriptors of this process."""
    import os
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as f:
        import os
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the abrupt end of a crashed client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class RawPeer:
    """One TCP connection whose every byte the test controls."""

    def __init__(self, srv: RunningServer, source: Optional[str] = None,
                 rcvbuf: Optional[int] = None):
        self.srv = srv
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(SOCK_TIMEOUT)
        if rcvbuf is not None:  # a small receive window: the server's output backs up soon
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect((srv.host, srv.port))
        self.conn = ClientConnection()
        self.inbox: List = []
        self.helloed = False

    # -- raw ------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_by_server(self, timeout: float = WAIT) -> bool:
        """Read until the server closes; True on EOF or reset, False on timeout."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self) -> None:
        self.sock.close()

    # -- protocol ---------------------------------------------------------------
    def _pump(self) -> bytes:
        data = self.sock.recv(65536)
        self.conn.receive_data(data)
        return data

    def hello(self) -> None:
        """Read the ServerHello and accept the key (queues the ClientKeyExchange)."""
        self.helloed = True
        while True:
            ev = self.conn.next_event()
            if isinstance(ev, events.ServerKeyReceived):
                self.conn.accept_server_key()
                return
            if ev is None:
                if not self._pump():
                    raise ConnectionError("closed before the ServerHello")

    def handshake(self) -> None:
        """Full handshake: hello (unless read already), key exchange, ServerFinished verified."""
        if not self.helloed:
            self.hello()
        self.send(self.conn.data_to_send())
        self.next_of(events.HandshakeComplete)

    def next_of(self, kind):
        """The next event of ``kind`` (MessageReceived messages are also kept in inbox)."""
        while True:
            ev = self.conn.next_event()
            if ev is None:
                if not self._pump():
                    raise ConnectionError(f"closed while waiting for {kind.__name__}")
                continue
            if isinstance(ev, events.MessageReceived):
                self.inbox.append(ev.message)
                if kind is not events.MessageReceived and isinstance(ev.message, kind):
                    return ev.message
            if isinstance(ev, kind):
                return ev

    def reply(self):
        """The next message that is an error or a welcome."""
        while True:
            msg = self.next_of(events.MessageReceived).message
            if isinstance(msg, (messages.Error, messages.Welcome)):
                return msg

    def record(self, *msgs) -> bytes:
        """Seal ``msgs`` as the next record and return its bytes (not sent)."""
        self.conn.send(*msgs)
        return self.conn.data_to_send()

    def login(self, user: str, password: Optional[str] = None):
        """Handshake and password login; return the reply (welcome or error)."""
        self.handshake()
        self.send(self.record(messages.Login(user=user, password=password or PASSWORDS[user])))
        return self.reply()


class Chatter:
    """Honest members that keep chatting until ``finish()``; every line must reach all."""

    def __init__(self, srv: RunningServer, names=("alice", "bob"), interval: float = 0.25):
        self.srv = srv
        self.clients: Dict[str, Client] = {name: srv.login(name) for name in names}
        self.sent: Dict[str, List[str]] = {name: [] for name in names}
        self.interval = interval
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._talk, args=(name,), daemon=True)
                         for name in names]
        for t in self._threads:
            t.start()

    def _talk(self, name: str) -> None:
        session = self.clients[name].session
        i = 0
        while not self._stop.wait(self.interval):
            text = f"{name} line {i}"
            try:
                session.say(text)
            except ConnectionFailed:
                return  # finish() reports the disconnection
            self.sent[name].append(text)
            i += 1

    def finish(self) -> Dict[str, int]:
        """Stop talking, then check every member got every other member's lines, in order."""
        self._stop.set()
        for t in self._threads:
            t.join(WAIT)
        for name, client in self.clients.items():
            client.session.say(f"{name} done")
            self.sent[name].append(f"{name} done")
        got: Dict[str, Dict[str, List[str]]] = {}
        for name, client in self.clients.items():
            got[name] = {other: [] for other in self.clients if other != name}
            waiting = set(got[name])
            while waiting:
                ev = client.events.get(timeout=WAIT)
                if isinstance(ev, Disconnected):
                    raise AssertionError(f"honest member {name} was disconnected: {ev.reason}")
                # Only the chatter's own numbered lines (tests may make members say more).
                if (isinstance(ev, messages.ChatMessage) and ev.sender in got[name]
                        and ev.text.startswith(f"{ev.sender} ")):
                    got[name][ev.sender].append(ev.text)
                    if ev.text == f"{ev.sender} done":
                        waiting.discard(ev.sender)
        for name in got:
            for other, lines in got[name].items():
                assert lines == self.sent[other], f"{name} missed lines of {other}"
        for client in self.clients.values():
            assert client.session.wait_acked(WAIT)
        return {name: len(lines) for name, lines in self.sent.items()}

    def close(self) -> None:
        self._stop.set()
        for client in self.clients.values():
            client.close()



def assert_no_traceback(caplog) -> None:
    """No record carried an exception: hostile input is a logged reason, never a crash."""
    bad = [r.getMessage() for r in caplog.records
           if r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, bad


def disconnect_reasons(caplog) -> List[str]:
    """The reasons of every 'disconnect' line the server logged."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("disconnect ")]
