"""What the other server processes of a cluster did, applied to this process's chat.

The process where something happened changed its own state and delivered the
event to its own sessions (:mod:`schat.chat.chat`); every other process gets
the event from the bus and hands it to :class:`Replica`, which makes the same
change here (a kicked member of this process leaves the room, a ban is
recorded, a member of another process shows in the room's list) and then
delivers the event to the sessions of this process, encoded once for all of
them (:meth:`InProcessFanout.publish`).

Concurrent changes of the same thing on two processes settle the same way
everywhere: a topic, ban or mute by its stamp (:meth:`Restriction.stamp`,
``topic_time``), a room's owner by its earliest creation; the rest (ops,
invitations, a room's mode) in the order the bus delivers them, which is the
same for every process.
"""

from __future__ import annotations

import logging
from typing import Iterable, List, Optional

from schat.chat import events as ev
from schat.chat.history import HistoryWindow
from schat.chat.members import Member, Remote
from schat.chat.moderation import BAN, MUTE, Restriction
from schat.chat.names import user_key
from schat.chat.rooms import Room, RoomRecord

log = logging.getLogger("schat.chat")

CLOSE_CODES = {"disconnect": "disconnected", "lock": "locked", "remove": "removed",
               "kick": "kicked", "ban": "banned"}


def room_meta(room: Room) -> list:
    """What a process that does not know ``room`` needs to create it (sent with Joined)."""
    return [room.owner, room.created, 1 if room.private else 0, room.topic, room.topic_by,
            room.topic_time]


