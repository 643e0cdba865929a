"""The engines fail under a running cluster: Redis restarted, PostgreSQL away; and two
nodes race on the same login and the same ban."""

from __future__ import annotations

import threading
import time

from chatkit import Client
from clusterkit import USERS, WAIT, answer, login, settle, until
from schat.chat.moderation import BAN
from schat.cluster.bus import bus_prefix
from schat.client.session import LoginRefused
from schat.protocol import messages
from schat.protocol import room_messages as rm
from schat.store.chat import SqliteChatStore


def chat_lines(client, room, count):
    return [until(client, messages.ChatMessage, lambda m: m.room == room) for _ in range(count)]


def test_redis_restarted_members_miss_no_acknowledged_line(cluster, redis_service):
    a, b = cluster.start(), cluster.start()
    alice, bob = login(a, "alice"), login(b, "bob")
    answer(alice, "/join #dev")
    answer(bob, "/join #dev")
    settle(a, lambda chat: chat.rooms["#dev"].has("bob"))
    # Bob's login reaches alice as a join of the lobby, held up to a presence delay
    # (schat.server.hub.PRESENCE_MAX): seen here, before the outage.
    until(alice, messages.Join, lambda m: m.user == "bob" and m.room is None)
    alice.session.say("before", room="#dev")
    assert until(bob, messages.ChatMessage).text == "before"
    redis_service.stop()
    settle(a, lambda chat: not chat.peers.bus.up)
    settle(b, lambda chat: not chat.peers.bus.up)
    for i in range(5):
        alice.session.say(f"during a {i}", room="#dev")
    for i in range(3):
        bob.session.say(f"during b {i}", room="#dev")
    assert alice.session.wait_acked(WAIT) and bob.session.wait_acked(WAIT)
    redis_service.start()
    got_b = chat_lines(bob, "#dev", 5)
    got_a = chat_lines(alice, "#dev", 3)
    assert [m.text for m in got_b] == [f"during a {i}" for i in range(5)]
    assert [m.text for m in got_a] == [f"during b {i}" for i in range(3)]
    assert not any(m.history for m in got_a + got_b)   # delivered as they would have been
    alice.session.say("after", room="#dev")
    assert until(bob, messages.ChatMessage).text == "after"
    # Presence held: the outage was shorter than the lease, nobody left or came back.
    for c in (alice, bob):
        seen = []
        while not c.events.empty():
            seen.append(c.events.get_nowait())
        assert not [e for e in seen if isinstance(e, (messages.Leave, messages.Join))], seen
    bob.session.command("/who #dev")
    assert sorted(until(bob, messages.Users).users) == ["alice", "bob"]
    for c in (alice, bob):
        c.close()


def test_postgresql_away_logins_fail_clearly_chat_goes_on_nothing_is_lost(cluster, pg_service,
                                                                         caplog):
    a, b = cluster.start(), cluster.start()
    alice, bob = login(a, "alice"), login(b, "bob")
    answer(alice, "/join #dev")
    answer(bob, "/join #dev")
    settle(a, lambda chat: chat.rooms["#dev"].has("bob"))
    pg_service.stop()
    try:
        s = b.session()
        try:
            s.login_password("carol", USERS["carol"])
            raise AssertionError("a login succeeded without the store")
        except LoginRefused as err:
            assert err.code == "busy" and "store unavailable" in str(err)
        s.close()
        for i in range(5):
            alice.session.say(f"while the store is away {i}", room="#dev")
        got = chat_lines(bob, "#dev", 5)
        assert [m.text for m in got] == [f"while the store is away {i}" for i in range(5)]
        assert answer(bob, "/history 5", room="#dev") is None   # from memory, or refused:
        assert bob.session.connected and alice.session.connected  # never a disconnect
    finally:
        pg_service.start()
    carol = login(b, "carol")
    assert carol.session.welcome.user == "carol"
    # Every line written while the store was away is stored now (retried, not lost).
    store = SqliteChatStore(a.store)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            texts = [s.text for s in store.recent("#dev", 10)]
            if len([t for t in texts if t.startswith("while the store")]) == 5:
                break
            assert time.monotonic() < deadline, texts
            time.sleep(0.05)
    finally:
        store.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert any("could not store" in w for w in warnings), warnings   # the retry said so
    for c in (alice, bob, carol):
        c.close()


