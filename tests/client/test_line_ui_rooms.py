"""The line and JSON clients with rooms: lines in order, room on every room event, history."""

from __future__ import annotations

import io
import json
import time

from chatkit import PASSWORDS, answer, until
from schat.client.dm import DmClient
from schat.client.render import Renderer
from schat.client.ui import LineUI, format_json, format_text
from schat.protocol import messages
from schat.protocol import room_messages as rm


T = 1_700_000_123_456
AT = f"[{time.strftime('%H:%M:%S', time.localtime(T / 1000))}]"


def test_text_of_room_events():
    assert format_text(messages.ChatMessage(id=1, time=T, sender="ann", text="hi",
                                            room="#dev")) == f"{AT} #dev <ann> hi"
    assert format_text(messages.ChatMessage(id=1, time=T, sender="ann", text="hi",
                                            history=True)) == f"{AT} (history) <ann> hi"
    assert format_text(messages.Join(user="bob", time=T, room="#dev")) == \
        f"{AT} --> bob joined #dev"
    assert format_text(rm.Moderation(room="#dev", action="kick", time=T, actor="ann",
                                     target="bob", reason="spam")) == \
        f"{AT} -!- bob was kicked from #dev by ann: spam"
    assert format_text(rm.Focus(room="#dev")).endswith("] --- plain lines now go to #dev")
    listing = format_text(rm.Rooms(rooms=({"room": "#dev", "users": 2, "topic": "x",
                                           "private": True, "member": True},)))
    assert [line.split("] ", 1)[1] for line in listing.splitlines()] == [
        "--- rooms (1):", "---   #dev  2 online private (yours) - x"]


def test_escapes_in_room_events_are_neutralised_on_both_paths():
    evil = "\x1b]0;owned\x07\x1b[2J\nfake line"
    events = [rm.Topic(room="#dev", topic=evil, user="eve", time=T),
              rm.Moderation(room="#dev", action="ban", time=T, actor="eve", target="bob",
                            reason=evil),
              rm.RoomState(room="#dev", topic=evil, private=False, ops=(), users=("eve",),
                           time=T),
              rm.Rooms(rooms=({"room": "#dev", "users": 1, "topic": evil, "private": False,
                               "member": False},))]
    for event in events:
        for text in (format_text(event),
                     "".join(t for _, t in Renderer("bob").event(event))):
            assert "\x1b" not in text and "\x07" not in text


def test_json_room_events_carry_the_room_and_history():
    rec = json.loads(format_json(messages.ChatMessage(id=3, time=T, sender="ann", text="x")))
    assert rec["room"] == "#lobby" and "history" not in rec
    rec = json.loads(format_json(messages.ChatMessage(id=3, time=T, sender="ann", text="x",
                                                      room="#dev", history=True)))
    assert (rec["room"], rec["history"]) == ("#dev", True)
    for event in (messages.Join(user="a", time=T), messages.Leave(user="a", time=T, room="#x"),
                  rm.Topic(room="#x", topic="t", user="a", time=T),
                  rm.Moderation(room="#x", action="mute", time=T, target="a", until=T),
                  rm.RoomState(room="#x", topic="", private=False, ops=(), users=(), time=T)):
        assert json.loads(format_json(event))["room"] in ("#lobby", "#x")


def line_ui(session, home, **kwargs):
    return LineUI(session, DmClient(session, home, None, lambda m: None), **kwargs)


def test_stdin_lines_are_handled_in_order_across_rooms(chat_server, tmp_path):
    bob = chat_server.login("bob")
    answer(bob, "/join #dev")
    answer(bob, "/switch #lobby")
    session = chat_server.session()
    session.login_password("alice", PASSWORDS["alice"])
    out, err = io.StringIO(), io.StringIO()
    script = ("/join #dev\nfirst in dev\nsecond in dev\n/switch #lobby\nin the lobby\n"
              "/join #dev\n/part\nafter part\n")
    assert line_ui(session, tmp_path, stdin=io.StringIO(script), stdout=out, stderr=err,
                   as_json=True).run() == 0, err.getvalue()
    got = [until(bob, messages.ChatMessage) for _ in range(4)]
    assert [(m.room or "#lobby", m.text) for m in got] == [
        ("#dev", "first in dev"), ("#dev", "second in dev"), ("#lobby", "in the lobby"),
        ("#lobby", "after part")]
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    states = [e for e in events if e["type"] == "room"]
    assert [s["room"] for s in states][-1] == "#dev"
    bob.close()


def test_a_line_after_a_refused_join_is_refused_not_misdirected(chat_server, tmp_path):
    bob, carol = chat_server.login("bob"), chat_server.login("carol")
    answer(carol, "/join #ops")
    answer(carol, "/ban alice")
    session = chat_server.session()
    session.login_password("alice", PASSWORDS["alice"])
    out, err = io.StringIO(), io.StringIO()
    ui = line_ui(session, tmp_path, stdin=io.StringIO("/join #ops\nsecret plans\n"),
                 stdout=out, stderr=err)
    assert ui.run() == 1
    text = out.getvalue()
    assert "error: you are banned from #ops" in text and "error: you are not in #ops" in text
    bob.session.say("sync")
    assert until(carol, messages.ChatMessage).text == "sync"   # nothing else reached the lobby
    for c in (bob, carol):
        c.close()


def test_away_members_in_line_and_json_modes():
    users = messages.Users(users=("ann", "bob"), room="#dev",
                           away=({"user": "bob", "text": "lunch\n\x1b[2Jback at 2"},))
    assert format_text(users) == "#dev (2): ann, bob (away: lunch⏎^[[2Jback at 2)"
    record = json.loads(format_json(users))
    assert record["away"] == {"bob": "lunch\n\x1b[2Jback at 2"} and record["room"] == "#dev"
    assert "\x1b" not in format_json(users)            # escaped in the JSON text itself
    assert "away" not in json.loads(format_json(messages.Users(users=("ann",))))
