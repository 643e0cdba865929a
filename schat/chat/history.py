"""A room's recent messages in memory, and what a member has not seen yet."""

from __future__ import annotations

from collections import deque
from typing import Deque, Iterable, List

from schat.chat.events import Said


class HistoryWindow:
    """The last ``size`` messages of one room, oldest first.

    The store keeps more (``history_limit``); this window serves backlogs at
    join and login without touching the store, which is asked only for pages
    further back (``/history``).
    """

    __slots__ = ("_items", "last_id")

    def __init__(self, size: int, items: Iterable[Said] = ()):
        self._items: Deque[Said] = deque(items, maxlen=max(1, size))
        self.last_id = self._items[-1].id if self._items else 0

    def append(self, said: Said) -> None:
        self._items.append(said)
        self.last_id = said.id

    def insert(self, said: Said) -> bool:
        """Add a line that may arrive out of id order (from another server process of a
        cluster, or caught up from the store); False when it is already here or older
        than everything a full window holds."""
        items = self._items
        if not items or said.id > self.last_id:
            self.append(said)
            return True
        if said.id < items[0].id and len(items) == items.maxlen:
            return False
        at = len(items)
        while at and items[at - 1].id > said.id:
            at -= 1
        if at and items[at - 1].id == said.id:
            return False
        if len(items) == items.maxlen:
            items.popleft()
            at -= 1
        items.insert(at, said)
        return True

    def ids(self) -> set:
        return {said.id for said in self._items}

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def first_id(self) -> int:
        return self._items[0].id if self._items else 0

    def unseen(self, after_id: int, limit: int) -> List[Said]:
        """At most ``limit`` of the newest messages with an id above ``after_id``, oldest first."""
        if limit <= 0:
            return []
        out: List[Said] = []
        for said in reversed(self._items):
            if said.id <= after_id or len(out) >= limit:
                break
            out.append(said)
        out.reverse()
        return out

    def before(self, before_id: int, limit: int) -> List[Said]:
        """At most ``limit`` messages older than ``before_id`` held here, oldest first."""
        out: List[Said] = []
        for said in reversed(self._items):
            if len(out) >= limit:
                break
            if said.id < before_id:
                out.append(said)
        out.reverse()
        return out

    def covers(self, before_id: int, limit: int) -> bool:
        """True when the window alone answers ``before(before_id, limit)`` completely."""
        older = sum(1 for s in self._items if s.id < before_id)
        return older >= limit or (self._items.maxlen is not None
                                  and len(self._items) < self._items.maxlen)

    def drop_older_than(self, time_ms: int) -> None:
        while self._items and self._items[0].time < time_ms:
            self._items.popleft()
