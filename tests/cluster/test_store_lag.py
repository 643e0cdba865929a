"""The bus is ahead of the store: a node publishes a line before its writer commits it.
A node that lost the bus must not let newer lines it hears live hide the older ones
the store does not hold yet. It holds the live lines back until the store has their
sender's older lines, then delivers every line once, in the order it was said."""

from __future__ import annotations

import queue
import threading
import time

from clusterkit import WAIT, answer, login, settle, until
from schat.cluster.bus import bus_prefix
from schat.protocol import messages

MISSED = 20     # said while node b is off the bus, and not stored until the gate opens
LIVE = 20       # said after b is back, before the gate opens


def texts(client, count, timeout=WAIT):
    """The next ``count`` lines of #dev (fewer if no more come)."""
    got = []
    try:
        while len(got) < count:
            got.append(until(client, messages.ChatMessage, lambda m: m.room == "#dev",
                             timeout=timeout).text)
    except queue.Empty:
        pass
    return got


def subscriber_id(redis, node) -> int:
    """Redis's id for ``node``'s subscribed connection (named after the node)."""
    name = f"schat-node-{node.server.cluster.id[:16]}"
    ids = [int(c["id"]) for c in redis.client_list()
           if c.get("name") == name and int(c.get("sub", 0)) > 0]
    assert len(ids) == 1, (name, ids)
    return ids[0]


def talking(cluster, **settings):
    """Nodes a and b, alice on a and bob on b in #dev, past the room's first catch-up
    (these tests are about a loss, not a room's first member here)."""
    a, b = cluster.start(**settings), cluster.start(**settings)
    alice, bob = login(a, "alice"), login(b, "bob")
    for c in (alice, bob):
        assert answer(c, "/join #dev") is None
    settle(a, lambda chat: chat.rooms["#dev"].has("bob"))
    settle(b, lambda chat: chat.rooms["#dev"].has("alice"))
    alice.session.say("before", room="#dev")
    assert texts(bob, 1) == ["before"]
    settle(b, lambda chat: "#dev" not in b.server.cluster.catchup.windows, timeout=WAIT * 2)
    return a, b, alice, bob


def test_lines_missed_on_the_bus_and_not_yet_stored_arrive_once_and_in_order(
        cluster, redis_service, redis_url):
    a, b, alice, bob = talking(cluster, durable_acks=False)
    bus_b = b.server.cluster.bus

    gate = threading.Event()
    writer = a.server.hub.chat.store.writer
    a.thread.call(lambda: writer.submit(lambda conn: gate.wait(WAIT * 2), urgent=True))
    sent = []
    watch = redis_service.client()
    listener = watch.pubsub()
    try:
        channel = (bus_prefix(redis_url) + "r:#dev").encode()
        listener.subscribe(channel)
        assert listener.get_message(timeout=WAIT)["type"] == "subscribe"

        # Node b's loop is busy while Redis drops its subscription and node a publishes
        # lines its writer cannot store yet.
        stalled, resume = threading.Event(), threading.Event()

        def stall():
            stalled.set()
            resume.wait(WAIT)

        staller = threading.Thread(target=b.thread.call, args=(stall,))
        staller.start()
        assert stalled.wait(WAIT)
        watch.client_kill_filter(_id=subscriber_id(watch, b))
        for i in range(MISSED):
            sent.append(f"missed {i}")
            alice.session.say(sent[-1], room="#dev")
        assert alice.session.wait_acked(WAIT)
        deadline = time.monotonic() + WAIT
        heard = b""
        while sent[-1].encode() not in heard:   # Redis has passed them on (not to b)
            assert time.monotonic() < deadline, "node a's lines never reached Redis"
            message = listener.get_message(timeout=1)
            if message and message["type"] == "message":
                heard += message["data"]
        resume.set()
        staller.join(WAIT)

        # Node b is back on the bus and has read the room once (without the lines the
        # store does not have yet); then node a's next lines arrive live.
        deadline = time.monotonic() + WAIT
        while not b.thread.call(lambda: bus_b.reconnects and bus_b.up
                                and not b.server.cluster.catchup.windows["#dev"].reading):
            assert time.monotonic() < deadline, "node b did not come back to the bus"
            time.sleep(0.01)
        for i in range(LIVE):
            sent.append(f"live {i}")
            alice.session.say(sent[-1], room="#dev")
        assert alice.session.wait_acked(WAIT)
        # Node b hears every one of them on the bus (alice's acks do not wait for that)
        # and holds them back: bob sees none while the store lacks the older ones.
        settle(b, lambda chat: len(b.server.cluster.catchup.windows["#dev"].held) == LIVE)
        assert texts(bob, 1, timeout=0.5) == []
    finally:
        gate.set()
        listener.close()
        watch.close()
    # Once node a stores them: every line once, in the order alice said them.
    assert texts(bob, len(sent)) == sent
    alice.session.say("after", room="#dev")
    assert texts(bob, 1) == ["after"]
    assert texts(bob, 1, timeout=0.5) == []
    for c in (alice, bob):
        c.close()


