"""The asyncio server: listener, thread pool, the once-per-iteration flush, shutdown.

One event loop serves every client. The hub queues encoded messages into
member outboxes; the first queued message of an iteration schedules
:meth:`Server._flush` with ``call_soon``, which runs after every callback of
that iteration and sends each dirty member's outbox as one record: one AEAD
call and one ``transport.write`` per connection per flush.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import functools
import itertools
import logging
import sys
import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, Optional, Set, Tuple

from schat.crypto.keys import RsaKey, fingerprint
from schat.protocol import messages
from schat.protocol.connection import ServerConnection
from schat.server.dm_relay import DmRelay, SignatureLane
from schat.server.guard import Admission, AddressRates, CryptoShare
from schat.server.hub import Hub
from schat.server.limits import (DM_CHECK_BACKLOG, DM_CHECK_BURST, PENALTY_ENTRIES,
                                 ServerSettings, raise_nofile_limit)
from schat.server.control import ControlServer
from schat.server.link import CHAT, CHECKED, ClientLink
from schat.server.login import LoginGate
from schat.server.mailbox import Mailbox
from schat.server.metrics import Stats
from schat.server.pool import CryptoPool
from schat.store.chat import SqliteChatStore

log = logging.getLogger("schat.server")

SHUTDOWN_REASON = "server shutting down"
# How long shutdown waits for goodbyes to drain before aborting connections.
SHUTDOWN_GRACE = 2.0
# Refused connections and accept failures are logged at most this often (a
# flood must not fill the disk with log lines).
REFUSAL_LOG_INTERVAL = 5.0


class Server:
    """A schat server bound to one address; drive it with start()/stop() on one loop."""

    def __init__(self, settings: ServerSettings, host_key: RsaKey, store, chat_store=None,
                 control_socket=None, cluster=None):
        self.settings = settings
        # The operator's control socket (`schat admin`); None: none is opened.
        self.control_socket = control_socket
        self.host_key = host_key
        self.store = store
        self.stats = Stats()
        self.fingerprint = fingerprint(host_key)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        # A chat store made here is closed here, also when start() fails (its writer is a
        # thread on the caller's account store, which may serve another server).
        self._owns_chat_store = chat_store is None
        self.chat_store = chat_store if chat_store is not None else SqliteChatStore(
            store, settings.history_limit, settings.history_days,
            writer_key=f"chat:{cluster.node}" if cluster is not None else None)
        self.hub = Hub(settings.server_name, settings.motd, settings.outbound_cap,
                       wake=self._wake, store=self.chat_store, limits=settings.chat_limits(),
                       later=self._later, durable_acks=settings.durable_acks)
        self.control: Optional[ControlServer] = None
        # One check at a time per address, within its share of the crypto threads.
        lane = SignatureLane(self.run_check,
                             CryptoShare(settings.dm_check_share, DM_CHECK_BURST, 1,
                                         PENALTY_ENTRIES),
                             settings.crypto_workers, settings.max_pending_logins,
                             DM_CHECK_BACKLOG, self._now, self._later, self._room)
        self.dm = DmRelay(self.hub, store, Mailbox(store, settings.mailbox_limit), lane,
                          origin=lambda member: member.link.address if member.link else "?",
                          hold=self._hold, new_account_age=settings.new_account_age)
        # Address -> the connections not read while its signature checks are queued up.
        self._held: Dict[str, Deque[ClientLink]] = {}
        self.pool = CryptoPool(settings.crypto_workers, settings.crypto_nice, self.stats,
                               initializer=self._open_store_here)
        # Where a login's work runs (docs/INTERNALS.md, "The login path"): the key
        # exchange's RSA-OAEP in a crypto thread (OpenSSL lets go of the interpreter
        # lock meanwhile, so the chat loop runs on, even on one CPU: the threads run at
        # lower priority); a key login's check on the loop when the account store is a
        # local SQLite file (a signature check and three indexed reads cost less than
        # the hand-over to a thread and back), else in the threads (PostgreSQL: network
        # round trips); password hashing always in the threads.
        self.inline_key_login = store.path is not None
        self.links: Set[ClientLink] = set()
        self.address: Optional[Tuple[str, int]] = None
        self._listener: Optional[asyncio.AbstractServer] = None
        self._flush_scheduled = False
        self._acks_wake_pending = False
        # The handshake lane: pre-login work (and the verdicts of members' signature
        # checks), run within a time budget per loop turn.
        self._lane: Deque[Tuple[Callable, tuple]] = deque()
        self._lane_scheduled = False
        self._pending_crypto = 0
        self._ping_handle: Optional[asyncio.TimerHandle] = None
        self._ping_numbers = itertools.count(1)
        self.admission = Admission(settings.max_unauthenticated,
                                   settings.max_unauthenticated_per_ip)
        self.gate = LoginGate(settings)
        self.address_rates = AddressRates(settings.address_rate_limit,
                                          settings.address_rate_burst, PENALTY_ENTRIES)
        self._set_throttled_reply()
        self.refused = 0
        self.accept_errors = 0
        self._last_refusal_log = float("-inf")
        self._last_accept_log = float("-inf")
        # A node of a cluster (schat.cluster.node): the bus, presence, catching up.
        self.cluster = None
        if cluster is not None:
            from schat.cluster.node import ClusterNode

            self.cluster = ClusterNode(self, cluster)

    # -- life cycle ----------------------------------------------------------
    async def start(self) -> Tuple[str, int]:
        """Bind and start accepting; return the real (host, port). When it fails, the
        chat store the server made is closed (its writer thread stops)."""
        try:
            return await self._start()
        except BaseException:
            if self._owns_chat_store:
                await asyncio.get_running_loop().run_in_executor(None, self.chat_store.close)
            raise

    async def _start(self) -> Tuple[str, int]:
        self.loop = asyncio.get_running_loop()
        self.pool.bind(self.loop)
        writer = getattr(self.chat_store, "writer", None)
        if writer is not None:
            # The chat's store writes come from this loop: its timer waits for a group,
            # and each commit wakes the loop only while acknowledgements wait for one.
            writer.use_timer(self._later)
            writer.on_commit = self._store_committed
            self.hub.commit_notices = True
        raise_nofile_limit()
        # Process-wide: this process is a server, and chat latency comes first.
        sys.setswitchinterval(self.settings.gil_switch_interval)
        # Everything alive now (modules, settings, keys) lives as long as the
        # process: exempt it from the cyclic collector, whose full passes
        # otherwise stall the loop for tens of milliseconds on a large heap.
        gc.freeze()
        self._default_handler = self.loop.get_exception_handler()
        self.loop.set_exception_handler(self._loop_exception)
        # Load every lazily imported crypto module now: under a file-descriptor
        # shortage later, a first import would fail in the middle of a handshake.
        ServerConnection(self.host_key)
        if self.cluster is not None:
            await self.cluster.start()  # members arrive once the node knows the others
        try:
            self._listener = await self.loop.create_server(
                lambda: ClientLink(self), self.settings.host, self.settings.port,
                reuse_port=self.cluster.settings.reuse_port if self.cluster else None)
        except BaseException:
            if self.cluster is not None:
                await self.cluster.stop()
            raise
        sockname = self._listener.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        if self.control_socket:
            try:
                self.control = ControlServer(self, self.control_socket)
                await self.control.start()
            except BaseException:
                self._listener.close()
                raise
        self._schedule_ping_check()
        log.info("listening on %s:%d", *self.address)
        return self.address

    async def stop(self, reason: str = SHUTDOWN_REASON) -> None:
        """Tell every member goodbye, close all connections and the store."""
        if self._listener is None:
            return
        listener, self._listener = self._listener, None
        listener.close()
        if self.control is not None:
            self.control.close()
        if self._ping_handle is not None:
            self._ping_handle.cancel()
        self.hub.shutdown(reason)
        self._flush()
        for link in list(self.links):
            if link.state != CHAT:
                link._refuse("invalid", reason)
        deadline = self.loop.time() + SHUTDOWN_GRACE
        while self.links and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for link in list(self.links):
            link._drop(reason)
        await listener.wait_closed()
        self.dm.lane.close()
        if self.cluster is not None:
            await self.cluster.stop()
        self.pool.shutdown(wait=True)
        # The chat's queued writes (history, read markers) are committed before the file closes.
        await self.loop.run_in_executor(None, self.chat_store.close)
        self.store.close()
        log.info("server stopped")

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly."""
        await stop.wait()
        await self.stop()

    # -- settings that change while running (SIGHUP) ----------------------------
    #: The fields of ServerSettings that :meth:`reconfigure` applies without a restart.
    RELOADABLE = ("motd", "allow_signup", "rate_limit", "rate_burst", "address_rate_limit",
                  "address_rate_burst", "max_unauthenticated", "max_unauthenticated_per_ip",
                  "penalty_base", "penalty_max", "signups_per_hour")

    def reconfigure(self, **changes) -> None:
        """Apply new values of :data:`RELOADABLE` settings (on the loop's thread).

        New logins and sign-ups read the settings as they come; the MOTD goes to
        the chat domain (members online are shown it), members and addresses get
        a message budget at the new rate, and the abuse limits apply from the next
        connection, login or sign-up (waits already imposed run their course).
        """
        unknown = set(changes) - set(self.RELOADABLE)
        if unknown:
            raise ValueError(f"cannot change without a restart: {', '.join(sorted(unknown))}")
        self.settings = dataclasses.replace(self.settings, **changes)
        self.gate.settings = self.settings
        if "motd" in changes:
            # As `schat admin motd`: members online are shown the new one.
            self.hub.chat.set_motd(self.settings.motd)
        if "rate_limit" in changes or "rate_burst" in changes:
            self._set_throttled_reply()
            # Members online get a new, full budget at the new rate with their next message.
            for link in self.links:
                link.bucket = None
        s = self.settings
        if "address_rate_limit" in changes or "address_rate_burst" in changes:
            self.address_rates.configure(s.address_rate_limit, s.address_rate_burst)
        self.admission.limit = s.max_unauthenticated
        self.admission.per_address = s.max_unauthenticated_per_ip
        self.gate.penalties.configure(s.penalty_base, s.penalty_max)
        self.gate.signups.per_window = s.signups_per_hour

    def _set_throttled_reply(self) -> None:
        s = self.settings
        self.throttled_error = messages.Error(
            code="throttled", text=f"slow down: at most {s.rate_limit:g} messages per "
                                   f"second (bursts of {s.rate_burst}); message not sent")
        self.throttled_reply = messages.encode(self.throttled_error)

    # -- admission -----------------------------------------------------------------
    def note_refusal(self, address: str, reason: str) -> None:
        """Count a connection refused by the unauthenticated caps; log now and then."""
        self.refused += 1
        self.stats.refused_connection(reason)
        now = self.loop.time()
        if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL:
            self._last_refusal_log = now
            log.warning("refused a connection from %s: %s (%d refused so far)",
                        address, reason, self.refused)

    def _loop_exception(self, loop, context) -> None:
        # asyncio pauses accepting for a moment on EMFILE/ENFILE/ENOBUFS and
        # retries; say so in one line instead of a traceback per failed accept.
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in context.get("message", ""):
            self.accept_errors += 1
            now = loop.time()
            if now - self._last_accept_log >= REFUSAL_LOG_INTERVAL:
                self._last_accept_log = now
                log.warning("cannot accept connections for now: %s (%d times); retrying",
                            exc.strerror or exc, self.accept_errors)
            return
        if self._default_handler is not None:
            self._default_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    # -- the handshake lane ----------------------------------------------------
    def defer(self, fn: Callable, *args) -> None:
        """Queue pre-login work (a connect, a key exchange, a login reply).

        Chat is read and relayed as soon as it arrives; this work runs after it,
        at most ``handshake_budget`` seconds per loop turn, so a burst of
        newcomers (or a login flood) delays newcomers, never the room.
        """
        self._lane.append((fn, args))
        if not self._lane_scheduled:
            self._lane_scheduled = True
            self.loop.call_soon(self._run_lane)

    def _run_lane(self) -> None:
        lane = self._lane
        clock = time.perf_counter
        deadline = clock() + self.settings.handshake_budget
        while lane:
            fn, args = lane.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one connection's bug must not stop the lane
                log.exception("internal error in handshake work")
            if clock() >= deadline:
                break
        if lane:
            # call_soon from a callback runs on the next turn, after that turn's I/O.
            self.loop.call_soon(self._run_lane)
        else:
            self._lane_scheduled = False

    # -- crypto pool accounting ------------------------------------------------
    def _now(self) -> float:
        return self.loop.time()

    def _hold(self, member) -> None:
        """Stop reading ``member``'s connection: its address's signature checks are
        queued up (SignatureLane); :meth:`_room` lets it go on."""
        link = member.link
        if link is None or link.state != CHAT:
            return
        held = self._held.setdefault(link.address, deque())
        if link not in held:
            link.hold()
            held.append(link)

    def _room(self, address: str, count: int) -> None:
        held = self._held.get(address)
        while held and count > 0:
            # In the lane, after chat: a released connection decodes what it had read.
            self.defer(held.popleft().release)
            count -= 1
        if held is not None and not held:
            del self._held[address]

    def run_check(self, job: Callable, done: Callable) -> None:
        """Run the signature check ``job`` in the crypto pool for a logged-in member,
        counted there (``Stats.signature_checks``); ``done(result, error)`` runs in the
        handshake lane, after chat. Not counted against the login queue: the caller
        bounds these jobs itself (the DM relay's SignatureLane)."""
        self.pool.run(self.stats.signature_check(job),
                      lambda result, error: self.defer(done, result, error))

    def crypto_available(self) -> bool:
        """True while the pool's bounded queue has room for another job."""
        return self._pending_crypto < self.settings.crypto_workers + self.settings.max_pending_logins

    def reserve_crypto(self) -> bool:
        """Take a slot for a pool job; False when too many already wait (answer busy)."""
        if not self.crypto_available():
            return False
        self._pending_crypto += 1
        return True

    def release_crypto(self) -> None:
        self._pending_crypto -= 1

    def _open_store_here(self) -> None:
        """A crypto thread's first act: its store connection (SQLite has one per thread)."""
        with self.store.reading():
            pass

    def record_login(self, name: str) -> None:
        """Stamp the last login: committed with the chat's next group of writes (the
        store's writer thread), so a login costs no transaction of its own. A chat store
        without a writer (given to the server): a job in the crypto threads."""
        record = getattr(self.chat_store, "record_login", None)
        if record is not None:
            record(name)
        else:
            self.pool.run(functools.partial(self.store.record_login, name), self._login_recorded)

    @staticmethod
    def _login_recorded(_result, error) -> None:
        if error is not None:  # a failure only costs the stamp
            log.warning("could not record a login: %s", error)

    def _store_committed(self, seq: int) -> None:
        # In the store's writer thread: wake the loop (once per commit, and only when
        # acknowledgements wait) to release what is now durable.
        if self.hub.acks_waiting and not self._acks_wake_pending:
            self._acks_wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._release_acks)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _release_acks(self) -> None:
        self._acks_wake_pending = False
        self.hub.release_acks()

    # -- output ------------------------------------------------------------------
    def _later(self, delay: float, fn: Callable) -> Optional[asyncio.TimerHandle]:
        if self.loop is not None and not self.loop.is_closed():
            return self.loop.call_later(delay, fn)
        return None

    def _wake(self) -> None:
        if not self._flush_scheduled and self.loop is not None:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        # Acks whose writes are durable ride along (released before the flag drops,
        # so they schedule no second flush).
        self.hub.release_acks()
        self._flush_scheduled = False
        dirty = self.hub.take_dirty()
        if not dirty:
            return
        cap = self.settings.outbound_cap
        sent = 0
        for member in dirty:
            link = member.link
            if link is not None:
                try:
                    sent += link.flush(member, cap)
                except Exception:  # noqa: BLE001 - one connection's bug must not stop the rest
                    log.exception("%s: internal error while sending; connection closed",
                                  getattr(link, "peer", member.name))
                    drop = getattr(link, "_drop", None)
                    if drop is not None:
                        drop("internal error")
        self.stats.bytes_sent += sent

    # -- liveness ------------------------------------------------------------------
    def _schedule_ping_check(self) -> None:
        s = self.settings
        tick = max(0.05, min(s.ping_interval, s.ping_timeout) / 2)
        self._ping_handle = self.loop.call_later(tick, self._ping_check)

    def _ping_check(self) -> None:
        now = self.loop.time()
        interval = self.settings.ping_interval
        limit = interval + self.settings.ping_timeout
        for link in list(self.links):
            if link.state not in (CHAT, CHECKED):
                continue
            # A member with no record either way since the last tick gives back its
            # cipher key objects (~2.6 KiB each with OpenSSL; made again when needed),
            # and a full message budget.
            link.trim(now)
            idle = now - link.last_rx
            if idle >= limit:
                link.reason = "ping timeout"
                link._close_transport(bye="ping timeout")
            elif idle >= interval and not link.pinged:
                link.ping(next(self._ping_numbers))
        self._schedule_ping_check()


class ServerThread:
    """A server on its own event loop in a background thread (embedding, tests, benchmarks)."""

    def __init__(self, settings: ServerSettings, host_key: RsaKey, store, chat_store=None,
                 control_socket=None, cluster=None):
        self.server = Server(settings, host_key, store, chat_store, control_socket, cluster)
        self._thread = threading.Thread(target=self._run, name="schat-server", daemon=True)
        self._ready = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._error: Optional[BaseException] = None

    @property
    def address(self) -> Tuple[str, int]:
        return self.server.address

    def start(self, timeout: float = 10.0) -> Tuple[str, int]:
        """Start the thread and wait until the server listens; return its address."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("server did not start in time")
        if self._error is not None:
            raise self._error
        return self.server.address

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down cleanly and join the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("server did not stop in time")

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop and wait for its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _run(self) -> None:
        async def main():
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as err:  # noqa: BLE001 - reported by start()
                self._error = err
                self._ready.set()
                return
            self._ready.set()
            await self.server.serve_until(self._stop)
        asyncio.run(main())
