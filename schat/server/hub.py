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

Presence is coalesced: the joins and leaves of sessions in a room are held and
sent together, at the latest after a delay that grows with the room (so that a
room's presence costs each member at most one record per delay, however many
come and go: a login storm into a room of thousands costs records per second,
not records per login), and at once before anything else is delivered to the
room (so every member still sees a join before the newcomer's first line). A
member that entered the room while changes were held gets only those after its
entry (its own list already counts the others); a session that joins and leaves
within one delay is shown to nobody who could not have seen it.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple

from schat.chat import Chat, ChatLimits, ChatStore, Member, MemoryChatStore
from schat.chat import events as ev
from schat.chat.fanout import Sink
from schat.chat.names import LOBBY
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
# Seconds between checks for durable writes while acknowledgements wait, the server
# is otherwise quiet (when busy, every flush checks) and the store sends no commit
# notices (Hub.commit_notices: the store's writer thread does).
ACK_POLL = 0.002
# Presence records a room may cost per second at most: held joins and leaves go
# out after len(room) / PRESENCE_RATE seconds, within [PRESENCE_MIN, PRESENCE_MAX]
# (a room of up to 800: 0.2 s; of 2,000: 0.5 s). The floor keeps presence alone below
# the record rate at which a member's channel keeps a cipher key object (5 records a
# second against schat.protocol.channel.LAZY_SEAL_RECORDS in SEAL_WINDOW: 8 in 1 s).
PRESENCE_RATE = 4000.0
PRESENCE_MIN = 0.2
PRESENCE_MAX = 1.0
# Bytes of held presence per outbox item (an item must fit one record).
PRESENCE_CHUNK = 32 * 1024


class _Held:
    """A room's presence changes not sent yet."""

    __slots__ = ("items", "joined", "entered")

    def __init__(self):
        self.items: List[Optional[bytes]] = []     # encoded join/leave; None: cancelled
        self.joined: Dict[str, int] = {}            # user key -> index of its held join
        self.entered: Dict["Session", int] = {}     # entered meanwhile -> first item it needs


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
        # at every busy loop turn), and when all is quiet by the store's commit notice
        # (commit_notices) or else by a poll every ACK_POLL seconds.
        self._held: Deque[Tuple[int, Session, bytes]] = deque()
        self._committed = 0
        self._later = later
        self._polling = False
        self.durable_acks = durable_acks
        # True when the store's writer tells the I/O layer of each commit (the server
        # then calls release_acks), so that held acks need no polling.
        self.commit_notices = False
        # Room -> its held presence changes (only with a timer: ``later``).
        self._held_presence: Dict[str, _Held] = {}
        # name -> a stand-in session on another node of a cluster (schat.cluster.node).
        self.elsewhere: Optional[Callable[[str], Optional[Session]]] = None
        # Delivers what a cluster node holds back for the end of the loop turn (its lines
        # of the turn, as runs): called by take_dirty, before the flush.
        self.held_back: Optional[Callable[[], None]] = None

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
        kind = type(event)
        if (kind is ev.Joined or kind is ev.Parted) and self._hold(event):
            return
        if self._held_presence:
            room = getattr(event, "room", None)
            if room is not None and room in self._held_presence:
                self._release(room)  # what came and went first, then this
        data = wire.event_bytes(event, True)
        if data is None:
            return
        if wire.legacy_differs(event):
            self._deliver_mixed(event, data, members, exclude)
            return
        # The hot path: one bytes object shared by every outbox.
        self.deliveries += self._fan_out((data,), len(data), members, exclude)

    def deliver_run(self, events, members, exclude=None) -> None:
        """Chat lines of one room, in order, to the same members (lines from another
        node): encoded one by one, then joined into as few outbox items as fit a record,
        so each member costs one step per run instead of one per line."""
        if len(events) == 1 or any(type(e) is not ev.Said for e in events):
            super().deliver_run(events, members, exclude)
            return
        if self._held_presence:
            room = events[0].room
            if room in self._held_presence:
                self._release(room)  # what came and went first, then these
        encoded = [data for data in (wire.event_bytes(e, True) for e in events)
                   if data is not None]
        if not encoded:
            return
        size = sum(len(data) for data in encoded)
        count = self._fan_out(_joined(encoded), size, members, exclude)
        self.deliveries += count * len(encoded)

    def _fan_out(self, items, size: int, members, exclude) -> int:
        """Queue ``items`` (``size`` bytes in all, shared by every outbox) for each of
        ``members`` but ``exclude`` and the overflowed; how many got them."""
        cap = self.outbound_cap
        dirty = self._dirty
        was_clean = not dirty
        count = 0
        for member in members:
            if member is exclude or member.overflowed:
                continue
            member.outbox.extend(items)
            member.queued += size
            count += 1
            if member.queued > cap:
                self._overflow(member)
            if not member.dirty:
                member.dirty = True
                dirty.append(member)
        if was_clean and dirty and self._wake is not None:
            self._wake()
        return count

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
        if self._held_presence:
            kind = type(event)
            # The room's member list as of now: of the held changes, this member needs
            # only those still to come.
            if kind is ev.Welcome:
                self._entered(LOBBY, member)
            elif kind is ev.RoomState:
                self._entered(event.room, member)
        items = wire.reply_bytes(event, member.aware, self.now_ms(), member.reads_away, cid)
        if type(event) is ev.Done and self.durable_acks:
            ticket = self.store.ticket()
            if self._held:  # keep acknowledgements in order
                ticket = max(ticket, self._held[-1][0])
            if ticket > self._committed:
                for data in items:
                    self._held.append((ticket, member, data))
                if self.commit_notices:
                    # The commit may have come between ticket() and the append, its
                    # notice then finding nothing held: look once more (the writer sets
                    # what is durable before it looks at what is held).
                    if self.store.durable() >= ticket:
                        self.release_acks()
                elif not self._polling and self._later is not None:
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

    @property
    def acks_waiting(self) -> bool:
        """True while acknowledgements wait for the store (read from any thread)."""
        return bool(self._held)

    def release_acks(self) -> None:
        """Release the acknowledgements whose writes the store made durable (called by
        the I/O layer before each flush, so they ride along with what it sends anyway,
        and when the store reports a commit)."""
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

    # -- presence, coalesced ----------------------------------------------------------------
    def _hold(self, event) -> bool:
        """Hold a join or a leave of ``event.room`` (True), or leave it to be sent now."""
        if self._later is None:
            return False
        name = event.room
        room = self.chat.rooms.get(name)
        if room is None:
            return False
        key = event.user.lower()
        kind = type(event)
        if kind is ev.Parted and key in self.chat.members:
            # The member is still online (/part, moved elsewhere): it gets the event
            # itself, now, after what was held.
            return False
        held = self._held_presence.get(name)
        if held is None:
            held = self._held_presence[name] = _Held()
            delay = min(PRESENCE_MAX, max(PRESENCE_MIN, len(room.members) / PRESENCE_RATE))
            self._later(delay, functools.partial(self._presence_due, name, held))
        if kind is ev.Parted:
            index = held.joined.pop(key, None)
            if index is not None and not any(start > index for start in held.entered.values()):
                # Joined and left within one delay, and nobody entered meanwhile (who
                # would have seen it in the room's list): neither is news to anyone.
                held.items[index] = None
                return True
        data = wire.event_bytes(event, True)
        if data is not None:
            if kind is ev.Joined:
                held.joined[key] = len(held.items)
            held.items.append(data)
        return True

    def _entered(self, room: str, member: Session) -> None:
        held = self._held_presence.get(room)
        if held is not None:
            held.entered[member] = len(held.items)

    def _presence_due(self, room: str, held: _Held) -> None:
        if self._held_presence.get(room) is held:
            self._release(room)

    def _release(self, name: str) -> None:
        """Send a room's held presence changes to its members (one shared item each)."""
        held = self._held_presence.pop(name)
        room = self.chat.rooms.get(name)
        items = held.items
        if room is None or not any(items):
            return
        shared = _joined(items)
        everything = len(items) - items.count(None)
        entered = held.entered
        count = 0
        for member in room.members.values():
            if member.overflowed:
                continue
            start = entered.get(member, 0) if entered else 0
            if start:
                rest = items[start:]
                parts = _joined(rest)
                count += len(rest) - rest.count(None)
            else:
                parts = shared
                count += everything
            for data in parts:
                self._push(member, data)
        self.deliveries += count

    # -- output: plumbing -------------------------------------------------------------------
    def queue(self, member: Session, msg) -> None:
        """Queue one wire message for one session."""
        self._push(member, messages.encode(msg))

    def queue_encoded(self, member: Session, data: bytes) -> None:
        """Queue one already-encoded message (e.g. a reply encoded once per server)."""
        self._push(member, data)

    def take_dirty(self) -> List[Session]:
        """Sessions with something to send (or to close) since the last call."""
        if self.held_back is not None:
            wake, self._wake = self._wake, None  # what it queues goes in this flush
            try:
                self.held_back()
            finally:
                self._wake = wake
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


def _joined(items: List[Optional[bytes]]) -> List[bytes]:
    """Encoded messages as outbox items of at most PRESENCE_CHUNK bytes (one message per
    line, as a record holds them)."""
    out: List[bytes] = []
    batch: List[bytes] = []
    size = 0
    for data in items:
        if data is None:
            continue
        if batch and size + len(data) + 1 > PRESENCE_CHUNK:
            out.append(b"\n".join(batch))
            batch, size = [], 0
        batch.append(data)
        size += len(data) + 1
    if batch:
        out.append(b"\n".join(batch))
    return out
