"""Text that came from the network, made safe to print (pure functions, no I/O).

A modified server writes whatever it likes into error texts, bye reasons, the
server name, the message of the day and notices; a member writes whatever they
like into chat and private messages. Before any of it reaches a terminal:

* :func:`clean` shows control characters instead of obeying them: C0 controls
  and DEL in caret notation (``^[`` for ESC), and as ``<U+XXXX>`` the C1
  controls (U+0080-U+009F: U+009B is a CSI on many terminals), the bidi
  embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069), which
  would reorder everything printed after them, and the line and paragraph
  separators (U+2028, U+2029). Newlines are kept (the chat screen indents the
  rows after them).
* :func:`one_line` is :func:`clean` for line mode, where one event is one line:
  a newline becomes the mark ``⏎`` (U+23CE), and a ``⏎`` that was in the text
  is shown as ``<U+23CE>``, so every mark on a line is a break of that line.
* :func:`json_line` is one JSON object on one line, with the same characters as
  ``\\uXXXX`` escapes: a script gets the exact text, the terminal no control.

Only the ``re`` and ``json`` modules are needed: the error handler of every
command uses :func:`clean` too.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: What a line break looks like in line mode.
LINE_MARK = "\u23ce"

# C0 controls except the newline, and DEL: shown in caret notation.
_CARET = re.compile("[\x00-\x09\x0b-\x1f\x7f]")
# C1 controls, bidi embeddings/overrides/isolates, line/paragraph separators.
_UNICODE = re.compile("[\x80-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
# What JSON leaves raw and a terminal would act on (json.dumps escapes C0 itself).
_JSON_RAW = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _caret(match: "re.Match[str]") -> str:
    return "^" + chr((ord(match.group()) + 64) % 128)  # ^[ for ESC, ^? for DEL


def _codepoint(match: "re.Match[str]") -> str:
    return f"<U+{ord(match.group()):04X}>"


def clean(text: str) -> str:
    """``text`` with every control character shown instead of obeyed (tabs become spaces,
    newlines stay)."""
    text = _UNICODE.sub(_codepoint, text.replace("\t", "    "))
    return _CARET.sub(_caret, text)


def one_line(text: str) -> str:
    """:func:`clean`, on one line: each newline shown as ``⏎``, which nobody can type."""
    return clean(text.replace(LINE_MARK, "<U+23CE>")).replace("\n", LINE_MARK)


def _json_escape(match: "re.Match[str]") -> str:
    return f"\\u{ord(match.group()):04x}"


def json_line(record: Any) -> str:
    """``record`` as JSON on one line, with no raw control character in it."""
    return _JSON_RAW.sub(_json_escape, json.dumps(record, ensure_ascii=False))