def test_two_nodes_racing_on_one_login_leave_exactly_one_session(cluster):
    a, b = cluster.start(), cluster.start()
    watcher = login(a, "carol")
    for round_ in range(3):
        sessions = [a.session(features=("rooms",)), b.session(features=("rooms",))]
        start = threading.Barrier(2, timeout=WAIT)
        done = []

        def log_in(s):
            start.wait()
            s.login_password("alice", USERS["alice"])
            done.append(s)

        threads = [threading.Thread(target=log_in, args=(s,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert len(done) == 2   # both logins succeed; then one takes the other over
        clients = [Client(s) for s in sessions]
        deadline = time.monotonic() + WAIT
        while sum(1 for s in sessions if s.connected) != 1:
            assert time.monotonic() < deadline, "both sessions stayed"
            time.sleep(0.02)
        loser = next(c for c in clients if not c.session.connected)
        assert until(loser, messages.Error).code == "taken_over"
        winner = next(s for s in sessions if s.connected)
        node = a if winner is sessions[0] else b
        other = b if node is a else a
        settle(other, lambda chat: "alice" in chat.remote and "alice" not in chat.members)
        settle(node, lambda chat: "alice" in chat.members and "alice" not in chat.remote)
        for s in sessions:
            s.close()
        settle(a, lambda chat: "alice" not in chat.members and "alice" not in chat.remote)
    watcher.close()


def test_two_nodes_racing_on_one_ban_settle_on_one(cluster):
    a, b = cluster.start(), cluster.start()
    alice, carol, bob = login(a, "alice"), login(b, "carol"), login(b, "bob")
    answer(alice, "/join #dev")
    for c in (carol, bob):
        answer(c, "/join #dev")
    assert answer(alice, "/op carol") is None
    settle(b, lambda chat: "carol" in chat.rooms["#dev"].ops)
    for round_ in range(3):
        start = threading.Barrier(2, timeout=WAIT)

        def ban(client, line):
            start.wait()
            client.session.command(line, room="#dev")

        threads = [threading.Thread(target=ban, args=(alice, f"/ban bob 1h by alice {round_}")),
                   threading.Thread(target=ban, args=(carol, f"/ban bob 2h by carol {round_}"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)

        def ban_on(chat):
            item = chat.rooms["#dev"].restrictions.get(BAN, "bob", chat.now_ms())
            return item and (item.actor, item.reason, item.until)
        seen_a = settle(a, ban_on)
        seen_b = settle(b, ban_on)
        deadline = time.monotonic() + WAIT
        while True:   # the two nodes and the store agree on one ban
            seen_a, seen_b = a.thread.call(ban_on, a.server.hub.chat), \
                b.thread.call(ban_on, b.server.hub.chat)
            store = SqliteChatStore(a.store)
            try:
                store.writer.wait(WAIT)
                (room,) = [r for r in store.load_rooms() if r.name == "#dev"]
            finally:
                store.close()
            stored = [(r.actor, r.reason, r.until) for r in room.restrictions
                      if r.kind == BAN and r.user == "bob"]
            if seen_a == seen_b and stored == [seen_a]:
                break
            assert time.monotonic() < deadline, (seen_a, seen_b, stored)
            time.sleep(0.05)
        assert seen_a[1] in (f"by alice {round_}", f"by carol {round_}")
        refused = answer(bob, "/join #dev")
        assert refused.code == "banned" and seen_a[1] in refused.text
        assert answer(alice, "/unban bob") is None
        settle(b, lambda chat: not chat.rooms["#dev"].restrictions.get(BAN, "bob",
                                                                       chat.now_ms()))
        bob.session.command("/join #dev")
        until(bob, rm.RoomState, lambda m: m.room == "#dev")
        settle(a, lambda chat: chat.rooms["#dev"].has("bob"))
    for c in (alice, bob, carol):
        c.close()


def test_garbage_on_the_bus_is_dropped_and_said(cluster, redis_service, caplog):
    a = cluster.start()
    alice, bob = login(a, "alice"), login(a, "bob")
    garbage = [b"", b"\xff\xfe", b"[1]", b"{}", b'["zz","n9",1]', b'["on","n9",2,"x"]',
               b'["on","n9",3,"mallory","not a token",1,0,0,""]',
               b'["s","n9",4,"#lobby","id?",1,"m","text",0]',
               b'["r","n9",5,[["only","two"]],{}]', b'["b","n9",6,"many"]',
               b'["fw","n9",7,"alice",5]', b'["m","n9",8,"#lobby"]', b"[" * 5000]
    prefix = bus_prefix(cluster.redis_url)
    with redis_service.client() as client:
        for data in garbage:
            client.publish(f"{prefix}c", data)
            client.publish(f"{prefix}n:{a.server.cluster.id}", data)
    alice.session.say("still here")
    assert until(bob, messages.ChatMessage).text == "still here"
    settle(a, lambda chat: sum(1 for r in caplog.records
                               if "bus: dropped" in r.getMessage()) >= len(garbage))
    assert a.thread.call(lambda: "mallory" not in a.server.hub.chat.remote)
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("schat")]
    for c in (alice, bob):
        c.close()
