"""Bans and mutes with an expiry, per room; durations as members type them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from schat.chat.errors import Refusal
from schat.chat.names import user_key

BAN, MUTE = "ban", "mute"
_DURATION = re.compile(r"(\d{1,6})([smhdw])\Z")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION_S = 366 * 86400


def parse_duration(text: str) -> Optional[int]:
    """Seconds for ``30s``, ``10m``, ``2h``, ``1d``, ``1w``; None when ``text`` is not one."""
    match = _DURATION.match(text.lower())
    if not match:
        return None
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if not 1 <= seconds <= MAX_DURATION_S:
        raise Refusal("bad_command", f"a duration is 1 s to 366 days, not {text}")
    return seconds


def describe_until(until: Optional[int], now: int) -> str:
    """``for 1h 30m``-style text for the time left, or ``until lifted``."""
    if until is None:
        return "until lifted"
    left = max(1, (until - now + 999) // 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size and len(parts) < 2:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "for " + " ".join(parts)


@dataclass(frozen=True)
class Restriction:
    """One ban or mute of ``user`` in ``room``; ``until`` None means until lifted."""
    room: str
    kind: str
    user: str
    actor: Optional[str]
    reason: str
    until: Optional[int]
    created: int

    def active(self, now: int) -> bool:
        return self.until is None or now < self.until

    @property
    def stamp(self) -> Tuple[int, str, str, int]:
        """The order in which concurrent changes of one (room, kind, user) settle: the
        later one wins, ties broken by the content, so every server process and the
        store keep the same one whatever order they learn of them in."""
        return (self.created, self.actor or "", self.reason,
                -1 if self.until is None else self.until)

    @classmethod
    def lifted(cls, room: str, kind: str, user: str, actor: Optional[str],
               time: int) -> "Restriction":
        """An unban or unmute at ``time``: a restriction that ended when it was made
        (so an older ban learnt of later cannot bring it back)."""
        return cls(room, kind, user, actor, "", time, time)


# Stamps of lifted restrictions are remembered this long (a concurrent change
# arrives within seconds), and at most this many per room beyond the live ones.
STAMP_MEMORY_MS = 3_600_000
STAMP_SLACK = 1024


class Restrictions:
    """The bans and mutes of one room; expired ones are dropped when looked at."""

    def __init__(self, items: List[Restriction] = ()):
        self._by: Dict[str, Dict[str, Restriction]] = {BAN: {}, MUTE: {}}
        # (kind, user key) -> stamp of the last change applied (lifted ones included).
        self._stamps: Dict[Tuple[str, str], tuple] = {}
        for item in items:
            self.apply(item)

    def apply(self, item: Restriction) -> bool:
        """Apply a ban, mute or lifting (:meth:`Restriction.lifted`) unless a later change
        of the same (kind, user) is already known; True when it took effect."""
        key = user_key(item.user)
        known = self._stamps.get((item.kind, key))
        if known is not None and item.stamp <= known:
            return False
        self._stamps[(item.kind, key)] = item.stamp
        if item.until is not None and item.until <= item.created:
            self._by[item.kind].pop(key, None)
        else:
            self._by[item.kind][key] = item
        if len(self._stamps) > len(self) + STAMP_SLACK:
            self._forget_old(item.created - STAMP_MEMORY_MS)
        return True

    def _forget_old(self, before: int) -> None:
        for (kind, key), stamp in list(self._stamps.items()):
            if stamp[0] < before and key not in self._by[kind]:
                del self._stamps[(kind, key)]

    def get(self, kind: str, user: str, now: int) -> Optional[Restriction]:
        """The active restriction of ``kind`` on ``user``, or None (an expired one is dropped)."""
        table = self._by[kind]
        item = table.get(user_key(user))
        if item is None:
            return None
        if not item.active(now):
            del table[user_key(user)]
            return None
        return item

    def active(self, now: int) -> List[Restriction]:
        """Every restriction still in force, bans first, then by name."""
        out = []
        for kind in (BAN, MUTE):
            table = self._by[kind]
            for key in [k for k, v in table.items() if not v.active(now)]:
                del table[key]
            out.extend(sorted(table.values(), key=lambda r: user_key(r.user)))
        return out

    def __len__(self) -> int:
        return sum(len(t) for t in self._by.values())
