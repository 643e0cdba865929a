"""What the domain keeps, behind one small interface; and an in-memory implementation.

Writes return at once: an implementation may queue and batch them (the SQLite
store commits them from a writer thread), as long as it applies them in the
order given. :meth:`ChatStore.ticket` and :meth:`ChatStore.durable` let the
connection layer hold a request's acknowledgement until everything written
before it is durable, so an acknowledged message survives a crash.

Reads are few and small: the rooms and their recent history at start, a
member's profile at login (the connection layer runs it off the event loop),
a page of older history for ``/history``, and one account look-up for
moderation of a member who is offline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from schat.chat.events import Said
from schat.chat.moderation import Restriction
from schat.chat.names import user_key
from schat.chat.rooms import RoomRecord


@dataclass(frozen=True)
class Profile:
    """An account as the chat needs it at login: its spelling, its role, the rooms it rejoins
    (room, id of the last message it saw there), oldest membership first."""
    name: str
    admin: bool = False
    rooms: Tuple[Tuple[str, int], ...] = ()


@dataclass(frozen=True)
class UserInfo:
    name: str
    admin: bool
    locked: bool


class ChatStore(ABC):
    """Rooms, memberships, roles, bans and mutes, and history."""

    # -- reads -----------------------------------------------------------------
    @abstractmethod
    def load_rooms(self) -> List[RoomRecord]:
        """Every room with its ops, invitations, restrictions and stored member count."""

    @abstractmethod
    def recent(self, room: str, limit: int) -> List[Said]:
        """The newest ``limit`` messages of ``room``, oldest first."""

    @abstractmethod
    def history_before(self, room: str, before_id: int, limit: int) -> List[Said]:
        """At most ``limit`` messages of ``room`` older than ``before_id``, oldest first."""

    @abstractmethod
    def history_after(self, room: str, after_id: int, limit: int) -> List[Said]:
        """The oldest ``limit`` messages of ``room`` with an id above ``after_id``, oldest
        first: a page of what a cluster's process missed (the next page starts after the
        last id of this one)."""

    @abstractmethod
    def last_message_id(self) -> int:
        """The highest message id ever stored (ids keep growing across restarts)."""

    @abstractmethod
    def profile(self, name: str) -> Optional[Profile]:
        """The account's chat profile, None for an unknown account."""

    @abstractmethod
    def user(self, name: str) -> Optional[UserInfo]:
        """The account called ``name`` (any case), or None."""

    def settle(self, name: str) -> None:
        """Before a login reads ``name``'s account and profile: wait until the writes
        queued about it are durable (a store that writes at once has nothing to do)."""

    # -- writes (ordered; may be batched) -------------------------------------
    # Several server processes may write the same items at once (a cluster): a room
    # created twice keeps its earliest creation (and owner), a topic and a ban or mute
    # the latest change by their stamps, whatever order the writes arrive in.
    @abstractmethod
    def save_room(self, record: RoomRecord) -> None:
        """Create the room (an existing one keeps the earlier of the two creations)."""

    @abstractmethod
    def set_topic(self, room: str, topic: str, by: str, time: int) -> None:
        """Set the topic unless a later one (by ``time``) is stored."""

    @abstractmethod
    def set_mode(self, room: str, private: bool) -> None: ...

    @abstractmethod
    def delete_room(self, name: str) -> None:
        """Remove the room and its history, unless someone belongs to it (again)."""

    @abstractmethod
    def set_op(self, room: str, user: str, on: bool) -> None: ...

    @abstractmethod
    def set_invite(self, room: str, user: str, on: bool) -> None: ...

    @abstractmethod
    def put_restriction(self, item: Restriction) -> None:
        """Store a ban, mute or lifting (:meth:`Restriction.lifted`) unless a change of the
        same (room, kind, user) with a later :attr:`~Restriction.stamp` is stored."""

    @abstractmethod
    def add_membership(self, user: str, room: str, time: int) -> None: ...

    @abstractmethod
    def remove_membership(self, user: str, room: str) -> None: ...

    @abstractmethod
    def mark_read(self, user: str, room: str, last_id: int) -> None: ...

    @abstractmethod
    def append(self, said: Said) -> None:
        """Store one chat line (the hot path: must not block on a commit)."""

    @abstractmethod
    def lock_account(self, name: str) -> None: ...

    # -- durability ------------------------------------------------------------
    def ticket(self) -> int:
        """0 when every write so far is durable, else a number that :meth:`durable`
        reaches once they are."""
        return 0

    def durable(self) -> int:
        """The highest ticket whose writes are durable (cheap: polled at every flush)."""
        return 0

    def backlog_full(self) -> bool:
        """True while so many writes wait that new chat lines must be refused."""
        return False

    def close(self) -> None:
        """Make every queued write durable (bounded time), then release resources."""


