"""What the chat screen does with an entered line: chat, ``/commands``, local DM commands.

Plain lines and commands name the current room when the server has rooms, so
what you typed goes where the prompt said it would; ``/switch`` (and ``/join``
of a room you are in) changes the current room without asking the server.

Every entered line leaves the input line and goes into the history, sent or
not: a refused one (a mistyped command, a refused ``/msg``, a message over
the size limit, no connection) is named in a warning and comes back with Up,
so what you type next never lands behind it. Private lines (``/msg``, and
lines to a ``/query`` peer) are kept in memory only, never in the history file.
"""

from __future__ import annotations

from typing import Callable, Optional

from schat.client.commands import DM_COMMANDS, MODERATION, lookup
from schat.client.completion import COMMANDS, help_text, split_command, suggest
from schat.client.tui_rooms import room_key
from schat.errors import PolicyError, SchatError
from schat.protocol.schema import MAX_TEXT_BYTES, name_key
from schat.store.policy import validate_username

# Commands the client answers itself through its DmClient; they wait on key look-ups.
LOCAL_COMMANDS = DM_COMMANDS
# Appended to every refusal of an entered line.
RECALL = " (Up brings the line back)"


class LineCommands:
    """Runs entered lines for one :class:`schat.client.tui.ChatTUI`."""

    def __init__(self, tui):
        self.tui = tui
        # The local command being answered (one at a time: they wait on the server).
        self.waiting: Optional[str] = None

    def private(self, text: str) -> bool:
        """Is ``text`` private (a /msg, or a line to the /query peer)? Such lines stay out
        of the history file."""
        parsed = split_command(text)
        if parsed is None:
            return self.tui.query is not None and bool(text.strip())
        name, args = parsed
        return name == "msg" or (name == "query" and " " in args.strip())

    def submit(self, text: str) -> None:
        """Act on one entered line."""
        if not text.strip():
            return
        parsed = split_command(text)
        if parsed is not None:
            self._command(text, *parsed)
            return
        if text.startswith("//"):
            text = text[1:]
        if self.tui.query is not None:
            self._send_private(text, self.tui.query, text)
        else:
            self._say(text, False)

    def _refuse(self, text: str) -> None:
        self.tui.warn(text + RECALL)

    def _command(self, line: str, name: str, args: str) -> None:
        tui = self.tui
        if name == "help":
            key = args.lstrip("/").lower()
            cmd = (lookup(key) or MODERATION.get(key)) if args else None
            if args and cmd is None:
                self._refuse(f"no command /{args[:32]}")
                return
            tui.notice(f"{cmd.usage}  {cmd.help}" if cmd else help_text())
        elif name == "quit":
            tui.quit()
        elif name == "clear":
            tui.app.renderer.clear()
        elif name == "me":
            if not args:
                self._refuse(f"usage: {COMMANDS['me'].usage}")
                return
            self._say(args, True)
        elif name == "away":
            self._server_command(f"/away {args}".rstrip(), "away", args)
        elif name == "query":
            self._query(args)
        elif name in ("ignore", "unignore"):
            self._ignore(name, args)
        elif name == "reconnect":
            tui.reconnect_now()
        elif name == "switch" and tui.rooms.known:
            self._switch(args)
        elif name == "join" and tui.rooms.known and self._join(line, args):
            return
        elif name in LOCAL_COMMANDS:
            self._local(line, name, args)
        elif self._runs_on_server(name):
            # Sent by the command's own name (an alias such as /names or /list is the
            # client's): the server and older servers know these.
            self._server_command(f"/{name} {args}".rstrip(), "command", line)
        else:
            close = suggest(name)
            hint = f"; did you mean /{close}?" if close else "; /help lists the commands"
            self._refuse(f"unknown command /{name[:32]}{hint}")

    @staticmethod
    def _runs_on_server(name: str) -> bool:
        cmd = COMMANDS.get(name) or MODERATION.get(name)
        return cmd is not None and cmd.runs == "server"

    def _offline(self) -> bool:
        if self.tui.online:
            return False
        self._refuse("not connected: nothing was sent; send it again once back online")
        return True

    def _too_long(self, text: str) -> bool:
        size = len(text.encode("utf-8"))
        if size <= MAX_TEXT_BYTES:
            return False
        self._refuse(f"not sent: {size} bytes is over the {MAX_TEXT_BYTES}-byte limit "
                     "for one message")
        return True

    def _roomless(self) -> bool:
        tui = self.tui
        if not tui.rooms.known or tui.rooms.current is not None:
            return False
        self._refuse("you are in no room: nothing was sent; /join one (/rooms lists them)")
        return True

    def _say(self, text: str, action: bool) -> None:
        if self._too_long(text) or self._offline() or self._roomless():
            return
        room = self.tui.current_room()
        self._request(lambda session: session.say(text, action=action, room=room), "say",
                      text, action, room)

    def _server_command(self, line: str, kind: str, a: str) -> None:
        if self._offline():
            return
        room = self.tui.current_room()
        self._request(lambda session: session.command(line, room=room), kind, a, None, room)

    def _request(self, send: Callable, kind: str, a: str, b, room: Optional[str] = None) -> None:
        try:
            cid = send(self.tui.session)
        except SchatError as err:
            self._refuse(f"not sent: {err}")
            return
        self.tui.expect_ack(cid, kind, a, b, room)

    # -- rooms -------------------------------------------------------------------
    def _switch(self, args: str) -> None:
        tui, rooms = self.tui, self.tui.rooms
        target = args.split()[0] if args.split() else ""
        if not target:
            self._refuse(f"usage: {COMMANDS['switch'].usage}")
            return
        if target.isdigit():
            room = rooms.by_number(int(target))
            if room is None:
                count = len(rooms.order())
                self._refuse(f"no room number {target[:8]}: you are in {count} room"
                             f"{'' if count == 1 else 's'} (the toolbar numbers them)")
                return
        else:
            room = room_key(target)
            if room is None or room not in rooms.views:
                shown = room or target[:40]
                self._refuse(f"you are not in {shown}; /join {shown} first")
                return
        tui.switch(room)

    def _join(self, line: str, args: str) -> bool:
        """/join of a room you are in only switches to it (True: done here); any other
        is sent, and its room becomes the current one once you are in."""
        words = args.split()
        room = room_key(words[0]) if words else None
        if room is None:
            return False
        if room in self.tui.rooms.views:
            self.tui.switch(room)
            return True
        self.tui.rooms.joining.add(room)
        return False

    # -- names ------------------------------------------------------------------
    def _name(self, name: str, usage: str) -> Optional[str]:
        try:
            return validate_username(name)
        except PolicyError as err:
            self._refuse(f"{err}; usage: {usage}")
            return None

    def _query(self, args: str) -> None:
        tui = self.tui
        who, _, text = args.partition(" ")
        if not who:
            if tui.query is not None:
                where = tui.current_room() or "everyone"
                tui.notice(f"your lines go to {where} again (no more to {tui.query} alone)")
            tui.query = None
            tui.app.invalidate()
            return
        who = self._name(who, COMMANDS["query"].usage)
        if who is None:
            return
        who = tui.members.get(name_key(who), who)
        tui.query = who
        tui.notice(f"your lines go to {who} alone, end-to-end encrypted, until /query "
                   f"(commands still work)")
        tui.app.invalidate()
        if text.strip():
            self._send_private(text.strip(), who, f"/msg {who} {text.strip()}")

    def _ignore(self, name: str, args: str) -> None:
        tui = self.tui
        usage = COMMANDS[name].usage
        if not args:
            if name == "unignore":
                self._refuse(f"usage: {usage}")
                return
            shown = ", ".join(sorted(tui.ignored.values(), key=str.lower))
            tui.notice(f"ignoring: {shown}" if shown else "you ignore nobody")
            return
        who = self._name(args.split()[0], usage)
        if who is None:
            return
        if name_key(who) == name_key(tui.me):
            self._refuse("you cannot ignore yourself")
            return
        try:
            tui.set_ignored(who, name == "ignore")
        except SchatError as err:
            self._refuse(str(err))
            return
        tui.notice(f"ignoring {who}: their messages are hidden on this client "
                   f"(/unignore {who} to see them again)" if name == "ignore"
                   else f"no longer ignoring {who}")

    # -- end-to-end commands ---------------------------------------------------------
    def _local(self, line: str, name: str, args: str) -> None:
        tui = self.tui
        to, _, text = args.partition(" ")
        text = text.strip()
        if name == "msg":
            if not to or not text:
                self._refuse(f"usage: {COMMANDS['msg'].usage}")
                return
            self._send_private(text, to, line)
            return
        if not args:
            self._refuse(f"usage: {COMMANDS[name].usage}")
            return
        if name == "verify" and name_key(to) == name_key(tui.me):
            self._refuse(f"/verify compares your key with another member's; for your own "
                         f"fingerprint, /whois {tui.me}")
            return
        dm = self._dm()
        if dm is None:
            return
        self.waiting = line
        tui.background(lambda: dm.handle_line(line), lambda lines: self._done(self._show, lines),
                       self._failed)

    def _dm(self):
        tui = self.tui
        if self._offline():
            return None
        if tui.dm is None:
            self._refuse("end-to-end commands are not available in this session")
            return None
        if self.waiting is not None:
            self._refuse("still waiting for the server on the previous command")
            return None
        return tui.dm

    def _send_private(self, text: str, to: str, line: str) -> None:
        tui = self.tui
        if self._too_long(text):
            return
        dm = self._dm()
        if dm is None:
            return
        self.waiting = line
        # Shown as the account the envelope was sealed to (its registered spelling).
        tui.background(lambda: dm.send(to, text),
                       lambda sent: self._done(tui.expect_ack, sent.cid, "msg", sent.to, text),
                       self._failed)

    def _done(self, then: Callable[..., None], *args) -> None:
        self.waiting = None
        then(*args)

    def _failed(self, reason: str) -> str:
        self.waiting = None
        return reason + RECALL

    def _show(self, lines) -> None:
        if lines:
            self.tui.notice("\n".join(lines))
