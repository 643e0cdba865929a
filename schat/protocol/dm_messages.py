"""Wire messages of end-to-end encrypted direct messages (see docs/PROTOCOL.md).

Registered into :mod:`schat.protocol.messages` like every other type;
:mod:`schat.protocol.registry` imports this module and gives each type its
direction, so ``messages.decode`` always knows them.

Client -> server: ``get_key``, ``set_key``, ``dm_send``, ``dm_ack``.
Server -> client: ``key``, ``dm_env``, ``mailbox``.
"""

from __future__ import annotations

from typing import Any

from schat.protocol import schema
from schat.protocol.messages import Message, message, spec

# An envelope carries at most 4 KiB of text plus two RSA-8192 wraps, a signature
# and its header; base64 of it still fits one 64 KiB frame with room to spare.
MAX_ENVELOPE_BYTES = 12288
ENVELOPE = schema.binary(MAX_ENVELOPE_BYTES)
KEY_STATUS = schema.CODE
FINGERPRINT = schema.string(0, 64)

# Envelope time (docs/PROTOCOL.md, "Envelope time and replays"): the sender's
# clock, signed. The server refuses a dm_send whose envelope time is more than
# MAX_CLOCK_SKEW_MS from its own clock; the receiving client refuses one that
# differs by more than that from the time the server says it stored it, and
# one ahead of its own clock by more than MAX_FUTURE_MS (the sender's and the
# receiver's clocks may each be MAX_CLOCK_SKEW_MS off the server's).
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
MAX_FUTURE_MS = 2 * MAX_CLOCK_SKEW_MS


def envelope_time_ok(envelope_ms: int, reference_ms: int) -> bool:
    """Is an envelope's time within MAX_CLOCK_SKEW_MS of ``reference_ms``?

    The server's check at ``dm_send`` (reference: its clock) and the client's at
    ``dm_env`` (reference: the delivery's ``time``, when the server stored it).
    """
    return abs(envelope_ms - reference_ms) <= MAX_CLOCK_SKEW_MS


def no_key_text(user: str) -> str:
    """Why direct messages cannot reach ``user`` (no registered key), and the way out.

    The server sends it in ``no_key`` errors and the client shows it for a
    ``key`` reply with status ``no_key``, so both say the same thing.
    """
    return (f"{user} has no key yet, so end-to-end encrypted direct messages cannot reach "
            f"them; they can make one with `schat keys gen {user}`, and their client "
            f"registers it at their next login")


@message("get_key")
class GetKey(Message):
    """Ask for a member's registered public key (answered by ``key`` with the same cid)."""
    user: str = spec(schema.NAME)
    cid: str = spec(schema.CID)


@message("key")
class Key(Message):
    """``status``: ``ok`` (public_key and fingerprint set), ``no_such_user`` or ``no_key``."""
    cid: str = spec(schema.CID)
    user: str = spec(schema.NAME)
    status: str = spec(KEY_STATUS)
    public_key: Any = spec(schema.PUBLIC_KEY, default=None)
    fingerprint: str = spec(FINGERPRINT, default="")


@message("set_key")
class SetKey(Message):
    """Register the caller's public key on an account that has none (answered by ack/error)."""
    public_key: bytes = spec(schema.PUBLIC_KEY)
    cid: str = spec(schema.CID)


@message("dm_send")
class DmSend(Message):
    """An encrypted direct message; the server checks the header, stores and forwards it."""
    to: str = spec(schema.NAME)
    envelope: bytes = spec(ENVELOPE)
    cid: str = spec(schema.CID)


@message("dm_env")
class DmEnvelope(Message):
    """Delivery of one stored envelope; ``sender_key`` is the sender's key when it was sent."""
    id: int = spec(schema.INT)
    time: int = spec(schema.TIME)
    sender: str = spec(schema.NAME)
    envelope: bytes = spec(ENVELOPE)
    sender_key: bytes = spec(schema.PUBLIC_KEY)


@message("dm_ack")
class DmAck(Message):
    """The client has shown (or rejected) delivery ``id``: the server deletes it."""
    id: int = spec(schema.INT)


@message("mailbox")
class Mailbox(Message):
    """Sent right after ``welcome``: ``count`` stored messages follow as ``dm_env``."""
    count: int = spec(schema.INT)
