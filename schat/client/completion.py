"""The chat commands the terminal client knows, tab completion, and "did you mean".

Commands are data (:mod:`schat.client.commands`), so `/help`, completion and
the closest-command suggestion all read the same table.
"""

from __future__ import annotations

import difflib
import re
from typing import Callable, Dict, Iterable, List, Optional

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from schat.client.commands import COMMANDS, MODERATION, ChatCommand, lookup


# Where a member name is being typed: the word under the cursor, with an optional "@".
_WORD = re.compile(r"@?[A-Za-z0-9_.\-]*$")
# Where a room name is being typed: the word under the cursor, with an optional "#".
_ROOM = re.compile(r"#?[A-Za-z0-9_\-]*$")


def help_text(commands: Dict[str, ChatCommand] = COMMANDS) -> str:
    """Every command with its usage, aligned, plus the keys worth knowing."""
    width = max(len(c.usage) for c in commands.values())
    lines = [f"{c.usage.ljust(width)}  {c.help}"
             + (f" (also {', '.join('/' + a for a in c.aliases)})" if c.aliases else "")
             for c in commands.values()]
    lines.append(f"{'//TEXT'.ljust(width)}  send a line that starts with /")
    lines.append("moderation (/help COMMAND for one): " + " ".join(
        "/" + name for name in MODERATION))
    lines.append("keys: Tab completes commands, names and #rooms, Up/Down browse history, "
                 "Alt-1..9 and Ctrl-N/Ctrl-P switch rooms, Ctrl-C clears the line, "
                 "Ctrl-D leaves, Ctrl-Z suspends")
    return "\n".join(lines)


def suggest(name: str, commands: Dict[str, ChatCommand] = COMMANDS) -> Optional[str]:
    """The known command closest to ``name`` (without the ``/``) by meaning (``list`` →
    ``who``) or by spelling (``hlep`` → ``help``), or None if nothing is close."""
    name = name.lower()
    known = lookup(name, commands)
    if known is not None:
        return known.name
    meant = [c.name for c in commands.values() if name in c.related]
    if meant:
        return meant[0]
    candidates = list(commands)
    prefixed = [c for c in candidates if c.startswith(name)] if name else []
    if len(prefixed) == 1:
        return prefixed[0]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return close[0] if close else None


def split_command(line: str):
    """``"/msg ann hi"`` → ``("msg", "ann hi")`` (an alias gives its command's name);
    a line that is not a command → None."""
    if not line.startswith("/") or line.startswith("//"):
        return None
    name, _, rest = line[1:].partition(" ")
    command = lookup(name)
    return (command.name if command is not None else name.lower()), rest.strip()


class ChatCompleter(Completer):
    """Completes ``/commands`` at the start of a line, room names (a word starting with
    ``#`` anywhere, or the first argument of a command that takes a room) and member
    names anywhere else."""

    def __init__(self, members: Callable[[], Iterable[str]], me: Callable[[], str],
                 rooms: Optional[Callable[[bool], List[str]]] = None,
                 commands: Dict[str, ChatCommand] = COMMANDS):
        self._members = members
        self._me = me
        self._rooms = rooms
        self._commands = commands

    def _names(self) -> List[str]:
        me = (self._me() or "").lower()
        return sorted((n for n in self._members() if n.lower() != me), key=str.lower)

    def get_completions(self, document: Document, complete_event: CompleteEvent):
        before = document.text_before_cursor
        if before.startswith("/") and " " not in before:
            typed = before[1:].lower()
            for cmd in self._commands.values():
                if cmd.name.startswith(typed):
                    yield Completion("/" + cmd.name + " ", start_position=-len(before),
                                     display="/" + cmd.name, display_meta=cmd.help)
            return
        parts = before.split(" ")
        command = lookup(parts[0][1:], self._commands) if parts[0].startswith("/") else None
        first_argument = len(parts) == 2 and command is not None
        room = _ROOM.search(before).group()
        wants_room = first_argument and command.takes_room
        if self._rooms is not None and (room.startswith("#") or (wants_room and room)
                                        or (wants_room and not parts[1])):
            yield from self._room_completions(room, first_argument and bool(wants_room),
                                              command.takes_room == "joined"
                                              if first_argument else False)
            return
        word = _WORD.search(before).group()
        at = word.startswith("@")
        stem = word[1:] if at else word
        naming_cmd = first_argument and command.takes_name
        if not stem and not at and not naming_cmd:
            return
        at_line_start = len(word) == len(before)
        for name in self._names():
            if name.lower().startswith(stem.lower()):
                if naming_cmd:
                    text = name + " "
                elif at_line_start and not at:
                    text = name + ": "  # addressing someone, IRC style
                else:
                    text = ("@" if at else "") + name
                yield Completion(text, start_position=-len(word), display=name)

    def _room_completions(self, typed: str, argument: bool, joined_only: bool):
        stem = typed.lower().lstrip("#")
        for room in self._rooms(joined_only):
            if room[1:].startswith(stem):
                # As an argument the room is followed by a space, ready for what comes next.
                yield Completion(room + (" " if argument else ""), start_position=-len(typed),
                                 display=room)
