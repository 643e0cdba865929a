"""An idle member holds no message budget, and gets the whole limit back when it talks."""

from __future__ import annotations

import time

from chatkit import WAIT
from hostile import RawPeer, assert_no_traceback
from schat.protocol import messages


def _link(srv, name):
    return next(link for link in list(srv.server.links)
                if link.member is not None and link.member.name == name)


def _replies(peer, count):
    got = []
    while len(got) < count:
        msg = peer.next_of(messages.Message)
        if isinstance(msg, (messages.Ack, messages.Error)):
            got.append(msg)
    return got


def test_a_quiet_member_gives_back_its_budget_and_a_flood_after_it_is_still_limited(
        server_factory, server_log):
    # The keep-alive sweep runs every 0.2 s (half the ping interval). A token a second:
    # the budget is full again, and dropped, no sooner than a second after a line, so
    # the test sees the budget that line made (at 5 a second it was full 0.2 s after,
    # and a test thread that late found it dropped already).
    srv = server_factory(rate_limit=1, rate_burst=3, ping_interval=0.4, ping_timeout=30)
    srv.store.add("ann", "ann-pass-1")
    peer = RawPeer(srv)
    assert isinstance(peer.login("ann", "ann-pass-1"), messages.Welcome)
    link = _link(srv, "ann")
    assert link.bucket is None  # none made at the login
    peer.send(peer.record(messages.Say(text="hello", cid="h1")))
    assert isinstance(_replies(peer, 1)[0], messages.Ack)
    assert link.bucket is not None
    # Full again (2 left of 3, a token a second): the sweep drops it.
    deadline = time.monotonic() + WAIT
    while link.bucket is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert link.bucket is None
    # The next burst gets exactly the limit of a fresh budget: 3 lines, then throttled.
    peer.send(b"".join(peer.record(messages.Say(text=f"b{i}", cid=f"b{i}")) for i in range(5)))
    replies = _replies(peer, 5)
    assert [type(r) for r in replies[:3]] == [messages.Ack] * 3
    assert [r.code for r in replies[3:]] == ["throttled", "throttled"]
    assert [r.cid for r in replies[3:]] == ["b3", "b4"]
    peer.close()
    assert_no_traceback(server_log)
