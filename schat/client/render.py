"""Chat events as formatted lines: timestamps, prefixes, colours, the bell rule.

Everything here is pure: an event (a ``schat.protocol.messages`` instance or
the same fields as a dict) goes in, prompt_toolkit formatted text comes out.
Lines stay readable without colour, because each kind has its own prefix:

    12:04 <ann> hello            a chat message (yours or another member's)
    12:04 * ann waves            an action (/me)
    12:04 <- ann: psst           a private message to you (end-to-end, signature checked)
    12:04 <- ann [UNVERIFIED: key changed]: psst   signed by a key you have not trusted
    12:04 -> ann: psst           a private message you sent
    12:04 -- ann joined          joins, leaves, connection state
    12:04 -!- text               a notice from the server
    12:04 ! text                 an error or warning (key changes: with the bell)
    12:04 #dev <bob> hi          a line of a room other than the current one
    12:04 <bob> earlier          a line from a room's history: the whole line dimmed
"""

from __future__ import annotations

import re
import time as _time
import zlib
from typing import Any, Callable, List, Optional, Tuple, Union

from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth

# A peer must not be able to move the cursor, ring the bell, rewrite the screen
# or reorder what follows with what it sends: every network string goes through it.
from schat.client.sanitize import clean, one_line

Fragments = List[Tuple[str, str]]

# Colours for other members' names: distinct on dark and light backgrounds.
NICK_COLOURS = (
    "ansired", "ansigreen", "ansiyellow", "ansiblue", "ansimagenta", "ansicyan",
    "ansibrightred", "ansibrightgreen", "ansibrightblue", "ansibrightmagenta",
    "ansibrightcyan", "ansibrightyellow",
)

_STYLE_RULES = [
    ("time", "ansibrightblack"),
    ("own", "bold"),
    ("action", "italic"),
    ("mention", "bold"),
    ("dm", "ansimagenta bold"),
    ("notice", "ansicyan"),
    ("info", "ansibrightblack"),
    ("warning", "ansired bold"),
    ("prompt", "bold"),
    ("toolbar", "reverse"),
    ("toolbar.online", "reverse ansigreen"),
    ("toolbar.offline", "reverse ansired bold"),
    ("toolbar.current", "reverse bold"),
    ("toolbar.unread", "reverse bold"),
    ("toolbar.mention", "reverse ansiyellow bold"),
] + [(f"nick.{i}", colour) for i, colour in enumerate(NICK_COLOURS)] + [
    # Last, so that it wins over a name's or a mention's colour: history recedes.
    ("history", "ansibrightblack dim"),
]

# Without colour, only attributes that every terminal shows remain.
_MONO_RULES = [
    ("own", "bold"),
    ("mention", "bold"),
    ("dm", "bold"),
    ("warning", "bold"),
    ("prompt", "bold"),
    ("toolbar", "reverse"),
    ("toolbar.online", "reverse"),
    ("toolbar.offline", "reverse bold"),
    ("toolbar.current", "reverse bold"),
    ("toolbar.unread", "reverse bold"),
    ("toolbar.mention", "reverse bold"),
    ("history", "dim"),
]

# How a private message signed by a key other than the pinned one is marked,
# in the chat screen and in line mode alike.
UNVERIFIED_MARK = "[UNVERIFIED: key changed]"

_NAME_CHARS = r"[A-Za-z0-9_.\-]"


def chat_style(colour: bool = True) -> Style:
    """The colour scheme (``colour=False``: bold/reverse only, for NO_COLOR)."""
    return Style(_STYLE_RULES if colour else _MONO_RULES)


def nick_class(name: str) -> str:
    """A stable style class for ``name``: the same colour in every session and on every host."""
    digest = zlib.crc32(name.lower().encode("utf-8"))
    return f"class:nick.{digest % len(NICK_COLOURS)}"


def as_history(fragments: Fragments) -> Fragments:
    """The whole line dimmed: a line from a room's history, not said just now."""
    return [((style + " class:history").strip(), text) for style, text in fragments]


def mentions(text: str, name: str) -> bool:
    """Does ``text`` mention ``name`` as a word (``ann``, ``@ann``, ``Ann:``; not ``joanne``)?"""
    if not name:
        return False
    pattern = rf"(?<!{_NAME_CHARS}){re.escape(name)}(?![A-Za-z0-9_\-]|\.[A-Za-z0-9_])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def event_type(event: Any) -> str:
    """The wire ``type`` of an event (dataclass or dict)."""
    if isinstance(event, dict):
        return str(event.get("type", ""))
    kind = getattr(event, "TYPE", None) or getattr(event, "type", None)
    if isinstance(kind, str):
        return kind
    name = type(event).__name__
    return {"ChatMessage": "message"}.get(name, name.lower())


def field(event: Any, name: str, default: Any = None) -> Any:
    """One field of an event (dataclass attribute or dict key)."""
    if isinstance(event, dict):
        return event.get(name, default)
    return getattr(event, name, default)


