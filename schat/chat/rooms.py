"""A room: its members online here, topic, mode, owner, ops, invitations, bans, history."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from schat.chat.history import HistoryWindow
from schat.chat.members import Member
from schat.chat.moderation import Restriction, Restrictions
from schat.chat.names import LOBBY, user_key

# Ranks: who may act on whom. An actor needs a rank above its target's.
MEMBER, OP, OWNER, ADMIN, OPERATOR = 0, 1, 2, 3, 4
RANK_NAMES = {MEMBER: "member", OP: "op", OWNER: "owner", ADMIN: "admin", OPERATOR: "operator"}


@dataclass
class RoomRecord:
    """A room as the store keeps it (everything but its members online and its history)."""
    name: str
    topic: str = ""
    topic_by: str = ""
    topic_time: int = 0
    private: bool = False
    owner: str = ""
    created: int = 0
    ops: Dict[str, str] = field(default_factory=dict)       # user key -> spelling
    invited: Dict[str, str] = field(default_factory=dict)   # user key -> spelling
    restrictions: List[Restriction] = field(default_factory=list)
    members: int = 0   # stored memberships (who rejoins at login)


class MemberMap(dict):
    """user key -> session (a dict: the fan-out iterates its values in join order), that
    also keeps the members' names sorted as they come and go, for :meth:`Room.names`:
    a login into a room of thousands then costs a copy of the list, not a sort."""

    __slots__ = ("_keys", "_names", "_sorted")

    def __init__(self):
        super().__init__()
        self._keys: List[str] = []     # names in lower case, sorted
        self._names: List[str] = []    # the names, in the same order
        self._sorted: Optional[Tuple[str, ...]] = ()

    def __setitem__(self, key: str, member: Member) -> None:
        old = dict.get(self, key)
        if old is not None:
            self._forget(old.name)
        dict.__setitem__(self, key, member)
        lower = member.key  # the member's own string (names.name_key), not a copy per room
        i = bisect_left(self._keys, lower)
        self._keys.insert(i, lower)
        self._names.insert(i, member.name)
        self._sorted = None

    def __delitem__(self, key: str) -> None:
        self._forget(dict.pop(self, key).name)

    def pop(self, key: str, *default):
        if key in self:
            member = dict.pop(self, key)
            self._forget(member.name)
            return member
        if default:
            return default[0]
        raise KeyError(key)

    def clear(self) -> None:
        dict.clear(self)
        self._keys.clear()
        self._names.clear()
        self._sorted = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError("MemberMap changes one member at a time")

    popitem = setdefault = update = __ior__ = _refuse

    def _forget(self, name: str) -> None:
        lower = name.lower()
        i = bisect_left(self._keys, lower)
        if i < len(self._keys) and self._keys[i] == lower:
            del self._keys[i]
            del self._names[i]
            self._sorted = None

    def sorted_names(self) -> Tuple[str, ...]:
        if self._sorted is None:
            self._sorted = tuple(self._names)
        return self._sorted


class Room:
    """One room in memory. ``members`` are the sessions in it on this server process."""

    __slots__ = ("name", "topic", "topic_by", "topic_time", "private", "owner", "created",
                 "ops", "invited", "restrictions", "history", "members", "stored_members",
                 "remote")

    def __init__(self, record: RoomRecord, window: HistoryWindow):
        self.name = record.name
        self.topic = record.topic
        self.topic_by = record.topic_by
        self.topic_time = record.topic_time
        self.private = record.private
        self.owner = record.owner
        self.created = record.created
        self.ops: Dict[str, str] = dict(record.ops)
        self.invited: Dict[str, str] = dict(record.invited)
        self.restrictions = Restrictions(record.restrictions)
        self.history = window
        # user key -> session; dict order is join order, the fan-out iterates it.
        self.members: Dict[str, Member] = MemberMap()
        self.stored_members = record.members
        # user key -> spelling: members online on other server processes of a cluster.
        self.remote: Dict[str, str] = {}

    @property
    def lobby(self) -> bool:
        return self.name == LOBBY

    def rank(self, name: str, admin: bool = False) -> int:
        """The rank of ``name`` here (an admin outranks owner and ops everywhere)."""
        if admin:
            return ADMIN
        key = user_key(name)
        if self.owner and user_key(self.owner) == key:
            return OWNER
        if key in self.ops:
            return OP
        return MEMBER

    def names(self) -> Tuple[str, ...]:
        """Everyone online in the room, on this server process and (a cluster) the
        others, sorted regardless of case."""
        if not self.remote:
            return self.members.sorted_names()  # kept sorted as members come and go
        names = [m.name for m in self.members.values()]
        names.extend(v for k, v in self.remote.items() if k not in self.members)
        return tuple(sorted(names, key=str.lower))

    def online(self) -> int:
        """How many are online in the room, here and on the cluster's other processes."""
        if not self.remote:
            return len(self.members)
        return len(self.members) + sum(1 for k in self.remote if k not in self.members)

    def has(self, key: str) -> bool:
        """True when the account (user key) is online in the room, here or elsewhere."""
        return key in self.members or key in self.remote

    def ops_names(self) -> Tuple[str, ...]:
        return tuple(sorted(self.ops.values(), key=str.lower))

    def visible_to(self, member: Optional[Member]) -> bool:
        """Public rooms are visible to all; private ones to members, invitees and admins."""
        if not self.private:
            return True
        if member is None:
            return False
        return (member.admin or member.key in self.members or member.key in self.invited
                or self.rank(member.name) > MEMBER)

    def record(self) -> RoomRecord:
        return RoomRecord(self.name, self.topic, self.topic_by, self.topic_time, self.private,
                          self.owner, self.created, dict(self.ops), dict(self.invited), [],
                          self.stored_members)

    def invited_key(self, key: str) -> bool:
        return key in self.invited

    def invitees(self) -> Set[str]:
        return set(self.invited)
