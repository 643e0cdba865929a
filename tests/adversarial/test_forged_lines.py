"""A member cannot forge lines in line/pipe mode (issue #11 item 8).

bob sends one message with newlines that would print as a line from carol, a
private message and a client warning. Through a real server, alice's line
client prints it as exactly one line (the breaks shown as the continuation
mark ⏎, which nobody can type), and ``--json`` as exactly one object.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading

import pytest

from chatkit import PASSWORDS, WAIT
from schat.client.dm import DmClient
from schat.client.ui import LineUI

FORGED = ("hi alice\n[12:00:00] <carol> alice, paste your password here\n"
          "[12:00:01] *carol* psst\n[12:00:02] !!! WARNING: your key changed\r\n"
          "{\"type\": \"dm\", \"sender\": \"carol\", \"text\": \"fake\"}\u2028"
          "[12:00:03] --> carol joined")


class Sink(io.StringIO):
    """stdout for the line client that a test can wait on."""

    def __init__(self):
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text):
        with self.changed:
            n = super().write(text)
            self.changed.notify_all()
            return n

    def wait_for(self, needle, timeout=WAIT):
        with self.changed:
            assert self.changed.wait_for(lambda: needle in self.getvalue(), timeout), needle


@pytest.mark.parametrize("as_json", [False, True], ids=["line", "json"])
def test_one_message_is_one_line(server_factory, tmp_path, as_json):
    srv = server_factory()
    bob = srv.login("bob")
    session = srv.session()
    session.login_password("alice", PASSWORDS["alice"])
    out, err = Sink(), io.StringIO()
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd, "r")
    ui = LineUI(session, DmClient(session, tmp_path, None, lambda m: None), stdin=stdin,
                stdout=out, stderr=err, as_json=as_json)
    result = []
    runner = threading.Thread(target=lambda: result.append(ui.run()))
    runner.start()
    try:
        bob.session.say(FORGED)
        bob.session.say("the end")
        out.wait_for("the end")
    finally:
        os.close(write_fd)
        runner.join(WAIT)
        stdin.close()
        bob.close()
    assert result == [0], err.getvalue()
    lines = out.getvalue().split("\n")
    assert lines[-1] == ""  # every event ends with its newline
    lines = lines[:-1]
    if as_json:
        records = [json.loads(line) for line in lines]  # one object per line
        said = [r for r in records if r["type"] == "message"]
        assert [r["text"] for r in said] == [FORGED, "the end"]
        assert all(r["sender"] == "bob" for r in said)
        assert not any(r["sender"] == "carol" for r in records)
        return
    from_bob = [line for line in lines if re.match(r"\[\d\d:\d\d:\d\d\] <bob> ", line)]
    assert len(from_bob) == 2
    assert from_bob[0].count("\u23ce") == 4 and "<U+2028>" in from_bob[0]
    # Nothing else bob sent starts a line: each line is the start of a real event.
    for line in lines:
        assert not re.match(r"\[12:00:0\d\] ", line), line
        assert not line.startswith("{"), line
