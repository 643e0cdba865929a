"""Every server default as a named setting.

Each value below is the operator-facing knob for one rule of the server; the
comments say where the default comes from. ``ServerSettings`` is a plain
dataclass so tests and the ``serve`` command set the same fields an operator
would.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from schat.chat.limits import (BACKLOG, HISTORY_DAYS, HISTORY_LIMIT, ROOMS_PER_MEMBER,
                               ROOMS_TOTAL, TOPIC_BYTES, ChatLimits)

log = logging.getLogger("schat.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555

# Handshake + login must finish within this many seconds (OpenSSH LoginGraceTime
# is 120 s; IRC servers use ~30 s). Slow-loris connections are closed after it.
LOGIN_DEADLINE = 30.0
# Failed authentications per connection before it is closed (OpenSSH MaxAuthTries 6).
MAX_AUTH_ATTEMPTS = 3
# A client whose unsent output exceeds this is dropped, alone (IRC sendq ~100 kB).
OUTBOUND_CAP = 1 << 20
# Seconds of silence from a client before the server pings it ...
PING_INTERVAL = 60.0
# ... and further seconds without any answer before it is dropped.
PING_TIMEOUT = 30.0
# Seconds a thread may hold the interpreter lock while another waits for it
# (`schat serve --gil-switch-interval`).
# Python's default is 5 ms; the crypto pool's workers run partly in Python, so
# with the default a login burst can hold the chat loop back by 5 ms a time.
# One of the measures that keep chat latency flat under a login flood
# (docs/SECURITY.md, "Login flood: measured").
GIL_SWITCH_INTERVAL = 0.0005
# Niceness added to the crypto worker threads (Linux; elsewhere ignored): RSA and
# scrypt work yields the CPU to the chat loop, so a login flood slows logins,
# not the room. Measured on one core shared by the loop and a worker: chat p99
# under a 200-login flood about 1.1-1.4x the quiet figure at 10, 1.6-2.1x at 0.
CRYPTO_NICE = 10
# Seconds of handshake and login work (connects, ServerHellos, key exchanges,
# login replies) the event loop does per turn before it serves chat again. A
# login flood then queues behind chat instead of stalling it: each turn, the
# loop reads and relays chat first, then spends at most this much on newcomers.
HANDSHAKE_BUDGET = 0.001
# Connections that have not logged in yet, in total and from one address
# (OpenSSH MaxStartups 10:30:100; IRC MaxConnectionsIP). Beyond either cap a
# new connection is closed before the server spends anything on it.
MAX_UNAUTHENTICATED = 1024
MAX_UNAUTHENTICATED_PER_IP = 64
# Hash/RSA jobs allowed to wait for a worker; beyond this a login gets "busy"
# instead of queueing without bound (Ergo login throttling).
MAX_PENDING_LOGINS = 64
# Chat messages per second per member and the burst allowed at once: a token
# bucket (ssh-chat allows 3 messages in 3 s; IRC "fakelag" allows a short burst,
# then one line every 2 s). The excess is dropped and answered "throttled";
# a member that keeps sending faster than twice the rate is disconnected.
RATE_LIMIT = 5.0
RATE_BURST = 20
# Failed-login backoff per source address and per account (OpenSSH
# PerSourcePenalties authfail 5 s, max 600 s; NIST 800-63B rate limiting): after
# max_auth_attempts free failures each further failure waits base * 2^k seconds,
# capped at the max; the record is forgotten after a quiet max period, so it is
# never a permanent lockout. Key logins are never held back by an account penalty.
PENALTY_BASE = 2.0
PENALTY_MAX = 300.0
# Password failures for one account, from all addresses together, before the
# account is guarded: then only an address with no failure on record gets its
# password checked (NIST 800-63B: at most 100 consecutive failed attempts on
# one account). Generous on purpose: the per-address and per-(address,
# account) penalties stop a guesser long before; this stops a botnet without
# ever refusing the owner's right password from their usual, clean address.
ACCOUNT_CEILING = 100
# Accounts one address may create by sign-up in any hour (Discourse allows 3
# new accounts per registration address; Mastodon throttles sign-ups per
# address). A refused sign-up counts as a failed login for the address.
SIGNUPS_PER_HOUR = 5
# An account made by sign-up is "new" for this long (unless an established
# member writes to it first): its direct messages to an offline member share a
# small part of that member's mailbox with every other new account's.
NEW_ACCOUNT_AGE = 86_400.0
# Messages per second from one address, all its logged-in connections together
# (an office behind one NAT is many members; fifty throwaway accounts are one
# attacker). Excess messages are answered "throttled", like the member limit.
ADDRESS_RATE_LIMIT = 100.0
ADDRESS_RATE_BURST = 400
# Share of one crypto thread's time that the direct-message signature checks of
# one address may use (seconds per second). Checking an RSA-3072 signature
# costs well under a millisecond: 5 % is hundreds of messages a second.
DM_CHECK_SHARE = 0.05
# The balance of that share an address may save up (seconds of crypto time).
DM_CHECK_BURST = 0.05
# Signature checks of one address waiting for their turn before the server
# stops reading the connections that send them (they wait in their own socket
# buffers, costing the server nothing); twice as many, and more are refused.
DM_CHECK_BACKLOG = 16
# Addresses and accounts remembered by the penalty box at most (memory bound).
PENALTY_ENTRIES = 65_536


def lower_thread_priority(nice: int) -> None:
    """Add ``nice`` to the calling thread's niceness (Linux threads have their own)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError:
        pass  # not permitted here: the workers keep the loop's priority


