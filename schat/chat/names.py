"""Room and user names as the domain compares them."""

from __future__ import annotations

import re

from schat.chat.errors import Refusal
from schat.names import name_key

LOBBY = "#lobby"
ROOM_RULE = "# followed by 1-32 of a-z, 0-9, '_' or '-'"
_ROOM_RE = re.compile(r"#[a-z0-9_\-]{1,32}\Z")
_USER_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}\Z")


# How user names compare: the one rule of every package (ASCII lower case).
user_key = name_key


def is_room_name(text: str) -> bool:
    """True for a canonical room name (``#`` and 1-32 of ``a-z0-9_-``)."""
    return bool(_ROOM_RE.match(text))


def room_key(text: str) -> str:
    """The canonical (lower-case) room name for what a member typed; Refusal when invalid."""
    key = text.strip().lower()
    if not key.startswith("#"):
        key = "#" + key
    if not _ROOM_RE.match(key):
        raise Refusal("bad_room", f"invalid room name {shown(text)}: use {ROOM_RULE}")
    return key


def check_user(text: str) -> str:
    """A syntactically valid user name, or Refusal."""
    if not _USER_RE.match(text):
        raise Refusal("no_such_user", f"no such user: {shown(text)}")
    return text


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message: repr() escapes every control character."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")
