"""The domain's own event types: what happened, in the domain's words.

Room events go to a room's members through the fan-out (:mod:`schat.chat.fanout`);
a bus between server processes would carry exactly these. Replies answer the
member whose request caused them and never leave its server process. The
connection layer turns each event into wire messages, once per event.

Times are integer milliseconds since the Unix epoch (UTC); names are the
registered spellings; rooms are canonical (``#dev``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Optional, Tuple

_DC = {"frozen": True}
if sys.version_info >= (3, 10):
    _DC["slots"] = True


# --- room events (channel: the room) -------------------------------------------

@dataclass(**_DC)
class Said:
    """A chat line in a room; ``history`` marks a copy sent as backlog."""
    room: str
    id: int
    time: int
    sender: str
    text: str
    action: bool = False
    history: bool = False

    def as_history(self) -> "Said":
        return replace(self, history=True)


@dataclass(**_DC)
class Joined:
    room: str
    user: str
    time: int


@dataclass(**_DC)
class Parted:
    """``user`` left ``room``: /part, the end of its session ("quit", "connection lost")."""
    room: str
    user: str
    time: int
    reason: str = ""


@dataclass(**_DC)
class TopicChanged:
    room: str
    topic: str
    by: str
    time: int


# Moderation actions that take their target out of the room.
REMOVING = frozenset({"kick", "ban", "disconnect", "lock", "remove"})


@dataclass(**_DC)
class Moderated:
    """A moderation action shown to the room: who did what to whom, and why.

    ``action``: kick, ban, unban, mute, unmute, op, deop, invite, private, public,
    disconnect, lock, remove. ``actor`` is None for the server operator (the control
    socket). ``until`` ends a ban or mute (None: until lifted). ``target`` is ""
    for room-wide actions (private, public).
    """
    room: str
    action: str
    actor: Optional[str]
    target: str
    reason: str
    until: Optional[int]
    time: int


# --- user and server-wide events (channel: one user, or everyone) ----------------

@dataclass(**_DC)
class Closing:
    """End ``user``'s session: ``code`` (an error code) and ``reason`` say why."""
    user: str
    code: str
    reason: str


@dataclass(**_DC)
class Invited:
    user: str
    room: str
    by: str
    time: int


@dataclass(**_DC)
class Announcement:
    """A notice to everyone online (the operator's broadcast, a new MOTD)."""
    text: str
    time: int


# --- replies to the requesting member ---------------------------------------------

@dataclass(**_DC)
class Welcome:
    user: str
    server: str
    motd: str
    users: Tuple[str, ...]
    time: int


@dataclass(**_DC)
class RoomState:
    """The member is now in ``room``: its topic, mode, owner, ops and who is online there."""
    room: str
    topic: str
    private: bool
    owner: str
    ops: Tuple[str, ...]
    users: Tuple[str, ...]
    time: int


@dataclass(**_DC)
class Focus:
    """Plain lines of this member now go to ``room`` (None: it is in no room)."""
    room: Optional[str]


@dataclass(**_DC)
class Names:
    """Who is in ``room``; ``away``: (name, away message) of those in it who are away."""
    room: str
    users: Tuple[str, ...]
    away: Tuple[Tuple[str, str], ...] = ()


@dataclass(**_DC)
class RoomInfo:
    room: str
    users: int
    topic: str
    private: bool
    member: bool


@dataclass(**_DC)
class RoomList:
    rooms: Tuple[RoomInfo, ...]


@dataclass(**_DC)
class Info:
    """Text for the member alone (help, ban lists, confirmations)."""
    text: str
    time: int


@dataclass(**_DC)
class Refused:
    code: str
    text: str
    cid: Optional[str] = None


@dataclass(**_DC)
class Done:
    """Confirms request ``cid``; ``id`` is the message id of a chat line, else 0."""
    cid: str
    id: int
    time: int


# --- text ----------------------------------------------------------------------------

_DONE = {"kick": "kicked from", "ban": "banned from", "unban": "unbanned in",
         "mute": "muted in", "unmute": "unmuted in", "op": "made an op of",
         "deop": "no longer an op of", "invite": "invited to", "disconnect": "disconnected",
         "lock": "locked out", "remove": "removed"}


def describe(event, now: int) -> str:
    """One line of plain text for a room-level event (for clients that know no rooms,
    and for logs): ``bob was kicked from #dev by ann: spam``."""
    if isinstance(event, TopicChanged):
        return (f"{event.by} set the topic of {event.room}: {event.topic}" if event.topic
                else f"{event.by} cleared the topic of {event.room}")
    if isinstance(event, Invited):
        return f"{event.by} invites you to {event.room}: /join {event.room}"
    if not isinstance(event, Moderated):
        return ""
    actor = event.actor or "the server operator"
    reason = f": {event.reason}" if event.reason else ""
    if event.action in ("private", "public"):
        return f"{actor} made {event.room} {event.action}"
    verb = _DONE.get(event.action, event.action)
    where = f" {event.room}" if verb.endswith((" from", " in", " of", " to")) else ""
    until = ""
    if event.action in ("ban", "mute"):
        from schat.chat.moderation import describe_until
        until = " " + describe_until(event.until, now)
    return f"{event.target} was {verb}{where}{until} by {actor}{reason}"