def should_bell(event: Any, me: str) -> bool:
    """Ring the bell for a private message to us, a message that mentions us, and a warning
    the client raised itself (a changed key, a discarded message)."""
    kind = event_type(event)
    if kind == "warning":
        return True
    sender = field(event, "sender") or ""
    if sender.lower() == me.lower():
        return False
    if kind == "dm":
        return True
    if kind == "message":
        return mentions(field(event, "text") or "", me)
    return False


def clock(ms: Optional[int] = None, seconds: bool = False) -> str:
    """``HH:MM`` (``HH:MM:SS`` with ``seconds``) in local time for a wire time (ms since the
    epoch, UTC); now when absent."""
    when = ms / 1000.0 if isinstance(ms, (int, float)) else _time.time()
    return _time.strftime("%H:%M:%S" if seconds else "%H:%M", _time.localtime(when))


def clock_seconds(ms: Optional[int] = None) -> str:
    """``HH:MM:SS`` in local time (the line interface's timestamps)."""
    return clock(ms, seconds=True)


def wrap(fragments: Fragments, width: int, indent: int) -> Fragments:
    """Break ``fragments`` to ``width`` columns at spaces, continuation lines indented.

    The terminal would wrap long lines on its own, but then continuation rows
    start at column 0 and run under the timestamps; this keeps the text in one
    column. Existing newlines (followed by their indent) are kept as they are.
    """
    if width <= indent + 10:
        return fragments
    chars = [(style, ch) for style, text in fragments for ch in text]
    out: List[Tuple[str, str]] = []
    column = 0
    last_space = -1  # index in ``out`` of the last space on the current row
    for style, ch in chars:
        if ch == "\n":
            out.append((style, ch))
            column, last_space = 0, -1
            continue
        w = get_cwidth(ch)
        if column + w > width:
            if last_space > 0:
                tail = out[last_space + 1:]
                del out[last_space:]
            else:
                tail = []
            out.append(("", "\n" + " " * indent))
            out.extend(tail)
            column = indent + sum(get_cwidth(c) for _, c in tail)
            last_space = -1
        out.append((style, ch))
        column += w
        if ch == " " and column > indent:
            last_space = len(out) - 1
    return _merge(out)


def _merge(chars: List[Tuple[str, str]]) -> Fragments:
    merged: Fragments = []
    for style, text in chars:
        if merged and merged[-1][0] == style:
            merged[-1] = (style, merged[-1][1] + text)
        else:
            merged.append((style, text))
    return merged


