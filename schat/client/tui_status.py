"""What the chat screen shows about its state: the prompt, the toolbar, the welcome line.

Each is built from the screen's state as a list of parts, so more state (a
room, say) is one more part, and a narrow terminal drops whole parts, the
least useful first, rather than cutting the toolbar off at the connection
state. Every string that came from the network is already cleaned here.
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
    ``joined``: drawn right after the part before it, without a separator."""

    keep: int
    fragments: Fragments
    joined: bool = False


def server_label(own: str, announced: str) -> str:
    """Your name for the server, with the name it announces when that differs."""
    own = own or announced or "?"
    if announced and name_key(announced) != name_key(own):
        return f"{own} ({announced})"
    return own


def prompt_parts(tui) -> Fragments:
    """You, then whom a /query talks to (the ``> `` follows)."""
    parts: Fragments = [("class:prompt", tui.me or "?")]
    if tui.query:
        parts += [("class:prompt", " -> "), (nick_class(tui.query), tui.query)]
    return parts


def toolbar_parts(tui) -> List[Part]:
    """Your name for the server (and its own), you, the /query peer, away, how many
    are online (while connected: offline it would be stale), the connection state."""
    own = tui.server or tui.announced or "?"
    parts = [Part(5, [(TOOLBAR, own)])]
    if tui.announced and name_key(tui.announced) != name_key(own):
        parts.append(Part(1, [(TOOLBAR, f"({tui.announced})")], joined=True))
    parts.append(Part(4, [(TOOLBAR, tui.me)]))
    if tui.query:
        parts.append(Part(3, [(TOOLBAR, f"-> {tui.query}")]))
    if tui.away is not None:
        parts.append(Part(3, [(TOOLBAR, "away")]))
    if tui.state == "connected":
        parts.append(Part(2, [(TOOLBAR, f"{len(tui.members)} online")]))
        parts.append(Part(0, [("class:toolbar.online", "connected")]))
    else:
        parts.append(Part(0, [("class:toolbar.offline", tui.state)]))
    return parts


def _width(parts: List[Part]) -> int:
    text = sum(len(t) for p in parts for _, t in p.fragments)
    gaps = sum(1 if p.joined else 3 for p in parts[1:])
    return text + gaps + 2


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
    for i, part in enumerate(fit(parts, width)):
        if i:
            out.append((TOOLBAR, " " if part.joined else " · "))
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
