"""Admission and abuse control: unauthenticated caps, login penalties, message rate.

Pure bookkeeping over a monotonic clock passed in by the caller (the event
loop's ``time()``), so each rule is cheap, testable and free of I/O. The
settings behind every rule are in :mod:`schat.server.limits`.
"""

from __future__ import annotations

from typing import Dict, Optional


class TokenBucket:
    """One member's chat message budget: ``rate`` per second, ``burst`` at once.

    ``take(now)`` runs for every chat message, so it is a few float operations
    and allocates nothing. A refused message is dropped by the caller; each
    refusal also adds a strike, and strikes drain at ``rate`` per second, so
    only a member that keeps sending faster than about twice the rate piles up
    more than ``burst`` strikes and is ``flooding``.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp", "strikes", "strike_stamp")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now
        self.strikes = 0.0
        self.strike_stamp = now

    def take(self, now: float) -> bool:
        """Spend one token; False when the member is over its rate."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.stamp = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        strikes = self.strikes - (now - self.strike_stamp) * self.rate
        self.strike_stamp = now
        self.strikes = (strikes if strikes > 0.0 else 0.0) + 1.0
        return False

    @property
    def flooding(self) -> bool:
        """True once refusals outpace the drain by more than a whole burst."""
        return self.strikes > self.burst


class PenaltyBox:
    """Failed-login backoff keyed by source address and by account name.

    The first ``free`` failures of a key cost nothing (one connection's own
    attempts); each further failure makes that key wait ``base * 2**k``
    seconds, capped at ``maximum``. A key quiet for ``maximum`` seconds after
    its last wait is forgotten, so a penalty always ends. At most ``entries``
    keys are remembered; the least recently failed go first.
    """

    def __init__(self, base: float, maximum: float, free: int, entries: int):
        self.base = base
        self.maximum = maximum
        self.free = free
        self.entries = entries
        # key -> [failures, until]; insertion order is recency of the last failure.
        self._keys: Dict[str, list] = {}

    def wait(self, key: str, now: float) -> float:
        """Seconds ``key`` must still wait before it may try again (0: go ahead)."""
        entry = self._keys.get(key)
        if entry is None:
            return 0.0
        until = entry[1]
        if now >= until + self.maximum:
            del self._keys[key]
            return 0.0
        return until - now if until > now else 0.0

    def failed(self, key: str, now: float) -> float:
        """Record one failure of ``key``; return the wait it now has."""
        if self.base <= 0:
            return 0.0
        entry = self._keys.pop(key, None)
        if entry is None or now >= entry[1] + self.maximum:
            entry = [0, now]
        entry[0] += 1
        over = entry[0] - self.free
        if over > 0:
            # Exponent capped: the wait stops growing long before floats would.
            entry[1] = now + min(self.maximum, self.base * (2.0 ** min(over - 1, 32)))
        self._keys[key] = entry
        if len(self._keys) > self.entries:
            self._prune(now)
        return max(0.0, entry[1] - now)

    def __len__(self) -> int:
        return len(self._keys)

    def _prune(self, now: float) -> None:
        expired = [k for k, (_, until) in self._keys.items() if now >= until + self.maximum]
        for key in expired:
            del self._keys[key]
        while len(self._keys) > self.entries:
            del self._keys[next(iter(self._keys))]


class Admission:
    """Counts connections that have not logged in, in total and per address."""

    def __init__(self, total: int, per_address: int):
        self.limit = total
        self.per_address = per_address
        self.count = 0
        self._by_address: Dict[str, int] = {}

    def admit(self, address: str) -> Optional[str]:
        """Take a slot for ``address``; the refusal reason when a cap is reached."""
        if self.count >= self.limit:
            return "too many connections not logged in"
        held = self._by_address.get(address, 0)
        if held >= self.per_address:
            return "too many connections not logged in from this address"
        self._by_address[address] = held + 1
        self.count += 1
        return None

    def release(self, address: str) -> None:
        """Give back the slot of ``address`` (logged in or gone)."""
        held = self._by_address.get(address, 0)
        if held <= 1:
            self._by_address.pop(address, None)
        else:
            self._by_address[address] = held - 1
        self.count -= 1

    def held(self, address: str) -> int:
        """Slots currently held by ``address``."""
        return self._by_address.get(address, 0)
