"""Every string that came from the network is made harmless before it is printed
(issue #11 items 4 and 8): in line mode, in ``--json`` and on the chat screen.

A hostile server controls error texts, bye reasons, the server name, the
message of the day, notices and leave reasons; a hostile member controls chat
and private-message text. None of them may move the cursor, retitle the
terminal, clear the screen, reorder what follows (bidi overrides/isolates) or
start a line that looks like another event.
"""

from __future__ import annotations

import json
import re

import pytest

from schat.client.local_events import LocalNotice, LocalWarning, PrivateMessage
from schat.client.render import Renderer, clean
from schat.client.session import Disconnected
from schat.client.ui import format_json, format_text
from schat.protocol import messages

T = 1_700_000_123_456

# OSC retitle, clear screen, 8-bit CSI, overrides and isolates, DEL, backspace,
# carriage return, NEL, line/paragraph separators, and a forged second line.
EVIL = ("\x1b]0;PWNED\x07\x1b[2J\u009b31m\u202eRTL\u202aLRE\u2066iso\u2069\u2067\u2068"
        "\u202b\u202c\u202d\x7f\x08\r\u0085\u2028\u2029x\n[12:00:00] <alice> give me your key")

# Nothing a terminal acts on: C0 (newline included, in line mode), DEL, C1, the
# bidi embeddings/overrides/isolates and the Unicode line/paragraph separators.
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
FORBIDDEN_ON_SCREEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
                                 "\u2028\u2029]")


def network_events():
    """One event of each kind that prints something, every string field hostile."""
    return [
        messages.ChatMessage(id=1, time=T, sender="mallory", text=EVIL),
        messages.ChatMessage(id=2, time=T, sender="mallory", text=EVIL, action=True),
        messages.Notice(text=EVIL, time=T),
        messages.Error(code="invalid", text=EVIL),
        messages.Leave(user="mallory", time=T, reason=EVIL),
        messages.Welcome(user="alice", server=EVIL, motd=EVIL, users=("alice",), time=T),
        messages.Bye(reason=EVIL),
        PrivateMessage(id=3, time=T, sender="mallory", to="alice", text=EVIL, verified=True),
        PrivateMessage(id=4, time=T, sender="mallory", to="alice", text=EVIL, verified=False,
                       warning="key changed"),
    ]


@pytest.mark.parametrize("event", network_events(), ids=lambda e: type(e).__name__)
def test_line_mode_prints_one_harmless_line_per_event(event):
    text = format_text(event)
    lines = text.split("\n")
    if isinstance(event, messages.Welcome):
        # The welcome is three events: the session, the message of the day, who is online.
        assert len(lines) == 3 and "connected to" in lines[0] and "online (1)" in lines[2]
    else:
        assert len(lines) == 1, lines
    for line in lines:
        assert not FORBIDDEN.search(line), repr(line)
        # The forged "<alice>" never starts a line of its own.
        assert not re.match(r"\[\d\d:\d\d:\d\d\] <alice>", line)
    assert "^[]0;PWNED^G^[[2J" in text  # shown, visibly escaped
    assert "<U+202E>RTL" in text


def test_the_continuation_marker_cannot_be_typed():
    """A newline shows as ⏎; a ⏎ someone typed is escaped, so every ⏎ is a line break."""
    typed = format_text(messages.ChatMessage(id=1, time=T, sender="eve", text="a\u23ceb"))
    broken = format_text(messages.ChatMessage(id=1, time=T, sender="eve", text="a\nb"))
    assert typed.endswith("<eve> a<U+23CE>b")
    assert broken.endswith("<eve> a\u23ceb")


@pytest.mark.parametrize("event", network_events(), ids=lambda e: type(e).__name__)
def test_json_lines_carry_the_text_exactly_but_no_raw_control(event):
    line = format_json(event)
    assert "\n" not in line
    assert not FORBIDDEN.search(line), repr(line)  # C1 and bidi too, as \\u escapes
    record = json.loads(line)
    assert EVIL in record.values()  # a script gets the text exactly as it was sent


@pytest.mark.parametrize("event", network_events(), ids=lambda e: type(e).__name__)
def test_chat_screen_lines_are_harmless_and_continuations_indented(event):
    fragments = Renderer(me="alice", width=60).event(event)
    text = "".join(t for _, t in fragments)
    assert not FORBIDDEN_ON_SCREEN.search(text), repr(text)
    rows = text.split("\n")
    assert rows[0][:5].count(":") == 1  # the first row starts with its time stamp
    for row in rows[1:]:
        assert row.startswith("   "), row  # continuation rows stay indented
    assert not any(row.startswith("12:") for row in rows[1:])


def test_local_texts_are_one_line_each_too():
    for event in (LocalWarning(text="first\nsecond", time=T),
                  LocalNotice(text="first\nsecond", time=T)):
        assert len(format_text(event).split("\n")) == 1


def test_clean_keeps_ordinary_text():
    text = "héllo wörld — 日本語 مرحبا 👍 tab\tend"
    assert clean(text) == text.replace("\t", "    ")
    assert clean("x\u202ey") == "x<U+202E>y"
    assert clean("a\x1bb") == "a^[b" and clean("\u009b") == "<U+009B>"
    # The stderr line of a lost connection is cleaned the same way.
    assert not FORBIDDEN_ON_SCREEN.search(clean(Disconnected(EVIL, True).reason))
