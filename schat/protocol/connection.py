"""Sans-I/O ``schat/1`` connections: bytes in, events out, bytes to send collected.

A :class:`ServerConnection` or :class:`ClientConnection` never touches a
socket. The caller feeds received bytes to :meth:`receive_data`, drains
:meth:`next_event` until it returns None, and writes :meth:`data_to_send`.
Frames are processed lazily in :meth:`next_event`, so the client can stop at
:class:`~schat.protocol.events.ServerKeyReceived` and the server at
:class:`~schat.protocol.events.KeyExchangeReceived` until the application acts.

Any violation raises :class:`~schat.errors.RemoteProtocolError`; the
connection is then dead (later calls raise the same error) and the caller
closes the socket. When the channel was open, :meth:`close` may still say
``bye`` first (the server puts an ``error`` naming the violation ahead of it):
the peer broke its own direction of the channel, not ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Optional, Type

from schat.crypto import backend as crypto_backend
from schat.crypto.kdf import constant_time_equal
from schat.crypto.keys import RandFunc, RsaKey
from schat.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from schat.protocol import events, messages, registry
from schat.protocol.channel import MAX_PAYLOAD, SecureChannel
from schat.protocol.framing import FrameDecoder
from schat.protocol.handshake import ClientHandshake, ServerHandshake, SessionKeys, finished_mac

logger = logging.getLogger("schat.protocol")

# States
_EXPECT_HELLO = "expect-server-hello"
_AWAIT_ACCEPT = "await-accept"          # client: application checks the key
_EXPECT_KEX = "expect-key-exchange"
_AWAIT_COMPLETE = "await-complete"      # server: complete_key_exchange() pending
_EXPECT_FINISHED = "expect-finished"
_OPEN = "open"
_CLOSED = "closed"

_WAITING = frozenset({_AWAIT_ACCEPT, _AWAIT_COMPLETE})

# Longest reason, in characters, given with a protocol error.
REASON_CHARS = 200


def violation_text(err: ProtocolError) -> str:
    """The reason for a protocol error as the peer may read it (in an ``error`` text or a
    ``bye`` reason): printable ASCII only, anything else shown as ``?`` (a reason may
    quote what the peer sent), at most REASON_CHARS characters."""
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in str(err)) or "protocol error"
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 3] + "..."


@dataclass
class ConnectionStats:
    """Counters for debugging and benchmarks (no content): a snapshot, see
    :attr:`_Connection.stats`."""

    records_sent: int = 0
    records_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


class _Connection:
    # Slots: a server holds one connection object per member (no instance dict).
    __slots__ = ("_backend", "_decoder", "_out", "_events", "_taken", "_channel", "_state",
                 "_error", "_closed", "_bye", "_last_word", "_eof_reported", "_transcript_hash",
                 "_accepted", "_messages_sent", "_messages_received", "_bytes_sent",
                 "_bytes_received")
    _is_server = False

    def __init__(self, accepted: Mapping[str, Type[messages.Message]], backend=None) -> None:
        # The crypto backend's name (schat.crypto.backend): OpenSSL unless told otherwise.
        self._backend = crypto_backend.get(backend).NAME
        self._decoder = FrameDecoder()
        self._out: List[bytes] = []
        # Events not returned yet: _events[_taken:] (a list and an index, not a deque: an
        # empty deque holds a 64-slot block, ~0.7 KiB per connection for a server of many).
        self._events: List[events.Event] = []
        self._taken = 0
        self._channel: Optional[SecureChannel] = None
        self._state = _EXPECT_HELLO
        self._error: Optional[ProtocolError] = None
        self._closed = False
        self._bye: Optional[messages.Bye] = None
        # True after a protocol error while the channel was open: close() may still
        # send one last record (the reason, then bye).
        self._last_word = False
        self._eof_reported = False
        self._transcript_hash = b""
        # The message types the peer may send now (registry: direction and login state).
        self._accepted = accepted
        # Counters behind ``stats``; records are counted by the channel's
        # sequence numbers, so a record costs no counter of its own.
        self._messages_sent = 0
        self._messages_received = 0
        self._bytes_sent = 0
        self._bytes_received = 0

    @property
    def stats(self) -> ConnectionStats:
        """Records, messages and bytes sent and received so far (a snapshot)."""
        channel = self._channel
        return ConnectionStats(
            records_sent=channel.send_seq if channel is not None else 0,
            records_received=channel.recv_seq if channel is not None else 0,
            messages_sent=self._messages_sent, messages_received=self._messages_received,
            bytes_sent=self._bytes_sent, bytes_received=self._bytes_received)

    # --- input ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` signals end of stream."""
        if self._error is not None:
            raise self._error
        self._bytes_received += len(data)
        try:
            self._decoder.feed(data)
        except RemoteProtocolError as exc:
            raise self._die(exc)

    def next_event(self) -> Optional[events.Event]:
        """The next event, or None when more data (or an application step) is needed."""
        if self._events:
            return self._take()
        if self._error is not None:
            raise self._error
        try:
            while self._state not in _WAITING:
                got = self._decoder.next_frame()
                if got is None:
                    if self._decoder.eof and not self._eof_reported:
                        return self._end_of_stream()
                    return None
                self._handle_frame(*got)
                if self._events:
                    return self._take()
        except RemoteProtocolError as exc:
            raise self._die(exc)
        return None

    def _take(self) -> events.Event:
        pending = self._events
        taken = self._taken
        event = pending[taken]
        taken += 1
        if taken == len(pending):
            pending.clear()
            taken = 0
        self._taken = taken
        return event

    def _end_of_stream(self) -> events.Event:
        self._eof_reported = True
        self._closed = True
        clean = self._bye is not None
        reason = self._bye.reason if self._bye is not None else (
            "connection closed" if self._state == _OPEN else "connection closed during the handshake")
        self._state = _CLOSED
        logger.debug("peer closed the connection (clean=%s)", clean)
        return events.ConnectionClosed(clean=clean, reason=reason)

    def _die(self, exc: ProtocolError) -> ProtocolError:
        self._last_word = self._state == _OPEN and not self._closed
        self._error = exc
        # Nothing received before the error comes out after it.
        self._events.clear()
        self._taken = 0
        self._closed = True
        self._state = _CLOSED
        logger.debug("protocol error: %s", exc)
        return exc

    def _handle_frame(self, header: bytes, body: bytes) -> None:
        if self._state == _OPEN:
            self._handle_record(header, body)
        else:
            self._handle_handshake(header, body)

    def _handle_handshake(self, header: bytes, body: bytes) -> None:
        raise NotImplementedError

    def _handle_record(self, header: bytes, body: bytes) -> None:
        payload = self._channel.open(header, body)  # type: ignore[union-attr]
        decode = messages.decode
        accepted = self._accepted
        # A record is accepted whole or not at all: decode every message first.
        received = []
        bye = self._bye
        for part in payload.split(b"\n"):
            if bye is not None:
                raise RemoteProtocolError("peer sent data after saying bye",
                                          code="unexpected_message")
            msg = decode(part, accepted)
            if type(msg) is messages.Bye:
                bye = msg
            received.append(events.MessageReceived(msg))
        self._bye = bye
        self._messages_received += len(received)
        self._events.extend(received)

    # --- output ---------------------------------------------------------------

    def trim(self) -> None:
        """Let an idle channel drop its cipher key objects (:meth:`SecureChannel.trim`);
        a server calls it for every connection now and then."""
        if self._channel is not None:
            self._channel.trim()

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call (may be b"")."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        self._bytes_sent += len(data)
        return data

    def send(self, *msgs: messages.Message) -> None:
        """Queue messages, packed into as few records as fit (usually one)."""
        self.send_encoded([messages.encode(m) for m in msgs])

    def send_encoded(self, encoded: Iterable[bytes]) -> None:
        """Queue pre-encoded messages (from :func:`messages.encode`), packed into
        as few records as fit under the frame cap: one AEAD call per record."""
        self._out.append(self._seal(encoded))

    def seal_encoded(self, encoded: Iterable[bytes]) -> bytes:
        """Like :meth:`send_encoded`, but return the records instead of queueing
        them: the server's flush writes them straight to the socket.

        The server's per-recipient hot path: one message in a list costs one
        channel seal and two counters, nothing else."""
        if type(encoded) is list and len(encoded) == 1 and self._state is _OPEN and not self._closed:
            data = self._channel.seal(encoded[0])  # type: ignore[union-attr]
            self._messages_sent += 1
        else:
            data = self._seal(encoded)
        self._bytes_sent += len(data)
        if self._out:
            # Records queued earlier carry lower sequence numbers: they go first.
            return self.data_to_send() + data
        return data

    def _seal(self, encoded: Iterable[bytes]) -> bytes:
        if self._state != _OPEN or self._closed:
            raise LocalProtocolError(
                "connection is closed" if self._closed else "cannot send before the handshake completes")
        seal = self._channel.seal  # type: ignore[union-attr]
        if type(encoded) is list and encoded:
            if len(encoded) == 1:
                # The common case at low load: one message, one record, no joins.
                # SecureChannel.seal refuses an empty or oversized payload itself.
                record = seal(encoded[0])
                self._messages_sent += 1
                return record
            # A flush under load: when everything fits one record, one join in C
            # instead of a Python step per message.
            payload = b"\n".join(encoded)
            if len(payload) <= MAX_PAYLOAD and b"" not in encoded:
                record = seal(payload)
                self._messages_sent += len(encoded)
                return record
        records: List[bytes] = []
        batch: List[bytes] = []
        size = -1
        count = 0
        for item in encoded:
            n = len(item)
            if n == 0 or n > MAX_PAYLOAD:
                raise LocalProtocolError(f"encoded message of {n} bytes does not fit a record")
            if size + 1 + n > MAX_PAYLOAD:
                records.append(seal(b"\n".join(batch)))
                batch = [item]
                size = n
            else:
                batch.append(item)
                size += 1 + n
            count += 1
        if batch:
            records.append(seal(b"\n".join(batch)))
        self._messages_sent += count
        return records[0] if len(records) == 1 else b"".join(records)

    def close(self, reason: str = "", before: Iterable[messages.Message] = ()) -> None:
        """Say ``bye`` (when the channel is open) and refuse further sends.

        ``before``: messages that go in the same record ahead of the ``bye`` (the
        server's ``error`` saying why it closes), so the peer gets both or neither.
        After a protocol error of the peer this still works while the channel was
        open, so the peer can learn what it did wrong. The caller writes
        :meth:`data_to_send` and then closes the socket."""
        last_word, self._last_word = self._last_word, False
        if self._closed and not last_word:
            return
        self._closed = True
        if self._channel is None or not (self._state == _OPEN or last_word):
            return
        try:
            encoded = [messages.encode(m) for m in before]
            encoded.append(messages.encode(messages.Bye(reason=reason[:256])))
            self._out.append(self._channel.seal(b"\n".join(encoded)))
            self._messages_sent += len(encoded)
        except LocalProtocolError:
            pass  # record limit reached, or an unsendable reason: close without a bye

    # --- state ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True after :meth:`close`, end of stream, or a protocol error."""
        return self._closed

    @property
    def handshake_complete(self) -> bool:
        """True once keys are confirmed and messages may be sent."""
        return self._channel is not None and self._state == _OPEN

    @property
    def transcript_hash(self) -> bytes:
        """SHA-256 over ServerHello ‖ ClientKeyExchange (b"" before the key exchange, and
        on the server once :meth:`ServerConnection.logged_in`: nothing signs it after)."""
        return self._transcript_hash

    def _open_channel(self, session: SessionKeys) -> SecureChannel:
        if self._is_server:
            return SecureChannel(session.s2c_key, session.s2c_iv, session.c2s_key, session.c2s_iv,
                                 backend=self._backend)
        return SecureChannel(session.c2s_key, session.c2s_iv, session.s2c_key, session.s2c_iv,
                             backend=self._backend)


