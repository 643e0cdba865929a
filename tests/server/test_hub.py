"""The connection layer's hub over the chat domain: wire shapes, encode-once, outboxes."""

from __future__ import annotations

import pytest

from schat.protocol import messages
from schat.server.hub import Hub

T0 = 1_700_000_000.0


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def hub():
    wakes = []
    h = Hub(server_name="test", motd="be nice", clock=Clock(), wake=lambda: wakes.append(1))
    h.wakes = wakes
    return h


def drain(member):
    """Decode and clear a member's outbox."""
    out = [messages.decode(b) for b in member.outbox]
    member.outbox.clear()
    member.queued = 0
    return out


def test_join_welcomes_and_announces(hub):
    ann = hub.join("ann")
    (welcome,) = drain(ann)
    assert welcome == messages.Welcome(user="ann", server="test", motd="be nice",
                                       users=("ann",), time=int(T0 * 1000))
    bob = hub.join("bob")
    assert drain(ann) == [messages.Join(user="bob", time=int(T0 * 1000))]
    assert drain(bob)[0].users == ("ann", "bob")
    assert hub.wakes == [1]  # one wake until the I/O layer takes the dirty list
    assert set(hub.take_dirty()) == {ann, bob}
    assert hub.take_dirty() == []


def test_a_second_login_takes_over_case_insensitively(hub):
    first = hub.join("Ann")
    drain(first)
    second = hub.join("ann")
    assert [type(m) for m in drain(first)] == [messages.Error, messages.Bye]
    assert first.closing and hub.member("ANN") is second


def test_say_reaches_others_once_encoded_and_is_acked(hub):
    ann, bob, cat = hub.join("ann"), hub.join("bob"), hub.join("cat")
    for m in (ann, bob, cat):
        drain(m)
    hub.handle(ann, messages.Say(text="hello", cid="c1"))
    assert bob.outbox[0] is cat.outbox[0]  # the broadcast is encoded once
    (got,) = drain(bob)
    assert got == messages.ChatMessage(id=1, time=int(T0 * 1000), sender="ann", text="hello")
    assert drain(cat) == [got]
    assert drain(ann) == [messages.Ack(cid="c1", id=1, time=int(T0 * 1000))]
    assert hub.deliveries >= 2


def test_me_and_msg_commands(hub):
    ann, bob, cat = hub.join("ann"), hub.join("bob"), hub.join("cat")
    for m in (ann, bob, cat):
        drain(m)
    hub.handle(ann, messages.Command(line="/me waves", cid="c2"))
    assert drain(bob)[0].action is True
    drain(cat), drain(ann)
    # Plaintext private messages are refused: only end-to-end encrypted ones exist.
    hub.handle(ann, messages.Command(line="/msg BOB psst there", cid="c3"))
    hub.handle(ann, messages.Msg(to="bob", text="x", cid="c4"))
    assert drain(bob) == [] and drain(cat) == []
    errors = drain(ann)
    assert [(e.code, e.cid) for e in errors] == [("encryption_required", "c3"), ("encryption_required", "c4")]
    assert all("end-to-end encrypted" in e.text for e in errors)


@pytest.mark.parametrize("line,fragment", [
    ("/frobnicate", "unknown command /frobnicate"),
    ("/me", "usage: /me ACTION"),
    ("/", "starts with /"),
])
def test_bad_commands_answer_the_sender_alone(hub, line, fragment):
    ann, bob = hub.join("ann"), hub.join("bob")
    drain(ann), drain(bob)
    hub.handle(ann, messages.Command(line=line, cid="c9"))
    (err,) = drain(ann)
    assert err.code == "bad_command" and fragment in err.text
    assert drain(bob) == []
    assert ann.closing is None


def test_help_who_quit(hub):
    ann = hub.join("ann")
    hub.join("bob")
    drain(ann)
    hub.handle(ann, messages.Command(line="/help", cid="h"))
    notice, ack = drain(ann)
    for name in ("/help", "/who", "/me ACTION", "/msg NAME TEXT", "/quit", "/join #ROOM"):
        assert name in notice.text
    assert ack.cid == "h"
    hub.handle(ann, messages.Who())
    assert drain(ann) == [messages.Users(users=("ann", "bob"))]
    assert "not end to end" in notice.text
    hub.handle(ann, messages.Command(line="/quit", cid="q"))
    assert [type(m) for m in drain(ann)] == [messages.Ack, messages.Bye]
    assert ann.closing == "quit"


