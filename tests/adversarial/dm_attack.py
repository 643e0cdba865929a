"""Raw-socket helpers for the abuse tests: sign-ups, logins and direct messages sent
by hand (RawPeer), answers matched by cid."""

from __future__ import annotations

import time
from typing import Optional

from hostile import RawPeer
from schat.crypto import envelope as ev
from schat.protocol import dm_messages as dmm
from schat.protocol import events, messages


def signup(srv, user: str, password: str, key_der: Optional[bytes] = None,
           source: Optional[str] = None):
    """(peer, reply): a fresh connection from ``source`` that signs up as ``user``."""
    peer = RawPeer(srv, source=source)
    peer.handshake()
    peer.send(peer.record(messages.Signup(user=user, password=password, public_key=key_der)))
    return peer, peer.reply()


def login(srv, user: str, password: Optional[str] = None, source: Optional[str] = None):
    """(peer, reply): a fresh connection from ``source`` that logs in as ``user`` (with
    the test password of alice, bob or carol unless ``password`` is given)."""
    peer = RawPeer(srv, source=source)
    return peer, peer.login(user, password)


def sealed(sender: str, sender_key, recipient: str, recipient_key, text: str = "hello",
           time_ms: Optional[int] = None) -> bytes:
    """A genuine envelope (``recipient_key``: the recipient's public key)."""
    when = int(time.time() * 1000) if time_ms is None else time_ms
    return ev.seal(text, sender, sender_key, recipient, recipient_key, when)


def send_dm(peer: RawPeer, to: str, envelope: bytes, cid: str):
    """Send one ``dm_send``; return its answer (the ack or error with ``cid``)."""
    peer.send(peer.record(dmm.DmSend(to=to, envelope=envelope, cid=cid)))
    return answer(peer, cid)


def answer(peer: RawPeer, cid: str):
    """The next ``ack`` or ``error`` answering ``cid`` (everything read stays in ``inbox``)."""
    while True:
        msg = peer.next_of(events.MessageReceived).message
        if isinstance(msg, (messages.Ack, messages.Error)) and msg.cid == cid:
            return msg