class ServerConnection(_Connection):
    """The server end of one connection; the ServerHello is queued at once."""

    __slots__ = ("_handshake",)
    _is_server = True

    def __init__(self, host_key: RsaKey, randfunc: RandFunc = None, backend=None):
        super().__init__(registry.BEFORE_LOGIN, backend)
        self._handshake = ServerHandshake(host_key, randfunc, self._backend)
        self._out.append(self._handshake.server_hello)
        self._state = _EXPECT_KEX

    def _handle_handshake(self, header: bytes, body: bytes) -> None:
        if self._state != _EXPECT_KEX:
            raise RemoteProtocolError(f"unexpected frame in state {self._state}",
                                      code="unexpected_message")
        self._handshake.receive_key_exchange(header, body)
        self._transcript_hash = self._handshake.transcript_hash
        self._state = _AWAIT_COMPLETE
        self._events.append(events.KeyExchangeReceived())

    def complete_key_exchange(self) -> None:
        """Derive the session keys and queue ServerFinished (CPU-heavy: RSA).

        Run it in a worker thread; nothing else may touch the connection
        until it returns. Queues a HandshakeComplete event.
        """
        if self._state != _AWAIT_COMPLETE:
            raise LocalProtocolError("complete_key_exchange() called in the wrong state")
        try:
            session = self._handshake.complete()
        except RemoteProtocolError as exc:
            raise self._die(exc)
        self._channel = self._open_channel(session)
        self._out.append(self._channel.seal(
            finished_mac(session, self._transcript_hash, self._backend)))
        self._handshake = None  # type: ignore[assignment]
        self._state = _OPEN
        self._events.append(events.HandshakeComplete(self._transcript_hash))
        logger.debug("handshake: ServerFinished sent, channel open")

    def logged_in(self) -> None:
        """The application accepted a login: from now on every client → server
        type is allowed (before, only logins, ping, pong and bye)."""
        if self._state != _OPEN:
            raise LocalProtocolError("logged_in() before the handshake completed")
        self._accepted = registry.SERVER_RECEIVES
        # Only a login signs the transcript hash: a server of many idle members keeps
        # none (32 bytes, ~80 with the object, per member).
        self._transcript_hash = b""


