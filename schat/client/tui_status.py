"""What the chat screen shows about its state: the prompt, the toolbar, the welcome line.

Each is built from the screen's state as a list of parts, and a narrow
terminal drops whole parts, the least useful first, rather than cutting the
toolbar off at the connection state. Every string that came from the network
is already cleaned here (room names are checked on the wire: ``#`` and
``a-z 0-9 _ -`` only).

With rooms, the toolbar lists them as irssi's and WeeChat's status bars do::

     team (schat) · ann · 1:#lobby(3) [2:#dev] 3:#ops(1!) · 4 here · connected

numbered for Alt-1…9, the current one in brackets, each other one with the
count of lines you have not seen there (``!``: one of them mentions you).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

from schat.client.render import field, nick_class
from schat.names import name_key

Fragments = List[Tuple[str, str]]
TOOLBAR = "class:toolbar"


class Part(NamedTuple):
    """One part of the toolbar. ``keep`` 0: never left out; otherwise, when the
    terminal is too narrow, the part with the lowest ``keep`` goes first.
    ``group``: parts of one group that stand next to each other are separated by
    a space, not by `` · ``."""

    keep: int
    fragments: Fragments
    group: str = ""


def server_label(own: str, announced: str) -> str:
    """Your name for the server, with the name it announces when that differs."""
    own = own or announced or "?"
    if announced and name_key(announced) != name_key(own):
        return f"{own} ({announced})"
    return own


def prompt_parts(tui) -> Fragments:
    """You, then where plain lines go: the current room, or whom a /query talks to
    (the ``> `` follows)."""
    parts: Fragments = [("class:prompt", tui.me or "?")]
    if tui.query:
        parts += [("class:prompt", " -> "), (nick_class(tui.query), tui.query)]
    elif tui.rooms.known:
        room = tui.rooms.current
        parts += [("class:prompt", " "), (nick_class(room), room) if room
                  else ("class:prompt", "(no room)")]
    return parts


def room_parts(rooms) -> List[Part]:
    """The rooms you are in, numbered: ``[2:#dev]`` the current one, ``3:#ops(4)`` one
    with 4 lines you have not seen, ``(4!)`` when one of them mentions you. Quiet rooms
    are left out first on a narrow terminal, then the unread ones, mentions last."""
    parts = []
    for number, room in enumerate(rooms.order(), 1):
        view = rooms.views[room]
        label = f"{number}:{room}"
        if room == rooms.current:
            parts.append(Part(3, [("class:toolbar.current", f"[{label}]")], "rooms"))
        elif view.mentioned:
            parts.append(Part(3, [("class:toolbar.mention", f"{label}({view.unread}!)")],
                              "rooms"))
        elif view.unread:
            parts.append(Part(2, [("class:toolbar.unread", f"{label}({view.unread})")],
                              "rooms"))
        else:
            parts.append(Part(1, [(TOOLBAR, label)], "rooms"))
    return parts


def toolbar_parts(tui) -> List[Part]:
    """Your name for the server (and its own), you, your rooms, the /query peer, away,
    how many are online or in the current room (while connected: offline it would be
    stale), the connection state."""
    own = tui.server or tui.announced or "?"
    parts = [Part(5, [(TOOLBAR, own)], "server")]
    if tui.announced and name_key(tui.announced) != name_key(own):
        parts.append(Part(1, [(TOOLBAR, f"({tui.announced})")], "server"))
    parts.append(Part(4, [(TOOLBAR, tui.me)]))
    rooms = tui.rooms
    if rooms.known:
        parts += room_parts(rooms)
    if tui.query:
        parts.append(Part(3, [(TOOLBAR, f"-> {tui.query}")]))
    if tui.away is not None:
        parts.append(Part(3, [(TOOLBAR, "away")]))
    if tui.state == "connected":
        here = rooms.here() if rooms.known else None
        if here is not None:
            parts.append(Part(2, [(TOOLBAR, f"{len(here.users)} here")]))
        elif not rooms.known:
            parts.append(Part(2, [(TOOLBAR, f"{len(tui.members)} online")]))
        parts.append(Part(0, [("class:toolbar.online", "connected")]))
    else:
        parts.append(Part(0, [("class:toolbar.offline", tui.state)]))
    return parts


def _separators(parts: List[Part]) -> List[str]:
    """What goes before each part: nothing, a space (same group) or `` · ``."""
    return ["" if i == 0 else (" " if p.group and p.group == parts[i - 1].group else " · ")
            for i, p in enumerate(parts)]


def _width(parts: List[Part]) -> int:
    text = sum(len(t) for p in parts for _, t in p.fragments)
    return text + sum(len(sep) for sep in _separators(parts)) + 2


def fit(parts: List[Part], width: Optional[int]) -> List[Part]:
    """The parts that fit in ``width`` columns, in their order."""
    kept = list(parts)
    while width and _width(kept) > width:
        droppable = [p for p in kept if p.keep > 0]
        if not droppable:
            break
        kept.remove(min(droppable, key=lambda p: p.keep))
    return kept


def render_toolbar(parts: List[Part], width: Optional[int]) -> Fragments:
    """The toolbar's fragments: `` team (schat) · ann · 3 online · connected ``."""
    out: Fragments = [(TOOLBAR, " ")]
    kept = fit(parts, width)
    for sep, part in zip(_separators(kept), kept):
        if sep:
            out.append((TOOLBAR, sep))
        out.extend(part.fragments)
    out.append((TOOLBAR, " "))
    return out


def welcome_text(label: str, welcome) -> str:
    """``connected to team (schat) as ann; 3 online: ...`` and the message of the day."""
    users = field(welcome, "users", None) or []
    text = (f"connected to {label} as {field(welcome, 'user', '?')}; "
            f"{len(users)} online: {', '.join(users)}")
    motd = field(welcome, "motd", "") or ""
    return text + ("\n" + motd if motd else "")
