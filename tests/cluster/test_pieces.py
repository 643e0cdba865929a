"""The cluster's pieces on their own: ids, the bus format, a history window that takes
lines out of order, and a replica applying another node's events to a chat."""

from __future__ import annotations

import pytest

from schat.chat import events as ev
from schat.chat.history import HistoryWindow
from schat.chat.members import Member, Remote
from schat.chat.replica import Replica, room_meta
from schat.cluster import codec
from schat.cluster.bus import BusError, bus_prefix, check_bus_url
from schat.cluster.ids import EPOCH_MS, MAX_AHEAD_MS, SLOTS, Hybrid
from schat.protocol.schema import MAX_INT

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chat"))
from domainkit import World  # noqa: E402


class FakeClock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def test_ids_are_unique_ordered_and_follow_what_they_see():
    clock = FakeClock(1_800_000_000.0)
    one, two = Hybrid(0, clock), Hybrid(1, clock)
    made = [one.next() for _ in range(100)] + [two.next() for _ in range(100)]
    assert len(set(made)) == 200                      # two slots never collide
    assert made[:100] == sorted(made[:100])           # 100 in one millisecond: still growing
    assert all(i < MAX_INT for i in made)
    assert Hybrid.time_of(made[0]) == 1_800_000_000_000
    assert Hybrid.floor(1_800_000_000_000) <= min(made)
    clock.t += 0.001
    late = Hybrid(2, FakeClock(1_799_999_999.0))      # a clock one second behind
    late.observe(max(made))
    assert late.next() > max(made)                    # a reply sorts after what it answers
    ahead = max(made) + ((MAX_AHEAD_MS + 1000) << 11)
    late.observe(ahead)                               # a broken clock is not followed
    assert late.next() < ahead and late.refused_ahead == 1
    assert Hybrid(SLOTS - 1, lambda: (EPOCH_MS + 2 ** 42 - 2) / 1000).next() < MAX_INT
    with pytest.raises(ValueError):
        Hybrid(SLOTS)


def test_bus_messages_round_trip_and_refuse_garbage():
    said = ev.Said("#dev", 7, 1000, "ann", "hi\nthere \u00e9", True)
    name, fields = codec.event_fields(said, None)
    kind, node, seq, got = codec.unpack(codec.pack(name, "n1", 3, *fields))
    assert (kind, node, seq) == ("s", "n1", 3)
    assert codec.decode_event(kind, got) == (said, None)
    assert b"\n" not in codec.pack(name, "n1", 3, *fields)   # runs are newline-joined
    mod = ev.Moderated("#dev", "ban", None, "bob", "spam", 99, 5)
    name, fields = codec.event_fields(mod, None)
    assert codec.decode_event(name, codec.unpack(codec.pack(name, "n", 1, *fields))[3]) == \
        (mod, None)
    for data in (b"", b"{}", b"[1,2,3]", b'["s","n"]', b"\xff\xfe", b'["s","n","1"]'):
        with pytest.raises(codec.BadMessage):
            codec.unpack(data)
    for kind, fields in (("s", ["#dev", "x", 1, "a", "b", 0]), ("s", ["#dev"]),
                         ("zz", []), ("m", ["#d", "ban", 5, "b", "", None, 1, None])):
        with pytest.raises(codec.BadMessage):
            codec.decode_event(kind, fields)


def test_bus_urls_are_checked_without_echoing_them():
    for url in ("redis://:pw@h:6379/0", "rediss://h/3", "redis://h"):
        check_bus_url(url)
    for url, text in (("http://:pw@h/0", "not a Redis URL"), ("redis://:p@w@h/0", "more than one"),
                      ("redis://h/x", "database number"), ("redis://h:99999/0", "not a usable")):
        with pytest.raises(BusError, match=text) as err:
            check_bus_url(url)
        assert "pw" not in str(err.value) or "@" not in url
    assert bus_prefix("redis://h/3") == "schat:3:" and bus_prefix("redis://h") == "schat:0:"


