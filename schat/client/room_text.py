"""Room events as plain text, for the line client and the chat screen alike.

Each function takes a server message (a ``schat.protocol`` message or a dict
with the same fields) and returns the text after the timestamp; callers pass
the result through :func:`schat.client.render.clean`, so nothing a member or
a server sends can move the cursor or rewrite the screen. Topics, reasons and
away messages are one line by the protocol; the chat screen, which keeps line
breaks in chat text, passes events through :func:`one_line_fields` first, so
a line break a modified server puts in one is shown as ``⏎`` and cannot start
a forged line (line mode shows every break so anyway).
"""

from __future__ import annotations

from typing import Any, Optional

from schat.client.render import event_type, field
from schat.client.sanitize import one_line

LOBBY = "#lobby"
_DONE = {"kick": "kicked from", "ban": "banned from", "unban": "unbanned in",
         "mute": "muted in", "unmute": "unmuted in", "op": "made an op of",
         "deop": "no longer an op of", "invite": "invited to", "disconnect": "disconnected",
         "lock": "locked out", "remove": "removed"}


# The free-text fields of room events (names and rooms are checked on the wire).
_ONE_LINE_FIELDS = ("topic", "reason")


def one_line_fields(event: Any) -> dict:
    """``event`` as a dict whose topics, reasons and away messages are on one line."""
    if isinstance(event, dict):
        record = dict(event)
    else:
        record = {name: getattr(event, name) for name in getattr(event, "__dataclass_fields__",
                                                                 ())}
        record["type"] = event_type(event)
    for name in _ONE_LINE_FIELDS:
        if isinstance(record.get(name), str):
            record[name] = one_line(record[name])
    for name in ("away", "rooms"):
        items = record.get(name)
        if items:
            record[name] = [{k: one_line(v) if k in ("text", "topic") and isinstance(v, str)
                             else v for k, v in item.items()} for item in items]
    return record


def room_of(event: Any) -> str:
    """The room of a room event (an absent ``room`` means #lobby)."""
    return field(event, "room") or LOBBY


def tag(event: Any) -> str:
    """``#dev `` for events of rooms other than #lobby, ``(history) `` for backlog; else ""."""
    room = field(event, "room")
    out = f"{room} " if room and room != LOBBY else ""
    if field(event, "history", False):
        out += "(history) "
    return out


def names(event: Any) -> str:
    """The names of a ``users`` message, each away member with its message:
    ``ann, bob (away: lunch), cat``."""
    away = {}
    for item in field(event, "away") or ():
        user, text = item.get("user"), item.get("text")
        if isinstance(user, str) and isinstance(text, str):
            away[user] = text
    return ", ".join(f"{n} (away: {away[n]})" if n in away else n
                     for n in (field(event, "users") or ()))


def moderation(event: Any) -> str:
    """``bob was kicked from #dev by ann: spam``."""
    action = field(event, "action", "?")
    actor = field(event, "actor") or "the server operator"
    reason = field(event, "reason") or ""
    room = room_of(event)
    if action in ("private", "public"):
        return f"{actor} made {room} {action}"
    verb = _DONE.get(action, action)
    where = f" {room}" if verb.endswith((" from", " in", " of", " to")) else ""
    until = field(event, "until")
    limit = ""
    if action in ("ban", "mute"):
        from schat.client.render import clock
        limit = f" until {clock(until)}" if until else " until lifted"
    return f"{field(event, 'target', '?')} was {verb}{where}{limit} by {actor}" + (
        f": {reason}" if reason else "")


def describe(event: Any, most: Optional[int] = None) -> Optional[str]:
    """Text for the room-only event kinds (None for every other kind). ``most``: list at
    most that many names of a room's members (the chat screen's line for a big room)."""
    kind = event_type(event)
    if kind == "room":
        users = field(event, "users") or ()
        parts = [f"you are in {room_of(event)}"]
        if field(event, "private", False):
            parts[0] += " (private)"
        owner = field(event, "owner")
        if owner:
            parts.append(f"owner {owner}")
        ops = field(event, "ops") or ()
        if ops:
            parts.append("ops " + ", ".join(ops))
        shown = ", ".join(users if most is None else users[:most])
        if most is not None and len(users) > most:
            shown += f" and {len(users) - most} more"
        parts.append(f"{len(users)} here: {shown}")
        topic = field(event, "topic") or ""
        if topic:
            parts.append(f"topic: {topic}")
        return "; ".join(parts)
    if kind == "focus":
        room = field(event, "room")
        return f"plain lines now go to {room}" if room else "you are in no room; /join one"
    if kind == "topic":
        topic = field(event, "topic") or ""
        who = field(event, "user", "?")
        return (f"{who} set the topic of {room_of(event)}: {topic}" if topic
                else f"{who} cleared the topic of {room_of(event)}")
    if kind == "moderation":
        return moderation(event)
    if kind == "rooms":
        rooms = field(event, "rooms") or ()
        lines = [f"rooms ({len(rooms)}):"]
        for r in rooms:
            marks = "".join(m for m, on in ((" private", r.get("private")),
                                            (" (yours)", r.get("member"))) if on)
            topic = f" - {r.get('topic')}" if r.get("topic") else ""
            lines.append(f"  {r.get('room')}  {r.get('users', 0)} online{marks}{topic}")
        return "\n".join(lines)
    return None
