"""A server killed with SIGKILL during a burst of chat lines: what a crash can lose.

With ``--durable-acks`` the ack of a chat line is sent only after the writer
thread committed it, so a crash loses only lines whose senders were never told
they were sent. Without it (the default) the ack goes at once, and a crash can
lose at most the writes still queued for the writer: bounded by its queue
limit, in practice the last few milliseconds (docs/INTERNALS.md, "Durability").
"""

from __future__ import annotations

import queue
import sqlite3

import pytest
import threading
import time

from chatkit import PASSWORDS, WAIT, Client, install_host_key, make_store
from schat.client.session import ClientSession, Disconnected
from schat.errors import SchatError
from schat.paths import Home
from schat.protocol import messages
from schat.store.known_servers import KnownServers
from schat.store.writer import QUEUE_LIMIT
from test_crash_and_corruption import ServeProcess

ACKED_BEFORE_KILL = 300
BURST = 20_000


@pytest.mark.parametrize("durable", [True, False], ids=["durable-acks", "fast-acks"])
def test_sigkill_during_a_chat_burst(tmp_path, durable):
    home = tmp_path / "srv"
    home.mkdir()
    install_host_key(home)
    make_store(home).close()
    # History kept in full (no pruning) so that every stored line can be counted.
    srv = ServeProcess(home, "--rate-limit", "0", "--address-rate-limit", "0",
                       "--history-limit", str(BURST),
                       "--durable-acks" if durable else "--fast-acks")
    try:
        port = srv.port()
        session = ClientSession("127.0.0.1", port, "crash", KnownServers(tmp_path / "known"),
                                accept_new=True, timeout=WAIT)
        session.connect()
        session.login_password("alice", PASSWORDS["alice"])
        events: "queue.Queue" = queue.Queue()
        session.start(events.put)
        sent = []
        line_of = {}  # cid -> the text sent with it

        def burst():
            try:
                for i in range(BURST):
                    line_of[session.say(f"line {i}")] = f"line {i}"
                    sent.append(i)
            except SchatError:
                pass  # the server is gone

        sender = threading.Thread(target=burst, daemon=True)
        sender.start()
        acked = {}  # stored id -> cid
        deadline = time.monotonic() + 60
        while len(acked) < ACKED_BEFORE_KILL:
            assert time.monotonic() < deadline, "the server did not acknowledge the burst"
            ev = events.get(timeout=WAIT)
            if isinstance(ev, messages.Ack):
                acked[ev.id] = ev.cid
        srv.kill()
        while True:  # acks already on their way are acknowledged lines too
            ev = events.get(timeout=WAIT)
            if isinstance(ev, messages.Ack):
                acked[ev.id] = ev.cid
            if isinstance(ev, Disconnected):
                break
        sender.join(WAIT)
        session.close()
    finally:
        srv.kill()
    restarted = ServeProcess(home, "--history-limit", str(BURST))  # no pruning at start
    try:
        port = restarted.port()  # the store opens and the server starts
        bob = ClientSession("127.0.0.1", port, "crash", KnownServers(tmp_path / "known"),
                            accept_new=True, timeout=WAIT)
        bob.connect()
        bob.login_password("bob", PASSWORDS["bob"])
        reader = Client(bob)
        cid = bob.command("/history 5", room="#lobby")
        answer = []
        while True:  # the answer: its history lines (each with the cid), then the ack
            ev = reader.next()
            if isinstance(ev, (messages.Ack, messages.Error)) and ev.cid == cid:
                assert isinstance(ev, messages.Ack), ev
                break
            if getattr(ev, "cid", None) == cid:
                answer.append(ev)
        page = [m for m in answer if isinstance(m, messages.ChatMessage)]
        assert all(m.history for m in page)
        bob.close()
    finally:
        restarted.kill()
    db = sqlite3.connect(str(Home(home).users_db))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = dict(db.execute("SELECT id, text FROM history WHERE room = '#lobby'"))
        texts = {row[0] for row in db.execute("SELECT text FROM history")}
    finally:
        db.close()
    assert texts <= {f"line {i}" for i in sent}
    lost_acked = len(acked.keys() - stored.keys())
    print(f"\nsent {len(sent)}, acknowledged {len(acked)}, stored {len(stored)}; "
          f"lost {len(sent) - len(stored)}, of them acknowledged {lost_acked}")
    # The restarted server pages back exactly what the file holds (with fast acks a
    # starved writer may have committed nothing before the kill: then an empty page).
    assert [m.id for m in page] == sorted(stored)[-5:]
    if durable:
        assert lost_acked == 0, f"{lost_acked} acknowledged lines lost"
        assert max(m.id for m in page) >= max(acked)
        # ... and each under the id its ack named, with the text sent under that cid.
        assert all(stored[i] == line_of[cid] for i, cid in acked.items())
    else:
        assert lost_acked <= QUEUE_LIMIT
        assert stored.keys() >= {i for i in acked if i <= max(stored, default=0)}  # only the tail