class Renderer:
    """Turns events into lines for one user; knows who "you" are for highlighting."""

    def __init__(self, me: str = "",
                 width: Union[None, int, Callable[[], Optional[int]]] = None):
        self.me = me
        # Columns to wrap at: a number, or a callable asked at every line so that a
        # resized terminal is followed; None leaves wrapping to the terminal.
        self.width = width

    def columns(self) -> Optional[int]:
        """The width lines are wrapped at now (None: not wrapped)."""
        width = self.width
        return width() if callable(width) else width

    def _fit(self, fragments: Fragments, indent: int) -> Fragments:
        width = self.columns()
        return wrap(fragments, width, indent) if width else fragments

    # -- building blocks ------------------------------------------------
    def _stamp(self, ms: Optional[int], tag: str = "") -> Fragments:
        """The time, and the room's tag for a line of a room other than the current one
        (in the room's own colour; room names are plain ASCII, checked on the wire)."""
        out = [("class:time", clock(ms)), ("", " ")]
        if tag:
            out += [(nick_class(tag), tag), ("", " ")]
        return out

    @staticmethod
    def _lead(tag: str) -> int:
        """Columns before a line's prefix: the time, and the room tag when there is one."""
        return 6 + (len(tag) + 1 if tag else 0)

    def _name(self, name: str) -> str:
        if self.me and name.lower() == self.me.lower():
            return "class:own"
        return nick_class(name)

    @staticmethod
    def _body(style: str, text: str, indent: int) -> Fragments:
        # Continuation lines of a multi-line message line up under its first line.
        lines = clean(text).split("\n")
        out: Fragments = [(style, lines[0])]
        for line in lines[1:]:
            out.append(("", "\n" + " " * indent))
            out.append((style, line))
        return out

    def line(self, style: str, prefix: str, text: str, ms: Optional[int] = None,
             tag: str = "") -> Fragments:
        """A generic line: ``HH:MM PREFIX text`` in ``style`` (``HH:MM #room PREFIX text``
        with a room ``tag``)."""
        head = self._stamp(ms, tag) + [(style, prefix + " ")]
        indent = self._lead(tag) + len(prefix) + 1
        return self._fit(head + self._body(style, text, indent), indent)

    def info(self, text: str, ms: Optional[int] = None, tag: str = "") -> Fragments:
        """A local status line (connection state and the like)."""
        return self.line("class:info", "--", text, ms, tag)

    def warning(self, text: str, ms: Optional[int] = None) -> Fragments:
        """A local or server error."""
        return self.line("class:warning", "!", text, ms)

    def chat(self, sender: str, text: str, ms: Optional[int], action: bool = False,
             tag: str = "") -> Fragments:
        """A chat line, ``<ann> hello`` or ``* ann waves`` (after the room ``tag``, if any)."""
        sender = clean(sender)
        own = self.me and sender.lower() == self.me.lower()
        text_style = "class:mention" if (not own and mentions(text, self.me)) else ""
        if action:
            head = [("class:action", "* "), (self._name(sender), sender), ("", " ")]
            width = 2 + len(sender) + 1
            text_style = (text_style + " class:action").strip()
        else:
            head = [("", "<"), (self._name(sender), sender), ("", "> ")]
            width = len(sender) + 3
        lead = self._lead(tag) + width
        return self._fit(self._stamp(ms, tag) + head + self._body(text_style, text, lead), lead)

    def private(self, peer: str, text: str, ms: Optional[int], outgoing: bool,
                verified: bool = True, version: int = 2) -> Fragments:
        """A private message: ``<- ann: text`` received, ``-> ann: text`` sent.

        ``verified=False`` (signed by a key other than the one trusted for
        ``peer``) marks the whole line as a warning: ``<- ann [UNVERIFIED: key changed]: text``.
        ``version=1``: an envelope of format 1 (no key commitment), marked ``[format 1]``.
        """
        peer = clean(peer)
        arrow = "->" if outgoing else "<-"
        style = "class:dm" if verified else "class:warning"
        mark = ("" if verified else " " + UNVERIFIED_MARK) + (" [format 1]" if version == 1 else "")
        head = [(style, arrow + " "), (self._name(peer) if verified else style, peer),
                (style, mark + ": ")]
        indent = 6 + len(peer) + len(mark) + 5
        return self._fit(self._stamp(ms) + head + self._body(style, text, indent), indent)

    # -- events ---------------------------------------------------------
    def event(self, event: Any, tag: str = "") -> Optional[Fragments]:
        """The line for one server event, or None for events that print nothing.

        ``tag``: the room of a chat line, join or leave when it is not the current
        room (the caller knows which is current); the text itself never names it.
        A line from a room's history is dimmed as a whole.
        """
        kind = event_type(event)
        get = lambda name, default=None: field(event, name, default)  # noqa: E731
        from schat.client import room_text
        if kind == "message":
            line = self.chat(get("sender", "?"), get("text", ""), get("time"),
                             bool(get("action", False)), tag)
            return as_history(line) if get("history", False) else line
        rooms = room_text.describe(event)
        if rooms is not None:
            style = "class:notice" if kind in ("topic", "moderation") else "class:info"
            return self.line(style, "-!-" if kind in ("topic", "moderation") else "--", rooms,
                             get("time"))
        if kind == "dm":
            # End-to-end messages carry ``verified`` (the client checked the signature
            # and the pin); anything else claiming to be private is not trusted.
            verified = get("verified", False) is True
            version = get("version", 2)
            sender = get("sender", "?")
            if self.me and sender.lower() == self.me.lower():
                return self.private(get("to", "?"), get("text", ""), get("time"), True,
                                    verified, version)
            return self.private(sender, get("text", ""), get("time"), False, verified,
                                version)
        if kind == "warning":
            return self.warning(get("text", ""), get("time"))
        if kind == "info":
            return self.line("class:notice", "-!-", get("text", ""), get("time"))
        if kind == "welcome":
            users = get("users") or []
            text = f"connected to {get('server', '?')} as {get('user', '?')}; " \
                   f"{len(users)} online: {', '.join(users)}"
            motd = get("motd") or ""
            if motd:
                text += "\n" + motd
            return self.info(text, get("time"))
        if kind == "join":
            return self.info(f"{get('user', '?')} joined", get("time"), tag)
        if kind == "leave":
            # A reason is one line: a line break in it cannot start a forged line.
            reason = one_line(get("reason") or "")
            if reason in ("left", "quit"):
                reason = ""  # "ann left (left)" says nothing more
            return self.info(f"{get('user', '?')} left" + (f" ({reason})" if reason else ""),
                             get("time"), tag)
        if kind == "users":
            users = get("users") or []
            listed = room_text.names(event)
            if get("room"):
                return self.info(f"{len(users)} in {get('room')}: {listed}")
            return self.info(f"{len(users)} online: {listed}")
        if kind == "notice":
            return self.line("class:notice", "-!-", get("text", ""), get("time"))
        if kind == "error":
            return self.warning(get("text") or get("code") or "error")
        if kind == "bye":
            reason = get("reason") or ""
            return self.info("the server closed the session" + (f": {reason}" if reason else ""))
        return None
