"""Durable acknowledgements: the ack of a chat line leaves only once the line is
committed to the SQLite file, woken by the store writer's commit notice (no poll).

The SIGKILL case (nothing acknowledged is ever lost) is in
tests/adversarial/test_history_crash.py.
"""

from __future__ import annotations

import sqlite3

from chatkit import WAIT, messages
from schat.paths import Home
from schat.server import hub as hub_module

LINES = 30


def test_ack_arrives_by_commit_notice_with_the_line_already_stored(server_factory, monkeypatch):
    # A poll that never comes within the test: only the commit notice can release
    # the ack of a line sent to a quiet server (no other traffic makes it flush).
    monkeypatch.setattr(hub_module, "ACK_POLL", 3600.0)
    srv = server_factory(durable_acks=True, rate_limit=0)
    assert srv.server.hub.commit_notices
    alice = srv.login("alice")
    db = sqlite3.connect(str(Home(srv.home).users_db), timeout=WAIT)
    try:
        for i in range(LINES):
            cid = alice.session.say(f"durable {i}")
            ack = alice.next(messages.Ack)
            assert ack.cid == cid
            # The ack has arrived: the line must already be in the file (read through
            # a connection of our own, so only committed rows are visible).
            row = db.execute("SELECT text FROM history WHERE id = ?", (ack.id,)).fetchone()
            assert row == (f"durable {i}",)
    finally:
        db.close()
    assert not srv.server.hub.acks_waiting
    alice.close()


def test_acks_in_order_when_lines_come_faster_than_commits(server_factory, monkeypatch):
    monkeypatch.setattr(hub_module, "ACK_POLL", 3600.0)
    srv = server_factory(durable_acks=True, rate_limit=0)
    alice = srv.login("alice")
    bob = srv.login("bob")
    cids = [alice.session.say(f"burst {i}") for i in range(200)]
    acks = [alice.next(messages.Ack) for _ in cids]
    assert [a.cid for a in acks] == cids
    ids = [a.id for a in acks]
    assert ids == sorted(ids)
    db = sqlite3.connect(str(Home(srv.home).users_db), timeout=WAIT)
    try:
        stored = {r[0] for r in db.execute("SELECT id FROM history WHERE text LIKE 'burst %'")}
    finally:
        db.close()
    assert set(ids) <= stored
    assert bob.next(messages.ChatMessage).text == "burst 0"
    alice.close()
    bob.close()