def test_leave_notifies_and_is_idempotent(hub):
    ann, bob = hub.join("ann"), hub.join("bob")
    drain(bob)
    hub.leave(ann, "connection lost")
    hub.leave(ann, "again")
    assert drain(bob) == [messages.Leave(user="ann", time=int(T0 * 1000), reason="connection lost")]
    assert not hub.is_online("ann") and len(hub) == 1
    hub.join("ann")  # the name is free again


def test_ping_answered(hub):
    ann = hub.join("ann")
    drain(ann)
    hub.handle(ann, messages.Ping(n=7))
    assert drain(ann) == [messages.Pong(n=7)]


def test_slow_consumer_dropped_alone():
    hub = Hub(outbound_cap=2000, clock=Clock())
    ann, slow = hub.join("ann"), hub.join("slow")
    hub.take_dirty()
    for i in range(40):
        drain(ann)
        hub.handle(ann, messages.Say(text="x" * 50, cid=f"c{i}"))
    assert slow.overflowed and slow.closing.startswith("too slow")
    assert slow.outbox == [] and slow.queued == 0
    assert not ann.overflowed


def test_shutdown_says_bye_to_everyone(hub):
    ann, bob = hub.join("ann"), hub.join("bob")
    drain(ann), drain(bob)
    hub.shutdown("server stopping")
    for m in (ann, bob):
        assert drain(m) == [messages.Bye(reason="server stopping")]
        assert m.closing == "server stopping"


def test_large_member_list_is_chunked():
    hub = Hub(clock=Clock())
    for i in range(1030):
        hub.join(f"u{i:04d}")
    last = hub.join("zz")
    out = drain(last)
    assert len(out[0].users) == 1024
    users = [m for m in out if isinstance(m, messages.Users)]
    assert [u.more for u in users] == [True, False]
    assert sum(len(u.users) for u in users) == 1031


def test_away_is_shown_in_who_and_cleared(hub):
    ann, bob = hub.join("ann"), hub.join("bob")
    for m in (ann, bob):
        drain(m)
    hub.handle(bob, messages.Command(line="/away  gone   to lunch ", cid="a"))
    assert drain(bob) == [messages.Ack(cid="a", id=0, time=int(T0 * 1000))]
    assert drain(ann) == []  # not announced: seen by who asks
    hub.handle(ann, messages.Command(line="/who", cid="w"))
    users, notice, ack = drain(ann)
    assert users.users == ("ann", "bob") and ack.cid == "w"
    assert notice.text == "away: bob (gone to lunch)"
    hub.handle(bob, messages.Command(line="/away", cid="b"))
    drain(bob)
    hub.handle(ann, messages.Who())
    assert drain(ann) == [messages.Users(users=("ann", "bob"))]
    hub.handle(bob, messages.Command(line="/away " + "x" * 201, cid="c"))
    (err,) = drain(bob)
    assert err.code == "limit" and "at most 200 characters" in err.text


def test_away_rides_in_users_for_a_client_that_reads_it(hub):
    ann = hub.join("ann", aware=True, features=("rooms", "away"))
    old = hub.join("old", aware=True, features=("rooms",))  # a rooms client without "away"
    bob = hub.join("bob", aware=True)
    for m in (ann, old, bob):
        drain(m)
    hub.handle(bob, messages.Command(line="/away lunch,\n back at 2", cid="a"))
    assert [type(m) for m in drain(bob)] == [messages.Ack]
    hub.handle(ann, messages.Command(line="/names", cid="w"))
    users, ack = drain(ann)
    assert users == messages.Users(users=("ann", "bob", "old"),
                                   away=({"user": "bob", "text": "lunch, back at 2"},), cid="w")
    hub.handle(old, messages.Who())
    users, notice = drain(old)
    assert users == messages.Users(users=("ann", "bob", "old"))
    assert notice.text == "away: bob (lunch, back at 2)"
    # An escape is refused, as in a topic; the away state stays as it was.
    hub.handle(bob, messages.Command(line="/away \x1b[2Jgone", cid="b"))
    (err,) = drain(bob)
    assert err.code == "invalid" and "control characters" in err.text
    assert hub.member("bob").away == "lunch, back at 2"