class Replica:
    """Applies another process's events to ``chat`` (see the module docstring)."""

    def __init__(self, chat):
        self.chat = chat
        #: Rooms this process learnt of from an event other than their creation: their
        #: bans, ops and invitations are read from the store (the cluster node does it).
        self.unknown: List[str] = []

    # -- rooms ---------------------------------------------------------------------
    def room(self, name: str, meta: Optional[list] = None) -> Room:
        """The room ``name``, created from ``meta`` (or bare) when this process lacks it."""
        chat = self.chat
        room = chat.rooms.get(name)
        if room is not None:
            if meta:
                # Two processes created it at once: the earliest creation owns it.
                owner, created = str(meta[0]), int(meta[1])
                if (created, owner) < (room.created, room.owner):
                    self._owned_by(room, owner, created)
            return room
        if meta:
            # A room made on another node, announced by its first join: all there is to it.
            record = RoomRecord(name, topic=str(meta[3]), topic_by=str(meta[4]),
                                topic_time=int(meta[5]), private=bool(meta[2]),
                                owner=str(meta[0]), created=int(meta[1]))
        else:
            # Its creation was missed (an outage): the rest is read from the store.
            record = RoomRecord(name, created=chat.now_ms())
            self.unknown.append(name)
        room = chat.rooms[name] = Room(record, HistoryWindow(chat._window))
        return room

    def replace_room(self, record: RoomRecord) -> None:
        """The store's record of a room (read after its first event here, or after a bus
        outage): its bans, mutes and topic settle by stamp, the rest is taken as stored."""
        room = self.chat.rooms.get(record.name)
        if room is None:
            return
        if (record.created, record.owner) < (room.created, room.owner) or not room.owner:
            self._owned_by(room, record.owner, record.created)
        if (record.topic_time, record.topic_by, record.topic) > \
                (room.topic_time, room.topic_by, room.topic):
            room.topic, room.topic_by, room.topic_time = (record.topic, record.topic_by,
                                                          record.topic_time)
        room.private = record.private
        room.ops = dict(record.ops)
        room.invited = {k: v for k, v in record.invited.items() if not room.has(k)}
        for item in record.restrictions:
            room.restrictions.apply(item)

    def _owned_by(self, room: Room, owner: str, created: int) -> None:
        """The room was made earlier elsewhere: that creation, and its owner, count. The
        members here were told at their /join that this process's creation owns it, so
        they are told the owner now in force (nothing else they were shown changes)."""
        before = room.owner
        room.owner, room.created = owner, created
        if not before or not owner or user_key(before) == user_key(owner):
            return
        chat = self.chat
        text = (f"{room.name} was also made on another server, earlier: "
                f"{owner} owns it, not {before}")
        for member in list(room.members.values()):
            chat._info(member, text)

    # -- room events ---------------------------------------------------------------
    def said(self, said: ev.Said) -> None:
        """A line said on another process (the bus brings each process's lines once and
        in order): kept in the room's window where it fits, delivered in any case."""
        self.said_run([said])

    def said_run(self, lines: List[ev.Said]) -> None:
        """Lines said in one room on other processes, in order: each as :meth:`said`,
        delivered here together (:meth:`InProcessFanout.publish_run`)."""
        chat = self.chat
        for said in lines:
            chat.ids.observe(said.id)
        room = chat.rooms.get(lines[0].room)
        if room is None:
            return  # a room this process has no member in (and never heard of)
        insert = room.history.insert
        for said in lines:
            insert(said)
        chat.local.publish_run(room.name, lines)

    def joined(self, event: ev.Joined, meta: Optional[list]) -> None:
        chat = self.chat
        room = self.room(event.room, meta)
        key = user_key(event.user)
        if key not in room.members:
            room.remote[key] = event.user
            remote = chat.remote.get(key)
            if remote is not None and room.name not in remote.rooms:
                remote.rooms.append(room.name)
        room.invited.pop(key, None)
        chat.local.publish(room.name, event)

    def parted(self, event: ev.Parted) -> None:
        chat = self.chat
        room = chat.rooms.get(event.room)
        if room is None:
            return
        key = user_key(event.user)
        if key in room.members:
            return  # this process's session of the account is in it (a newer login)
        chat.leave_remote(key, room)
        chat.local.publish(room.name, event)

    def topic(self, event: ev.TopicChanged) -> None:
        room = self.room(event.room)
        if (event.time, event.by, event.topic) > (room.topic_time, room.topic_by, room.topic):
            room.topic, room.topic_by, room.topic_time = event.topic, event.by, event.time
        self.chat.local.publish(room.name, event)

    def moderated(self, event: ev.Moderated) -> None:
        chat = self.chat
        room = self.room(event.room)
        action, key = event.action, user_key(event.target) if event.target else ""
        if action in (BAN, MUTE):
            room.restrictions.apply(Restriction(room.name, action, event.target, event.actor,
                                                event.reason, event.until, event.time))
        elif action in ("unban", "unmute"):
            room.restrictions.apply(Restriction.lifted(room.name, action[2:], event.target,
                                                       event.actor, event.time))
        elif action == "op":
            room.ops[key] = event.target
        elif action == "deop":
            room.ops.pop(key, None)
        elif action == "invite":
            if not room.has(key):
                room.invited[key] = event.target
        elif action in ("private", "public"):
            room.private = action == "private"
        member = chat.members.get(key) if key else None
        moved = False
        if action in ev.REMOVING:
            if member is not None and key in room.members:
                # (It still gets the event: the fan-out adds the member taken out.)
                moved = chat._take_out(member, room, tell=False)
            else:
                member = None
                chat.leave_remote(key, room)
        chat.local.publish(room.name, event)
        if member is None:
            return
        if moved:
            chat._tell_focus(member)
        if not member.aware and room.lobby and action in ("kick", "ban"):
            # A client that knows no rooms has nothing left without #lobby.
            chat.sink.close(member, CLOSE_CODES[action], ev.describe(event, chat.now_ms()))

    def invited(self, event: ev.Invited) -> None:
        self.chat.local.publish("@" + user_key(event.user), event)

    def announced(self, event: ev.Announcement) -> None:
        self.chat.local.publish("*", event)

    def room_gone(self, name: str) -> bool:
        """Another process removed ``name`` (nobody belonged to it): forget it too, unless
        someone here is in it (then True: it must be stored again)."""
        room = self.chat.rooms.get(name)
        if room is None or room.lobby:
            return False
        if room.members:
            return True
        if not room.remote:
            del self.chat.rooms[name]
        return False

    # -- sessions of other processes -----------------------------------------------
    def online(self, remote: Remote, mine_token: int = 0) -> Optional[Member]:
        """``remote`` logged in on another process. Returns this process's session of the
        same account (its login ``mine_token``) when the new login takes it over (then
        ended here, silently: the new one stays in its rooms), else None."""
        chat = self.chat
        key = remote.key
        known = chat.remote.get(key)
        if known is not None and known.token > remote.token:
            return None  # an older login, announced late: the newer one stays
        mine = chat.members.get(key)
        if mine is not None:
            if mine_token > remote.token:
                return None  # ours is newer: the other process ends its own
            remote.rooms = list(mine.rooms)
            del chat.members[key]
            chat._profiles.pop(key, None)
            for name in mine.rooms:
                room = chat.rooms.get(name)
                if room is not None and room.members.get(key) is mine:
                    del room.members[key]
                    chat.store.mark_read(mine.name, name, room.history.last_id)
                    room.remote[key] = remote.name
            mine.rooms.clear()
            where = f" from {remote.peer}" if remote.peer else ""
            chat.sink.close(mine, "taken_over", f"{remote.name} logged in again{where}; this "
                                                f"session is closed")
            log.info("session of %s taken over by a login on %s%s", remote.name, remote.node,
                     where)
        elif known is not None:
            remote.rooms = known.rooms
        chat.remote[key] = remote
        return mine

    def offline(self, name: str, token: int) -> None:
        """The session ``token`` of ``name`` on another process ended (its rooms were told)."""
        chat = self.chat
        known = chat.remote.get(user_key(name))
        if known is not None and known.token == token:
            for room_name in list(known.rooms):
                room = chat.rooms.get(room_name)
                if room is not None:
                    room.remote.pop(known.key, None)
            del chat.remote[known.key]

    def vanished(self, sessions: Iterable[Remote], reason: str) -> None:
        """Sessions of a process that stopped answering (or whose list says they are gone):
        each leaves its rooms here, shown to this process's members as a part."""
        chat = self.chat
        now = chat.now_ms()
        for remote in list(sessions):
            if chat.remote.get(remote.key) is not remote:
                continue
            del chat.remote[remote.key]
            for name in remote.rooms:
                room = chat.rooms.get(name)
                if room is None or room.remote.pop(remote.key, None) is None:
                    continue
                chat.local.publish(name, ev.Parted(name, remote.name, now, reason))

    def arrived(self, remote: Remote, rooms: List[str], metas: dict) -> None:
        """A session found in another process's list (after an outage): into its rooms
        here, shown to this process's members as a join where it was not there yet."""
        chat = self.chat
        now = chat.now_ms()
        for name in rooms:
            room = self.room(name, metas.get(name))
            if room.remote.get(remote.key) is None and remote.key not in room.members:
                room.remote[remote.key] = remote.name
                chat.local.publish(name, ev.Joined(name, remote.name, now))
            if name not in remote.rooms:
                remote.rooms.append(name)

    def end(self, name: str, action: str, actor: Optional[str], reason: str) -> bool:
        """Another process asks to end this process's session of ``name``."""
        chat = self.chat
        member = chat.members.get(user_key(name))
        if member is None:
            return False
        chat.end_session(_Actor(actor) if actor else None, member, action, reason)
        return True


class _Actor:
    """Who acted, when that member is on another process (only the name is used)."""

    __slots__ = ("name", "admin", "key")

    def __init__(self, name: str):
        self.name = name
        self.admin = True
        self.key = user_key(name)


__all__ = ["Replica", "room_meta"]
