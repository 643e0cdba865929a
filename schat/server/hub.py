"""The connection layer's side of the chat: outboxes, encoding once, wire requests in.

The chat domain (:mod:`schat.chat`) decides who receives what; the hub is its
:class:`~schat.chat.fanout.Sink`. Each :class:`Session` (a domain member with
an outbox) collects already-encoded messages; the hub remembers which sessions
became dirty, and the I/O layer (``schat.server.app``) takes them once per
event-loop iteration and sends each outbox as one encrypted record.

A room event is encoded once: the same ``bytes`` object goes into every
recipient's outbox (a second encoding only for clients that know no rooms,
and only when their shape differs). This loop is the server's hot path.

With ``durable_acks``, an acknowledgement waits until every store write made
before it is durable (:meth:`ChatStore.ticket`), so a member never sees a
message confirmed that a crash could still lose.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Deque, List, Optional, Tuple

from schat.chat import Chat, ChatLimits, ChatStore, Member, MemoryChatStore
from schat.chat import events as ev
from schat.chat.fanout import Sink
from schat.chat.store import Profile
from schat.protocol import messages
from schat.server import wire
from schat.server.limits import OUTBOUND_CAP

Clock = Callable[[], float]
_UNSET = object()

# Login features this server understands: rooms (docs/PROTOCOL.md §5a) and who is away
# as a field of ``users`` (§5a, "Away").
ROOMS = "rooms"
AWAY = "away"
# Seconds between checks for durable writes while acknowledgements wait and the
# server is otherwise quiet (when busy, every flush checks).
ACK_POLL = 0.002


class Session(Member):
    """One logged-in connection: a domain member with the I/O layer's outbox."""

    __slots__ = ("outbox", "queued", "dirty", "closing", "overflowed", "link", "reads_away")

    def __init__(self, name: str, aware: bool = True, peer: str = "", since: int = 0,
                 features=()):
        super().__init__(name, aware=aware, since=since, peer=peer)
        # The client reads who is away in ``users`` (login feature "away").
        self.reads_away = AWAY in features
        # Opaque handle of the I/O layer (its connection object); the hub never uses it.
        self.link = None
        self.outbox: List[bytes] = []
        self.queued = 0
        self.dirty = False
        # Reason to close once the outbox is flushed (None: stay connected).
        self.closing: Optional[str] = None
        self.overflowed = False


