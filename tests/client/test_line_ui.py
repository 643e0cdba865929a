"""The plain/pipe UI: rendering, JSON lines, and the session loop against a real server."""

from __future__ import annotations

import io
import json
import os
import threading
import time

from chatkit import PASSWORDS
from schat.client.dm import DmClient
from schat.client.ui import LineUI, format_json, format_text
from schat.protocol import messages

T = 1_700_000_123_456


def hhmmss(ms):
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def test_text_lines():
    at = f"[{hhmmss(T)}]"
    assert format_text(messages.ChatMessage(id=3, time=T, sender="ann", text="hi")) == \
        f"{at} <ann> hi"
    assert format_text(messages.ChatMessage(id=3, time=T, sender="ann", text="waves",
                                            action=True)) == f"{at} * ann waves"
    assert format_text(messages.Join(user="bob", time=T)) == f"{at} --> bob joined"
    assert format_text(messages.Leave(user="bob", time=T, reason="quit")) == \
        f"{at} <-- bob left (quit)"
    assert format_text(messages.Users(users=("a", "b"))) == "online (2): a, b"
    assert format_text(messages.Ack(cid="c1", id=1, time=T)) is None
    welcome = format_text(messages.Welcome(user="ann", server="srv", motd="line1\nline2",
                                           users=("ann",), time=T))
    # Three events: the session, the message of the day (one line: ⏎ marks its
    # breaks), who is online.
    assert welcome.splitlines() == [f"{at} connected to srv as ann", f"{at} -!- line1\u23celine2",
                                    f"{at} online (1): ann"]


def test_terminal_control_characters_are_neutralised():
    line = format_text(messages.ChatMessage(id=1, time=T, sender="eve",
                                            text="\x1b]0;pwned\x07\x1b[2J\u009bhi"))
    assert "\x1b" not in line and "\x07" not in line and "\u009b" not in line
    assert line.endswith("hi")


def test_json_lines():
    rec = json.loads(format_json(messages.ChatMessage(id=9, time=T, sender="ann", text="hé")))
    assert {k: rec[k] for k in ("type", "sender", "text", "id")} == \
        {"type": "message", "sender": "ann", "text": "hé", "id": 9}
    assert rec["time"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S",
                                                time.localtime(T / 1000)) + ".456")
    join = json.loads(format_json(messages.Join(user="bob", time=T)))
    assert (join["type"], join["sender"], join["id"]) == ("join", "bob", None)
    assert format_json(messages.Ack(cid="c", id=1, time=T)) is None


def line_ui(session, home, **kwargs):
    """A LineUI with its DmClient (no key loaded) over ``session``."""
    return LineUI(session, DmClient(session, home, None, lambda m: None), **kwargs)


def test_server_gone_while_stdin_idle_exits_1(server_factory, tmp_path):
    srv = server_factory()
    bob = srv.login("bob")
    session = srv.session()
    session.login_password("alice", PASSWORDS["alice"])
    read_fd, write_fd = os.pipe()  # stdin that stays open and silent
    stdin = os.fdopen(read_fd, "r")
    out, err = io.StringIO(), io.StringIO()
    ui = line_ui(session, tmp_path, stdin=stdin, stdout=out, stderr=err, ack_wait=5)
    result = []
    runner = threading.Thread(target=lambda: result.append(ui.run()))
    runner.start()
    bob.session.say("ping from bob")
    bob.next(messages.Ack)
    srv.thread.stop()
    runner.join(15)
    os.close(write_fd)
    stdin.close()
    assert result == [1]
    assert "<bob> ping from bob" in out.getvalue()
    assert "disconnected: server shutting down" in err.getvalue()


def test_pipe_session_sends_lines_and_waits_for_acks(server_factory, tmp_path):
    chat_server = server_factory()
    bob = chat_server.login("bob")
    session = chat_server.session()
    session.login_password("alice", PASSWORDS["alice"])
    out, err = io.StringIO(), io.StringIO()
    # 40 lines at once, above the server's default burst of 20: paced, none lost.
    lines = "".join(f"line {i}\n" for i in range(40)) + "//slash text\n/me nods\n"
    ui = line_ui(session, tmp_path, stdin=io.StringIO(lines), stdout=out, stderr=err)
    assert ui.run() == 0, err.getvalue()
    got = [bob.next(messages.ChatMessage) for _ in range(42)]
    assert [m.text for m in got[:40]] == [f"line {i}" for i in range(40)]
    assert got[40].text == "/slash text" and not got[40].action
    assert got[41].text == "nods" and got[41].action
    assert "error" not in out.getvalue()
    assert bob.next(messages.Leave).user == "alice"
    bob.close()
