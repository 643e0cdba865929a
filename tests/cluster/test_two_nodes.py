"""Two nodes on one store and one bus are one chat: rooms, members, lines, history,
moderation, direct messages."""

from __future__ import annotations

import queue

from chatkit import drained
from clusterkit import USERS, WAIT, answer, login, settle, until
from schat.client.dm import DmClient
from schat.client.local_events import PrivateMessage
from schat.crypto.keys import public_der
from schat.protocol import messages
from schat.protocol import room_messages as rm


def joined(client, room: str):
    """Join ``room`` and return its RoomState."""
    client.session.command(f"/join {room}")
    return until(client, rm.RoomState, lambda m: m.room == room)


def knows(node, room: str, user: str) -> None:
    """Wait until ``node`` has heard over the bus that ``user`` is in ``room``. A join on
    another node before that would make the room there too, at once, and the earliest
    creation wins only when the two meet (docs/CLUSTER.md)."""
    settle(node, lambda chat: room in chat.rooms and chat.rooms[room].has(user))


def test_a_room_spans_two_nodes(cluster):
    a, b = cluster.start(), cluster.start()
    alice, bob = login(a, "alice"), login(b, "bob")
    assert answer(alice, "/join #dev") is None
    knows(b, "#dev", "alice")
    state = joined(bob, "#dev")
    assert state.owner == "alice" and set(state.users) == {"alice", "bob"}
    assert until(alice, messages.Join, lambda m: m.room == "#dev").user == "bob"
    for i in range(20):
        alice.session.say(f"from a {i}", room="#dev")
    got = [until(bob, messages.ChatMessage, lambda m: m.room == "#dev").text for _ in range(20)]
    assert got == [f"from a {i}" for i in range(20)]   # in order
    bob.session.say("from b", room="#dev")
    assert until(alice, messages.ChatMessage, lambda m: m.room == "#dev").text == "from b"
    bob.session.command("/who #dev")
    assert set(until(bob, messages.Users, lambda m: m.room == "#dev").users) == {"alice", "bob"}
    bob.session.command("/rooms")
    dev = [r for r in until(bob, rm.Rooms).rooms if r["room"] == "#dev"]
    assert dev[0]["users"] == 2
    carol = login(b, "carol")                  # the lobby lists members of both nodes
    assert set(carol.session.welcome.users) >= {"alice", "bob", "carol"}
    bob.close()
    assert until(alice, messages.Leave, lambda m: m.room == "#dev").user == "bob"
    alice.session.command("/who #dev")
    assert list(until(alice, messages.Users, lambda m: m.room == "#dev").users) == ["alice"]
    for c in (alice, carol):
        c.close()


def test_a_room_made_on_two_nodes_at_once_is_the_earlier_one_and_its_loser_is_told(
        cluster, redis_service):
    a, b = cluster.start(), cluster.start()
    alice, bob = login(a, "alice"), login(b, "bob")
    watch = redis_service.client()
    try:
        # Redis holds back every write (a PUBLISH is one): neither node hears of the
        # other's #dev, and each makes it with its own member as owner.
        watch.execute_command("CLIENT", "PAUSE", int(WAIT * 1000), "WRITE")
        assert joined(alice, "#dev").owner == "alice"
        assert joined(bob, "#dev").owner == "bob"
    finally:
        watch.execute_command("CLIENT", "UNPAUSE")
        watch.close()
    # alice's was made first: it counts on both nodes, and bob, who was shown his own,
    # is told.
    told = until(bob, messages.Notice, lambda m: "#dev" in m.text)
    assert told.text == "#dev was also made on another server, earlier: alice owns it, not bob"
    settle(b, lambda chat: chat.rooms["#dev"].owner == "alice"
           and chat.rooms["#dev"].has("alice"))
    settle(a, lambda chat: chat.rooms["#dev"].has("bob"))
    assert a.thread.call(lambda: a.server.hub.chat.rooms["#dev"].owner) == "alice"
    assert answer(bob, "/op carol", room="#dev").code == "forbidden"
    bob.session.command("/who #dev")
    assert set(until(bob, messages.Users, lambda m: m.room == "#dev").users) == {"alice", "bob"}
    # alice's creation stood: she was told nothing.
    alice.session.command("/who #dev")
    assert set(until(alice, messages.Users, lambda m: m.room == "#dev").users) == {"alice", "bob"}
    assert not [e for e in drained(alice) if isinstance(e, messages.Notice)]
    for c in (alice, bob):
        c.close()


