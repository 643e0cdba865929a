"""One server process as a node of a cluster: the bus, presence, and what crosses to
the other nodes.

:class:`ClusterNode` is the chat domain's :class:`~schat.chat.fanout.Fanout`
(every event to this node's sessions at once, and over the bus to the others)
and its :class:`~schat.chat.peers.Peers`. Channels on Redis (all under the
prefix of the bus URL's database number):

- ``c``: control, every node subscribed: room events other than chat lines,
  sessions online and offline, heartbeats, rosters, the MOTD. One channel, so
  every node sees these in the same order.
- ``r:#room``: a room's chat lines, subscribed while the node has a member in
  the room (the domain's ``Peers.entered``; unsubscribed a moment after the last
  one leaves).
- ``n:NODE``: one node's inbox: a wire message for one of its sessions (a
  direct message), a request to end one of its sessions, a roster request.

Presence (:mod:`schat.cluster.presence`): each node announces its sessions
(``on``/``off``, with the login's token: a newer login of the same account, on
any node, takes the older one over), beats four times per lease, and answers
roster requests; a node silent for a lease is counted gone and its members
leave their rooms everywhere. When its bus connection is back after a loss a
node asks every node for its roster and catches up from the store
(:mod:`schat.cluster.catchup`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from schat.chat import events as ev
from schat.chat.fanout import Fanout
from schat.chat.members import Member, Remote
from schat.chat.names import user_key
from schat.chat.peers import Peers
from schat.chat.replica import Replica, room_meta
from schat.cluster import codec
from schat.cluster.bus import Bus, bus_prefix
from schat.cluster.catchup import MARGIN, SLOT_MASK, Catchup
from schat.cluster.ids import SLOTS, Hybrid
from schat.cluster.presence import Presence
from schat.cluster.settings import ClusterSettings
from schat.errors import ConfigError, ProtocolError
from schat.protocol import messages
from schat.protocol.registry import CLIENT_RECEIVES

if TYPE_CHECKING:  # pragma: no cover
    from schat.server.app import Server

log = logging.getLogger("schat.cluster")

# Seconds between checks that the rooms subscribed to still have members here.
RECONCILE_EVERY = 1.0
NEEDS_POSTGRES = ("a cluster (--bus) needs a PostgreSQL store shared by every node: "
                  "--store postgresql://USER:PASSWORD@HOST:PORT/DATABASE")


class ClusterNode(Presence, Fanout, Peers):
    """This process in the cluster (see the module docstring)."""

    def __init__(self, server: "Server", settings: ClusterSettings):
        engine = server.store.db
        if engine.name != "postgresql":
            raise ConfigError(NEEDS_POSTGRES)
        self.server = server
        self.settings = settings
        self.id = settings.node
        self.hub = server.hub
        self.chat = server.hub.chat
        prefix = bus_prefix(settings.bus).encode()
        self._prefix = prefix
        self.control = prefix + b"c"
        self.inbox = self.node_channel(self.id)
        self._own_said = codec.pack(codec.SAID, self.id, 0)[:-2]  # b'["s","ID",'
        self.bus = Bus(settings.bus, self._on_message, self._on_state, self._on_subscribed,
                       self._read_done, name=f"schat-node-{self.id[:16]}")
        self.replica = Replica(self.chat)
        self.catchup = Catchup(self)
        self.lease = None
        # Login token of each session here (user key -> token).
        self.tokens: Dict[str, int] = {}
        # Outgoing sequence per channel, and the last one seen per (node, channel).
        self._seq: Dict[bytes, int] = {}
        self._seen: Dict[Tuple[str, bytes], int] = {}
        # Id slot -> the node whose lines carry it (a slot passes to a new process when
        # its holder dies).
        self._slot_nodes: Dict[int, str] = {}
        # Chat lines of one room read from the bus, applied together (_apply_lines) before
        # the loop turn's flush, or before anything else from the bus: one delivery per run,
        # however many Redis messages the turn's reads brought.
        self._lines: List[ev.Said] = []
        # Chat lines said here this loop turn, delivered here before the flush (settle) or
        # before any other event: [(room, its members then, the sender's session, lines)].
        # The members are taken when the line is said, so who joins or leaves meanwhile
        # gets exactly what an immediate delivery would have given it.
        self._said_here: List[Tuple[str, tuple, Optional[Member], List[ev.Said]]] = []
        # Node -> (monotonic time of its last beat, sessions it said it has).
        self.nodes: Dict[str, Tuple[float, int]] = {}
        self._own_beat = 0.0
        # When the last Redis message was read (monotonic): a subscription that reads
        # is behind, not silent, when the node's own beats are late.
        self._last_read = 0.0
        self._timers: List[asyncio.TimerHandle] = []
        self._down_since: Optional[float] = None
        # When the newest message read from the bus was sent (Unix seconds, the sender's
        # clock), and when this node sent each of its own heartbeats not yet read back.
        self._heard: Optional[float] = None
        self._beats: Dict[int, float] = {}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        chat = self.chat
        chat.fanout = self
        chat.peers = self
        self.hub.elsewhere = self.session_elsewhere
        self.hub.held_back = self.settle

    # -- channels ------------------------------------------------------------------
    def room_channel(self, room: str) -> bytes:
        return self._prefix + b"r:" + room.encode()

    def node_channel(self, node: str) -> bytes:
        return self._prefix + b"n:" + node.encode()

    def _send(self, channel: bytes, kind: str, *fields) -> None:
        seq = self._seq.get(channel, 0) + 1
        self._seq[channel] = seq
        self.bus.publish(channel, codec.pack(kind, self.id, seq, *fields))

    # -- life cycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Take a slot for ids, connect to the bus, ask for the others' sessions."""
        from schat.store.pg_slots import claim_slot

        self.loop = asyncio.get_running_loop()
        engine = self.server.store.db
        self.lease = await self.loop.run_in_executor(
            None, functools.partial(claim_slot, engine, SLOTS, self._slot_changed))
        self.chat.ids = Hybrid(self.lease.slot)
        try:
            await self.bus.start([self.control, self.inbox])
        except BaseException:
            self.lease.close()
            raise
        log.info("cluster node %s (slot %d) on bus %s", self.id, self.lease.slot, self.bus.where)
        self._greet()
        self._every(self.settings.beat, self._beat)
        self._every(RECONCILE_EVERY, self._reconcile)
        self._every(self.settings.lease, self._check_slot)

    async def stop(self) -> None:
        """Say goodbye (the others drop this node's sessions at once), disconnect."""
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        if self.bus.up:
            self._send(self.control, codec.BYE)
        await self.bus.stop()
        self.catchup.close()
        if self.lease is not None:
            await self.loop.run_in_executor(None, self.lease.close)

    def _every(self, seconds: float, fn) -> None:
        def tick():
            try:
                self.settle()  # what was read or said before, first
                fn()
            except Exception:  # noqa: BLE001 - a timer must keep running
                log.exception("cluster timer failed")
            self._timers.remove(handle[0])
            handle[0] = self.loop.call_later(seconds, tick)
            self._timers.append(handle[0])
        handle = [self.loop.call_later(seconds, tick)]
        self._timers.append(handle[0])

    def _slot_changed(self, slot: int) -> None:  # in a thread
        log.warning("cluster node %s: the store lost this node's id slot (it restarted); "
                    "new ids use slot %d", self.id, slot)
        self.loop.call_soon_threadsafe(setattr, self.chat.ids, "slot", slot)

    def _check_slot(self) -> None:
        self.loop.run_in_executor(None, self.lease.check)

    # -- the Fanout: this node's sessions now, the others over the bus --------------
    def publish(self, channel: str, event) -> None:
        # The bus first: its publisher then runs before this node's own flush (the other
        # nodes' members wait for the bus; this node's for the flush either way).
        kind = type(event)
        if kind is ev.Said:
            self.catchup.seen_live(event)
            name, fields = codec.event_fields(event, None)
            self._send(self.room_channel(event.room), name, *fields)
            self._hold(event)
            return
        if self._said_here:
            self._deliver_said()  # lines said before this event, first
        bus_channel = self.control
        meta = None
        if kind is ev.Joined:
            room = self.chat.rooms.get(event.room)
            meta = room_meta(room) if room is not None else None
        name, fields = codec.event_fields(event, meta)
        self._send(bus_channel, name, *fields)
        self.chat.local.publish(channel, event)

    def _hold(self, said: ev.Said) -> None:
        """Keep a line said here for the end of the loop turn: the turn's lines of a room
        from one sender to the same members are delivered as one run (one step per
        member, one outbox item), not one by one."""
        if self._lines:
            self._apply_lines()  # lines read from the bus before this one, first
        local = self.chat.local
        members = tuple(local.recipients(said.room, said))
        sender = local.excluded(self.chat, said)
        held = self._said_here
        if held:
            last = held[-1]
            if last[2] is sender and last[0] == said.room and last[1] == members:
                last[3].append(said)
                return
        else:
            self.server._wake()  # a flush this turn, which delivers them first
        held.append((said.room, members, sender, [said]))

    def _deliver_said(self) -> None:
        held, self._said_here = self._said_here, []
        deliver = self.hub.deliver_run
        for _, members, sender, lines in held:
            deliver(lines, members, sender)

    def settle(self) -> None:
        """Deliver what is held back for the end of the loop turn (lines said here, lines
        read from the bus): called before each flush (``Hub.held_back``), by the
        catch-up before it reads or delivers, and before the node's timers."""
        try:
            if self._said_here:
                self._deliver_said()
            if self._lines:
                self._apply_lines()
        except Exception:  # noqa: BLE001 - the flush that called this must still run
            log.exception("cluster: chat lines held for the flush could not be delivered")

    # -- Peers: what the domain asks of the cluster ---------------------------------
    def login(self, member: Member, replaced: Optional[Remote]) -> None:
        token = self.chat.ids.next()
        self.tokens[member.key] = token
        self._send(self.control, codec.ONLINE, member.name, token, 1 if member.aware else 0,
                   1 if member.admin else 0, member.since, member.peer)
        self.catchup.after_login(member)

    def logout(self, member: Member) -> None:
        token = self.tokens.pop(member.key, None)
        if token is not None:
            self._send(self.control, codec.OFFLINE, member.name, token)

    def away(self, member: Member) -> None:
        token = self.tokens.get(member.key)
        if token is not None:
            self._send(self.control, codec.AWAY, member.name, token, member.away)

    def end(self, remote: Remote, action: str, actor: Optional[str], reason: str) -> None:
        self._send(self.node_channel(remote.node), codec.END, remote.name, action, actor,
                   reason)

    def entered(self, room) -> None:
        self.catchup.entered(room)

    def backlog_later(self, member, room, last_read: int, budget: List[int]) -> bool:
        return self.catchup.backlog_later(member, room, last_read, budget)

    def emptied(self, room) -> None:
        self.catchup.emptied(room)

    def motd(self, text: str) -> None:
        self._send(self.control, codec.MOTD, text)

    def room_gone(self, name: str) -> None:
        """The store removed ``name`` (nobody belongs to it): every node forgets it."""
        self.replica.room_gone(name)
        self._send(self.control, codec.GONE, name)

    # -- direct messages to sessions on other nodes --------------------------------
    def session_elsewhere(self, name: str):
        """A stand-in session for ``name`` online on another node (the hub's ``member``):
        what is queued to it goes to that node's inbox at the next flush."""
        remote = self.chat.remote.get(user_key(name))
        if remote is None:
            return None
        from schat.server.hub import Session

        proxy = Session(remote.name, aware=remote.aware, peer=remote.peer)
        proxy.link = _Forward(self, remote.node)
        return proxy

    # -- what arrives ----------------------------------------------------------------
    def _on_message(self, channel: bytes, data: bytes) -> None:
        if data.startswith(self._own_said):
            return  # a line of this node's, back from its room's channel
        try:
            kind, node, seq, fields = codec.unpack(data)
        except codec.BadMessage as err:
            log.warning("bus: dropped a message on %r: %s", channel[:80], err)
            return
        if node == self.id:
            if kind == codec.BEAT:
                self._own_beat = time.monotonic()
                sent = self._beats.pop(seq, None)
                if sent is not None:
                    self._hear(sent)
                    for old in [s for s in self._beats if s < seq]:
                        del self._beats[old]
            return
        if self._said_here:
            self._deliver_said()  # what was said here before this was read, first
        lines = self._lines
        if lines and (kind != codec.SAID or not fields or fields[0] != lines[0].room):
            self._apply_lines()  # what came first is applied first
        key = (node, channel)
        last = self._seen.get(key)
        self._seen[key] = seq
        if last is not None and seq != last + 1 and seq > last:
            self._missed(node, channel, seq - last - 1)
        try:
            self._dispatch(kind, node, channel, fields)
        except codec.BadMessage as err:
            log.warning("bus: dropped a message from node %s: %s", node[:16], err)
        except (TypeError, ValueError, IndexError) as err:
            log.warning("bus: dropped a malformed %r message from node %s: %s", kind[:8],
                        node[:16], err)

    def _dispatch(self, kind: str, node: str, channel: bytes, f: list) -> None:
        replica = self.replica
        if kind in codec.DOMAIN_KINDS:
            event, meta = codec.decode_event(kind, f)
            if kind == codec.SAID:
                slot = event.id & SLOT_MASK
                if self._slot_nodes.get(slot) != node:
                    if slot in self._slot_nodes:
                        self.catchup.forget_slot(slot)  # a new process: its own clock
                    self._slot_nodes[slot] = node
                self._lines.append(event)  # applied with the rest of its run
                return
            if kind == codec.JOINED:
                replica.joined(event, meta)
            elif kind == codec.PARTED:
                replica.parted(event)
            elif kind == codec.TOPIC:
                replica.topic(event)
            elif kind == codec.MODERATED:
                replica.moderated(event)
            elif kind == codec.INVITED:
                replica.invited(event)
            else:
                replica.announced(event)
            if replica.unknown:
                self.catchup.unknown_rooms()
            return
        if kind == codec.ONLINE:
            self._online(node, f[0], f[1], f[2], f[3], f[4], f[5])
        elif kind == codec.OFFLINE:
            replica.offline(str(f[0]), int(f[1]))
        elif kind == codec.BEAT:
            self._beat_from(node, int(f[0]))
        elif kind == codec.HELLO:
            self._send(self.node_channel(node), codec.ROSTER, *self._roster())
            self.nodes.setdefault(node, (time.monotonic(), 0))
        elif kind == codec.ROSTER:
            self._roster_from(node, f[0], f[1])
        elif kind == codec.END:
            if not replica.end(str(f[0]), str(f[1]), f[2], str(f[3])):
                log.info("asked to end the session of %s, which is not here any more",
                         str(f[0])[:32])
        elif kind == codec.FORWARD:
            if not isinstance(f[1], str):
                raise codec.BadMessage("a forwarded message is not text")
            self._forwarded(str(f[0]), f[1])
        elif kind == codec.MAIL:
            self.catchup.mail(str(f[0]))
        elif kind == codec.AWAY:
            remote = self.chat.remote.get(user_key(str(f[0])))
            if remote is not None and remote.token == int(f[1]):
                remote.away = None if f[2] is None else str(f[2])[:1024]
        elif kind == codec.MOTD:
            self.chat.set_motd(str(f[0]), everywhere=False)
        elif kind == codec.GONE:
            if replica.room_gone(str(f[0])):
                room = self.chat.rooms[str(f[0])]
                self.chat.store.save_room(room.record())  # someone here is in it
        elif kind == codec.BYE:
            self._node_gone(node, "left")
        else:
            raise codec.BadMessage(f"unknown kind {kind[:8]!r}")

    def _read_done(self) -> None:
        """A Redis message is read: its lines wait for the flush this schedules (a turn's
        reads usually bring several messages of the same room: one run for all)."""
        self._last_read = time.monotonic()
        if self._lines:
            self.server._wake()

    def _apply_lines(self) -> None:
        """Apply the run of chat lines read so far (one room's, in order): kept in the
        room's window and delivered to this node's members together."""
        lines = self._lines
        if not lines:
            return
        self._lines = []
        self._hear(Hybrid.time_of(max(said.id for said in lines)) / 1000)
        lines = self.catchup.unseen(lines)
        if not lines or self.catchup.hold(lines):
            return
        self.replica.said_run(lines)
        seen_live = self.catchup.seen_live
        for said in lines:
            seen_live(said)
        if self.replica.unknown:
            self.catchup.unknown_rooms()

    def _hear(self, sent: float) -> None:
        if self._heard is None or sent > self._heard:
            self._heard = sent

    def heard(self, now: Optional[float] = None) -> float:
        """Since when this node may have missed messages on the bus: when the newest it
        read was sent (Redis delivers one connection's messages in the order they were
        published, so everything published before that was read), or ``now`` if later.
        A subscriber that reads slowly is many seconds behind: what Redis drops when it
        cuts it off was published long before the loss is noticed."""
        now = time.time() if now is None else now
        return now if self._heard is None else min(now, self._heard)

    def _missed(self, node: str, channel: bytes, count: int) -> None:
        self._apply_lines()  # the catch-up starts from what is here
        log.warning("bus: %d message(s) of node %s on %r were lost; catching up", count,
                    node[:16], channel[:80])
        if channel == self.control:
            self._send(self.node_channel(node), codec.HELLO)
            self.catchup.refresh_rooms()
        elif channel.startswith(self._prefix + b"r:"):
            self.catchup.gap(channel[len(self._prefix) + 2:].decode(), self.heard() - MARGIN)

    def _on_subscribed(self, channel: bytes) -> None:
        if channel.startswith(self._prefix + b"r:"):
            self.catchup.subscribed(channel[len(self._prefix) + 2:].decode())

    def _reconcile(self) -> None:
        """Leave the channels of rooms that have no member here any more."""
        chat = self.chat
        for room_name in self.catchup.subscribed_rooms():
            room = chat.rooms.get(room_name)
            if room is None or not room.members:
                self.catchup.left(room_name)
                channel = self.room_channel(room_name)
                for key in [k for k in self._seen if k[1] == channel]:
                    del self._seen[key]  # a later subscription starts afresh

    def _forwarded(self, name: str, payload: str) -> None:
        data = payload.encode("utf-8")
        try:  # what goes to a member must be a message a client reads
            messages.decode(data, CLIENT_RECEIVES)
        except ProtocolError as err:
            raise codec.BadMessage(f"a forwarded message is not one: {err}") from None
        member = self.chat.members.get(user_key(name))
        if member is None:
            # Moved or gone meanwhile: the message is stored; whoever holds the account
            # now reads it from the store.
            self._send(self.control, codec.MAIL, name)
            return
        self.hub.queue_encoded(member, data)


class _Forward:
    """The link of a stand-in session: its outbox goes to the node holding the account."""

    __slots__ = ("node", "target")

    def __init__(self, node: ClusterNode, target: str):
        self.node = node
        self.target = target

    def flush(self, member, cap: int = 0) -> int:
        """As ClientLink.flush (``cap`` is the receiving node's business); returns the
        bytes sent on this node's sockets: none."""
        outbox, member.outbox = member.outbox, []
        member.queued = 0
        channel = self.node.node_channel(self.target)
        for data in outbox:
            self.node._send(channel, codec.FORWARD, member.name, data.decode("utf-8"))
        return 0
