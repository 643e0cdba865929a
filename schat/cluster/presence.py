"""Who is online on the other nodes, and which nodes are alive: a node's presence.

A mixin of :class:`schat.cluster.node.ClusterNode` (it uses the node's bus,
chat and replica). Each node announces its sessions as they start and end
(``on``/``off``, with the login's token), sends a heartbeat four times per
lease with the number of sessions it holds, and answers a roster request
(``h``) with the list of them all (``r``), which replaces what the asker knew
of it. A node not heard from for a lease is counted gone: its sessions leave
their rooms here. While this node's own bus connection is away it counts
nobody gone (it cannot tell); once back, everyone gets a fresh lease and every
node is asked for its roster. A heartbeat from an unknown node, or a session
count that differs from ours twice running, also asks for a roster.
"""

from __future__ import annotations

import logging
import time

from schat.chat import events as ev
from schat.chat.members import Remote
from schat.chat.replica import room_meta
from schat.cluster import codec
from schat.cluster.catchup import MARGIN

log = logging.getLogger("schat.cluster")


class Presence:
    """Presence and liveness (mixed into ClusterNode)."""

    def _online(self, node: str, name, token, aware, admin, since, peer) -> None:
        remote = Remote(str(name), node, int(token), bool(admin), bool(aware), int(since),
                        str(peer))
        self.chat.ids.observe(remote.token)
        mine = self.replica.online(remote, self.tokens.get(remote.key, 0))
        if mine is not None:
            self.tokens.pop(remote.key, None)

    def _roster(self) -> list:
        chat = self.chat
        entries, metas = [], {}
        for member in chat.members.values():
            token = self.tokens.get(member.key)
            if token is None:
                continue
            entries.append([member.name, token, 1 if member.aware else 0,
                            1 if member.admin else 0, member.since, member.peer,
                            list(member.rooms), member.away])
            for name in member.rooms:
                if name not in metas and name in chat.rooms:
                    metas[name] = room_meta(chat.rooms[name])
        return [entries, metas]

    def _roster_from(self, node: str, entries, metas) -> None:
        """``node``'s sessions, complete: what this node knew of it is replaced."""
        chat = self.chat
        before = {r.key: r for r in chat.remote.values() if r.node == node}
        listed = set()
        for name, token, aware, admin, since, peer, rooms, away in entries:
            remote = Remote(str(name), node, int(token), bool(admin), bool(aware), int(since),
                            str(peer))
            self.chat.ids.observe(remote.token)
            listed.add(remote.key)
            known = chat.remote.get(remote.key)
            if known is not None and known.token == remote.token:
                remote = known
            else:
                if self.replica.online(remote, self.tokens.get(remote.key, 0)) is not None:
                    self.tokens.pop(remote.key, None)
                if chat.remote.get(remote.key) is not remote:
                    continue
            remote.away = None if away is None else str(away)[:1024]
            rooms = [str(r) for r in rooms]
            gone = [r for r in remote.rooms if r not in rooms]
            self.replica.arrived(remote, rooms, metas)
            for room_name in gone:
                room = chat.rooms.get(room_name)
                if room is not None and room.remote.pop(remote.key, None) is not None:
                    chat.local.publish(room_name, ev.Parted(room_name, remote.name,
                                                            chat.now_ms(), "left"))
                remote.rooms.remove(room_name)
        self.replica.vanished([r for k, r in before.items() if k not in listed], "left")
        self.nodes[node] = (time.monotonic(), len(listed))
        if self.replica.unknown:
            self.catchup.unknown_rooms()

    def _greet(self) -> None:
        """Ask every node for its sessions, and tell them ours."""
        self._send(self.control, codec.HELLO)
        self._send(self.control, codec.ROSTER, *self._roster())

    def _beat(self) -> None:
        if not self.bus.up:
            return
        now = time.monotonic()
        self._send(self.control, codec.BEAT, len(self.tokens))
        self._beats[self._seq[self.control]] = time.time()
        lease = self.settings.lease
        if self._own_beat and now - self._own_beat > lease:
            if now - self._last_read > lease:
                log.warning("bus: this node's own heartbeats stopped coming back; reconnecting")
                self._own_beat = now
                self.bus.reset()
            # Else the subscription is not silent but behind (this node reads more slowly
            # than the cluster sends: a busy or starved process): its own beats and the
            # others' come back late alike, so nobody is counted gone for it.
            return
        for node, (seen, _) in list(self.nodes.items()):
            if now - seen > lease:
                self._node_gone(node, "connection lost")

    def _beat_from(self, node: str, count: int) -> None:
        known = self.nodes.get(node)
        self.nodes[node] = (time.monotonic(), count)
        have = sum(1 for r in self.chat.remote.values() if r.node == node)
        if known is None or (count != have and known[1] != have):
            # A node not heard from before, or one whose sessions differ from ours twice
            # running: ask it for the full list.
            self._send(self.node_channel(node), codec.HELLO)

    def _node_gone(self, node: str, reason: str) -> None:
        known = self.nodes.pop(node, None)
        sessions = [r for r in self.chat.remote.values() if r.node == node]
        if sessions:
            log.warning("cluster node %s %s; its %d session(s) leave presence", node[:16],
                        "stopped" if reason == "left" else "is silent for a lease", len(sessions))
        self.replica.vanished(sessions, reason)
        for key in [k for k in self._seen if k[0] == node]:
            del self._seen[key]
        if reason != "left" and known is not None:
            # It may have stored lines it never got onto the bus before it died.
            silent_for = time.monotonic() - known[0]
            since = time.time() - silent_for - self.settings.beat
            for room_name in self.catchup.subscribed_rooms():
                self.catchup.gap(room_name, since - MARGIN)

    def _on_state(self, up: bool) -> None:
        if not up:
            self._down_since = time.time()
            return
        if self._down_since is None:
            return  # the first connection: start() greets
        since, self._down_since = self.heard(self._down_since), None
        now = time.monotonic()
        # Nobody could beat while the bus was away: everyone gets a new lease.
        self.nodes = {node: (now, count) for node, (_, count) in self.nodes.items()}
        self._own_beat = now
        # A room channel's sequences stay: the first message of each node after the
        # outage then shows whether lines of that node were missed (they are held back
        # until the store has them). The control channel's restart (the greeting asks
        # every node for all it has).
        rooms = self._prefix + b"r:"
        self._seen = {k: v for k, v in self._seen.items() if k[1].startswith(rooms)}
        self._greet()
        self.catchup.after_outage(since)

