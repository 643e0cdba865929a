"""A modified schat server: the real handshake and channel, replies written by the test.

The operator is the attacker here. :class:`HostileServer` speaks schat/1
through the sans-I/O :class:`~schat.protocol.connection.ServerConnection`
(so the client sees a genuine server with a genuine host key), logs anyone in
by default, and hands every other message to the test's ``script`` — which may
answer with lies: another member's name or key, escape sequences in error
texts, bye reasons or the message of the day, replayed or back-dated
envelopes. Everything the clients send is kept in :attr:`received`, so a test
can check what a client did *not* send.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, List, Optional, Tuple

from chatkit import WAIT
from schat.crypto.keys import fingerprint, public_der
from schat.errors import ProtocolError
from schat.protocol import dm_messages as dmm
from schat.protocol import events, messages
from schat.protocol.connection import ServerConnection

Script = Callable[["HostileLink", messages.Message], None]


def now_ms() -> int:
    return int(time.time() * 1000)


class HostileLink:
    """One client connection to the hostile server (its own thread)."""

    def __init__(self, server: "HostileServer", sock: socket.socket):
        self.server = server
        self.sock = sock
        self.conn = ServerConnection(server.host_key)
        self.user: Optional[str] = None
        self._lock = threading.Lock()
        self.closed = False

    # -- sending ------------------------------------------------------------
    def send(self, *msgs: messages.Message) -> None:
        """Seal ``msgs`` into one record and send it."""
        with self._lock:
            if self.closed:
                return
            self.conn.send(*msgs)
            self._flush()

    def bye(self, reason: str) -> None:
        """Say goodbye with ``reason`` (any text the protocol allows) and close."""
        with self._lock:
            if self.closed:
                return
            self.conn.close(reason)
            self._flush()
            self.closed = True
        self._shutdown()

    def welcome(self, user: str, motd: Optional[str] = None, users=None,
                server_name: Optional[str] = None, mailbox=()) -> None:
        """Log the client in as ``user``: welcome, then the mailbox (``dm_env`` messages)."""
        self.user = user
        srv = self.server
        self.send(messages.Welcome(user=user, server=server_name or srv.server_name,
                                   motd=srv.motd if motd is None else motd,
                                   users=tuple(users or (user,)), time=now_ms()))
        self.conn.logged_in()
        self.send(dmm.Mailbox(count=len(mailbox)), *mailbox)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def _shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- receiving ----------------------------------------------------------
    def run(self) -> None:
        try:
            with self._lock:
                self._flush()  # the ServerHello
            while not self.closed:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    return
                self.conn.receive_data(data)
                while True:
                    ev = self.conn.next_event()
                    if ev is None:
                        break
                    if isinstance(ev, events.KeyExchangeReceived):
                        with self._lock:
                            self.conn.complete_key_exchange()
                            self._flush()
                    elif isinstance(ev, events.MessageReceived):
                        self.server._record(self, ev.message)
                        self._dispatch(ev.message)
                    elif isinstance(ev, events.ConnectionClosed):
                        return
                if not data:
                    return
        except ProtocolError:
            return
        finally:
            self.closed = True
            self.sock.close()

    def _dispatch(self, msg: messages.Message) -> None:
        srv = self.server
        if isinstance(msg, (messages.Login, messages.LoginKey, messages.Signup)):
            srv.on_login(self, msg)
        elif isinstance(msg, messages.Ping):
            self.send(messages.Pong(n=msg.n))
        elif isinstance(msg, (messages.Pong, messages.Bye)):
            return
        elif srv.script is not None:
            srv.script(self, msg)
        elif isinstance(msg, (messages.Say, messages.Command)):
            self.send(messages.Ack(cid=msg.cid, id=1, time=now_ms()))


def default_login(link: HostileLink, msg) -> None:
    link.welcome(msg.user)


class HostileServer:
    """A scripted, lying schat server on 127.0.0.1 (a thread per client)."""

    def __init__(self, host_key, script: Optional[Script] = None,
                 on_login: Callable[[HostileLink, messages.Message], None] = default_login,
                 motd: str = "", server_name: str = "evil", port: int = 0):
        self.host_key = host_key
        self.fingerprint = fingerprint(host_key)
        self.key_der = public_der(host_key)
        self.script = script
        self.on_login = on_login
        self.motd = motd
        self.server_name = server_name
        self.received: List[Tuple[HostileLink, messages.Message]] = []
        self.links: List[HostileLink] = []
        self._changed = threading.Condition()
        self._sock = socket.create_server(("127.0.0.1", port))
        self.host, self.port = self._sock.getsockname()[:2]
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            sock.settimeout(WAIT * 3)
            link = HostileLink(self, sock)
            with self._changed:
                self.links.append(link)
            threading.Thread(target=link.run, daemon=True).start()

    def _record(self, link: HostileLink, msg) -> None:
        with self._changed:
            self.received.append((link, msg))
            self._changed.notify_all()

    def sent_of(self, kind) -> list:
        """Every message of ``kind`` the clients sent so far."""
        with self._changed:
            return [msg for _, msg in self.received if isinstance(msg, kind)]

    def wait_for(self, kind, timeout: float = WAIT):
        """The first message of ``kind`` a client sent (waiting for it)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.sent_of(kind), timeout):
                raise AssertionError(f"no {kind.__name__} arrived")
            return self.sent_of(kind)[0]

    def close(self) -> None:
        self._stop = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._sock.close()
        for link in list(self.links):
            link.closed = True
            link._shutdown()
        self._thread.join(WAIT)
