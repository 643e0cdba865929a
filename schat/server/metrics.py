"""What the server counts for ``--metrics``: plain integers, bumped in one line each.

Every hook in the connection code is a single attribute add or a dict bump on
an event that is rare next to chat (a connect, a login, a throttled message, a
disconnect) or once per flush (bytes sent). Deliveries are counted by the chat
domain itself. Nothing here imports the Prometheus library: the exporter
(:mod:`schat.server.metrics_http`) reads these numbers when it is scraped.

Counts only: no name, address or text is ever kept here.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from typing import Callable, Deque, Dict, Tuple

# Disconnect reasons (the texts the connection code closes with) by label.
_DISCONNECTS: Tuple[Tuple[str, str], ...] = (
    ("left", "left"),
    ("quit", "quit"),
    ("ping timeout", "ping_timeout"),
    ("too slow", "too_slow"),
    ("flooding", "flooding"),
    ("login deadline passed", "login_deadline"),
    ("too many failed attempts", "too_many_attempts"),
    ("protocol error", "protocol_error"),
    ("the server is busy", "busy"),
    ("server shutting down", "shutdown"),
    ("connection lost", "connection_lost"),
    ("connection closed", "connection_closed"),
    ("server resources exhausted", "resources"),
    ("internal error", "internal_error"),
)
# Disconnects that are a server limit at work, and the limit's label.
_LIMIT_OF = {"too_slow": "outbound_cap", "flooding": "flood", "login_deadline":
             "login_deadline", "too_many_attempts": "auth_attempts", "busy": "busy",
             "ping_timeout": "idle"}
# Refusals of a new connection by the unauthenticated caps (schat.server.guard).
_ADMISSION = {"too many connections not logged in": "unauthenticated",
              "too many connections not logged in from this address": "unauthenticated_per_ip"}


def disconnect_label(reason: str) -> str:
    """A short, fixed label for a disconnect reason (never the free text itself)."""
    for start, label in _DISCONNECTS:
        if reason.startswith(start):
            return label
    return "other"


class Stats:
    """The server's counters. Loop-thread fields are plain ints; the crypto pool's
    timings are added under a lock (they come from worker threads)."""

    def __init__(self) -> None:
        self.connections = 0
        self.handshakes = 0
        self.bytes_sent = 0
        self.logins: Dict[str, int] = collections.Counter()
        self.login_failures: Dict[str, int] = collections.Counter()
        self.refusals: Dict[str, int] = collections.Counter()
        self.disconnects: Dict[str, int] = collections.Counter()
        self.crypto_submitted = 0
        self.crypto_started = 0
        self.crypto_finished = 0
        self.crypto_seconds = 0.0
        # Direct-message signature checks run by the crypto threads, and the thread CPU
        # seconds they took (what their senders' addresses were charged).
        self.signature_checks = 0
        self.signature_check_seconds = 0.0
        self._lock = threading.Lock()

    # -- hooks (each called in one line) ----------------------------------------
    def login(self, how: str) -> None:
        self.logins[how] += 1

    def login_failed(self, code: str) -> None:
        self.login_failures[code] += 1
        if code == "penalty":
            self.refusals["penalty"] += 1

    def refuse(self, limit: str) -> None:
        self.refusals[limit] += 1

    def refused_connection(self, reason: str) -> None:
        self.refusals[_ADMISSION.get(reason, "unauthenticated")] += 1

    def disconnected(self, reason: str) -> None:
        label = disconnect_label(reason)
        self.disconnects[label] += 1
        limit = _LIMIT_OF.get(label)
        if limit is not None:
            self.refusals[limit] += 1

    def timed(self, job: Callable) -> Callable:
        """``job`` wrapped to count its wait and run time in the crypto pool."""
        self.crypto_submitted += 1
        return functools.partial(self._run_timed, job)

    def job_started(self) -> None:
        """A crypto thread took a job (called in that thread)."""
        with self._lock:
            self.crypto_started += 1

    def job_finished(self, seconds: float) -> None:
        """A crypto thread finished a job that ran ``seconds`` (called in that thread)."""
        with self._lock:
            self.crypto_finished += 1
            self.crypto_seconds += seconds

    def signature_check(self, job: Callable) -> Callable:
        """``job``, a signature check returning (ok, thread CPU seconds), wrapped to be
        counted by the crypto thread that runs it (a check run anywhere else is not)."""
        return functools.partial(self._run_signature_check, job)

    def _run_signature_check(self, job: Callable):
        ok, seconds = job()
        with self._lock:
            self.signature_checks += 1
            self.signature_check_seconds += seconds
        return ok, seconds

    def _run_timed(self, job: Callable):
        with self._lock:
            self.crypto_started += 1
        start = time.perf_counter()
        try:
            return job()
        finally:
            spent = time.perf_counter() - start
            with self._lock:
                self.crypto_finished += 1
                self.crypto_seconds += spent

    # -- reading -----------------------------------------------------------------
    def crypto_queue(self) -> Tuple[int, int]:
        """(waiting for a thread, running) crypto jobs."""
        with self._lock:
            started, finished = self.crypto_started, self.crypto_finished
        return max(0, self.crypto_submitted - started), max(0, started - finished)


class LagProbe:
    """Event-loop lag: how late a timer that should fire every ``interval`` s runs.

    Started only when metrics are served; keeps the last value and the samples
    of the last ``window`` seconds for their maximum.
    """

    def __init__(self, loop, interval: float = 0.25, window: float = 60.0):
        self.loop = loop
        self.interval = interval
        self.last = 0.0
        self._samples: Deque[Tuple[float, float]] = collections.deque()
        self._window = window
        self._handle = None

    def start(self) -> None:
        """Schedule the first tick (call from any thread)."""
        self.loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        due = self.loop.time() + self.interval
        self._handle = self.loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        now = self.loop.time()
        lag = max(0.0, now - due)
        self.last = lag
        samples = self._samples
        samples.append((now, lag))
        while samples and samples[0][0] < now - self._window:
            samples.popleft()
        self._schedule()

    def maximum(self) -> float:
        """The largest lag of the last window (read from any thread)."""
        return max((lag for _, lag in list(self._samples)), default=self.last)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
