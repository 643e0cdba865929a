"""What the chat screen does with an entered line: chat, ``/commands``, local DM commands.

:meth:`LineCommands.submit` returns True to keep the line in the input: a
line that was not sent (a mistyped command, a refused ``/msg``, a message over
the size limit, no connection) stays there to be fixed or sent again.
"""

from __future__ import annotations

from typing import Callable, Optional

from schat.client.commands import DM_COMMANDS, MODERATION
from schat.client.completion import COMMANDS, help_text, split_command, suggest
from schat.errors import SchatError
from schat.protocol.schema import MAX_TEXT_BYTES

# Commands the client answers itself through its DmClient; they wait on key look-ups.
LOCAL_COMMANDS = DM_COMMANDS


class LineCommands:
    """Runs entered lines for one :class:`schat.client.tui.ChatTUI`."""

    def __init__(self, tui):
        self.tui = tui
        # The local command being answered (its line stays in the input until then).
        self.waiting: Optional[str] = None

    def submit(self, text: str) -> bool:
        """Act on one entered line; return True to keep it in the input (not sent)."""
        if not text.strip():
            return False
        parsed = split_command(text)
        if parsed is not None:
            return self._command(text, *parsed)
        if text.startswith("//"):
            text = text[1:]
        return self._say(text, False)

    def _command(self, line: str, name: str, args: str) -> bool:
        tui = self.tui
        if name == "help":
            key = args.lstrip("/").lower()
            cmd = (COMMANDS.get(key) or MODERATION.get(key)) if args else None
            if args and cmd is None:
                tui.warn(f"no command /{args[:32]}")
                return True
            tui.notice(f"{cmd.usage}  {cmd.help}" if cmd else help_text())
            return False
        if name == "quit":
            tui.quit()
            return False
        if name == "clear":
            tui.app.renderer.clear()
            return False
        if name == "me":
            if not args:
                tui.warn(f"usage: {COMMANDS['me'].usage}")
                return True
            return self._say(args, True)
        cmd = COMMANDS.get(name) or MODERATION.get(name)
        if cmd is not None and cmd.runs == "server" and name != "help":
            return self._server_command(line)
        if name in LOCAL_COMMANDS:
            return self._local(line, name, args)
        close = suggest(name)
        hint = f"; did you mean /{close}?" if close else "; /help lists the commands"
        tui.warn(f"unknown command /{name[:32]}{hint}")
        return True

    def _offline(self) -> bool:
        if self.tui.online:
            return False
        self.tui.warn("not connected; the line is kept, press Enter again once back online")
        return True

    def _too_long(self, text: str) -> bool:
        size = len(text.encode("utf-8"))
        if size <= MAX_TEXT_BYTES:
            return False
        self.tui.warn(f"not sent: {size} bytes is over the {MAX_TEXT_BYTES}-byte limit "
                      "for one message (the text is still in the input line)")
        return True

    def _say(self, text: str, action: bool) -> bool:
        if self._too_long(text) or self._offline():
            return True
        return self._request(lambda session: session.say(text, action=action), "say",
                             text, action)

    def _server_command(self, line: str) -> bool:
        if self._offline():
            return True
        return self._request(lambda session: session.command(line), "command", line, None)

    def _request(self, send: Callable, kind: str, a: str, b) -> bool:
        try:
            cid = send(self.tui.session)
        except SchatError as err:
            self.tui.warn(f"not sent: {err}")
            return True
        self.tui.expect_ack(cid, kind, a, b)
        return False

    def _local(self, line: str, name: str, args: str) -> bool:
        tui = self.tui
        to, _, text = args.partition(" ")
        text = text.strip()
        if name == "msg" and (not to or not text):
            tui.warn(f"usage: {COMMANDS['msg'].usage}")
            return True
        if not args:
            tui.warn(f"usage: {COMMANDS[name].usage}")
            return True
        if (name == "msg" and self._too_long(text)) or self._offline():
            return True
        dm = tui.dm
        if dm is None:
            tui.warn(f"/{name} is not available in this session")
            return True
        if self.waiting is not None:
            tui.warn("still waiting for the server on the previous command; the line is kept")
            return True
        self.waiting = line
        if name == "msg":
            # Shown as the account the envelope was sealed to (its registered spelling).
            tui.background(lambda: dm.send(to, text),
                           lambda sent: self._done(line, tui.expect_ack, sent.cid, "msg",
                                                   sent.to, text),
                           self._failed)
        else:
            tui.background(lambda: dm.handle_line(line),
                           lambda lines: self._done(line, self._show, lines), self._failed)
        # Kept until the answer: a refusal (no key, a changed key, no such user)
        # leaves the line there to fix, as for a mistyped command.
        return True

    def _done(self, line: str, then: Callable[..., None], *args) -> None:
        self.waiting = None
        buffer = self.tui.buffer
        if buffer.text == line:
            buffer.append_to_history()
            buffer.reset()
        else:
            buffer.history.append_string(line)
        then(*args)

    def _failed(self, reason: str) -> None:
        self.waiting = None

    def _show(self, lines) -> None:
        if lines:
            self.tui.notice("\n".join(lines))