def test_lines_read_from_the_store_before_the_bus_brings_them_are_not_delivered_twice(
        cluster, redis_service):
    a, b, alice, bob = talking(cluster)          # durable acks: acked means stored
    catchup = b.server.cluster.catchup

    watch = redis_service.client()
    try:
        # Redis holds back every write (a PUBLISH is one) while node a stores lines.
        watch.execute_command("CLIENT", "PAUSE", int(WAIT * 1000), "WRITE")
        sent = [f"line {i}" for i in range(MISSED)]
        for text in sent:
            alice.session.say(text, room="#dev")
        assert alice.session.wait_acked(WAIT)
        # Node b catches the room up from the store (as after any loss on the bus)...
        b.thread.call(catchup.gap, "#dev", time.time() - 60)
        assert texts(bob, len(sent)) == sent
        # ... and is done with it (its second read included) ...
        settle(b, lambda chat: "#dev" not in catchup.windows, timeout=WAIT)
    finally:
        # ... before the bus brings the same lines.
        watch.execute_command("CLIENT", "UNPAUSE")
        watch.close()
    alice.session.say("after", room="#dev")
    assert texts(bob, 1) == ["after"]
    assert texts(bob, 1, timeout=0.5) == []
    for c in (alice, bob):
        c.close()


def test_a_new_process_on_a_dead_one_s_slot_is_heard_even_with_its_clock_behind(cluster):
    from schat.cluster.ids import Hybrid

    a, b, alice, bob = talking(cluster)
    # Node a has seen an id from a process whose clock is 20 s ahead: its ids follow it.
    ahead = Hybrid.floor(int(time.time() * 1000) + 20_000)
    a.thread.call(a.server.hub.chat.ids.observe, ahead)
    alice.session.say("from ahead", room="#dev")
    assert texts(bob, 1) == ["from ahead"]
    slot = a.thread.call(lambda: a.server.hub.chat.ids.slot)
    alice.close()
    a.thread.stop()
    # A new process takes the free slot, with this machine's clock: its ids are lower.
    c = cluster.start()
    assert c.thread.call(lambda: c.server.hub.chat.ids.slot) == slot
    carol = login(c, "carol")
    assert answer(carol, "/join #dev") is None
    settle(b, lambda chat: chat.rooms["#dev"].has("carol"))
    carol.session.say("from behind", room="#dev")
    assert texts(bob, 1) == ["from behind"]
    # Node b's mark for the slot is now the new process's (a catch-up compares the
    # slot's stored lines with it): the old one, 20 s ahead, would hide them.
    marks = b.thread.call(lambda: dict(b.server.cluster.catchup.marks["#dev"]))
    assert marks[slot] < ahead
    for client in (bob, carol):
        client.close()