class ClientConnection(_Connection):
    """The client end: waits for the ServerHello, then for :meth:`accept_server_key`."""

    __slots__ = ("_handshake", "_finished_expected")

    def __init__(self, randfunc: RandFunc = None, backend=None):
        super().__init__(registry.CLIENT_RECEIVES, backend)
        self._handshake = ClientHandshake(randfunc, self._backend)
        self._finished_expected = b""

    def _handle_handshake(self, header: bytes, body: bytes) -> None:
        if self._state == _EXPECT_HELLO:
            hs = self._handshake
            hs.receive_server_hello(header, body)
            self._state = _AWAIT_ACCEPT
            self._events.append(events.ServerKeyReceived(hs.server_key_der, hs.fingerprint))
        elif self._state == _EXPECT_FINISHED:
            payload = self._channel.open(header, body)  # type: ignore[union-attr]
            if not constant_time_equal(payload, self._finished_expected):
                logger.debug("handshake: ServerFinished verify FAILED")
                raise RemoteProtocolError("server key confirmation failed")
            logger.debug("handshake: ServerFinished verified, channel open")
            self._state = _OPEN
            self._events.append(events.HandshakeComplete(self._transcript_hash))
        else:
            raise RemoteProtocolError(f"unexpected frame in state {self._state}")

    def accept_server_key(self) -> None:
        """The application trusts the server key: queue the ClientKeyExchange."""
        if self._state != _AWAIT_ACCEPT or self._closed:
            raise LocalProtocolError("accept_server_key() called in the wrong state")
        hs = self._handshake
        try:
            cke, session = hs.key_exchange()
        except RemoteProtocolError as exc:
            raise self._die(exc)
        self._transcript_hash = hs.transcript_hash
        self._channel = self._open_channel(session)
        self._finished_expected = finished_mac(session, self._transcript_hash, self._backend)
        self._out.append(cke)
        self._state = _EXPECT_FINISHED
