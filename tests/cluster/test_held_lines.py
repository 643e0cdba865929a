"""A node delivers the chat lines of a loop turn together, before the flush: said on
the node (runs per sender, to the room's members as they were when each line was said)
or read from the bus. Nothing is lost or doubled, each sender's lines stay in order,
and what happens in the same turn (a join, a part) sees the lines said before it.
A node whose own beats come back late while it still reads the bus is behind, not cut
off: it neither reconnects nor counts the other nodes gone."""

from __future__ import annotations

import time

from clusterkit import answer, login, settle, until
from schat.protocol import messages


def lines_of(client, room: str, count: int):
    """The next ``count`` chat lines of ``room`` (texts, with their history mark)."""
    return [(m.text, m.history) for m in
            (until(client, messages.ChatMessage, lambda m: m.room == room)
             for _ in range(count))]


def test_a_turns_lines_reach_everyone_once_in_order_and_before_what_follows(cluster):
    a, b = cluster.start(), cluster.start()
    alice, dave, erin, carol = (login(a, n) for n in ("alice", "dave", "erin", "carol"))
    bob = login(b, "bob")
    for c in (alice, dave, erin, bob):
        assert answer(c, "/join #dev") is None
    settle(a, lambda chat: chat.rooms["#dev"].has("bob"))
    settle(b, lambda chat: all(chat.rooms["#dev"].has(n) for n in ("alice", "dave", "erin")))
    node = a.server.cluster
    hub = a.server.hub

    def one_turn(chat):
        m = chat.members
        for i in range(5):
            hub.handle(m["alice"], messages.Say(text=f"alice {i}", cid=f"a{i}", room="#dev"))
        for i in range(5):
            hub.handle(m["dave"], messages.Say(text=f"dave {i}", cid=f"d{i}", room="#dev"))
        held = [len(run[3]) for run in node._said_here]
        # Carol enters after those lines, erin leaves after them, alice says one more.
        hub.handle(m["carol"], messages.Command(line="/join #dev", cid="cj"))
        hub.handle(m["erin"], messages.Command(line="/part #dev", cid="ep"))
        hub.handle(m["alice"], messages.Say(text="alice last", cid="a5", room="#dev"))
        return held

    assert a.thread.call(one_turn, a.server.hub.chat) == [5, 5]   # two runs, not ten lines
    first = [f"alice {i}" for i in range(5)] + [f"dave {i}" for i in range(5)]
    assert lines_of(bob, "#dev", 11) == [(t, False) for t in first + ["alice last"]]
    # Erin was in the room for the first ten lines: live, before its own part.
    assert lines_of(erin, "#dev", 10) == [(t, False) for t in first]
    assert until(erin, messages.Leave, lambda m: m.room == "#dev").user == "erin"
    # Carol: the ten from the room's history when it joined, the last one live; each once.
    got = lines_of(carol, "#dev", 11)
    assert got == [(t, True) for t in first] + [("alice last", False)]
    dave.session.say("after", room="#dev")      # nothing more of the turn is on its way
    for c in (bob, carol):
        assert lines_of(c, "#dev", 1) == [("after", False)]
    assert lines_of(alice, "#dev", 6) == [(f"dave {i}", False) for i in range(5)] + \
        [("after", False)]
    for c in (alice, dave, erin, carol, bob):
        c.close()


def test_lines_from_the_bus_wait_for_the_flush_and_keep_their_order(cluster):
    a, b = cluster.start(), cluster.start()
    alice, dave = login(a, "alice"), login(a, "dave")
    bob, carol = login(b, "bob"), login(b, "carol")
    for c in (alice, dave, bob, carol):
        assert answer(c, "/join #dev") is None
    settle(b, lambda chat: chat.rooms["#dev"].has("alice") and chat.rooms["#dev"].has("dave"))
    for i in range(200):                        # many Redis messages in few loop turns
        (alice if i % 2 else dave).session.say(f"line {i}", room="#dev")
    for c in (bob, carol):
        got = [t for t, _ in lines_of(c, "#dev", 200)]
        assert sorted(got, key=lambda t: int(t.split()[1])) == [f"line {i}" for i in range(200)]
        for who in (0, 1):                      # each sender's lines in its order
            mine = [t for t in got if int(t.split()[1]) % 2 == who]
            assert mine == [f"line {i}" for i in range(who, 200, 2)]
    assert b.thread.call(lambda: b.server.cluster._lines) == []
    for c in (alice, dave, bob, carol):
        c.close()


def test_a_node_behind_on_the_bus_is_not_cut_off_and_counts_nobody_gone(cluster, caplog):
    a, b = cluster.start(lease=1.0), cluster.start(lease=1.0)
    alice, bob = login(a, "alice"), login(b, "bob")
    settle(b, lambda chat: "alice" in chat.remote)
    node = b.server.cluster

    def late(read_now: bool):
        # Its own beats last came back long ago, and so did node a's; it read the bus
        # just now (behind) or not for a lease either (silent).
        past = time.monotonic() - 5.0
        node._own_beat = past
        node.nodes = {k: (past, n) for k, (_, n) in node.nodes.items()}
        node._last_read = time.monotonic() if read_now else past
        node._beat()
        return node.bus._reset, "alice" in node.chat.remote

    assert b.thread.call(late, True) == (False, True)      # behind: nothing happens
    assert "stopped coming back" not in caplog.text
    reset, _ = b.thread.call(late, False)                  # silent: it reconnects
    assert reset and "own heartbeats stopped coming back; reconnecting" in caplog.text
    settle(b, lambda chat: "alice" in chat.remote)
    bob.session.say("still here", room="#lobby")
    assert until(alice, messages.ChatMessage, lambda m: m.text == "still here")
    for c in (alice, bob):
        c.close()