def test_history_written_on_one_node_is_the_backlog_on_another(cluster):
    a, b = cluster.start(backlog=3), cluster.start(backlog=3)
    alice = login(a, "alice")
    answer(alice, "/join #ops")
    for i in range(8):
        alice.session.say(f"before bob {i}", room="#ops")
    assert alice.session.wait_acked(WAIT)
    bob = login(b, "bob")                     # #ops has no member on node b yet
    knows(b, "#ops", "alice")
    assert joined(bob, "#ops").owner == "alice"
    backlog = [until(bob, messages.ChatMessage) for _ in range(3)]
    assert [(m.text, m.history) for m in backlog] == [(f"before bob {i}", True)
                                                      for i in range(5, 8)]
    alice.session.say("live", room="#ops")
    live = until(bob, messages.ChatMessage)
    assert (live.text, live.history) == ("live", False)
    assert live.id > backlog[-1].id            # ids keep their order across nodes
    bob.session.command("/history 3")
    paged = [until(bob, messages.ChatMessage) for _ in range(3)]
    assert [m.text for m in paged] == [f"before bob {i}" for i in range(2, 5)]
    for c in (alice, bob):
        c.close()


def test_moderation_reaches_members_on_the_other_node(cluster):
    a, b = cluster.start(), cluster.start()
    alice, bob, carol = login(a, "alice"), login(b, "bob"), login(b, "carol")
    answer(alice, "/join #dev")
    for c in (bob, carol):
        joined(c, "#dev")
    assert answer(alice, "/op carol") is None
    assert until(bob, rm.Moderation).action == "op"
    assert answer(alice, "/topic ship on friday") is None
    topic = until(bob, rm.Topic)
    assert (topic.topic, topic.user) == ("ship on friday", "alice")
    assert answer(carol, "/kick bob stop it") is None       # an op on node b, from node b
    mod = until(alice, rm.Moderation, lambda m: m.action == "kick")
    assert (mod.actor, mod.target, mod.reason) == ("carol", "bob", "stop it")
    assert until(bob, rm.Focus).room == "#lobby"
    assert answer(alice, "/ban bob 1h spam") is None           # bob (node b) is not in it
    refused = answer(bob, "/join #dev")
    assert refused.code == "banned" and "spam" in refused.text
    assert answer(alice, "/mute carol") is None
    assert answer(bob, "/mute carol", room="#dev").code == "not_in_room"
    cid = carol.session.say("hello?", room="#dev")
    assert until(carol, messages.Error, lambda m: m.cid == cid).code == "muted"
    assert answer(alice, "/unmute carol") is None
    until(carol, rm.Moderation, lambda m: m.action == "unmute")
    carol.session.say("thanks", room="#dev")
    assert until(alice, messages.ChatMessage).text == "thanks"
    alice.session.command("/room private")
    until(carol, rm.Moderation, lambda m: m.action == "private")
    assert answer(bob, "/join #secret") is None                # a room made on node b
    assert answer(bob, "/room private") is None
    settle(a, lambda chat: "#secret" in chat.rooms and chat.rooms["#secret"].private)
    assert answer(alice, "/join #secret").code == "invite_only"
    assert answer(bob, "/invite alice") is None
    assert "invites you to #secret" in until(alice, messages.Notice).text
    assert joined(alice, "#secret").owner == "bob"
    for c in (alice, bob, carol):
        c.close()


def test_takeover_across_nodes_keeps_the_rooms_quiet(cluster):
    a, b = cluster.start(), cluster.start()
    alice, carol = login(a, "alice"), login(b, "carol")
    answer(alice, "/join #dev")
    knows(b, "#dev", "alice")
    joined(carol, "#dev")
    again = login(b, "alice")                 # the same account on the other node
    closed = until(alice, messages.Error)
    assert closed.code == "taken_over"
    assert again.session.welcome.user == "alice"
    state = until(again, rm.RoomState, lambda m: m.room == "#dev")
    assert "alice" in state.users and state.owner == "alice"
    again.session.say("still me", room="#dev")
    assert until(carol, messages.ChatMessage).text == "still me"
    # Carol saw no part and no join of alice: the session moved, the member stayed.
    seen = []
    while not carol.events.empty():
        seen.append(carol.events.get_nowait())
    assert not [e for e in seen if isinstance(e, (messages.Join, messages.Leave))], seen
    carol.session.command("/who #dev")
    assert sorted(until(carol, messages.Users, lambda m: m.room == "#dev").users) == \
        ["alice", "carol"]
    for c in (again, carol):
        c.close()


