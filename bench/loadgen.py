"""The load generator: many schat/1 clients on one asyncio loop.

Each client speaks the real protocol through :class:`ClientConnection` for the
handshake and login. Once a receiver is in the chat it switches to a lean read
path (frames → record open → count messages and pull the send time out of the
text) so that the generator, not the server, does the least work per delivery:
the benchmark measures the server.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Callable, List, Optional

from schat.crypto.keys import RsaKey
from schat.protocol import events, messages
from schat.protocol.auth import sign_login
from schat.protocol.connection import ClientConnection
from schat.protocol.framing import FrameDecoder
from schat.protocol.registry import CLIENT_RECEIVES

# Chat text of a benchmark message: "t=<monotonic ns> " + padding to 100 bytes.
TEXT_SIZE = 100
_STAMP = re.compile(rb'"text":"t=(\d+) ')
_MESSAGE_TAG = b'"type":"message"'


def bench_text(now_ns: int) -> str:
    """A 100-byte chat text carrying its send time (CLOCK_MONOTONIC is system-wide)."""
    head = f"t={now_ns} "
    return head + "x" * (TEXT_SIZE - len(head))


class BenchClient(asyncio.Protocol):
    """One benchmark member: handshake, login, then either send or count deliveries."""

    def __init__(self, user: str, password: Optional[str] = None,
                 key: Optional[RsaKey] = None, on_delivery: Optional[Callable] = None):
        self.user = user
        self.password = password
        self.key = key
        self.server_fp = ""  # from the ServerHello; a key login signs it
        self.conn = ClientConnection()
        self.transport: Optional[asyncio.Transport] = None
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.acks = 0
        self.ack_waiter: Optional[asyncio.Future] = None
        self.deliveries = 0
        self.latencies_ns: List[int] = []
        self.record_latency = True
        self.on_delivery = on_delivery
        self._fast = False
        self._decoder: Optional[FrameDecoder] = None
        self._channel = None

    # -- asyncio callbacks ---------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._fast:
            self._fast_receive(data)
            return
        conn = self.conn
        try:
            conn.receive_data(data)
            while (ev := conn.next_event()) is not None:
                self._event(ev)
        except Exception as err:  # noqa: BLE001 - a benchmark client reports, never hides
            self._fail(err)
        out = conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def connection_lost(self, exc) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.user}: connection lost ({exc})"))
        if not self.closed.done():
            self.closed.set_result(exc)

    # -- handshake and login -------------------------------------------------
    def _event(self, ev) -> None:
        conn = self.conn
        if isinstance(ev, events.ServerKeyReceived):
            self.server_fp = ev.fingerprint
            conn.accept_server_key()  # the benchmark talks to its own, known server
        elif isinstance(ev, events.HandshakeComplete):
            if self.key is not None:
                sig = sign_login(self.key, self.user, self.server_fp, conn.transcript_hash)
                conn.send(messages.LoginKey(user=self.user, signature=sig))
            else:
                conn.send(messages.Login(user=self.user, password=self.password))
        elif isinstance(ev, events.MessageReceived):
            msg = ev.message
            if isinstance(msg, messages.Welcome):
                if not self.ready.done():
                    self.ready.set_result(msg)
            elif isinstance(msg, messages.Error):
                self._fail(RuntimeError(f"{self.user}: server said {msg.code}: {msg.text}"))
            elif isinstance(msg, messages.Ack):
                self._acked(1)
            elif isinstance(msg, messages.Ping):
                conn.send(messages.Pong(n=msg.n))  # a real client answers, or is dropped
        elif isinstance(ev, events.ConnectionClosed):
            self._fail(ConnectionError(f"{self.user}: closed: {ev.reason}"))

    def _fail(self, err: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(err)
        if self.transport is not None:
            self.transport.close()

    # -- chat phase ----------------------------------------------------------
    def go_fast(self) -> None:
        """Switch to the lean read path (after the welcome)."""
        conn = self.conn
        self._decoder = conn._decoder      # same frame decoder: no byte is lost
        self._channel = conn._channel      # same record keys and sequence numbers
        self._fast = True
        self._fast_receive(b"")  # frames already buffered by the decoder

    def _fast_receive(self, data: bytes) -> None:
        decoder = self._decoder
        if data:
            decoder.feed(data)
        channel = self._channel
        now = time.monotonic_ns()
        while (got := decoder.next_frame()) is not None:
            payload = channel.open(*got)
            n = payload.count(_MESSAGE_TAG)
            if n:
                self.deliveries += n
                if self.record_latency:
                    self.latencies_ns.extend(now - int(t) for t in _STAMP.findall(payload))
                if self.on_delivery is not None:
                    self.on_delivery(n)
            acks = payload.count(b'"type":"ack"')
            if acks:
                self._acked(acks)
            if b'"type":"ping"' in payload:
                self._pong(payload)

    def _acked(self, n: int) -> None:
        self.acks += n
        waiter = self.ack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pong(self, payload: bytes) -> None:
        for line in payload.split(b"\n"):
            if b'"type":"ping"' in line:
                ping = messages.decode(line, CLIENT_RECEIVES)
                self.transport.write(self._channel.seal(messages.encode(messages.Pong(n=ping.n))))

    def say(self, text: str, cid: str) -> None:
        """Send one chat message (after go_fast: sealed straight through the channel)."""
        data = messages.encode(messages.Say(text=text, cid=cid, action=False))
        self.transport.write(self._channel.seal(data))

    def say_many(self, text: str, cids: List[str]) -> None:
        """Send one chat message per id in ``cids`` (a record each), in one write."""
        seal = self._channel.seal
        self.transport.write(b"".join(
            seal(messages.encode(messages.Say(text=text, cid=cid, action=False)))
            for cid in cids))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect_client(host: str, port: int, user: str, *, password: Optional[str] = None,
                         key: Optional[RsaKey] = None, timeout: float = 120.0,
                         on_delivery: Optional[Callable] = None) -> BenchClient:
    """Open a connection, complete the handshake and log in; return the ready client."""
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(
            lambda: BenchClient(user, password=password, key=key, on_delivery=on_delivery),
            host, port),
        timeout)
    await asyncio.wait_for(client.ready, timeout)
    return client
