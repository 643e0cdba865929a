"""Input history, one private file per server: ``HOME/history/NAME``.

Chat history can be private, so the file is created 0600 (inside a 0700
directory) and rewritten through :func:`schat.store.files.atomic_write` when it
is trimmed. Lines are appended as they are entered; a line that starts with a
space is not kept (as in shells with ``HISTCONTROL=ignorespace``).

Private messages never reach the file: ``/msg`` lines, and lines sent to a
``/query`` peer, are kept in memory for this session only (Up still brings
them back). A file written by an earlier version that holds ``/msg`` lines is
rewritten without them when it is loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, List, Optional

from prompt_toolkit.history import History

from schat.store.files import atomic_write

MAX_ENTRIES = 1000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.\-]")
# Lines that hold a private message's text (any case, as the screen reads commands).
_PRIVATE = re.compile(r"/(msg|query\s+\S+)\s", re.IGNORECASE)


def history_path(home_root: os.PathLike, server: str) -> Path:
    """Where the input history for ``server`` lives (the name made safe as a file name)."""
    safe = _SAFE_NAME.sub("_", server).lstrip(".") or "_"
    return Path(home_root) / "history" / safe


def is_private(line: str) -> bool:
    """Does ``line`` carry a private message's text (``/msg NAME TEXT``, ``/query NAME TEXT``)?"""
    return _PRIVATE.match(line) is not None


def _encode(line: str) -> str:
    # One entry per file line: a pasted multi-line entry keeps its newlines escaped.
    return line.replace("\\", "\\\\").replace("\n", "\\n") + "\n"


def _decode(line: str) -> str:
    out = []
    chars = iter(line)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append("\n" if nxt == "n" else nxt)
        else:
            out.append(ch)
    return "".join(out)


class ChatHistory(History):
    """A prompt_toolkit history kept in a private file, newest entry last on disk
    (``path`` None: in memory only)."""

    def __init__(self, path: Optional[os.PathLike], max_entries: int = MAX_ENTRIES):
        super().__init__()
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries

    def read(self) -> List[str]:
        """The stored entries, oldest first (empty when there is no file or it is unreadable)."""
        if self.path is None:
            return []
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [_decode(line) for line in text.splitlines() if line]

    def load_history_strings(self) -> Iterable[str]:
        entries = self.read()
        kept = [e for e in entries if not is_private(e)]
        if len(kept) != len(entries):
            self._rewrite(kept)
        # prompt_toolkit wants the newest entry first.
        return list(reversed(kept))

    def _rewrite(self, entries: List[str]) -> None:
        try:
            atomic_write(self.path, "".join(_encode(e) for e in entries).encode("utf-8"))
        except OSError:
            pass  # an unwritable history is not worth failing the chat screen for

    def store_string(self, string: str) -> None:
        if self.path is None or not string.strip() or string.startswith(" ") \
                or is_private(string):
            return
        entries = self.read()
        if entries and entries[-1] == string:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if len(entries) >= self.max_entries or not self.path.exists():
            self._rewrite((entries + [string])[-self.max_entries:])
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, _encode(string).encode("utf-8"))
        finally:
            os.close(fd)

    def append_string(self, string: str, persist: bool = True) -> None:
        """Add an entry (newest); ``persist=False`` keeps it in memory only."""
        # Skip the in-memory copy too for lines kept out of the file.
        if not string.strip() or string.startswith(" "):
            return
        if not self._loaded:
            # Load the file first: a later (lazy) load would replace what is in memory.
            self._loaded_strings = list(self.load_history_strings())
            self._loaded = True
        if self._loaded_strings and self._loaded_strings[0] == string:
            return
        self._loaded_strings.insert(0, string)
        if persist:
            self.store_string(string)
