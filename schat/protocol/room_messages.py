"""Wire messages of rooms and moderation (see docs/PROTOCOL.md, "Rooms").

Sent only to clients that said ``"features": ["rooms"]`` at login; a client
that knows no rooms stays in #lobby and receives only the older types (chat
lines, joins and leaves of #lobby keep their shape: an absent ``room`` means
#lobby). ``checked`` answers a login with ``"check": true``, whatever the client.
"""

from __future__ import annotations

from typing import Any, Tuple

from schat.protocol import schema
from schat.protocol.messages import Message, message, spec

ROOM_LIST = schema.record(room=schema.ROOM, users=schema.INT, topic=schema.SHORT_TEXT,
                          private=schema.BOOL, member=schema.BOOL)


@message("checked")
class Checked(Message):
    """The credentials of ``user`` are good (a login with ``check``): no session was started."""
    user: str = spec(schema.NAME)
    time: int = spec(schema.TIME)


@message("room")
class RoomState(Message):
    """You are in ``room``: its topic, mode, owner, ops and who is online there."""
    room: str = spec(schema.ROOM)
    topic: str = spec(schema.SHORT_TEXT)
    private: bool = spec(schema.BOOL)
    ops: Tuple[str, ...] = spec(schema.NAMES)
    users: Tuple[str, ...] = spec(schema.NAMES)
    time: int = spec(schema.TIME)
    owner: Any = spec(schema.NAME, default=None)
    # True: more names follow in ``users`` messages with this room.
    more: bool = spec(schema.BOOL, default=False, omit=True)
    # The cid of the request this answers (/join); absent at login.
    cid: Any = spec(schema.CID, default=None)


@message("focus")
class Focus(Message):
    """Your plain lines (``say`` without ``room``) now go to ``room``; absent: you are in no room."""
    room: Any = spec(schema.ROOM, default=None)
    # The cid of the request this answers (/join, /switch, /part); absent otherwise.
    cid: Any = spec(schema.CID, default=None)


@message("topic")
class Topic(Message):
    room: str = spec(schema.ROOM)
    topic: str = spec(schema.SHORT_TEXT)
    user: str = spec(schema.NAME)
    time: int = spec(schema.TIME)


@message("moderation")
class Moderation(Message):
    """A moderation action in ``room``: ``actor`` (absent: the server operator) did
    ``action`` to ``target`` (absent for private/public), for ``reason``, ``until``."""
    room: str = spec(schema.ROOM)
    action: str = spec(schema.CODE)
    time: int = spec(schema.TIME)
    actor: Any = spec(schema.NAME, default=None)
    target: Any = spec(schema.NAME, default=None)
    reason: str = spec(schema.SHORT_TEXT, default="", omit=True)
    until: Any = spec(schema.TIME, default=None)


@message("rooms")
class Rooms(Message):
    """The rooms you may join: objects {room, users (online), topic, private, member}."""
    rooms: Tuple[dict, ...] = spec(ROOM_LIST)
    more: bool = spec(schema.BOOL, default=False, omit=True)
    # The cid of the /rooms request this answers.
    cid: Any = spec(schema.CID, default=None)
