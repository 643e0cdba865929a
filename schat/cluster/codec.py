"""What crosses the bus: the chat domain's events and the cluster's own messages, in a
compact form.

Each bus message is one JSON array: ``[kind, origin node, sequence, ...fields]``.
The origin is the sending process's node id; the sequence counts that node's
messages on that channel (a receiver that sees one skipped knows it missed
something and catches up from the store). Room events carry a few fields more
than the domain's event (``meta``): what a process that has not seen the room
yet needs to create it, and how the room's stored membership count changes.

Decoding is strict: a message of another version or a damaged one raises
:class:`BadMessage` and is dropped (the bus is shared only by the cluster's own
processes, but a broken one must not take the others down).
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Tuple

from schat.chat import events as ev

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads

# Domain events.
SAID, JOINED, PARTED, TOPIC, MODERATED, INVITED, ANNOUNCED = "s", "j", "p", "t", "m", "i", "a"
# The cluster's own: a session online / offline, end a session, a node's heartbeat, a
# node asking for everyone's sessions, a node's sessions, a wire message for one of a
# node's sessions, stored mail waiting for a user.
ONLINE, OFFLINE, END, BEAT, HELLO, ROSTER, FORWARD, MAIL = (
    "on", "off", "end", "b", "h", "r", "fw", "ml")
# A node leaving, the message of the day changed, a room removed (nobody belongs to it),
# a session's away message.
BYE, MOTD, GONE, AWAY = "bye", "motd", "g", "aw"


class BadMessage(ValueError):
    """A bus message this process cannot read."""


def pack(kind: str, node: str, seq: int, *fields: Any) -> bytes:
    return _dumps([kind, node, seq, *fields]).encode("utf-8")


def unpack(data: bytes) -> Tuple[str, str, int, list]:
    """(kind, origin node, sequence, the other fields)."""
    try:
        item = _loads(data)
        kind, node, seq = item[0], item[1], item[2]
    except (ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError, RecursionError):
        raise BadMessage("not a schat bus message") from None
    if not (isinstance(kind, str) and isinstance(node, str) and type(seq) is int):
        raise BadMessage("not a schat bus message")
    return kind, node, seq, item[3:]


# -- domain events ------------------------------------------------------------------

def event_fields(event, meta: Optional[list]) -> Tuple[str, list]:
    """(kind, fields) of a domain event, with its ``meta`` (room events) appended."""
    kind = type(event)
    if kind is ev.Said:
        return SAID, [event.room, event.id, event.time, event.sender, event.text,
                      1 if event.action else 0]
    if kind is ev.Joined:
        return JOINED, [event.room, event.user, event.time, meta]
    if kind is ev.Parted:
        return PARTED, [event.room, event.user, event.time, event.reason, meta]
    if kind is ev.TopicChanged:
        return TOPIC, [event.room, event.topic, event.by, event.time]
    if kind is ev.Moderated:
        return MODERATED, [event.room, event.action, event.actor, event.target, event.reason,
                           event.until, event.time, meta]
    if kind is ev.Invited:
        return INVITED, [event.user, event.room, event.by, event.time]
    if kind is ev.Announcement:
        return ANNOUNCED, [event.text, event.time, meta]
    raise ValueError(f"{kind.__name__} does not cross the bus")


def _text(value) -> str:
    if not isinstance(value, str):
        raise BadMessage("a text field is not text")
    return value


def _int(value) -> int:
    if type(value) is not int:
        raise BadMessage("a number field is not an integer")
    return value


def _opt_text(value) -> Optional[str]:
    return None if value is None else _text(value)


def _opt_int(value) -> Optional[int]:
    return None if value is None else _int(value)


def decode_event(kind: str, f: List[Any]):
    """(event, meta) of a domain event's fields; BadMessage when they do not fit."""
    try:
        if kind == SAID:
            return ev.Said(_text(f[0]), _int(f[1]), _int(f[2]), _text(f[3]), _text(f[4]),
                           bool(f[5])), None
        if kind == JOINED:
            return ev.Joined(_text(f[0]), _text(f[1]), _int(f[2])), f[3]
        if kind == PARTED:
            return ev.Parted(_text(f[0]), _text(f[1]), _int(f[2]), _text(f[3])), f[4]
        if kind == TOPIC:
            return ev.TopicChanged(_text(f[0]), _text(f[1]), _text(f[2]), _int(f[3])), None
        if kind == MODERATED:
            return ev.Moderated(_text(f[0]), _text(f[1]), _opt_text(f[2]), _text(f[3]),
                                _text(f[4]), _opt_int(f[5]), _int(f[6])), f[7]
        if kind == INVITED:
            return ev.Invited(_text(f[0]), _text(f[1]), _text(f[2]), _int(f[3])), None
        if kind == ANNOUNCED:
            return ev.Announcement(_text(f[0]), _int(f[1])), f[2]
    except IndexError:
        raise BadMessage(f"a {kind!r} message lacks fields") from None
    raise BadMessage(f"unknown bus message kind {kind[:8]!r}")


DOMAIN_KINDS = frozenset({SAID, JOINED, PARTED, TOPIC, MODERATED, INVITED, ANNOUNCED})
