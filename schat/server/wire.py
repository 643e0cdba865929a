"""Domain events as wire messages: the one translation between the chat and the protocol.

A client that said ``"features": ["rooms"]`` at login gets every event in the
room-aware shape; one that did not (a client older than rooms) lives in
#lobby and gets only the types it knows: #lobby's chat lines, joins and leaves
in exactly their old shape (an absent ``room`` means #lobby), and a
``notice`` or a ``leave`` with a reason for what it has no type for.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, List, Optional, Tuple

from schat.chat import events as ev
from schat.chat.names import LOBBY
from schat.errors import LocalProtocolError
from schat.protocol import messages as m
from schat.protocol import room_messages as rm
from schat.protocol.schema import MAX_LIST_ITEMS, MAX_SHORT_BYTES, MAX_TEXT_BYTES, _NAME_RE

_NAME_OK = _NAME_RE.match

log = logging.getLogger("schat.server")

# #lobby events that clients without rooms get in another form; every other event a
# client without rooms can receive (it is only ever in #lobby) has the same bytes for both.
_OTHER_FORM_IN_LOBBY = (ev.TopicChanged, ev.Moderated)


def fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (at a character boundary)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit - 3].decode("utf-8", "ignore") + "..."


def _room(name: str) -> Optional[str]:
    return None if name == LOBBY else name


def _encode(msg) -> Optional[bytes]:
    try:
        return m.encode(msg)
    except LocalProtocolError as err:  # a bug, never a crash: the event is dropped and logged
        log.error("could not encode %s: %s", type(msg).__name__, err)
        return None


def legacy_differs(event) -> bool:
    """True when a client without rooms that receives ``event`` needs other bytes than a
    room-aware one (only #lobby topics and moderation: such a client is in no other room,
    and backlog is never sent to it)."""
    return type(event) in _OTHER_FORM_IN_LOBBY and event.room == LOBBY


def event_bytes(event, aware: bool) -> Optional[bytes]:
    """The encoded message for a room, user or server-wide event (None: nothing to send)."""
    kind = type(event)
    if kind is ev.Said:
        if not aware and (event.room != LOBBY or event.history):
            return None
        return _encode(m.ChatMessage(id=event.id, time=event.time, sender=event.sender,
                                     text=event.text, action=event.action,
                                     room=_room(event.room), history=event.history))
    if kind is ev.Announcement:
        return _encode(m.Notice(text=fit(event.text, MAX_TEXT_BYTES), time=event.time))
    if kind is ev.Invited:
        return _encode(m.Notice(text=ev.describe(event, event.time), time=event.time))
    if not aware and getattr(event, "room", LOBBY) != LOBBY:
        return None
    if kind is ev.Joined:
        return _encode(m.Join(user=event.user, time=event.time, room=_room(event.room)))
    if kind is ev.Parted:
        return _encode(m.Leave(user=event.user, time=event.time,
                               reason=fit(event.reason, MAX_SHORT_BYTES), room=_room(event.room)))
    if kind is ev.TopicChanged:
        if not aware:
            return _encode(m.Notice(text=fit(ev.describe(event, event.time), MAX_TEXT_BYTES),
                                    time=event.time))
        return _encode(rm.Topic(room=event.room, topic=fit(event.topic, MAX_SHORT_BYTES),
                                user=event.by, time=event.time))
    if kind is ev.Moderated:
        if not aware:
            text = ev.describe(event, event.time)
            if event.action in ev.REMOVING:
                return _encode(m.Leave(user=event.target, time=event.time,
                                       reason=fit(text, MAX_SHORT_BYTES)))
            return _encode(m.Notice(text=fit(text, MAX_TEXT_BYTES), time=event.time))
        return _encode(rm.Moderation(room=event.room, action=event.action, time=event.time,
                                     actor=event.actor, target=event.target or None,
                                     reason=fit(event.reason, MAX_SHORT_BYTES),
                                     until=event.until))
    log.error("no wire form for %s", kind.__name__)
    return None


# Names are encoded once each and kept (a room's list goes to every member who enters
# it: a login into a room of thousands must not validate and encode thousands of names).
_NAME_JSON: Dict[str, bytes] = {}
NAME_CACHE = 65_536
_USERS_KEY = b'"users":[]'


def _names_json(names) -> Optional[bytes]:
    """The JSON array of ``names``; None when one is not a valid name."""
    cache = _NAME_JSON
    try:
        return b"[" + b",".join(map(cache.__getitem__, names)) + b"]"
    except KeyError:
        pass
    for name in names:
        if name not in cache:
            if type(name) is not str or not _NAME_OK(name):
                return None
            if len(cache) >= NAME_CACHE:
                cache.clear()
            cache[name] = b'"' + name.encode("ascii") + b'"'
    return b"[" + b",".join(map(cache.__getitem__, names)) + b"]"


def _with_users(msg, names) -> Optional[bytes]:
    """``msg`` (built with ``users=()``) encoded, with ``names`` (at most MAX_LIST_ITEMS)
    as its ``users``: the same bytes as ``messages.encode`` with the names in place.
    A JSON string holds no unescaped quote, so the first ``"users":[]`` is the field."""
    array = _names_json(names) if len(names) <= MAX_LIST_ITEMS else None
    if array is None:  # not names after all: the validating encoder says why
        return _encode(dataclasses.replace(msg, users=tuple(names)))
    data = _encode(msg)
    if data is None:
        return None
    at = data.find(_USERS_KEY) + len(_USERS_KEY) - 2
    return data[:at] + array + data[at + 2:]


# Bytes of names and away messages in one ``users`` message: with its other fields it
# stays well inside one record (65,519 bytes).
USERS_BUDGET = 60_000


def _users(names, room: Optional[str], away: Optional[Dict[str, str]] = None,
           cid: Optional[str] = None) -> List[bytes]:
    """``users`` messages listing ``names`` (chained by ``more``); ``away`` (name -> away
    message, for a client that reads it) rides along with the chunk holding each name;
    each carries ``cid`` (the request it answers) when given."""
    if not away:  # the common case, kept as cheap as slicing (big rooms at every login)
        last = max(len(names) - 1, 0) // MAX_LIST_ITEMS * MAX_LIST_ITEMS
        return [_with_users(m.Users(users=(), more=i < last, room=room, cid=cid),
                            names[i:i + MAX_LIST_ITEMS])
                for i in range(0, max(len(names), 1), MAX_LIST_ITEMS)]
    chunks: List[Tuple[list, list]] = [([], [])]
    size = 0
    for name in names:
        note = away.get(name) if away else None
        cost = len(name) + 3
        if note is not None:
            cost += len(note.encode("utf-8")) * 2 + len(name) + 24  # JSON escapes at most double
        names_now, _ = chunks[-1]
        if names_now and (len(names_now) == MAX_LIST_ITEMS or size + cost > USERS_BUDGET):
            chunks.append(([], []))
            size = 0
        chunks[-1][0].append(name)
        if note is not None:
            chunks[-1][1].append({"user": name, "text": note})
        size += cost
    last = len(chunks) - 1
    return [_encode(m.Users(users=tuple(chunk), more=i < last, room=room, away=tuple(notes),
                            cid=cid))
            for i, (chunk, notes) in enumerate(chunks)]


def away_text(away) -> str:
    """``away: bob (lunch), cat (back at 3)`` within one notice; the rest is counted."""
    text, shown = "away: ", 0
    for name, note in away:
        entry = f"{name} ({note})"
        if len((text + entry).encode("utf-8")) > MAX_TEXT_BYTES - 32:
            break
        text += (", " if shown else "") + entry
        shown += 1
    if shown < len(away):
        text += f" and {len(away) - shown} more"
    return text


def reply_bytes(event, aware: bool, now: int, reads_away: bool = False,
                cid: Optional[str] = None) -> List[bytes]:
    """The encoded messages answering the requesting member (usually one).

    ``reads_away``: the client said "away" at login, so who is away rides in the
    ``users`` messages; any other client gets it as a notice after them. ``cid``:
    the request this answers; every message of the answer carries it, for a
    room-aware client (a client that knows no rooms gets the shapes it always
    read, without one; ``ack`` and ``error`` carry it for every client).
    """
    kind = type(event)
    if not aware:
        cid = None
    if kind is ev.Done:
        out = [_encode(m.Ack(cid=event.cid, id=event.id, time=event.time))]
    elif kind is ev.Refused:
        out = [_encode(m.Error(code=event.code, text=fit(event.text, MAX_SHORT_BYTES),
                               cid=event.cid))]
    elif kind is ev.Info:
        out = [_encode(m.Notice(text=fit(event.text, MAX_TEXT_BYTES), time=event.time,
                                cid=cid))]
    elif kind is ev.Said:
        if cid is None:
            out = [event_bytes(event, aware)]
        else:  # history sent in answer to a request (only room-aware clients get history)
            out = [_encode(m.ChatMessage(id=event.id, time=event.time, sender=event.sender,
                                         text=event.text, action=event.action,
                                         room=_room(event.room), history=event.history,
                                         cid=cid))]
    elif kind is ev.Welcome:
        users = event.users
        out = [_with_users(m.Welcome(user=event.user, server=fit(event.server, MAX_SHORT_BYTES),
                                     motd=fit(event.motd, MAX_TEXT_BYTES), users=(),
                                     time=event.time), users[:MAX_LIST_ITEMS])]
        if len(users) > MAX_LIST_ITEMS:  # the whole list again, in chunks
            out += _users(users, None)
    elif kind is ev.Names:
        if not aware and event.room != LOBBY:
            out = [_encode(m.Notice(text=fit(f"{len(event.users)} in {event.room}: "
                                             f"{', '.join(event.users)}", MAX_TEXT_BYTES),
                                    time=now))]
        else:
            out = _users(event.users, _room(event.room),
                         dict(event.away) if reads_away else None, cid)
        if event.away and not reads_away:
            out.append(_encode(m.Notice(text=away_text(event.away), time=now, cid=cid)))
    elif not aware:
        if kind is ev.RoomList:
            lines = [f"{r.room} ({r.users} online){' private' if r.private else ''}"
                     f"{': ' + r.topic if r.topic else ''}" for r in event.rooms]
            out = [_encode(m.Notice(text=fit("rooms:\n" + "\n".join(lines), MAX_TEXT_BYTES),
                                    time=now))]
        else:
            out = []  # RoomState, Focus: a client without rooms has no use for them
    elif kind is ev.RoomState:
        users = event.users
        out = [_with_users(rm.RoomState(room=event.room, topic=fit(event.topic, MAX_SHORT_BYTES),
                                        private=event.private, ops=event.ops[:MAX_LIST_ITEMS],
                                        users=(), time=event.time, owner=event.owner or None,
                                        more=len(users) > MAX_LIST_ITEMS, cid=cid),
                           users[:MAX_LIST_ITEMS])]
        if len(users) > MAX_LIST_ITEMS:
            out += _users(users, event.room, cid=cid)
    elif kind is ev.Focus:
        out = [_encode(rm.Focus(room=event.room, cid=cid))]
    elif kind is ev.RoomList:
        items = [{"room": r.room, "users": r.users, "topic": fit(r.topic, MAX_SHORT_BYTES),
                  "private": r.private, "member": r.member} for r in event.rooms]
        out = [_encode(rm.Rooms(rooms=tuple(items[i:i + MAX_LIST_ITEMS]),
                                more=i + MAX_LIST_ITEMS < len(items), cid=cid))
               for i in range(0, max(1, len(items)), MAX_LIST_ITEMS)]
    else:
        data = event_bytes(event, aware)
        out = [data]
    return [data for data in out if data is not None]