class Hub(Sink):
    """Sessions, their outboxes, and the chat domain of one server process."""

    def __init__(self, server_name: str = "schat", motd: str = "",
                 outbound_cap: int = OUTBOUND_CAP, clock: Clock = time.time,
                 wake: Optional[Callable[[], None]] = None, store: Optional[ChatStore] = None,
                 limits: Optional[ChatLimits] = None,
                 later: Optional[Callable[[float, Callable], None]] = None,
                 durable_acks: bool = False):
        self.outbound_cap = outbound_cap
        self._clock = clock
        self._wake = wake
        self._dirty: List[Session] = []
        self.deliveries = 0
        self.store = store if store is not None else MemoryChatStore()
        limits = limits or ChatLimits()
        limits.backlog_bytes = min(limits.backlog_bytes, outbound_cap // 4)
        self.chat = Chat(self.store, self, limits, clock, server_name, motd)
        # Acknowledgements waiting for the store: (ticket, session, encoded ack). They
        # are released at the next flush after their writes are durable (a flush runs
        # at every busy loop turn), or by a poll every ACK_POLL seconds when all is quiet.
        self._held: Deque[Tuple[int, Session, bytes]] = deque()
        self._committed = 0
        self._later = later
        self._polling = False
        self.durable_acks = durable_acks
        # name -> a stand-in session on another node of a cluster (schat.cluster.node).
        self.elsewhere: Optional[Callable[[str], Optional[Session]]] = None

    # -- who is online (also used by the DM relay) ----------------------------------
    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def member(self, name: str) -> Optional[Session]:
        """The session logged in as ``name`` (any case), or None. In a cluster, for an
        account online on another node, a stand-in whose output goes there."""
        found = self.chat.members.get(name.lower())
        if found is None and self.elsewhere is not None:
            return self.elsewhere(name)
        return found

    def is_online(self, name: str) -> bool:
        return name.lower() in self.chat.members

    def names(self) -> List[str]:
        return sorted((m.name for m in self.chat.members.values()), key=str.lower)

    def __len__(self) -> int:
        return len(self.chat.members)

    # -- sessions ---------------------------------------------------------------------
    def login(self, session: Session, profile: Optional[Profile] = None) -> Optional[Session]:
        """Welcome ``session`` into #lobby; returns the session it took over (told and
        closed). Call :meth:`rejoin` after whatever must follow the welcome."""
        return self.chat.enter(session, profile)

    def rejoin(self, session: Session) -> None:
        """Back into the session's other rooms, with what it missed there."""
        self.chat.rejoin(session)

    def join(self, name: str, aware: bool = False, profile: Optional[Profile] = None,
             features=()) -> Session:
        """Log ``name`` in and rejoin its rooms at once (tests and embedding)."""
        session = Session(name, aware=aware, features=features)
        self.login(session, profile or self.store.profile(name))
        self.rejoin(session)
        return session

    def leave(self, session: Session, reason: str) -> None:
        """The connection ended (idempotent)."""
        self.chat.leave(session, reason)
        session.outbox.clear()
        session.queued = 0

    def shutdown(self, reason: str) -> None:
        """Say goodbye to every member; the I/O layer closes them after the flush."""
        self.chat.shutdown(reason)

    # -- wire requests in --------------------------------------------------------------
    def handle(self, session: Session, msg) -> None:
        """Act on one message from a logged-in session."""
        kind = type(msg)
        if kind is messages.Say:
            self.chat.say(session, msg.text, msg.action, msg.cid, msg.room)
        elif kind is messages.Command:
            self.chat.command(session, msg.line, msg.cid, msg.room)
        elif kind is messages.Who:
            self.chat.command(session, "/who" + (" " + msg.room if msg.room else ""), None)
        elif kind is messages.Msg:
            self.chat.command(session, "/msg", msg.cid)
        elif kind is messages.Ping:
            self.queue(session, messages.Pong(n=msg.n))
        elif kind is messages.Pong:
            pass  # any traffic already counts as liveness for the I/O layer
        elif kind is messages.Bye:
            session.closing = "left"
            self._mark(session)
        else:
            self.queue(session, messages.Error(
                code="invalid", text=f"{kind.__name__} is not allowed after login",
                cid=getattr(msg, "cid", None)))

    # -- output: the Sink ----------------------------------------------------------------
    def deliver(self, event, members, exclude=None) -> None:
        data = wire.event_bytes(event, True)
        if data is None:
            return
        if wire.legacy_differs(event):
            self._deliver_mixed(event, data, members, exclude)
            return
        # The hot path: one bytes object shared by every outbox.
        size = len(data)
        cap = self.outbound_cap
        dirty = self._dirty
        was_clean = not dirty
        count = 0
        for member in members:
            if member is exclude or member.overflowed:
                continue
            member.outbox.append(data)
            member.queued += size
            count += 1
            if member.queued > cap:
                self._overflow(member)
            if not member.dirty:
                member.dirty = True
                dirty.append(member)
        self.deliveries += count
        if was_clean and dirty and self._wake is not None:
            self._wake()

    def _deliver_mixed(self, event, data: bytes, members, exclude) -> None:
        # A #lobby event that clients without rooms get in another form (a topic, a
        # moderation action): encoded once more, for them.
        legacy = _UNSET
        for member in members:
            if member is exclude:
                continue
            if member.aware:
                self._push(member, data)
                continue
            if legacy is _UNSET:
                legacy = wire.event_bytes(event, False)
            if legacy is not None:
                self._push(member, legacy)
        self.deliveries += 1

    def reply(self, member: Session, event, cid: Optional[str] = None) -> None:
        items = wire.reply_bytes(event, member.aware, self.now_ms(), member.reads_away, cid)
        if type(event) is ev.Done and self.durable_acks:
            ticket = self.store.ticket()
            if self._held:  # keep acknowledgements in order
                ticket = max(ticket, self._held[-1][0])
            if ticket > self._committed:
                for data in items:
                    self._held.append((ticket, member, data))
                if not self._polling and self._later is not None:
                    self._polling = True
                    self._later(ACK_POLL, self._poll)
                return
        for data in items:
            self._push(member, data)

    def close(self, member: Session, code: str, reason: str) -> None:
        if code:
            self.queue(member, messages.Error(code=code, text=wire.fit(reason, 1024)))
        self.queue(member, messages.Bye(reason=wire.fit(reason, 256)))
        member.closing = reason or "closed"
        self._mark(member)

    def release_acks(self) -> None:
        """Release the acknowledgements whose writes the store made durable (called by
        the I/O layer before each flush, so they ride along with what it sends anyway)."""
        held = self._held
        if not held:
            return
        ticket = self.store.durable()
        if ticket <= self._committed:
            return
        self._committed = ticket
        while held and held[0][0] <= ticket:
            _, member, data = held.popleft()
            self._push(member, data)

    def _poll(self) -> None:
        self._polling = False
        self.release_acks()
        if self._held and self._later is not None:
            self._polling = True
            self._later(ACK_POLL, self._poll)

    # -- output: plumbing -------------------------------------------------------------------
    def queue(self, member: Session, msg) -> None:
        """Queue one wire message for one session."""
        self._push(member, messages.encode(msg))

    def queue_encoded(self, member: Session, data: bytes) -> None:
        """Queue one already-encoded message (e.g. a reply encoded once per server)."""
        self._push(member, data)

    def take_dirty(self) -> List[Session]:
        """Sessions with something to send (or to close) since the last call."""
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for member in dirty:
                member.dirty = False
        return dirty

    def _push(self, member: Session, data: bytes) -> None:
        if member.overflowed:
            return
        member.outbox.append(data)
        member.queued += len(data)
        if member.queued > self.outbound_cap:
            self._overflow(member)
        self._mark(member)

    def _mark(self, member: Session) -> None:
        if not member.dirty:
            member.dirty = True
            self._dirty.append(member)
            if len(self._dirty) == 1 and self._wake is not None:
                self._wake()

    def _overflow(self, member: Session) -> None:
        # A slow consumer is dropped alone; its backlog is freed at once.
        member.overflowed = True
        member.closing = "too slow: output buffer full"
        member.outbox.clear()
        member.queued = 0
