"""The crypto threads: password hashing and the account checks of a login, off the loop.

A job goes to a free thread through a ``queue.SimpleQueue`` (one C call, no
Future). Its result comes back in a batch: the worker appends ``(done,
result, error)`` to a deque and wakes the event loop only when no wake-up is
pending already, so a burst of logins costs one self-pipe write per loop turn
rather than one per job, and ``done(result, error)`` runs on the loop. Profiled
before this (``bench/README.md``): a third of the crypto threads' time went to
handing results back through ``run_in_executor``'s pair of futures, and a third
of the loop's login work to submitting jobs.

The pool is also a :class:`concurrent.futures.Executor` (``submit`` returns a
Future), for code that wants ``loop.run_in_executor``.
"""

from __future__ import annotations

import collections
import functools
import logging
import queue
import threading
import time
from concurrent.futures import Executor, Future
from typing import Callable, List, Optional

from schat.server.limits import lower_thread_priority

log = logging.getLogger("schat.server")

# done(result, error): error is None on success, else the exception the job raised.
Done = Callable[[object, Optional[BaseException]], None]


class CryptoPool(Executor):
    """``workers`` threads at ``nice`` lower priority, results handed back to ``loop`` in
    batches (:meth:`bind` once the loop exists)."""

    def __init__(self, workers: int, nice: int = 0, stats=None,
                 name: str = "schat-crypto"):
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self._done: collections.deque = collections.deque()
        self._loop = None
        self._wake_pending = False
        self._stopped = False
        self._nice = nice
        self._stats = stats
        self._threads: List[threading.Thread] = []
        for i in range(workers):
            thread = threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def bind(self, loop) -> None:
        """The event loop that ``done`` callbacks run on."""
        self._loop = loop

    # -- submitting (on the loop) ------------------------------------------------------
    def run(self, job: Callable[[], object], done: Done) -> None:
        """Run ``job()`` in a thread; ``done(result, error)`` later on the loop."""
        if self._stopped:
            raise RuntimeError("the crypto pool is shut down")
        if self._stats is not None:
            self._stats.crypto_submitted += 1
        self._jobs.put((job, done))

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self._stopped:
            raise RuntimeError("the crypto pool is shut down")
        future: Future = Future()
        self._jobs.put((functools.partial(fn, *args, **kwargs), future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._stopped:
            self._stopped = True
            for _ in self._threads:
                self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    # -- the threads ------------------------------------------------------------------------
    def _work(self) -> None:
        lower_thread_priority(self._nice)
        jobs = self._jobs
        stats = self._stats
        clock = time.perf_counter
        while True:
            item = jobs.get()
            if item is None:
                return
            job, done = item
            if type(done) is Future:
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(job())
                    except BaseException as err:  # noqa: BLE001 - the future carries it
                        done.set_exception(err)
                continue
            if stats is not None:
                stats.job_started()
            start = clock()
            try:
                result, error = job(), None
            except BaseException as err:  # noqa: BLE001 - handed to done() on the loop
                result, error = None, err
            if stats is not None:
                stats.job_finished(clock() - start)
            self._done.append((done, result, error))
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    self._loop.call_soon_threadsafe(self._drain)
                except (AttributeError, RuntimeError):  # no loop, or it is closed: nobody waits
                    self._wake_pending = False

    def _drain(self) -> None:
        # The flag drops before the deque is read: a result appended after this line
        # either is read below or wakes the loop again.
        self._wake_pending = False
        finished = self._done
        while finished:
            done, result, error = finished.popleft()
            try:
                done(result, error)
            except Exception:  # noqa: BLE001 - one connection's bug must not stop the rest
                log.exception("internal error handing back a crypto job")