def test_a_window_takes_lines_out_of_order_once():
    window = HistoryWindow(4)
    for i in (10, 20, 30):
        window.append(ev.Said("#d", i, i, "a", str(i)))
    assert window.insert(ev.Said("#d", 15, 15, "b", "15"))
    assert not window.insert(ev.Said("#d", 20, 20, "a", "20"))      # already here
    assert window.insert(ev.Said("#d", 40, 40, "a", "40"))          # full: the oldest goes
    assert [s.id for s in window.unseen(0, 10)] == [15, 20, 30, 40]
    assert not window.insert(ev.Said("#d", 5, 5, "a", "5"))         # older than all of it
    assert window.insert(ev.Said("#d", 25, 25, "a", "25"))
    assert [s.id for s in window.unseen(0, 10)] == [20, 25, 30, 40]
    assert window.last_id == 40


def test_a_replica_applies_another_node_s_room_events():
    w = World()
    chat = w.chat
    replica = Replica(chat)
    ann = w.login("ann")
    w.cmd(ann, "/join #dev")
    room = chat.rooms["#dev"]
    # bob, online on another node, joins #dev there.
    replica.online(Remote("bob", "n2", 5))
    replica.joined(ev.Joined("#dev", "bob", 1), room_meta(room))
    assert room.names() == ("ann", "bob") and chat.remote["bob"].rooms == ["#dev"]
    assert w.sink.take("ann", ev.Joined)[-1].user == "bob"
    replica.said(ev.Said("#dev", chat.ids.next() + 100, 2, "bob", "from n2"))
    assert w.sink.take("ann", ev.Said)[-1].text == "from n2"
    # A ban made on the other node is kept here and shuts ann out.
    replica.moderated(ev.Moderated("#dev", "ban", "bob", "ann", "rude", None, chat.now_ms()))
    assert "ann" not in room.members and "#dev" not in ann.rooms
    assert w.cmd(ann, "/join #dev").code == "banned"
    # An older ban learnt late does not replace the later one.
    replica.moderated(ev.Moderated("#dev", "ban", "cat", "ann", "older", None,
                                   chat.now_ms() - 5000))
    assert room.restrictions.get("ban", "ann", chat.now_ms()).reason == "rude"
    # A room this node never heard of is made from its first join.
    replica.joined(ev.Joined("#new", "bob", 3), ["bob", 3, 0, "t", "bob", 3])
    assert chat.rooms["#new"].topic == "t" and chat.rooms["#new"].owner == "bob"
    assert replica.unknown == []
    replica.topic(ev.TopicChanged("#gone", "x", "bob", 4))     # one it missed entirely
    assert replica.unknown == ["#gone"]
    # The other node's login of ann takes this node's session over, quietly.
    w.cmd(ann, "/part #lobby")
    taken = replica.online(Remote("ann", "n2", 10), mine_token=7)
    assert taken is ann and "ann" in chat.remote and "ann" not in chat.members
    assert w.sink.closed["ann"][0] == "taken_over"
    # bob's node stops answering: bob leaves #dev here.
    w.sink.take("cat")
    cat = w.login("cat")
    w.cmd(cat, "/join #new")
    replica.vanished([chat.remote["bob"]], "connection lost")
    assert "bob" not in chat.rooms["#new"].names()
    parted = w.sink.take("cat", ev.Parted)
    assert [(p.room, p.user, p.reason) for p in parted] == [("#new", "bob", "connection lost")]


def test_members_on_other_nodes_count_in_rooms_and_who():
    w = World()
    chat = w.chat
    replica = Replica(chat)
    ann = w.login("ann")
    remote = Remote("dan", "n2", 3, aware=True)
    replica.online(remote)
    replica.joined(ev.Joined("#lobby", "dan", 1), None)
    assert chat.sessions() == 2
    assert [s["name"] for s in chat.who_online()] == ["ann", "dan"]
    assert w.cmd(ann, "/kick dan").code == "forbidden"          # not an op: refused as ever
    remote.away = "lunch"
    w.cmd(ann, "/who")
    (names,) = w.sink.take("ann", ev.Names)
    assert names.users == ("ann", "dan") and names.away == (("dan", "lunch"),)
    w.cmd(ann, "/rooms")
    (listing,) = w.sink.take("ann", ev.RoomList)
    assert listing.rooms[0].users == 2
    assert isinstance(ann, Member)
