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
                 name: str = "schat-crypto", initializer: Optional[Callable[[], None]] = None):
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self._done: collections.deque = collections.deque()
        self._loop = None
        self._wake_pending = False
        self._stopped = False
        self._nice = nice
        self._stats = stats
        self._name = name
        # Run first in each new thread (the server opens the thread's store connection,
        # so that a thread's resources exist from its start, not from its first job).
        self._initializer = initializer
        self._max = workers
        # Threads start on demand, and a job goes to an idle one first (as in
        # ThreadPoolExecutor): a server that logs in one member at a time uses one
        # thread, one store connection and warm caches.
        self._idle = threading.Semaphore(0)
        self._threads: List[threading.Thread] = []

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
        self._grow()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self._stopped:
            raise RuntimeError("the crypto pool is shut down")
        future: Future = Future()
        self._jobs.put((functools.partial(fn, *args, **kwargs), future))
        self._grow()
        return future

    def _grow(self) -> None:
        if self._idle.acquire(blocking=False) or len(self._threads) >= self._max:
            return
        thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)

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
        if self._initializer is not None:
            try:
                self._initializer()
            except Exception:  # noqa: BLE001 - the first job meets the same trouble and says so
                log.debug("crypto thread initializer failed", exc_info=True)
        jobs = self._jobs
        stats = self._stats
        clock = time.perf_counter
        idle = self._idle
        while True:
            item = jobs.get()
            if item is None:
                return
            job, done = item
            if type(done) is Future:
                if not done.set_running_or_notify_cancel():
                    idle.release()
                    continue
                try:
                    result = job()
                except BaseException as err:  # noqa: BLE001 - the future carries it
                    idle.release()
                    done.set_exception(err)
                    continue
                idle.release()
                done.set_result(result)
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
            # Idle before the result is seen: a job the loop submits in answer to it
            # goes to this thread, not to a new one.
            idle.release()
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
