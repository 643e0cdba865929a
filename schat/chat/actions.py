"""Roles and moderation: topics, modes, invitations, ops, kicks, bans, mutes, and the
admin and operator actions that end sessions. A mixin of :class:`schat.chat.chat.Chat`.

Who may act on whom: an actor needs the rank a command asks for in the room
(op, owner; server admins rank above both everywhere, the operator at the
control socket above all) and a rank above its target's, so nobody kicks,
bans or mutes themselves, an owner, or an admin.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from schat.chat import events as ev
from schat.chat.errors import Refusal
from schat.chat.moderation import BAN, MUTE, Restriction, describe_until, parse_duration
from schat.chat.members import Remote
from schat.chat.names import check_user, room_key, user_key
from schat.chat.rooms import MEMBER, OP, OPERATOR, OWNER, RANK_NAMES, Room

log = logging.getLogger("schat.chat")

_ARTICLE = {OP: "an op", OWNER: "the owner", 3: "a server admin", OPERATOR: "the operator"}
CLOSE_CODES = {"disconnect": "disconnected", "lock": "locked", "remove": "removed",
               "kick": "kicked", "ban": "banned"}


class Actions:
    """Moderation commands and operator actions (mixed into Chat)."""

    # -- rights ---------------------------------------------------------------------
    def _authority(self, actor, room: Room, need: int, what: str) -> int:
        rank = OPERATOR if actor is None else room.rank(actor.name, actor.admin)
        if rank < need:
            raise Refusal("forbidden", f"only the {RANK_NAMES[need]}s of {room.name} and "
                                       f"above may {what}" if need == OP else
                                       f"only the owner of {room.name} and server admins "
                                       f"may {what}")
        return rank

    def _target(self, actor, room: Room, name: str, rank: int, what: str):
        target_name, target_admin = self._user_named(check_user(name))
        if actor is not None and user_key(target_name) == actor.key:
            raise Refusal("invalid", f"you cannot {what} yourself")
        target_rank = room.rank(target_name, target_admin)
        if target_rank >= rank:
            raise Refusal("forbidden", f"{target_name} is {_ARTICLE[target_rank]} of "
                                       f"{room.name}; you cannot {what} them"
                          if target_rank < 3 else
                          f"{target_name} is a server admin; you cannot {what} them")
        return target_name

    def _moderate(self, actor, room: Room, action: str, target: str, reason: str,
                  until: Optional[int] = None, now: Optional[int] = None) -> None:
        # A ban's or mute's event carries the time of the restriction itself: other
        # processes of a cluster settle concurrent ones by it (Restriction.stamp).
        now = self.now_ms() if now is None else now
        event = ev.Moderated(room.name, action, actor.name if actor is not None else None,
                             target, reason, until, now)
        member = self.members.get(user_key(target)) if target else None
        was_in = member is not None and member.key in room.members
        moved = False
        if action in ev.REMOVING and was_in:
            moved = self._take_out(member, room, tell=False)
        elif action in ev.REMOVING and target and user_key(target) in room.remote:
            # Online on another process of the cluster: that one takes the session out.
            self.leave_remote(user_key(target), room)
            was_in = True
        self.fanout.publish(room.name, event)
        if moved:
            self._tell_focus(member)
        log.info("moderation in %s: %s %s %s%s", room.name,
                 actor.name if actor is not None else "the operator", action, target or "-",
                 f" ({reason!r})" if reason else "")
        if action in ev.REMOVING:
            self.store.remove_membership(target, room.name)
            if was_in:
                self._forget_member(room)
            if member is not None and was_in and not member.aware and room.lobby:
                # A client that knows no rooms has nothing left without #lobby.
                self.sink.close(member, CLOSE_CODES[action], ev.describe(event, now))

    def leave_remote(self, key: str, room: Room) -> None:
        """A session on another process (user key) is no longer in ``room``."""
        room.remote.pop(key, None)
        remote = self.remote.get(key)
        if remote is not None and room.name in remote.rooms:
            remote.rooms.remove(room.name)

    @staticmethod
    def _split(args: str, usage: str):
        words = args.split(None, 1)
        if not words:
            raise Refusal("bad_command", f"usage: {usage}")
        return words[0], (words[1].strip() if len(words) > 1 else "")

    # -- topic and mode ---------------------------------------------------------------
    def cmd_topic(self, member, args, cid, room):
        target = self._room_of(member, room)
        if not args:
            text = (f"topic of {target.name}: {target.topic} (set by {target.topic_by})"
                    if target.topic else f"{target.name} has no topic")
            self._info(member, text, cid)
            return
        self._authority(member, target, OP, "set the topic")
        topic = "" if args == "-" else args
        size = len(topic.encode("utf-8"))
        if size > self.limits.topic_bytes:
            raise Refusal("limit", f"a topic is at most {self.limits.topic_bytes} bytes, "
                                   f"not {size}")
        self._check_line(topic, "topic")
        now = self.now_ms()
        target.topic, target.topic_by, target.topic_time = topic, member.name, now
        self.store.set_topic(target.name, topic, member.name, now)
        self.fanout.publish(target.name, ev.TopicChanged(target.name, topic, member.name, now))
        log.info("topic of %s set by %s", target.name, member.name)

    def cmd_mode(self, member, args, cid, room):
        mode = args.strip().lower()
        if mode not in ("private", "public"):
            raise Refusal("bad_command", "usage: /room private|public")
        target = self._room_of(member, room)
        if target.lobby:
            raise Refusal("invalid", "#lobby is open to everyone")
        self._authority(member, target, OP, "change the room's mode")
        if target.private == (mode == "private"):
            self._info(member, f"{target.name} is already {mode}", cid)
            return
        target.private = mode == "private"
        self.store.set_mode(target.name, target.private)
        self._moderate(member, target, mode, "", "")

    # -- invitations and roles ---------------------------------------------------------
    def cmd_invite(self, member, args, cid, room):
        name, _ = self._split(args, "/invite NAME")
        target = self._room_of(member, room)
        self._authority(member, target, OP if target.private else MEMBER,
                        "invite to a private room")
        invitee, _admin = self._user_named(check_user(name))
        key = user_key(invitee)
        if target.has(key):
            raise Refusal("invalid", f"{invitee} is already in {target.name}")
        if key not in target.invited and len(target.invited) >= self.limits.entries_per_room:
            raise Refusal("limit", f"{target.name} has {len(target.invited)} open invitations, "
                                   f"its limit")
        target.invited[key] = invitee
        self.store.set_invite(target.name, invitee, True)
        self._moderate(member, target, "invite", invitee, "")
        self.fanout.publish("@" + key, ev.Invited(invitee, target.name, member.name,
                                                  self.now_ms()))

    def cmd_op(self, member, args, cid, room):
        self._set_op(member, args, room, True)

    def cmd_deop(self, member, args, cid, room):
        self._set_op(member, args, room, False)

    def _set_op(self, member, args, room, on: bool) -> None:
        name, _ = self._split(args, "/op NAME" if on else "/deop NAME")
        target = self._room_of(member, room)
        rank = self._authority(member, target, OWNER, "give or take the op role")
        who = self._target(member, target, name, rank if on else rank, "op" if on else "deop")
        key = user_key(who)
        if on == (key in target.ops):
            raise Refusal("invalid", f"{who} {'is already' if on else 'is not'} an op of "
                                     f"{target.name}")
        if on:
            target.ops[key] = who
        else:
            del target.ops[key]
        self.store.set_op(target.name, who, on)
        self._moderate(member, target, "op" if on else "deop", who, "")

    # -- kick, ban, mute ------------------------------------------------------------------
    def cmd_kick(self, member, args, cid, room):
        name, reason = self._split(args, "/kick NAME [REASON]")
        target = self._room_of(member, room)
        self.kick(member, target, name, reason)

    def kick(self, actor, room: Room, name: str, reason: str) -> str:
        rank = self._authority(actor, room, OP, "kick")
        who = self._target(actor, room, name, rank, "kick")
        self._check_line(reason, "reason")
        if not room.has(user_key(who)):
            raise Refusal("not_in_room", f"{who} is not in {room.name}")
        self._moderate(actor, room, "kick", who, reason)
        return who

    def cmd_ban(self, member, args, cid, room):
        self._restrict(member, args, room, BAN)

    def cmd_mute(self, member, args, cid, room):
        self._restrict(member, args, room, MUTE)

    def _restrict(self, member, args, room, kind: str) -> None:
        name, rest = self._split(args, f"/{kind} NAME [DURATION] [REASON]")
        target = self._room_of(member, room)
        rank = self._authority(member, target, OP, kind)
        who = self._target(member, target, name, rank, kind)
        seconds = None
        if rest:
            first, _, tail = rest.partition(" ")
            seconds = parse_duration(first)
            if seconds is not None:
                rest = tail.strip()
        self._check_line(rest, "reason")
        now = self.now_ms()
        if (target.restrictions.get(kind, who, now) is None
                and len(target.restrictions) >= self.limits.entries_per_room):
            raise Refusal("limit", f"{target.name} has {len(target.restrictions)} bans and "
                                   f"mutes, its limit; lift some first")
        until = now + seconds * 1000 if seconds is not None else None
        item = Restriction(target.name, kind, who, member.name, rest, until, now)
        target.restrictions.apply(item)
        self.store.put_restriction(item)
        self._moderate(member, target, kind, who, rest, until, now)

    def cmd_unban(self, member, args, cid, room):
        self._lift(member, args, room, BAN)

    def cmd_unmute(self, member, args, cid, room):
        self._lift(member, args, room, MUTE)

    def _lift(self, member, args, room, kind: str) -> None:
        name, _ = self._split(args, f"/un{kind} NAME")
        target = self._room_of(member, room)
        self._authority(member, target, OP, f"un{kind}")
        if target.restrictions.get(kind, name, self.now_ms()) is None:
            raise Refusal("invalid", f"{check_user(name)} is not "
                                     f"{'banned from' if kind == BAN else 'muted in'} "
                                     f"{target.name}")
        now = self.now_ms()
        user = target.restrictions.get(kind, name, now).user
        lifted = Restriction.lifted(target.name, kind, user, member.name, now)
        target.restrictions.apply(lifted)
        self.store.put_restriction(lifted)
        self._moderate(member, target, "un" + kind, user, "", None, now)

    def cmd_bans(self, member, args, cid, room):
        target = self._room_of(member, room)
        self._authority(member, target, OP, "list bans and mutes")
        now = self.now_ms()
        items = target.restrictions.active(now)
        if not items:
            self._info(member, f"no bans or mutes in {target.name}", cid)
            return
        lines = [f"{'banned' if r.kind == BAN else 'muted'}: {r.user} "
                 f"{describe_until(r.until, now)} by {r.actor or 'the operator'}"
                 f"{': ' + r.reason if r.reason else ''}" for r in items]
        self._info(member, f"{target.name}:\n" + "\n".join(lines), cid)

    # -- ending sessions ----------------------------------------------------------------
    def cmd_disconnect(self, member, args, cid, room):
        name, reason = self._split(args, "/disconnect NAME [REASON]")
        self._check_line(reason, "reason")
        key = check_user(name).lower()
        target = self.members.get(key) or self.remote.get(key)
        if target is None:
            raise Refusal("no_such_user", f"{name} is not online")
        if target is member:
            raise Refusal("invalid", "you cannot disconnect yourself (/quit leaves)")
        if target.admin:
            raise Refusal("forbidden", f"{target.name} is a server admin; you cannot "
                                       f"disconnect them")
        self.end_session(member, target, "disconnect", reason)

    def cmd_lock(self, member, args, cid, room):
        name, reason = self._split(args, "/lock NAME [REASON]")
        self._check_line(reason, "reason")
        who, admin = self._user_named(check_user(name))
        if user_key(who) == member.key:
            raise Refusal("invalid", "you cannot lock yourself")
        if admin:
            raise Refusal("forbidden", f"{who} is a server admin; you cannot lock them")
        self.store.lock_account(who)
        log.info("account %s locked by %s%s", who, member.name,
                 f" ({reason!r})" if reason else "")
        target = self.members.get(user_key(who)) or self.remote.get(user_key(who))
        if target is not None:
            self.end_session(member, target, "lock", reason)
        else:
            self._info(member, f"locked {who} (not online)", cid)

    def end_session(self, actor, target, action: str, reason: str) -> None:
        """End ``target``'s session, shown to each of its rooms as ``action`` by ``actor``
        (None: the operator). Its memberships are kept. A session on another process
        of a cluster (a :class:`~schat.chat.members.Remote`) is ended by that process."""
        if isinstance(target, Remote):
            log.info("asking %s to end the session of %s: %s by %s", target.node, target.name,
                     action, actor.name if actor is not None else "the operator")
            self.peers.end(target, action, actor.name if actor is not None else None, reason)
            return
        now = self.now_ms()
        if self.members.get(target.key) is target:
            del self.members[target.key]
        self._profiles.pop(target.key, None)
        text = ""
        for name in list(target.rooms):
            room = self.rooms.get(name)
            if room is None:
                continue
            room.members.pop(target.key, None)
            self.store.mark_read(target.name, name, room.history.last_id)
            event = ev.Moderated(name, action, actor.name if actor is not None else None,
                                 target.name, reason, None, now)
            self.fanout.publish(name, event)
        target.rooms.clear()
        text = ev.describe(ev.Moderated("", action, actor.name if actor is not None else None,
                                        target.name, reason, None, now), now)
        log.info("session of %s ended: %s by %s%s", target.name, action,
                 actor.name if actor is not None else "the operator",
                 f" ({reason!r})" if reason else "")
        if self.peers is not None:
            self.peers.logout(target)
        self.sink.close(target, CLOSE_CODES[action], text)

    # -- the operator (control socket) ---------------------------------------------------
    def who_online(self) -> List[dict]:
        """Every session (a cluster: on every process, ``node`` saying which; "" is this
        one), for `schat admin who`."""
        sessions = [*self.members.values(), *self.remote.values()]
        return [{"name": m.name, "address": m.peer, "since": m.since, "admin": m.admin,
                 "rooms": list(m.rooms), "client": "rooms" if m.aware else "lobby only",
                 "node": getattr(m, "node", "")}
                for m in sorted(sessions, key=lambda m: m.key)]

    def operator_kick(self, name: str, room: Optional[str], reason: str) -> List[str]:
        """Kick ``name`` out of ``room`` (None: out of every room it is in)."""
        key = check_user(name).lower()
        target = self.members.get(key) or self.remote.get(key)
        if target is None:
            raise Refusal("no_such_user", f"{name} is not online")
        self._check_line(reason, "reason")
        names = [room_key(room)] if room else list(target.rooms)
        for key in names:
            if key not in self.rooms:
                raise Refusal("no_such_room", f"no such room: {key}")
        done = []
        for key in names:
            self.kick(None, self.rooms[key], target.name, reason)
            done.append(key)
        return done

    def operator_end(self, name: str, action: str, reason: str) -> bool:
        """End ``name``'s session (disconnect, lock, remove); False when it is not online."""
        self._check_line(reason, "reason")
        target = self.members.get(name.lower()) or self.remote.get(name.lower())
        if target is None:
            return False
        self.end_session(None, target, action, reason)
        return True

    def broadcast(self, text: str) -> int:
        """A notice to everyone online; returns how many sessions it reached."""
        self.fanout.publish("*", ev.Announcement(text, self.now_ms()))
        log.info("operator broadcast to %d session(s)", self.sessions())
        return self.sessions()

    def set_motd(self, text: str, everywhere: bool = True) -> int:
        """Change the message of the day; everyone online here is shown the new one, and
        (``everywhere``, a cluster) every other process takes it too."""
        self.motd = text
        if text:
            self.local.publish("*", ev.Announcement("new message of the day:\n" + text,
                                                    self.now_ms()))
        if everywhere and self.peers is not None:
            self.peers.motd(text)
        log.info("message of the day changed%s", " by the operator" if everywhere else "")
        return self.sessions() if everywhere else len(self.members)
