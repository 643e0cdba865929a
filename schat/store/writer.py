"""A writer thread that commits queued writes in groups (group commit).

The event loop never waits for SQLite: each write is a small callable queued
with a sequence number. The thread takes everything queued so far, applies it
in one transaction and commits, then reports the last sequence number it made
durable. Under load the groups grow by themselves: one commit per group, not
per message. A failed commit is retried (the group stays queued, in order) and
logged; the queue is bounded, and a full queue makes the chat refuse new lines
rather than grow without end.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Callable, Deque, Tuple

log = logging.getLogger("schat.store")

Write = Callable[[object], None]


class Row:
    """One row for a multi-row INSERT: consecutive rows with the same ``into`` are
    written by one statement, so a group of chat lines costs one SQLite call (and the
    interpreter lock is handed back and forth once, not once per line)."""

    __slots__ = ("into", "values")

    def __init__(self, into: str, values: tuple):
        self.into = into      # "INSERT INTO table (a, b) VALUES "
        self.values = values


# Rows per INSERT statement (SQLite allows 32,766 variables in one statement).
ROWS_PER_STATEMENT = 500

# Writes waiting beyond this make the chat refuse new lines ("busy"), never a disconnect.
QUEUE_LIMIT = 10_000
# Once a write arrives, the thread waits this long for more before committing: a busy
# room then costs a few hundred commits per second, not one per line, and an
# acknowledgement (sent after the commit) comes at most this much later.
LINGER = 0.003
# ... unless this many writes are already waiting.
GROUP = 256
# Niceness added to the writer thread (Linux): storing history yields the CPU to the
# chat loop, as the crypto threads do (schat.server.limits.CRYPTO_NICE).
WRITER_NICE = 10
RETRY_START, RETRY_MAX = 0.05, 2.0


class GroupWriter:
    """Apply ``Write(conn)`` callables in order, in as few commits as possible."""

    def __init__(self, transaction, name: str = "schat-store-writer",
                 limit: int = QUEUE_LIMIT):
        # transaction(): a context manager yielding a connection, committing on exit.
        self._transaction = transaction
        self.limit = limit
        self._queue: Deque[Tuple[int, Write]] = deque()
        self._cond = threading.Condition()
        self._next = 1
        self.committed = 0
        self.failures = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, write: Write) -> int:
        """Queue one write; return its sequence number."""
        with self._cond:
            seq = self._next
            self._next = seq + 1
            self._queue.append((seq, write))
            if len(self._queue) in (1, GROUP):
                # notify_all: callers of wait() share the condition with the thread.
                self._cond.notify_all()
        return seq

    def ticket(self) -> int:
        """0 when everything submitted is committed, else the last sequence number submitted."""
        last = self._next - 1
        return 0 if last <= self.committed else last

    def pending(self) -> int:
        return len(self._queue)

    def full(self) -> bool:
        return len(self._queue) >= self.limit

    def wait(self, timeout: float) -> bool:
        """Block until everything submitted so far is committed (not on the event loop)."""
        target = self._next - 1
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.committed < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> int:
        """Commit what is queued (within ``timeout``), stop; return how many writes were lost."""
        self.wait(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        lost = len(self._queue)
        if lost:
            log.error("%d queued store writes could not be committed before shutdown", lost)
        return lost

    def _run(self) -> None:
        _lower_priority(WRITER_NICE)
        delay = RETRY_START
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                if len(self._queue) < GROUP and not self._stopping:
                    self._cond.wait(LINGER)
                group = list(self._queue)
            try:
                with self._transaction() as conn:
                    _apply(conn, group)
            except Exception as err:  # noqa: BLE001 - retried; the group stays queued
                self.failures += 1
                log.error("could not store %d write(s), retrying in %.2f s: %s",
                          len(group), delay, err)
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(delay)
                delay = min(RETRY_MAX, delay * 2)
                continue
            delay = RETRY_START
            last = group[-1][0]
            with self._cond:
                for _ in group:
                    self._queue.popleft()
                self.committed = last
                self._cond.notify_all()


def _lower_priority(nice: int) -> None:
    if not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:
        pass  # not permitted here: the writer keeps the loop's priority


def _apply(conn, group) -> None:
    """Run ``group`` in order; runs of :class:`Row` with one target become multi-row INSERTs."""
    rows: list = []
    into = None
    for _, write in group:
        if type(write) is Row:
            if write.into != into or len(rows) >= ROWS_PER_STATEMENT:
                _insert(conn, into, rows)
                rows, into = [], write.into
            rows.append(write.values)
            continue
        _insert(conn, into, rows)
        rows, into = [], None
        write(conn)
    _insert(conn, into, rows)


def _insert(conn, into, rows) -> None:
    if not rows:
        return
    marks = "(" + ", ".join("?" * len(rows[0])) + ")"
    conn.execute(into + ", ".join([marks] * len(rows)),
                 [value for row in rows for value in row])
