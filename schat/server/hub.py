"""The chat domain: who is online, who receives what, and the chat commands.

The hub knows nothing of sockets. Each :class:`Member` has an outbox, a list
of already-encoded messages; the hub appends to it and remembers which members
became dirty. The I/O layer (``schat.server.app``) takes the dirty members once
per event-loop iteration and sends each outbox as one encrypted record.

A broadcast is encoded once; the same ``bytes`` object goes into every
recipient's outbox. This loop is the server's hot path, so it does the least
work possible per recipient.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional

from schat.protocol import messages
from schat.protocol.schema import MAX_LIST_ITEMS, MAX_TEXT_BYTES
from schat.server.limits import OUTBOUND_CAP

Clock = Callable[[], float]

# An away message is a short note, not a second chat channel.
MAX_AWAY_CHARS = 200

PLAINTEXT_DM_REFUSED = ("private messages are end-to-end encrypted and this server no longer "
                        "relays them in plaintext; update your schat client, which seals "
                        "/msg for the recipient")


class NameInUse(Exception):
    """The name is already logged in on another connection."""


class Member:
    """One logged-in connection as the hub sees it."""

    __slots__ = ("name", "outbox", "queued", "dirty", "closing", "overflowed", "joined", "link",
                 "away")

    def __init__(self, name: str, joined: int):
        self.name = name
        # Opaque handle of the I/O layer (its connection object); the hub never uses it.
        self.link = None
        self.outbox: List[bytes] = []
        self.queued = 0
        self.dirty = False
        # Reason to close once the outbox is flushed (None: stay connected).
        self.closing: Optional[str] = None
        self.overflowed = False
        self.joined = joined
        # The member's away message (/away), shown in /who; None while present.
        self.away: Optional[str] = None

    def __repr__(self) -> str:
        return f"Member({self.name!r})"


class Command:
    """A chat command: ``/name`` with its usage line, help text and handler."""

    __slots__ = ("name", "usage", "help", "handler")

    def __init__(self, name: str, usage: str, help: str, handler: Callable):
        self.name = name
        self.usage = usage
        self.help = help
        self.handler = handler


class Hub:
    """Members, routing and chat commands of one server."""

    def __init__(self, server_name: str = "schat", motd: str = "",
                 outbound_cap: int = OUTBOUND_CAP, clock: Clock = time.time,
                 wake: Optional[Callable[[], None]] = None):
        self.server_name = server_name
        self.motd = motd
        self.outbound_cap = outbound_cap
        self._clock = clock
        self._wake = wake
        # Keyed by the lower-cased name: names are unique regardless of case.
        self._members: Dict[str, Member] = {}
        self._order: List[Member] = []
        self._dirty: List[Member] = []
        self._next_id = 1
        self.deliveries = 0
        self.commands: Dict[str, Command] = {c.name: c for c in (
            Command("help", "/help", "list the chat commands", self._cmd_help),
            Command("who", "/who", "list who is online", self._cmd_who),
            Command("me", "/me ACTION", "say ACTION in the third person", self._cmd_me),
            Command("msg", "/msg NAME TEXT",
                    "send TEXT to NAME alone, end-to-end encrypted by your client",
                    self._cmd_msg),
            Command("away", "/away [MESSAGE]",
                    "mark yourself away, shown in /who (/away alone: back)", self._cmd_away),
            Command("quit", "/quit", "leave the chat", self._cmd_quit),
        )}

    # -- membership -------------------------------------------------------
    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def is_online(self, name: str) -> bool:
        return name.lower() in self._members

    def member(self, name: str) -> Optional[Member]:
        """The member logged in as ``name`` (any case), or None."""
        return self._members.get(name.lower())

    def names(self) -> List[str]:
        """Names online, sorted case-insensitively."""
        return sorted((m.name for m in self._order), key=str.lower)

    def __len__(self) -> int:
        return len(self._order)

    def join(self, name: str) -> Member:
        """Add a logged-in member: welcome it and tell everyone else.

        Raises NameInUse when the name is already online.
        """
        key = name.lower()
        if key in self._members:
            raise NameInUse(name)
        now = self.now_ms()
        member = Member(name, now)
        self._members[key] = member
        self._order.append(member)
        names = self.names()
        self.queue(member, messages.Welcome(user=name, server=self.server_name, motd=self.motd,
                                            users=names[:MAX_LIST_ITEMS], time=now))
        if len(names) > MAX_LIST_ITEMS:
            self._queue_users(member, names)
        self._broadcast(messages.encode(messages.Join(user=name, time=now)), exclude=member)
        return member

    def leave(self, member: Member, reason: str) -> None:
        """Remove ``member`` (idempotent) and tell the others why it left."""
        if self._members.get(member.name.lower()) is not member:
            return
        del self._members[member.name.lower()]
        self._order.remove(member)
        member.outbox.clear()
        member.queued = 0
        self._broadcast(messages.encode(
            messages.Leave(user=member.name, time=self.now_ms(), reason=reason)))

    def shutdown(self, reason: str) -> None:
        """Say goodbye to every member; the I/O layer closes them after the flush."""
        data = messages.encode(messages.Bye(reason=reason))
        for member in list(self._order):
            self._push(member, data)
            member.closing = reason

    # -- output -----------------------------------------------------------
    def queue(self, member: Member, msg) -> None:
        """Queue one message for one member."""
        self._push(member, messages.encode(msg))

    def queue_encoded(self, member: Member, data: bytes) -> None:
        """Queue one already-encoded message (e.g. a reply encoded once per server)."""
        self._push(member, data)

    def take_dirty(self) -> List[Member]:
        """Members with something to send (or to close) since the last call."""
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for member in dirty:
                member.dirty = False
        return dirty

    def _push(self, member: Member, data: bytes) -> None:
        if member.overflowed:
            return
        member.outbox.append(data)
        member.queued += len(data)
        if member.queued > self.outbound_cap:
            self._overflow(member)
        if not member.dirty:
            member.dirty = True
            self._dirty.append(member)
            if len(self._dirty) == 1 and self._wake is not None:
                self._wake()

    def _broadcast(self, data: bytes, exclude: Optional[Member] = None) -> None:
        # The hot path: one bytes object shared by every outbox.
        size = len(data)
        cap = self.outbound_cap
        dirty = self._dirty
        was_clean = not dirty
        count = 0
        for member in self._order:
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

    def _overflow(self, member: Member) -> None:
        # A slow consumer is dropped alone; its backlog is freed at once.
        member.overflowed = True
        member.closing = "too slow: output buffer full"
        member.outbox.clear()
        member.queued = 0

    def _next_message_id(self) -> int:
        mid = self._next_id
        self._next_id = mid + 1
        return mid

    def _error(self, member: Member, code: str, text: str, cid: Optional[str] = None) -> None:
        self.queue(member, messages.Error(code=code, text=text, cid=cid))

    # -- input ------------------------------------------------------------
    def handle(self, member: Member, msg) -> None:
        """Act on one message from a logged-in member."""
        if isinstance(msg, messages.Say):
            self._say(member, msg.text, msg.action, msg.cid)
        elif isinstance(msg, messages.Command):
            self._command(member, msg.line, msg.cid)
        elif isinstance(msg, messages.Msg):
            self._error(member, "encryption_required", PLAINTEXT_DM_REFUSED, msg.cid)
        elif isinstance(msg, messages.Who):
            self._cmd_who(member, "", None)
        elif isinstance(msg, messages.Ping):
            self.queue(member, messages.Pong(n=msg.n))
        elif isinstance(msg, messages.Pong):
            pass  # any traffic already counts as liveness for the I/O layer
        elif isinstance(msg, messages.Bye):
            member.closing = "left"
            if not member.dirty:
                member.dirty = True
                self._dirty.append(member)
                if len(self._dirty) == 1 and self._wake is not None:
                    self._wake()
        else:
            self._error(member, "invalid", f"{type(msg).__name__} is not allowed after login",
                        getattr(msg, "cid", None))

    def _say(self, member: Member, text: str, action: bool, cid: str) -> None:
        mid = self._next_message_id()
        now = self.now_ms()
        self._broadcast(messages.encode(messages.ChatMessage(
            id=mid, time=now, sender=member.name, text=text, action=action)), exclude=member)
        self.queue(member, messages.Ack(cid=cid, id=mid, time=now))

    def _command(self, member: Member, line: str, cid: str) -> None:
        if not line.startswith("/") or len(line) < 2:
            self._error(member, "bad_command", "a command starts with / (try /help)", cid)
            return
        name, _, rest = line[1:].partition(" ")
        command = self.commands.get(name.lower())
        if command is None:
            self._error(member, "bad_command", f"unknown command /{name[:32]} (try /help)", cid)
            return
        command.handler(member, rest.strip(), cid)

    # -- chat commands ----------------------------------------------------
    def _cmd_help(self, member: Member, args: str, cid: Optional[str]) -> None:
        width = max(len(c.usage) for c in self.commands.values())
        lines = [f"{c.usage.ljust(width)}  {c.help}" for c in self.commands.values()]
        self.queue(member, messages.Notice(text="\n".join(lines), time=self.now_ms()))
        self._ack(member, cid)

    def _cmd_who(self, member: Member, args: str, cid: Optional[str]) -> None:
        self._queue_users(member, self.names())
        away = [f"{m.name} ({m.away})" for m in sorted(self._order, key=lambda m: m.name.lower())
                if m.away is not None]
        if away:
            # One notice, within the size of one message; the rest is counted.
            text, shown = "away: ", 0
            for entry in away:
                if len((text + entry).encode("utf-8")) > MAX_TEXT_BYTES - 32:
                    break
                text += (", " if shown else "") + entry
                shown += 1
            if shown < len(away):
                text += f" and {len(away) - shown} more"
            self.queue(member, messages.Notice(text=text, time=self.now_ms()))
        self._ack(member, cid)

    def _cmd_away(self, member: Member, args: str, cid: Optional[str]) -> None:
        if len(args) > MAX_AWAY_CHARS:
            self._error(member, "bad_command",
                        f"an away message is at most {MAX_AWAY_CHARS} characters", cid)
            return
        member.away = " ".join(args.split()) or None
        self._ack(member, cid)

    def _queue_users(self, member: Member, names: List[str]) -> None:
        # A users message holds at most MAX_LIST_ITEMS names; `more` chains the rest.
        for start in range(0, max(len(names), 1), MAX_LIST_ITEMS):
            chunk = names[start:start + MAX_LIST_ITEMS]
            self.queue(member, messages.Users(
                users=chunk, more=start + MAX_LIST_ITEMS < len(names)))

    def _cmd_me(self, member: Member, args: str, cid: Optional[str]) -> None:
        if not args:
            self._error(member, "bad_command", "usage: /me ACTION", cid)
            return
        self._say(member, args, True, cid)

    def _cmd_msg(self, member: Member, args: str, cid: Optional[str]) -> None:
        # A client that sends /msg to the server would send the text in plaintext.
        self._error(member, "encryption_required", PLAINTEXT_DM_REFUSED, cid)

    def _cmd_quit(self, member: Member, args: str, cid: Optional[str]) -> None:
        self._ack(member, cid)
        self.queue(member, messages.Bye(reason="quit"))
        member.closing = "quit"

    def _ack(self, member: Member, cid: Optional[str]) -> None:
        if cid is not None:
            self.queue(member, messages.Ack(cid=cid, id=0, time=self.now_ms()))
