"""The commands every member has: /help, /who, /away, /me, /msg, /quit, /rooms, /join,
/part, /switch, /history. A mixin of :class:`schat.chat.chat.Chat` (moderation is in
:mod:`schat.chat.actions`).

Each ``cmd_NAME(member, args, cid, room)`` answers through ``self.sink.reply`` with
the request's ``cid``, refuses with :class:`~schat.chat.errors.Refusal`, and returns
False when it has already answered the request itself (its acknowledgement is then
not sent again).
"""

from __future__ import annotations

import logging

from schat.chat import events as ev
from schat.chat.commands import find, help_text
from schat.chat.errors import Refusal
from schat.chat.history import HistoryWindow
from schat.chat.moderation import BAN, describe_until
from schat.chat.names import LOBBY, room_key
from schat.chat.rooms import MEMBER, Room, RoomRecord

log = logging.getLogger("schat.chat")

PLAINTEXT_DM_REFUSED = ("private messages are end-to-end encrypted and this server no longer "
                        "relays them in plaintext; update your schat client, which seals "
                        "/msg for the recipient")


class MemberCommands:
    """The commands without moderation (mixed into Chat)."""

    def cmd_help(self, member, args, cid, room):
        if args:
            command = find(args.lstrip("/").split()[0])
            if command is None:
                raise Refusal("bad_command", f"no command /{args.lstrip('/')[:32]}")
            self._info(member, f"{command.usage}  {command.help}", cid)
        else:
            self._info(member, help_text(member.admin), cid)

    def cmd_who(self, member, args, cid, room):
        target = self._visible_room(member, args) if args else self._room_of(member, room)
        present = list(target.members.values())
        if target.remote:   # members on the cluster's other processes
            present.extend(r for k, r in ((k, self.remote.get(k)) for k in target.remote)
                           if r is not None and k not in target.members)
        away = tuple(sorted(((m.name, m.away) for m in present if m.away is not None),
                            key=lambda pair: pair[0].lower()))
        self.sink.reply(member, ev.Names(target.name, target.names(), away), cid)

    def cmd_away(self, member, args, cid, room):
        text = " ".join(args.split())
        if len(text) > self.limits.away_chars:
            raise Refusal("limit", f"an away message is at most {self.limits.away_chars} "
                                   f"characters")
        self._check_line(text, "away message")
        member.away = text or None
        if self.peers is not None:
            self.peers.away(member)

    def cmd_me(self, member, args, cid, room):
        if not args:
            raise Refusal("bad_command", "usage: /me ACTION")
        self.say(member, args, True, cid, room)
        return False

    def cmd_msg(self, member, args, cid, room):
        raise Refusal("encryption_required", PLAINTEXT_DM_REFUSED)

    def cmd_quit(self, member, args, cid, room):
        if cid is not None:
            self.sink.reply(member, ev.Done(cid, 0, self.now_ms()))
        self.sink.close(member, "", "quit")
        return False

    def cmd_rooms(self, member, args, cid, room):
        infos = tuple(ev.RoomInfo(r.name, r.online(), r.topic, r.private,
                                  member.key in r.members)
                      for r in sorted(self.rooms.values(), key=lambda r: r.name)
                      if r.visible_to(member))
        self.sink.reply(member, ev.RoomList(infos), cid)

    def cmd_join(self, member, args, cid, room):
        if not args:
            raise Refusal("bad_command", "usage: /join #ROOM")
        name = room_key(args.split()[0])
        now = self.now_ms()
        target = self.rooms.get(name)
        if target is not None and member.key in target.members:
            member.focus = name
            self.sink.reply(member, ev.Focus(name), cid)
            return
        if len(member.rooms) >= self.limits.rooms_per_member:
            raise Refusal("limit", f"you are in {len(member.rooms)} rooms, the most this "
                                   f"server allows; /part one first")
        if target is None:
            if len(self.rooms) >= self.limits.rooms_total:
                raise Refusal("limit", f"this server has {len(self.rooms)} rooms, its limit; "
                                       f"join an existing one (/rooms)")
            record = RoomRecord(name, owner=member.name, created=now)
            self.store.save_room(record)
            target = self.rooms[name] = Room(record, HistoryWindow(self._window))
            log.info("room %s created by %s", name, member.name)
        else:
            ban = target.restrictions.get(BAN, member.name, now)
            if ban is not None and not member.admin:
                raise Refusal("banned", f"you are banned from {name} "
                                        f"{describe_until(ban.until, now)}"
                                        f"{': ' + ban.reason if ban.reason else ''}")
            if (target.private and member.key not in target.invited and not member.admin
                    and target.rank(member.name) == MEMBER):
                raise Refusal("invite_only", f"{name} is invite-only; ask one of its ops "
                                             f"for an /invite")
        if member.key in target.invited:
            del target.invited[member.key]
            self.store.set_invite(name, member.name, False)
        self._add(target, member)
        self.store.add_membership(member.name, name, now)
        if name != LOBBY:
            target.stored_members += 1
        self.fanout.publish(name, ev.Joined(name, member.name, now))
        self._show_room(member, target, 0, [self.limits.backlog_bytes], cid)
        member.focus = name
        self.sink.reply(member, ev.Focus(name), cid)

    def cmd_part(self, member, args, cid, room):
        words = args.split(None, 1)
        if words and words[0].startswith("#"):
            target = self._room_of(member, words[0])
            reason = words[1] if len(words) > 1 else ""
        else:
            target = self._room_of(member, room)
            reason = args
        self._check_line(reason, "reason")
        moved = self._take_out(member, target, tell=False)
        self.store.remove_membership(member.name, target.name)
        self.fanout.publish(target.name, ev.Parted(target.name, member.name, self.now_ms(),
                                                   reason or "left"))
        if moved:
            self._tell_focus(member, cid)
        self._forget_member(target)

    def cmd_switch(self, member, args, cid, room):
        if not args:
            raise Refusal("bad_command", "usage: /switch #ROOM")
        target = self._room_of(member, args.split()[0])
        member.focus = target.name
        self.sink.reply(member, ev.Focus(target.name), cid)

    def cmd_history(self, member, args, cid, room):
        target = self._room_of(member, room)
        page = self.limits.history_page
        if args:
            if not args.isdigit() or int(args) < 1:
                raise Refusal("bad_command", "usage: /history [N] (N: a number of messages)")
            count = int(args)
            if count > page:
                raise Refusal("limit", f"at most {page} messages per /history; ask again "
                                       f"for the ones before")
        else:
            count = min(self.limits.backlog or 50, page)
        before = member.cursors.get(target.name, target.history.last_id + 1)
        window = target.history
        if window.covers(before, count):
            items = window.before(before, count)
        else:
            items = self.store.history_before(target.name, before, count)
        items = self._fresh(items)
        if not items:
            self._info(member, f"no earlier messages in {target.name}", cid)
            return
        member.cursors[target.name] = items[0].id
        for said in items:
            self.sink.reply(member, said.as_history(), cid)
