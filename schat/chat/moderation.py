"""Bans and mutes with an expiry, per room; durations as members type them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional

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


class Restrictions:
    """The bans and mutes of one room; expired ones are dropped when looked at."""

    def __init__(self, items: List[Restriction] = ()):
        self._by: Dict[str, Dict[str, Restriction]] = {BAN: {}, MUTE: {}}
        for item in items:
            self._by[item.kind][user_key(item.user)] = item

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

    def put(self, item: Restriction) -> None:
        self._by[item.kind][user_key(item.user)] = item

    def remove(self, kind: str, user: str) -> Optional[Restriction]:
        return self._by[kind].pop(user_key(user), None)

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