def test_operator_actions_reach_the_node_holding_the_session(cluster):
    a, b = cluster.start(), cluster.start()
    bob, carol = login(b, "bob"), login(b, "carol")
    joined(bob, "#dev")
    joined(carol, "#dev")
    chat_a = a.server.hub.chat
    settle(a, lambda chat: "#dev" in chat.rooms and chat.rooms["#dev"].has("carol"))
    who = a.thread.call(chat_a.who_online)
    assert {(s["name"], s["node"]) for s in who} == {("bob", b.server.cluster.id),
                                                     ("carol", b.server.cluster.id)}
    assert a.thread.call(chat_a.broadcast, "maintenance at noon") == 2
    for c in (bob, carol):
        assert until(c, messages.Notice).text == "maintenance at noon"
    assert a.thread.call(chat_a.operator_kick, "carol", "#dev", "cool down") == ["#dev"]
    assert until(carol, rm.Moderation).target == "carol"
    assert until(bob, rm.Moderation, lambda m: m.action == "kick").actor is None
    assert a.thread.call(chat_a.operator_end, "bob", "disconnect", "bye now") is True
    err = until(bob, messages.Error)
    assert err.code == "disconnected" and "bye now" in err.text
    a.store.lock("carol")
    assert a.thread.call(chat_a.operator_end, "carol", "lock", "") is True
    assert until(carol, messages.Error).code == "locked"
    settle(a, lambda chat: not chat.remote)
    for c in (bob, carol):
        c.close()


def test_direct_messages_reach_the_recipient_on_another_node(cluster, user_keys, tmp_path):
    a, b = cluster.start(), cluster.start()
    with cluster.store() as store:
        for name in ("alice", "bob"):
            store.set_public_key(name, public_der(user_keys[name]))

    def dm_peer(node, name):
        session = node.session(features=("rooms",))
        session.login_password(name, USERS[name])
        events: "queue.Queue" = queue.Queue()
        dm = DmClient(session, tmp_path / name, user_keys[name], events.put, key_timeout=WAIT)
        session.start(dm.wrap(events.put))
        return session, dm, events

    def next_pm(events):
        while True:
            item = events.get(timeout=WAIT)
            if isinstance(item, PrivateMessage):
                return item

    alice, alice_dm, alice_events = dm_peer(a, "alice")
    bob, bob_dm, bob_events = dm_peer(b, "bob")
    settle(a, lambda chat: "bob" in chat.remote)
    alice_dm.send("bob", "across the nodes")
    got = next_pm(bob_events)
    assert (got.sender, got.text, got.verified) == ("alice", "across the nodes", True)
    bob_dm.send("alice", "and back")
    assert next_pm(alice_events).text == "and back"
    bob.close()
    settle(a, lambda chat: "bob" not in chat.remote)
    alice_dm.send("bob", "while you were away")
    assert "offline" in until_notice(alice_events).text
    bob, bob_dm, bob_events = dm_peer(a, "bob")  # back, on the other node
    assert next_pm(bob_events).text == "while you were away"
    for session in (alice, bob):
        session.close()


def until_notice(events):
    while True:
        item = events.get(timeout=WAIT)
        if isinstance(item, messages.Notice):
            return item


def test_a_node_started_later_learns_who_is_where(cluster):
    a = cluster.start()
    alice = login(a, "alice")
    answer(alice, "/join #dev")
    b = cluster.start()                                    # asks the others for their rosters
    bob = login(b, "bob")
    state = joined(bob, "#dev")
    assert set(state.users) == {"alice", "bob"} and state.owner == "alice"
    assert set(bob.session.welcome.users) >= {"alice", "bob"}
    # Joins are held a moment and sent together (a join and a leave within that moment
    # are shown to nobody): alice sees bob's first, then his leave.
    until(alice, messages.Join, lambda m: m.room == "#dev" and m.user == "bob")
    b.thread.stop()                                         # a clean stop: bob leaves at once
    left = until(alice, messages.Leave, lambda m: m.room == "#dev")
    assert left.user == "bob"
    settle(a, lambda chat: "bob" not in chat.remote)
    alice.close()


def test_a_room_nobody_belongs_to_goes_on_every_node(cluster):
    a, b = cluster.start(), cluster.start()
    alice, bob = login(a, "alice"), login(b, "bob")
    assert answer(alice, "/join #tmp") is None
    joined(bob, "#tmp")
    settle(a, lambda chat: "#tmp" in chat.rooms and chat.rooms["#tmp"].has("bob"))
    assert answer(alice, "/part #tmp") is None
    settle(a, lambda chat: "#tmp" in chat.rooms and not chat.rooms["#tmp"].has("alice"))
    assert "#tmp" in a.thread.call(lambda: dict(a.server.hub.chat.rooms))  # bob is in it
    assert answer(bob, "/part #tmp") is None
    for node in (a, b):
        settle(node, lambda chat: "#tmp" not in chat.rooms)
    with cluster.store() as store:
        with store.reading() as conn:
            assert conn.execute("SELECT count(*) FROM rooms WHERE name = '#tmp'"
                                ).fetchone()[0] == 0
    for c in (alice, bob):
        c.close()
