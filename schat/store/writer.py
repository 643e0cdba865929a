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

import functools
import logging
import os
import threading
import time
from collections import deque
from typing import Callable, Deque, Optional, Tuple, Union

log = logging.getLogger("schat.store")

# A write: a callable run with the connection, a (sql, params) tuple (a statement: no
# closure to build or keep while it waits), or a Row.
Write = Union[Callable[[object], None], Tuple[str, tuple], "Row"]


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
# With a timer (GroupWriter.use_timer), bookkeeping writes (memberships, read markers,
# last-login stamps) wait this long for company instead; an urgent write (a chat
# line, a lock), a ticket() (an acknowledgement waits) or wait() shortens it to
# LINGER. A login storm then costs a commit every 50 ms, not every 3 ms.
LAZY_LINGER = 0.05
# ... unless this many writes are already waiting.
GROUP = 256
# Niceness added to the writer thread (Linux): storing history yields the CPU to the
# chat loop, as the crypto threads do (schat.server.limits.CRYPTO_NICE).
WRITER_NICE = 10
RETRY_START, RETRY_MAX = 0.05, 2.0


class GroupWriter:
    """Apply writes (see :data:`Write`) in order, in as few commits as possible."""

    def __init__(self, transaction, name: str = "schat-store-writer",
                 limit: int = QUEUE_LIMIT, prepare: Optional[Callable[[], None]] = None):
        # transaction(): a context manager yielding a connection, committing on exit.
        self._transaction = transaction
        # prepare(): run first in the thread (the store opens its connection there, so
        # the thread's resources exist from the start, not from its first commit).
        self._prepare = prepare
        self.limit = limit
        self._queue: Deque[Tuple[int, Write]] = deque()
        self._cond = threading.Condition()
        self._next = 1
        self.committed = 0
        self.failures = 0
        self._stopping = False
        # With a timer (use_timer): the submitting thread's event loop times the linger
        # and kicks the thread once per group; _kicked is set under the condition.
        self._schedule: Optional[Callable[[float, Callable[[], None]], None]] = None
        # on_commit(seq): called in the writer thread after each commit (the server
        # wakes its loop when acknowledgements wait for durability).
        self.on_commit: Optional[Callable[[int], None]] = None
        self._kick_due = False      # a kick is scheduled (LAZY_LINGER or LINGER) ...
        self._urgent_due = False    # ... and one at LINGER
        self._kicked = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def use_timer(self, schedule: Callable[[float, Callable[[], None]], None]) -> None:
        """Let the submitting thread time the linger: ``schedule(delay, fn)`` must run
        ``fn`` on that thread after ``delay`` seconds (an event loop's ``call_later``;
        every later :meth:`submit` must come from that thread).

        Without it, the first write of a group wakes the writer thread, which then
        waits :data:`LINGER` for more and wakes again to commit: two hand-overs of
        the interpreter lock and the CPU per group. With it, a loop timer (no thread
        involved) waits, and the thread is woken once, to commit.
        """
        self._schedule = schedule

    def submit(self, write: Write, urgent: bool = False) -> int:
        """Queue one write; return its sequence number. ``urgent``: commit it within
        LINGER even with a timer (a lock that must take effect at once)."""
        if self._schedule is not None:
            seq = self._submit_timed(write)
            if urgent:
                self._hurry()
            return seq
        with self._cond:
            seq = self._next
            self._next = seq + 1
            self._queue.append((seq, write))
            if len(self._queue) in (1, GROUP):
                # notify_all: callers of wait() share the condition with the thread.
                self._cond.notify_all()
        return seq

    def _submit_timed(self, write: Write) -> int:
        # One thread submits (use_timer): the sequence number needs no lock, and a
        # deque's append is atomic. The condition is taken only to wake the thread, so
        # that a burst of submits never keeps the writer from its own lock.
        seq = self._next
        self._next = seq + 1
        queue = self._queue
        queue.append((seq, write))
        if len(queue) >= GROUP:
            if not self._kicked:
                with self._cond:
                    self._kicked = True
                    self._cond.notify_all()
        elif not self._kick_due:
            self._kick_due = True
            self._schedule(LAZY_LINGER, self._kick)
        return seq

    def _kick(self, urgent: bool = False) -> None:
        if urgent:
            self._urgent_due = False
        else:
            self._kick_due = False
        with self._cond:
            if self._queue and not self._kicked:
                self._kicked = True
                self._cond.notify_all()

    def ticket(self) -> int:
        """0 when everything submitted is committed, else the last sequence number submitted
        (someone waits for it: with a timer, the commit comes after LINGER, not LAZY_LINGER)."""
        last = self._next - 1
        if last <= self.committed:
            return 0
        self._hurry()
        return last

    def _hurry(self) -> None:
        # With a timer: commit what is queued after LINGER rather than LAZY_LINGER.
        if self._schedule is not None and not self._urgent_due and not self._kicked:
            self._urgent_due = True
            self._schedule(LINGER, functools.partial(self._kick, True))

    def pending(self) -> int:
        return len(self._queue)

    def full(self) -> bool:
        return len(self._queue) >= self.limit

    def wait(self, timeout: float) -> bool:
        """Block until everything submitted so far is committed (not on the event loop)."""
        return self.wait_for(self._next - 1, timeout)

    def wait_for(self, target: int, timeout: float) -> bool:
        """Block until write ``target`` (a sequence number) and all before it are committed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self.committed < target:
                # Whoever waits does not wait for the linger's timer too (it may be
                # this very thread's event loop that would run it).
                self._kicked = True
                self._cond.notify_all()
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
        if self._prepare is not None:
            try:
                self._prepare()
            except Exception:  # noqa: BLE001 - the first commit meets it again, and retries
                log.debug("store writer: prepare failed", exc_info=True)
        delay = RETRY_START
        while True:
            with self._cond:
                while not self._ready():
                    self._cond.wait()
                if not self._queue:
                    return
                if self._schedule is None and len(self._queue) < GROUP and not self._stopping:
                    self._cond.wait(LINGER)
                self._kicked = False
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
                    self._kicked = True  # the group is still queued: retry it
                delay = min(RETRY_MAX, delay * 2)
                continue
            delay = RETRY_START
            last = group[-1][0]
            with self._cond:
                for _ in group:
                    self._queue.popleft()
                self.committed = last
                if not self._queue:
                    # A kick that came during this commit was for writes it committed:
                    # the next write must kick again (else the thread would wait for
                    # one while believing itself kicked).
                    self._kicked = False
                self._cond.notify_all()
            notify = self.on_commit
            if notify is not None:
                notify(last)

    def _ready(self) -> bool:
        # Under the condition: is there a group to commit (or an end to reach)?
        if self._stopping:
            return True
        if not self._queue:
            return False
        return self._schedule is None or self._kicked or len(self._queue) >= GROUP


def _lower_priority(nice: int) -> None:
    if not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:
        pass  # not permitted here: the writer keeps the loop's priority


def _apply(conn, group) -> None:
    """Run ``group`` in order; runs of :class:`Row` with one target become multi-row INSERTs,
    a ``(sql, params)`` tuple is one statement, anything else is called with ``conn``."""
    rows: list = []
    into = None
    for _, write in group:
        kind = type(write)
        if kind is Row:
            if write.into != into or len(rows) >= ROWS_PER_STATEMENT:
                _insert(conn, into, rows)
                rows, into = [], write.into
            rows.append(write.values)
            continue
        _insert(conn, into, rows)
        rows, into = [], None
        if kind is tuple:
            conn.execute(write[0], write[1])
        else:
            write(conn)
    _insert(conn, into, rows)


def _insert(conn, into, rows) -> None:
    if not rows:
        return
    marks = "(" + ", ".join("?" * len(rows[0])) + ")"
    conn.execute(into + ", ".join([marks] * len(rows)),
                 [value for row in rows for value in row])
