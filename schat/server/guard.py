"""Admission and abuse control: unauthenticated caps, login penalties, message rate,
sign-ups and crypto work per address.

Pure bookkeeping over a monotonic clock passed in by the caller (the event
loop's ``time()``), so each rule is cheap, testable and free of I/O. The
settings behind every rule are in :mod:`schat.server.limits`; the rules are
described for operators in docs/SECURITY.md.

Every per-address table is bounded (``entries``): past it, the least recently
used address is forgotten, so a flood from many addresses costs memory in
proportion to the bound, never more.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Optional, Tuple

from schat.names import name_key


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

    def full(self, now: float) -> bool:
        """True when this bucket is as a new one: tokens refilled to ``burst`` and no
        strike left (the caller may then drop it and make a new one when needed)."""
        return (self.tokens + (now - self.stamp) * self.rate >= self.burst
                and self.strikes - (now - self.strike_stamp) * self.rate <= 0.0)

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

    def known(self, key: str, now: float) -> bool:
        """True while ``key`` has a failure on record (it is not forgotten yet)."""
        entry = self._keys.get(key)
        return entry is not None and now < entry[1] + self.maximum

    def forget(self, key: str) -> None:
        """Drop the record of ``key`` (its owner proved who it is)."""
        self._keys.pop(key, None)

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


def _touch(table: dict, key, value, entries: int) -> None:
    """Store ``value`` as the most recently used entry; forget the oldest past ``entries``."""
    table.pop(key, None)
    table[key] = value
    while len(table) > entries:
        del table[next(iter(table))]


class LoginPenalties:
    """Failed-login waits per source address and per (address, account) pair, and a
    per-account ceiling (docs/SECURITY.md, "Failed logins").

    * An address's own failures (any account, any kind of login) make that
      address wait: what a guesser pays.
    * A password failure also counts against the (address, account) pair, so
      guesses at alice's password from one address hold back that address's
      attempts at alice, never alice logging in from elsewhere. A correct
      password clears the pair.
    * Password failures for an account from all addresses together count
      against a generous ceiling (``ceiling``, NIST 800-63B's 100). Past it the
      account is guarded: a password attempt for it is only checked from a
      *clean* address (no failure on record, no other attempt at this account
      in flight), so a botnet gets one guess per address while the owner,
      logging in from their usual address, still gets in.
    * Key logins (``account=None``) answer only for the address's own failures:
      nobody else's failures can hold a key back.
    """

    # Seconds an attempt at a guarded account counts as in flight at most (a
    # connection that closes mid-check never reports back).
    INFLIGHT_TTL = 60.0

    def __init__(self, base: float, maximum: float, free: int, ceiling: int, entries: int):
        self.box = PenaltyBox(base, maximum, free, entries)
        self.accounts = PenaltyBox(base, maximum, ceiling, entries)
        self.entries = entries
        # (address, account key) -> time it stops counting: guarded attempts being checked.
        self._inflight: Dict[Tuple[str, str], float] = {}

    def configure(self, base: float, maximum: float) -> None:
        """New waits (a reload) for the failures to come; recorded failures stay."""
        for box in (self.box, self.accounts):
            box.base = base
            box.maximum = maximum

    @staticmethod
    def _pair(address: str, account: str) -> str:
        return f"{address}|{account}"

    def admit(self, address: str, user: Optional[str], now: float) -> float:
        """Seconds ``address`` must wait before a login for ``user`` (None: a key login or a
        sign-up); 0 admits the attempt, which the caller then settles with
        :meth:`failed`, :meth:`succeeded` or :meth:`settled`."""
        box = self.box
        wait = box.wait(address, now)
        if user is None or wait > 0:
            return wait
        account = "user:" + name_key(user)
        wait = box.wait(self._pair(address, account), now)
        if wait > 0:
            return wait
        guarded = self.accounts.wait(account, now)
        if guarded <= 0:
            return 0.0
        key = (address, account)
        busy = self._inflight.get(key, 0.0) > now
        if busy or box.known(address, now):
            return max(guarded, box.base, 1.0)
        _touch(self._inflight, key, now + self.INFLIGHT_TTL, self.entries)
        return 0.0

    def failed(self, address: str, user: Optional[str], now: float) -> None:
        """Wrong credentials: count against the address, and for a password login
        (``user`` given) against the pair and the account's ceiling."""
        self.box.failed(address, now)
        if user is not None:
            account = "user:" + name_key(user)
            self._inflight.pop((address, account), None)
            self.box.failed(self._pair(address, account), now)
            self.accounts.failed(account, now)

    def succeeded(self, address: str, user: str) -> None:
        """The right password: this address's record for this account is cleared."""
        account = "user:" + name_key(user)
        self._inflight.pop((address, account), None)
        self.box.forget(self._pair(address, account))

    def settled(self, address: str, user: Optional[str]) -> None:
        """An admitted attempt ended otherwise (locked, busy, gone)."""
        if user is not None:
            self._inflight.pop((address, "user:" + name_key(user)), None)


class AddressRates:
    """One message budget per address, shared by all its logged-in connections.

    The per-member bucket bounds one account; this bounds the accounts of one
    address together, so fifty throwaway accounts get one address's rate, not
    fifty members' worth. A refusal adds no strike to the member (others
    behind the same address may be the ones sending).
    """

    def __init__(self, rate: float, burst: int, entries: int):
        self.rate = rate
        self.burst = burst
        self.entries = entries
        self._buckets: Dict[str, TokenBucket] = {}

    def configure(self, rate: float, burst: int) -> None:
        """A new rate (a reload): every address starts again with a full budget."""
        self.rate = rate
        self.burst = burst
        self._buckets.clear()

    def take(self, address: str, now: float) -> bool:
        """Spend one of ``address``'s tokens; False when the address is over its rate."""
        if self.rate <= 0:
            return True
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            _touch(self._buckets, address, bucket, self.entries)
        return bucket.take(now)


class CryptoShare:
    """Each address's share of the crypto threads' time for logged-in members' work.

    An address may spend ``share`` seconds of crypto-thread time per second
    (a balance refilled at that rate, up to ``burst`` seconds) and have at
    most ``pending`` jobs running at once. A job is charged what it really
    cost (thread CPU time, measured by the caller), so an RSA-8192 signature
    costs its sender fifty times an RSA-2048 one.
    """

    def __init__(self, share: float, burst: float, pending: int, entries: int):
        self.share = share
        self.burst = burst
        self.pending = pending
        self.entries = entries
        # address -> [balance (seconds), stamp, jobs pending]
        self._addresses: Dict[str, list] = {}

    def _entry(self, address: str, now: float) -> list:
        entry = self._addresses.get(address)
        if entry is None:
            entry = [self.burst, now, 0]
        else:
            balance = entry[0] + (now - entry[1]) * self.share
            entry[0] = balance if balance < self.burst else self.burst
            entry[1] = now
        _touch(self._addresses, address, entry, self.entries)
        return entry

    def available(self, address: str, now: float) -> bool:
        """True when ``address`` could start a job now (its share left, a slot free)."""
        entry = self._addresses.get(address)
        return entry is None or (self.ready_in(address, now) == 0.0 and entry[2] < self.pending)

    def ready_in(self, address: str, now: float) -> float:
        """Seconds until ``address``'s balance is positive again (0.0: it is now)."""
        entry = self._addresses.get(address)
        if entry is None:
            return 0.0
        balance = entry[0] + (now - entry[1]) * self.share
        return 0.0 if balance > 0 else -balance / self.share + 0.001

    def admit(self, address: str, now: float) -> bool:
        """Take a job slot for ``address``; False when its share is spent or its slots full."""
        entry = self._entry(address, now)
        if entry[0] <= 0 or entry[2] >= self.pending:
            return False
        entry[2] += 1
        return True

    def done(self, address: str, seconds: float, now: float) -> None:
        """A job of ``address`` finished after ``seconds`` of crypto-thread time."""
        entry = self._entry(address, now)
        entry[0] -= seconds
        if entry[2] > 0:
            entry[2] -= 1


class SignupLimit:
    """Accounts created from one address in any window of ``window`` seconds (an hour).

    A sign-up takes a slot before its password is hashed (so parallel
    sign-ups cannot overrun the limit) and gives it back if it is refused.
    ``per_window`` 0 means no limit.
    """

    def __init__(self, per_window: int, window: float, entries: int):
        self.per_window = per_window
        self.window = window
        self.entries = entries
        self._stamps: Dict[str, Deque[float]] = {}

    def reserve(self, address: str, now: float) -> float:
        """Take a slot (0.0), or the seconds until ``address`` gets one back."""
        if self.per_window <= 0:
            return 0.0
        stamps = self._stamps.get(address)
        if stamps is None:
            stamps = deque()
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        _touch(self._stamps, address, stamps, self.entries)
        if len(stamps) >= self.per_window:
            return stamps[0] + self.window - now
        stamps.append(now)
        return 0.0

    def cancel(self, address: str) -> None:
        """Give back the newest slot of ``address`` (its sign-up was refused)."""
        stamps = self._stamps.get(address)
        if stamps:
            stamps.pop()
