"""Message ids and session tokens that every server process of a cluster can hand out
alone, unique and in time order: a hybrid logical clock.

An id is ``(milliseconds since 2024 << 11) | (counter << 6) | slot``: the time
of day in milliseconds, a counter for ids made in the same millisecond, and the
process's slot (0-63, held in the store while it runs:
:func:`schat.store.pg_slots.claim_slot`). Two processes never make the same id
(different slots), one process never makes the same id twice (the counter, and
the millisecond moves on when 32 ids were made in one), and ids are ordered by
time across processes. A process that sees an id of another (:meth:`observe`)
makes its next ones larger, so a reply always sorts after what it answers, even
between machines whose clocks differ a little. Ids stay below 2**53 (every JSON
reader keeps them exact) until the year 2163.

A room's history is ordered by id, so "the messages after id N" means the same
on every process; :meth:`floor` gives the smallest id made at a given time
(what a process missed since then is ``id > floor(then)``).

A single server keeps its plain counter (:class:`schat.chat.chat.Counter`).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

log = logging.getLogger("schat.cluster")

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SLOT_BITS = 6
COUNTER_BITS = 5
LOW_BITS = SLOT_BITS + COUNTER_BITS
SLOTS = 1 << SLOT_BITS
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
# An id of another process further ahead of our clock than this is not followed
# (a process with a broken clock must not drag every later id into the future).
MAX_AHEAD_MS = 60_000


class Hybrid:
    """Ids of one cluster process (see the module docstring)."""

    def __init__(self, slot: int, clock: Callable[[], float] = time.time):
        if not 0 <= slot < SLOTS:
            raise ValueError(f"slot must be 0..{SLOTS - 1}")
        self.slot = slot
        self._clock = clock
        self._ms = 0
        self._counter = 0
        self.refused_ahead = 0

    def _now(self) -> int:
        return int(self._clock() * 1000) - EPOCH_MS

    def next(self) -> int:
        now = self._now()
        if now > self._ms:
            self._ms, self._counter = now, 0
        else:
            self._counter += 1
            if self._counter > _COUNTER_MASK:
                self._ms, self._counter = self._ms + 1, 0
        return (self._ms << LOW_BITS) | (self._counter << SLOT_BITS) | self.slot

    def observe(self, other: int) -> None:
        ms, counter = other >> LOW_BITS, (other >> SLOT_BITS) & _COUNTER_MASK
        if (ms, counter) <= (self._ms, self._counter):
            return
        if ms - self._now() > MAX_AHEAD_MS:
            self.refused_ahead += 1
            if self.refused_ahead in (1, 100, 10_000):
                log.warning("an id from another server process is %d s ahead of this "
                            "machine's clock; not followed (check the clocks)",
                            (ms - self._now()) // 1000)
            return
        self._ms, self._counter = ms, counter

    @staticmethod
    def floor(time_ms: int) -> int:
        """The smallest id any process makes at ``time_ms`` (Unix milliseconds)."""
        return max(0, time_ms - EPOCH_MS) << LOW_BITS

    @staticmethod
    def time_of(value: int) -> int:
        """The Unix milliseconds an id was made at (0 for an id of a single server)."""
        ms = value >> LOW_BITS
        return ms + EPOCH_MS if ms else 0