def default_crypto_workers() -> int:
    """Threads for RSA private-key work and scrypt: about one per core."""
    return max(1, os.cpu_count() or 1)


@dataclass
class ServerSettings:
    """The knobs of one server instance (see the module constants for the reasons)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    server_name: str = "schat"
    motd: str = ""
    allow_signup: bool = True
    login_deadline: float = LOGIN_DEADLINE
    max_auth_attempts: int = MAX_AUTH_ATTEMPTS
    outbound_cap: int = OUTBOUND_CAP
    ping_interval: float = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    gil_switch_interval: float = GIL_SWITCH_INTERVAL
    handshake_budget: float = HANDSHAKE_BUDGET
    crypto_nice: int = CRYPTO_NICE
    crypto_workers: int = field(default_factory=default_crypto_workers)
    max_pending_logins: int = MAX_PENDING_LOGINS
    max_unauthenticated: int = MAX_UNAUTHENTICATED
    max_unauthenticated_per_ip: int = MAX_UNAUTHENTICATED_PER_IP
    # Messages per second per member; 0 disables the limiter.
    rate_limit: float = RATE_LIMIT
    rate_burst: int = RATE_BURST
    penalty_base: float = PENALTY_BASE
    penalty_max: float = PENALTY_MAX
    account_ceiling: int = ACCOUNT_CEILING
    # Sign-ups per address per hour; 0 for no limit.
    signups_per_hour: int = SIGNUPS_PER_HOUR
    new_account_age: float = NEW_ACCOUNT_AGE
    # Messages per second per address (all its members together); 0 disables.
    address_rate_limit: float = ADDRESS_RATE_LIMIT
    address_rate_burst: int = ADDRESS_RATE_BURST
    dm_check_share: float = DM_CHECK_SHARE
    # Direct messages stored per recipient until acknowledged; a full mailbox
    # refuses more (the sender is told) so one absent member cannot fill the disk.
    mailbox_limit: int = 500
    # Rooms (schat.chat.limits has the reasons): per member, in total, topic bytes,
    # history kept per room and its age in days (0: no age bound), backlog per room.
    rooms_per_member: int = ROOMS_PER_MEMBER
    rooms_total: int = ROOMS_TOTAL
    topic_bytes: int = TOPIC_BYTES
    history_limit: int = HISTORY_LIMIT
    history_days: int = HISTORY_DAYS
    backlog: int = BACKLOG
    # True: acknowledge a chat line only once it is committed to the store, so a crash
    # loses no acknowledged line (a few milliseconds more per acknowledgement, and
    # measurably less fan-out under a flat-out load: bench/README.md). False: at once;
    # a crash may lose the lines still queued for the writer (docs/INTERNALS.md).
    durable_acks: bool = False

    def chat_limits(self) -> ChatLimits:
        """The chat domain's bounds from these settings."""
        return ChatLimits(rooms_per_member=self.rooms_per_member, rooms_total=self.rooms_total,
                          topic_bytes=self.topic_bytes, history_limit=self.history_limit,
                          history_days=self.history_days, backlog=self.backlog)

    def __post_init__(self) -> None:
        for name in ("login_deadline", "ping_interval", "ping_timeout", "gil_switch_interval",
                     "handshake_budget"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("max_auth_attempts", "outbound_cap", "crypto_workers",
                     "max_pending_logins", "mailbox_limit", "max_unauthenticated",
                     "max_unauthenticated_per_ip", "rate_burst", "account_ceiling",
                     "address_rate_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("rate_limit", "penalty_base", "signups_per_hour", "new_account_age",
                     "address_rate_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 < self.dm_check_share <= 1:
            raise ValueError("dm_check_share must be above 0 and at most 1")
        if self.penalty_max < self.penalty_base:
            raise ValueError("penalty_max must be at least penalty_base")
        if not 0 <= self.crypto_nice <= 19:
            raise ValueError("crypto_nice must be between 0 and 19")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        self.chat_limits()  # the room bounds check themselves


def raise_nofile_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; return the new soft limit.

    Every connection is a file descriptor, and distributions default the soft
    limit to 1,024 while allowing far more: without this, a busy server would
    refuse connections (EMFILE) long before it runs out of anything real.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return soft
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as err:
        log.warning("could not raise the open-file limit from %d: %s", soft, err)
        return soft
    return target