@dataclass
class _Data:
    rooms: Dict[str, RoomRecord] = field(default_factory=dict)
    members: Dict[Tuple[str, str], Tuple[int, int]] = field(default_factory=dict)
    history: List[Said] = field(default_factory=list)
    restrictions: Dict[Tuple[str, str, str], Restriction] = field(default_factory=dict)
    accounts: Dict[str, UserInfo] = field(default_factory=dict)


class MemoryChatStore(ChatStore):
    """Everything in memory, durable at once (tests, and a server without persistence)."""

    def __init__(self, accounts: Dict[str, bool] = None):
        self.data = _Data()
        for name, admin in (accounts or {}).items():
            self.add_account(name, admin)

    def add_account(self, name: str, admin: bool = False) -> None:
        self.data.accounts[user_key(name)] = UserInfo(name, admin, False)

    def load_rooms(self) -> List[RoomRecord]:
        out = []
        for rec in self.data.rooms.values():
            rec = replace(rec, ops=dict(rec.ops), invited=dict(rec.invited),
                          restrictions=[r for k, r in self.data.restrictions.items()
                                        if k[0] == rec.name],
                          members=sum(1 for (_, room) in self.data.members if room == rec.name))
            out.append(rec)
        return out

    def recent(self, room: str, limit: int) -> List[Said]:
        return [s for s in self.data.history if s.room == room][-limit:] if limit else []

    def history_before(self, room: str, before_id: int, limit: int) -> List[Said]:
        items = [s for s in self.data.history if s.room == room and s.id < before_id]
        return items[-limit:] if limit else []

    def history_after(self, room: str, after_id: int, limit: int) -> List[Said]:
        items = [s for s in self.data.history if s.room == room and s.id > after_id]
        return items[:limit]

    def last_message_id(self) -> int:
        return max((s.id for s in self.data.history), default=0)

    def profile(self, name: str) -> Optional[Profile]:
        info = self.data.accounts.get(user_key(name))
        if info is None:
            return None
        rooms = sorted(((room, v) for (user, room), v in self.data.members.items()
                        if user == user_key(name)), key=lambda item: item[1][0])
        return Profile(info.name, info.admin, tuple((room, v[1]) for room, v in rooms))

    def user(self, name: str) -> Optional[UserInfo]:
        return self.data.accounts.get(user_key(name))

    def save_room(self, record: RoomRecord) -> None:
        known = self.data.rooms.get(record.name)
        if known is None or (record.created, record.owner) < (known.created, known.owner):
            self.data.rooms[record.name] = replace(record, restrictions=[])

    def set_topic(self, room: str, topic: str, by: str, time: int) -> None:
        rec = self.data.rooms.get(room)
        if rec is not None and (time, by, topic) > (rec.topic_time, rec.topic_by, rec.topic):
            rec.topic, rec.topic_by, rec.topic_time = topic, by, time

    def set_mode(self, room: str, private: bool) -> None:
        rec = self.data.rooms.get(room)
        if rec is not None:
            rec.private = private

    def delete_room(self, name: str) -> None:
        if any(room == name for (_, room) in self.data.members):
            return
        self.data.rooms.pop(name, None)
        self.data.history = [s for s in self.data.history if s.room != name]
        for key in [k for k in self.data.restrictions if k[0] == name]:
            del self.data.restrictions[key]

    def set_op(self, room: str, user: str, on: bool) -> None:
        rec = self.data.rooms.get(room)
        if rec is not None:
            if on:
                rec.ops[user_key(user)] = user
            else:
                rec.ops.pop(user_key(user), None)

    def set_invite(self, room: str, user: str, on: bool) -> None:
        rec = self.data.rooms.get(room)
        if rec is not None:
            if on:
                rec.invited[user_key(user)] = user
            else:
                rec.invited.pop(user_key(user), None)

    def put_restriction(self, item: Restriction) -> None:
        key = (item.room, item.kind, user_key(item.user))
        known = self.data.restrictions.get(key)
        if known is None or item.stamp > known.stamp:
            self.data.restrictions[key] = item


    def add_membership(self, user: str, room: str, time: int) -> None:
        key = (user_key(user), room)
        self.data.members.setdefault(key, (time, 0))

    def remove_membership(self, user: str, room: str) -> None:
        self.data.members.pop((user_key(user), room), None)

    def mark_read(self, user: str, room: str, last_id: int) -> None:
        key = (user_key(user), room)
        if key in self.data.members:
            self.data.members[key] = (self.data.members[key][0], last_id)

    def append(self, said: Said) -> None:
        self.data.history.append(said)

    def lock_account(self, name: str) -> None:
        info = self.data.accounts.get(user_key(name))
        if info is not None:
            self.data.accounts[user_key(name)] = replace(info, locked=True)
