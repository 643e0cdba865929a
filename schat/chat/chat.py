"""The chat service: sessions entering and leaving, chat lines, rooms, commands.

One :class:`Chat` per server process. Every method runs on one thread (the
server's event loop) and returns at once: what it says goes to the
:class:`~schat.chat.fanout.Fanout` (everything meant for more than the
requesting session) or to :meth:`Sink.reply` (answers to the requester), and
what it keeps goes to the :class:`~schat.chat.store.ChatStore`.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Optional, Tuple

from schat.chat import events as ev
from schat.chat.actions import Actions
from schat.chat.member_commands import MemberCommands
from schat.chat.commands import find
from schat.chat.errors import Refusal
from schat.chat.fanout import Fanout, InProcessFanout, Sink
from schat.chat.history import HistoryWindow
from schat.chat.limits import ChatLimits
from schat.chat.members import Member, Remote
from schat.chat.moderation import BAN, MUTE, describe_until
from schat.chat.names import LOBBY, room_key, shown
from schat.chat.rooms import Room, RoomRecord
from schat.chat.store import ChatStore, Profile
from schat.errors import StoreError

log = logging.getLogger("schat.chat")

Clock = Callable[[], float]

NEEDS_ROOMS = "rooms need a newer schat client; this session stays in #lobby"
STORE_DOWN = ("store unavailable: the server cannot reach its store, so this was not done; "
              "try again later")


class Counter:
    """Message ids of a single server: one after another, after the highest stored.
    (A cluster's processes use :class:`schat.cluster.ids.Hybrid`, the same shape.)"""

    def __init__(self, start: int):
        self._next = start

    def next(self) -> int:
        value = self._next
        self._next = value + 1
        return value

    def observe(self, other: int) -> None:
        """An id made by another process (a single server sees none)."""


class Chat(MemberCommands, Actions):
    """Rooms and members of one server process."""

    def __init__(self, store: ChatStore, sink: Optional[Sink] = None,
                 limits: Optional[ChatLimits] = None, clock: Clock = time.time,
                 server_name: str = "schat", motd: str = "", fanout: Optional[Fanout] = None):
        self.store = store
        self.limits = limits or ChatLimits()
        self._clock = clock
        self.server_name = server_name
        self.motd = motd
        self.sink = sink
        # Delivery to this process's sessions; ``fanout`` (a cluster's bus) also to the others.
        self.local = InProcessFanout(self, sink)
        self.fanout = fanout or self.local
        # The cluster's other processes (schat.chat.peers), None for a single server.
        self.peers = None
        # user key -> the session of that account in this process (one per account).
        self.members: Dict[str, Member] = {}
        # user key -> its session on another process of the cluster.
        self.remote: Dict[str, Remote] = {}
        self.rooms: Dict[str, Room] = {}
        self._profiles: Dict[str, Tuple[Profile, List[str]]] = {}
        self._window = max(1, min(self.limits.history_limit, max(self.limits.backlog, 100)))
        for record in store.load_rooms():
            self.rooms[record.name] = Room(record, HistoryWindow(
                self._window, self._fresh(store.recent(record.name, self._window))))
        if LOBBY not in self.rooms:
            record = RoomRecord(LOBBY, created=self.now_ms())
            store.save_room(record)
            self.rooms[LOBBY] = Room(record, HistoryWindow(self._window))
        self.ids = Counter(store.last_message_id() + 1)
        self.said = 0

    # -- time and ids ---------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _fresh(self, items):
        cutoff = self._cutoff()
        return [s for s in items if s.time >= cutoff] if cutoff else items

    def _cutoff(self) -> int:
        days = self.limits.history_days
        return self.now_ms() - days * 86_400_000 if days else 0

    # -- sessions ---------------------------------------------------------------------
    def admissible(self, name: str, aware: bool) -> Optional[Refusal]:
        """Why a login of ``name`` must be refused, or None. A client that knows no rooms
        lives in #lobby alone, so a ban from #lobby keeps it out."""
        if aware:
            return None
        ban = self.rooms[LOBBY].restrictions.get(BAN, name, self.now_ms())
        if ban is None:
            return None
        return Refusal("banned", f"you are banned from {LOBBY} "
                                 f"{describe_until(ban.until, self.now_ms())}"
                                 f"{': ' + ban.reason if ban.reason else ''}")

    def enter(self, member: Member, profile: Optional[Profile] = None) -> Optional[Member]:
        """A session logged in: into #lobby, welcomed. Returns the session of the same
        account it took over (told why and closed), if any. Call :meth:`rejoin` next."""
        now = self.now_ms()
        profile = profile or Profile(member.name)
        member.admin = profile.admin
        member.since = member.since or now
        old = self.members.get(member.key)
        old_rooms: List[str] = []
        where = f" from {member.peer}" if member.peer else ""
        if old is not None:
            old_rooms = self._detach(old)
            self.sink.close(old, "taken_over", f"{member.name} logged in again{where}; "
                                               f"this session is closed")
            log.info("session of %s taken over by a new login%s", member.name, where)
        replaced = self.remote.pop(member.key, None)
        if replaced is not None:
            # Its process ends it when it hears of this login (Peers.login).
            old_rooms = list(replaced.rooms)
            for name in old_rooms:
                room = self.rooms.get(name)
                if room is not None:
                    room.remote.pop(member.key, None)
            log.info("session of %s on %s taken over by a new login%s", member.name,
                     replaced.node, where)
        self.members[member.key] = member
        if self.peers is not None:
            self.peers.login(member, replaced)
        lobby = self.rooms[LOBBY]
        banned = lobby.restrictions.get(BAN, member.name, now)
        if banned is None:
            self._add(lobby, member)
            self.store.add_membership(member.name, LOBBY, now)
            if LOBBY not in old_rooms:
                self.fanout.publish(LOBBY, ev.Joined(LOBBY, member.name, now))
        users = lobby.names() if banned is None else ()
        self.sink.reply(member, ev.Welcome(member.name, self.server_name, self.motd, users, now))
        if banned is not None:
            self._info(member, f"you are banned from {LOBBY} "
                               f"{describe_until(banned.until, now)}; /rooms lists the others")
        self._profiles[member.key] = (profile, old_rooms)
        return old

    def rejoin(self, member: Member) -> None:
        """Put a session that just entered back into its rooms, each with the messages it
        has not seen (within the backlog bounds), then say where plain lines go."""
        profile, old_rooms = self._profiles.pop(member.key, (Profile(member.name), []))
        if self.members.get(member.key) is not member:
            return
        now = self.now_ms()
        budget = [self.limits.backlog_bytes]
        if member.aware:
            for name, last_read in profile.rooms:
                room = self.rooms.get(name)
                if room is None:
                    self.store.remove_membership(member.name, name)
                    continue
                if name != LOBBY:
                    if len(member.rooms) >= self.limits.rooms_per_member:
                        break
                    if room.restrictions.get(BAN, member.name, now) is not None:
                        continue
                    self._add(room, member)
                    if name not in old_rooms:
                        self.fanout.publish(name, ev.Joined(name, member.name, now))
                elif member.key not in room.members:
                    continue
                self._show_room(member, room, last_read, budget)
            lobby = self.rooms[LOBBY]
            if member.key in lobby.members and LOBBY not in member.cursors:
                self._show_room(member, lobby, lobby.history.last_id, budget)
        for name in old_rooms:
            room = self.rooms.get(name)
            if room is not None and member.key not in room.members:
                self.fanout.publish(name, ev.Parted(name, member.name, now,
                                                    "logged in again elsewhere"))
        member.focus = LOBBY if LOBBY in member.rooms else (member.rooms[-1] if member.rooms
                                                            else None)
        if member.aware:
            self.sink.reply(member, ev.Focus(member.focus))

    def leave(self, member: Member, reason: str) -> None:
        """The session ended (idempotent; a session already taken over is ignored)."""
        if self.members.get(member.key) is not member:
            return
        del self.members[member.key]
        self._profiles.pop(member.key, None)
        now = self.now_ms()
        for name in list(member.rooms):
            room = self.rooms.get(name)
            if room is None:
                continue
            del room.members[member.key]
            self.store.mark_read(member.name, name, room.history.last_id)
            self.fanout.publish(name, ev.Parted(name, member.name, now, reason))
        member.rooms.clear()
        if self.peers is not None:
            self.peers.logout(member)

    def shutdown(self, reason: str) -> None:
        """Every session is told and closed; read markers are kept."""
        for member in list(self.members.values()):
            for name in member.rooms:
                room = self.rooms.get(name)
                if room is not None:
                    self.store.mark_read(member.name, name, room.history.last_id)
            self.sink.close(member, "", reason)

    def online(self, name: str) -> Optional[Member]:
        return self.members.get(name.lower())

    def sessions(self) -> int:
        """Sessions online in the whole chat (this process and, a cluster, the others)."""
        return len(self.members) + len(self.remote)

    # -- requests ---------------------------------------------------------------------
    def say(self, member: Member, text: str, action: bool, cid: str,
            room: Optional[str] = None) -> None:
        """A chat line to ``room`` (default: the member's focus)."""
        try:
            target = self._room_of(member, room)
            muted = target.restrictions.get(MUTE, member.name, self.now_ms())
            if muted is not None:
                raise Refusal("muted", f"you are muted in {target.name} "
                                       f"{describe_until(muted.until, self.now_ms())}; "
                                       f"message not sent")
            if self.store.backlog_full():
                raise Refusal("busy", "the server cannot store messages as fast as they "
                                      "arrive; message not sent, try again in a moment")
        except Refusal as err:
            self.sink.reply(member, ev.Refused(err.code, str(err), cid))
            return
        mid = self.ids.next()
        now = self.now_ms()
        said = ev.Said(target.name, mid, now, member.name, text, action)
        target.history.append(said)
        self.store.append(said)
        self.said += 1
        self.fanout.publish(target.name, said)
        self.sink.reply(member, ev.Done(cid, mid, now))

    def command(self, member: Member, line: str, cid: Optional[str],
                room: Optional[str] = None) -> None:
        """A ``/command`` line; ``room`` is the room it applies to when it names none."""
        try:
            if not line.startswith("/") or len(line) < 2 or line[1].isspace():
                raise Refusal("bad_command", "a command starts with / (try /help)")
            name, _, rest = line[1:].partition(" ")
            command = find(name)
            if command is None:
                raise Refusal("bad_command", f"unknown command /{name[:32]} (try /help)")
            if command.admin and not member.admin:
                raise Refusal("forbidden", f"/{command.name} is for server admins")
            if command.rooms and not member.aware:
                raise Refusal("bad_command", NEEDS_ROOMS)
            if getattr(self, command.handler)(member, rest.strip(), cid, room) is False:
                return
        except Refusal as err:
            self.sink.reply(member, ev.Refused(err.code, str(err), cid))
            return
        except StoreError as err:  # a read the command needed failed: this request only
            log.warning("%s: /%s: %s", member.name, line[1:].partition(" ")[0][:32], err)
            self.sink.reply(member, ev.Refused("busy", STORE_DOWN, cid))
            return
        if cid is not None:
            self.sink.reply(member, ev.Done(cid, 0, self.now_ms()))

    # -- helpers ------------------------------------------------------------------------
    def _info(self, member: Member, text: str, cid: Optional[str] = None) -> None:
        self.sink.reply(member, ev.Info(text, self.now_ms()), cid)

    def _add(self, room: Room, member: Member) -> None:
        first = not room.members
        room.members[member.key] = member
        if room.name not in member.rooms:
            member.rooms.append(room.name)
        if first and self.peers is not None:
            self.peers.entered(room)

    def _take_out(self, member: Member, room: Room, tell: bool = True) -> bool:
        """Take ``member`` out of ``room`` (no event); its focus moves to its last room.
        Returns True when the focus moved (``tell``: say so to the member now)."""
        room.members.pop(member.key, None)
        if room.name in member.rooms:
            member.rooms.remove(room.name)
        member.cursors.pop(room.name, None)
        if member.focus != room.name:
            return False
        member.focus = member.rooms[-1] if member.rooms else None
        if tell:
            self._tell_focus(member)
        return True

    def _tell_focus(self, member: Member, cid: Optional[str] = None) -> None:
        if member.aware and self.members.get(member.key) is member:
            self.sink.reply(member, ev.Focus(member.focus), cid)

    def _detach(self, member: Member) -> List[str]:
        """Take a session out of every room silently (it is being replaced)."""
        names = list(member.rooms)
        for name in names:
            room = self.rooms.get(name)
            if room is not None and room.members.get(member.key) is member:
                del room.members[member.key]
                self.store.mark_read(member.name, name, room.history.last_id)
        member.rooms.clear()
        return names

    def _forget_member(self, room: Room) -> None:
        """A stored membership ended: a room nobody belongs to any more goes, with its history."""
        if room.lobby:
            return
        room.stored_members -= 1
        if self.peers is not None:
            # The store knows who belongs to it across the cluster; this count does not.
            if not room.members and not room.remote:
                self.peers.emptied(room)
            return
        if room.stored_members <= 0 and not room.members:
            del self.rooms[room.name]
            self.store.delete_room(room.name)
            log.info("room %s removed: its last member left", room.name)

    def _room_of(self, member: Member, name: Optional[str]) -> Room:
        """The room a request applies to: ``name`` (one the member is in), else its focus."""
        if not member.aware:
            name = LOBBY
        if name:
            key = room_key(name)
            room = self.rooms.get(key)
            if room is None or member.key not in room.members:
                if room is None or not room.visible_to(member):
                    raise Refusal("not_in_room", f"you are not in {key}")
                raise Refusal("not_in_room", f"you are not in {key}; /join {key} first")
            return room
        if member.focus is None or member.focus not in self.rooms:
            raise Refusal("not_in_room", "you are in no room; /join one (/rooms lists them)")
        return self.rooms[member.focus]

    def _visible_room(self, member: Member, name: str) -> Room:
        key = room_key(name.split()[0])
        room = self.rooms.get(key)
        if room is None or not room.visible_to(member):
            raise Refusal("no_such_room", f"no such room: {key}")
        return room

    def _show_room(self, member: Member, room: Room, last_read: int, budget: List[int],
                   cid: Optional[str] = None) -> None:
        """Send ``member`` the state of ``room`` and the messages after ``last_read``
        (``cid``: the request this answers, a /join)."""
        if not member.aware:
            return
        now = self.now_ms()
        self.sink.reply(member, ev.RoomState(room.name, room.topic, room.private, room.owner,
                                             room.ops_names(), room.names(), now), cid)
        if self.peers is not None and self.peers.backlog_later(member, room, last_read, budget):
            return
        self.send_backlog(member, room, room.history.unseen(last_read, self.limits.backlog),
                          budget, cid)

    def send_backlog(self, member: Member, room: Room, items, budget: List[int],
                     cid: Optional[str] = None) -> None:
        """Send ``items`` (a room's messages, oldest first) as history, the newest first
        within what is left of ``budget`` (bytes); the member's /history goes on from them
        (``cid``: the request they answer)."""
        items = self._fresh(items)
        kept = []
        for said in reversed(items):
            size = len(said.text.encode("utf-8")) + 128
            if size > budget[0]:
                break
            budget[0] -= size
            kept.append(said)
        kept.reverse()
        member.cursors[room.name] = kept[0].id if kept else room.history.last_id + 1
        for said in kept:
            self.sink.reply(member, said.as_history(), cid)

    @staticmethod
    def _check_line(text: str, what: str) -> None:
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text):
            article = "an" if what[0] in "aeiou" else "a"
            raise Refusal("invalid", f"{article} {what} is one line without control characters")

    def _user_named(self, name: str):
        """The account called ``name`` (online or not); Refusal when there is none."""
        member = self.members.get(name.lower()) or self.remote.get(name.lower())
        if member is not None:
            return member.name, member.admin
        info = self.store.user(name) if len(name) <= 32 else None
        if info is None:
            raise Refusal("no_such_user", f"no such user: {shown(name)}")
        return info.name, info.admin