def test_many_long_away_messages_split_users_to_fit_records(hub):
    from schat.protocol.channel import MAX_PAYLOAD

    reader = hub.join("reader", aware=True, features=("rooms", "away"))
    members = [hub.join(f"m{i:04d}", aware=True) for i in range(400)]
    note = "\u00e9\u4e2d\U0001f600\"" * 50  # 200 characters, 4 to 5 bytes each in JSON
    for m in members:
        hub.handle(m, messages.Command(line="/away " + note, cid="a"))
    drain(reader)
    hub.handle(reader, messages.Who())
    encoded = list(reader.outbox)
    out = drain(reader)
    assert len(out) > 1 and all(len(b) <= MAX_PAYLOAD for b in encoded)
    assert [u.more for u in out] == [True] * (len(out) - 1) + [False]
    assert sum(len(u.users) for u in out) == 401
    away = [a for u in out for a in u.away]
    assert len(away) == 400 and {a["text"] for a in away} == {note}
    for u in out:  # each away entry rides with the chunk that lists its name
        assert {a["user"] for a in u.away} <= set(u.users)


def test_many_away_members_fit_one_notice(hub):
    members = [hub.join(f"member{i:04d}") for i in range(60)]
    for m in members:
        hub.handle(m, messages.Command(line="/away " + "z" * 200, cid="a"))
    drain(members[0])
    hub.handle(members[0], messages.Who())
    notice = [m for m in drain(members[0]) if isinstance(m, messages.Notice)][0]
    assert len(notice.text.encode()) <= 4096 and notice.text.endswith("more")


def test_a_run_of_lines_from_another_node_is_shared_and_keeps_order(hub):
    """Lines of one room that arrive together (from another node of a cluster) reach
    each member in order, as the same messages one by one would, in outbox items
    that each fit a record; a local session of a line's sender does not get its own."""
    from schat.chat import events as ev
    from schat.protocol.channel import MAX_PAYLOAD
    from schat.server.hub import PRESENCE_CHUNK

    ann, bob, cat = hub.join("ann"), hub.join("bob"), hub.join("cat")
    for m in (ann, bob, cat):
        drain(m)
    hub.take_dirty()
    before = hub.deliveries
    lines = [ev.Said("#lobby", 100 + i, 5, "dan", f"{i} " + "x" * 1500, False)
             for i in range(60)]
    lines[30] = ev.Said("#lobby", 130, 5, "cat", "from cat's other login", False)
    hub.chat.local.publish_run("#lobby", lines)

    def lines_of(member):
        assert all(len(item) <= min(PRESENCE_CHUNK, MAX_PAYLOAD) for item in member.outbox)
        got = [messages.decode(line) for item in member.outbox for line in item.split(b"\n")]
        member.outbox.clear()
        return got

    expected = [messages.ChatMessage(id=s.id, time=5, sender=s.sender, text=s.text)
                for s in lines]
    assert len(ann.outbox) < len(lines)          # shared items, not one per line
    assert ann.outbox[0] is bob.outbox[0]        # encoded once for everyone
    assert lines_of(ann) == expected and lines_of(bob) == expected
    assert lines_of(cat) == expected[:30] + expected[31:]
    assert hub.deliveries - before == 3 * 60 - 1
    assert set(hub.take_dirty()) == {ann, bob, cat}


def test_a_run_of_lines_overflows_a_slow_member_alone():
    from schat.chat import events as ev

    hub = Hub(outbound_cap=20_000, clock=Clock())
    ann, slow = hub.join("ann"), hub.join("slow")
    hub.take_dirty()
    for rnd in range(3):
        ann.outbox.clear()
        ann.queued = 0
        hub.chat.local.publish_run("#lobby", [ev.Said("#lobby", 10 * rnd + i, 5, "dan", "y" * 900)
                                              for i in range(10)])
    assert not ann.overflowed and len(ann.outbox) == 1
    assert slow.overflowed and slow.closing.startswith("too slow")
    assert slow.outbox == [] and slow.queued == 0
