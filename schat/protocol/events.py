"""Events a :mod:`schat.protocol.connection` hands to the application."""

from __future__ import annotations

from dataclasses import dataclass

from schat.protocol.messages import Message


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


@dataclass(frozen=True)
class ServerKeyReceived(Event):
    """Client side: the ServerHello arrived. Check the fingerprint, then call
    ``accept_server_key()`` or close. Nothing is sent before that."""

    public_key_der: bytes
    fingerprint: str


@dataclass(frozen=True)
class KeyExchangeReceived(Event):
    """Server side: the ClientKeyExchange arrived. Run ``complete_key_exchange()``
    (CPU-heavy) in a worker thread, then send ``data_to_send()``."""


@dataclass(frozen=True)
class HandshakeComplete(Event):
    """Keys are confirmed; messages may flow. ``transcript_hash`` binds logins."""

    transcript_hash: bytes


@dataclass(frozen=True)
class MessageReceived(Event):
    """One validated message from the peer."""

    message: Message


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The peer closed the stream at a frame boundary. ``clean`` is True when it
    said ``bye`` first; False means the end may have been cut off by an attacker."""

    clean: bool
    reason: str = ""
