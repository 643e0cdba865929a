"""Redis cuts off a node that reads its subscription too slowly (the output buffer
limit for pub/sub clients): what Redis held for it is gone, and the node fills the gap
from the store, however far behind it was."""

from __future__ import annotations

import queue
import threading
import time

from clusterkit import WAIT, answer, login, settle, until
from schat.protocol import messages

LINES = 1500           # more than one catch-up page
STALL = 7.0            # longer than the catch-up's margin before the loss is noticed
TAIL = 300             # lines said while the node catches up
PAD = "x" * 800        # each line's share of Redis's output buffer


def texts(client, count):
    """The next ``count`` lines of #dev (fewer if no more come)."""
    got = []
    try:
        while len(got) < count:
            got.append(until(client, messages.ChatMessage, lambda m: m.room == "#dev").text)
    except queue.Empty:
        pass
    return got


def test_a_slow_subscriber_cut_off_by_redis_misses_no_acknowledged_line(cluster,
                                                                        redis_service,
                                                                        caplog):
    # The store keeps the whole burst (it keeps history_limit lines of a room: a gap
    # longer than that cannot be filled from it).
    settings = dict(address_rate_limit=0, history_limit=LINES * 2)
    a, b = cluster.start(**settings), cluster.start(**settings)
    alice, dave = login(a, "alice"), login(a, "dave")
    bob, carol = login(b, "bob"), login(b, "carol")
    for c in (alice, dave, bob, carol):
        answer(c, "/join #dev")
    settle(a, lambda chat: chat.rooms["#dev"].has("bob") and chat.rooms["#dev"].has("carol"))
    settle(b, lambda chat: chat.rooms["#dev"].has("alice") and chat.rooms["#dev"].has("dave"))
    alice.session.say("before", room="#dev")
    assert texts(bob, 1) == ["before"] and texts(carol, 1) == ["before"]
    assert texts(dave, 1) == ["before"]
    with redis_service.client() as client:
        kept = client.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
        client.config_set("client-output-buffer-limit", "pubsub 256kb 64kb 1")
    bus_b = b.server.cluster.bus
    try:
        # Node b's loop stops reading (as under a profiler, or a long pause) while node a
        # publishes a burst: Redis's buffer for b's subscriber overflows and Redis drops it.
        stalled = threading.Event()

        def stall():
            stalled.set()
            threading.Event().wait(STALL)

        staller = threading.Thread(target=b.thread.call, args=(stall,))
        staller.start()
        assert stalled.wait(WAIT)
        sent = [f"burst {i} {PAD}" for i in range(LINES)]
        for text in sent:
            alice.session.say(text, room="#dev")
        assert alice.session.wait_acked(WAIT * 2)
        # Lines keep coming while node b reads to the end of what Redis sent before it cut
        # b off, reconnects and catches up. (The room's first catch-up, due AGAIN seconds
        # after the join, may fill b from the store before b has read that far.)
        staller.join(WAIT * 2)
        deadline = time.monotonic() + WAIT * 2
        while not b.thread.call(lambda: bus_b.reconnects and bus_b.up
                                and b.server.cluster._down_since is None):
            assert time.monotonic() < deadline, "node b never noticed Redis cut it off"
            sent.append(f"tail {len(sent)}")
            alice.session.say(sent[-1], room="#dev")
        for _ in range(TAIL):
            sent.append(f"tail {len(sent)}")
            alice.session.say(sent[-1], room="#dev")
        assert alice.session.wait_acked(WAIT * 2)
    finally:
        with redis_service.client() as client:
            client.config_set("client-output-buffer-limit", kept)
    # Redis did cut node b off (and nothing else happened to the bus).
    assert any("lost" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    # Every acknowledged line, once each and in the order alice said them, on both nodes.
    for c in (bob, carol, dave):
        got = texts(c, len(sent))
        first = next((i for i, (x, y) in enumerate(zip(got, sent)) if x != y), None)
        assert got == sent, (c.session.user, len(got), first,
                             got[first][:12] if first is not None else None)
    alice.session.say("after", room="#dev")
    for c in (bob, carol, dave):
        assert texts(c, 1) == ["after"]
    for c in (alice, dave, bob, carol):
        c.close()
