"""The rooms as the chat screen sees them: the ones you are in, the current one, unread counts.

Built from the server's room events (``room``, ``focus``, ``join``, ``leave``,
``moderation``, ``users``, ``topic``, ``rooms``). A server without rooms sends
none of them: :attr:`Rooms.known` then stays False and the screen looks and
behaves as it did before rooms (no room in the prompt, nothing named in the
lines it sends).

Where plain lines go is the screen's own choice, the *current* room, named in
every line and command it sends (docs/PROTOCOL.md §5a: a client may track its
own focus). So switching (``/switch``, Alt-1…9, Ctrl-N/Ctrl-P) is instant and
sends nothing, however fast the keys repeat. The server's ``focus`` is
followed only when the screen has no current room (at login), for a room you
asked to ``/join``, and when the current room is gone (``/part``, a kick).

Rooms are numbered in the order you joined them, ``#lobby`` first, as irssi
and WeeChat number their windows; the numbers are what Alt-1…9 select.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Set

from schat.client.render import event_type, field, mentions
from schat.names import name_key

LOBBY = "#lobby"
# Moderation actions that take their target out of the room (schat.chat.events.REMOVING).
REMOVING = frozenset({"kick", "ban", "disconnect", "lock", "remove"})
# Room kinds whose events carry a room (absent: #lobby).
_ROOM_EVENTS = frozenset({"message", "join", "leave", "room", "topic", "moderation"})
# How an invitation reads (schat.chat.events.describe): the room goes into completion.
_INVITED = re.compile(r" invites you to (#[a-z0-9_\-]{1,32})\b")
# Rooms heard of (listings, invitations) kept for /join completion.
MAX_HEARD = 1024


_ROOM_NAME = re.compile(r"#[a-z0-9_\-]{1,32}\Z")


def room_key(text: str) -> Optional[str]:
    """The room name the server reads for what you typed (``Dev`` → ``#dev``); None when
    it is no room name (the server says why)."""
    key = text.strip().lower()
    if not key.startswith("#"):
        key = "#" + key
    return key if _ROOM_NAME.match(key) else None


class RoomView:
    """One room you are in: its topic, who is here, what you have not read."""

    __slots__ = ("name", "topic", "private", "users", "unread", "mentioned")

    def __init__(self, name: str):
        self.name = name
        self.topic = ""
        self.private = False
        # name_key -> the registered spelling.
        self.users: Dict[str, str] = {}
        # Chat lines of others that arrived while the room was not the current one.
        self.unread = 0
        # One of them mentions you.
        self.mentioned = False

    def __repr__(self) -> str:
        return f"RoomView({self.name!r}, unread={self.unread})"


class Rooms:
    """The room state of one chat screen (touched on its event loop only)."""

    def __init__(self, me: str = ""):
        self.me = me
        self.known = False
        self.views: Dict[str, RoomView] = {}
        self.current: Optional[str] = None
        # Rooms you asked to /join: their ``room`` (or ``focus``) makes them current.
        self.joining: Set[str] = set()
        # Rooms seen in a /rooms listing or an invitation, for completing /join.
        self.heard: Dict[str, None] = {}
        # Member lists arriving in several ``users`` messages (``more``).
        self._partial: Dict[str, Dict[str, str]] = {}
        # Unread counts kept across a reconnect, for the rooms that come back.
        self._carried: Dict[str, RoomView] = {}

    # -- reading ---------------------------------------------------------------------
    def order(self) -> List[str]:
        """The rooms you are in, numbered from 1 in this order."""
        return list(self.views)

    def number(self, room: str) -> int:
        return self.order().index(room) + 1

    def here(self) -> Optional[RoomView]:
        """The current room's view (None: no current room, or the server knows no rooms)."""
        return self.views.get(self.current) if self.current else None

    def members(self) -> Iterable[str]:
        """Everyone you share a room with (name completion)."""
        seen: Dict[str, str] = {}
        for view in self.views.values():
            seen.update(view.users)
        return seen.values()

    def names_for_completion(self, joined_only: bool) -> List[str]:
        """Rooms to complete: the ones you are in (current first is not useful: in join
        order), then, unless ``joined_only``, the others you heard of."""
        names = self.order()
        if not joined_only:
            names += [r for r in self.heard if r not in self.views]
        return names

    def room_of(self, event) -> Optional[str]:
        """The room an event belongs to (None: not a room event, or no rooms here)."""
        if not self.known or event_type(event) not in _ROOM_EVENTS:
            return None
        return field(event, "room", None) or LOBBY

    # -- switching ---------------------------------------------------------------------
    def switch(self, room: str) -> bool:
        """Make ``room`` (one you are in) the current room; its lines count as read."""
        view = self.views.get(room)
        if view is None:
            return False
        self.current = room
        view.unread = 0
        view.mentioned = False
        return True

    def by_number(self, n: int) -> Optional[str]:
        order = self.order()
        return order[n - 1] if 1 <= n <= len(order) else None

    def step(self, delta: int) -> Optional[str]:
        """The room ``delta`` places after the current one (wrapping around)."""
        order = self.order()
        if not order:
            return None
        at = order.index(self.current) if self.current in order else -1
        return order[(at + delta) % len(order)]

    # -- events ------------------------------------------------------------------------
    def reset(self) -> None:
        """A new session starts: its ``room`` events rebuild the list. The current room
        stays current if the new session is in it; unread counts carry over."""
        self._carried = dict(self.views)
        self.views = {}
        self._partial.clear()
        self.joining.clear()
        self.known = False

    def apply(self, event) -> None:
        """Update the rooms from one server event (before it is printed)."""
        kind = event_type(event)
        if kind == "room":
            self._entered(event)
        elif kind == "focus":
            self.known = True
            room = field(event, "room", None)
            if room in self.joining or self.current is None or self.current not in self.views:
                self.joining.discard(room)
                self.current = None
                if room is not None:
                    self.switch(room)
        elif kind == "rooms":
            for item in field(event, "rooms", None) or ():
                self._heard(item.get("room"))
        elif kind == "notice":
            found = _INVITED.search(field(event, "text", "") or "")
            if found:
                self._heard(found.group(1))
        if not self.known:
            return
        room = field(event, "room", None) or LOBBY
        view = self.views.get(room)
        if kind == "users":
            self._listed(event, room)
        elif kind == "join" and view is not None:
            user = str(field(event, "user", ""))
            view.users[name_key(user)] = user
        elif kind == "leave":
            self._gone(room, str(field(event, "user", "")))
        elif kind == "moderation":
            action = field(event, "action", "")
            if action in REMOVING:
                self._gone(room, str(field(event, "target", "") or ""))
            elif action in ("private", "public") and view is not None:
                view.private = action == "private"
        elif kind == "topic" and view is not None:
            view.topic = str(field(event, "topic", "") or "")
        elif kind == "message" and view is not None:
            self._arrived(view, event)

    def _entered(self, event) -> None:
        self.known = True
        room = field(event, "room")
        view = self.views.get(room)
        if view is None:
            view = self.views[room] = RoomView(room)
            old = self._carried.pop(room, None)
            if old is not None:
                view.unread, view.mentioned = old.unread, old.mentioned
        view.topic = str(field(event, "topic", "") or "")
        view.private = bool(field(event, "private", False))
        users = {name_key(str(n)): str(n) for n in field(event, "users", None) or ()}
        if field(event, "more", False):
            self._partial[room] = users
        else:
            view.users = users
        if room in self.joining or self.current is None:
            self.joining.discard(room)
            self.switch(room)

    def _listed(self, event, room: str) -> None:
        users = {name_key(str(n)): str(n) for n in field(event, "users", None) or ()}
        if room in self._partial:
            users = {**self._partial.pop(room), **users}
        if field(event, "more", False):
            self._partial[room] = users
            return
        view = self.views.get(room)
        if view is not None:
            view.users = users

    def _gone(self, room: str, user: str) -> None:
        view = self.views.get(room)
        if view is None:
            return
        if name_key(user) != name_key(self.me):
            view.users.pop(name_key(user), None)
            return
        del self.views[room]
        self._partial.pop(room, None)
        self._heard(room)
        if self.current == room:
            # As the server does: plain lines go to the room joined last.
            order = self.order()
            self.current = None
            if order:
                self.switch(order[-1])

    def _arrived(self, view: RoomView, event) -> None:
        if view.name == self.current:
            return
        sender = str(field(event, "sender", "") or "")
        if name_key(sender) == name_key(self.me):
            return
        view.unread += 1
        if mentions(str(field(event, "text", "") or ""), self.me):
            view.mentioned = True

    def _heard(self, room) -> None:
        if isinstance(room, str) and room.startswith("#") and len(self.heard) < MAX_HEARD:
            self.heard[room] = None
