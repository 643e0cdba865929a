"""The chat domain without sockets: rooms, roles, moderation with expiry, history windows."""

from __future__ import annotations

import subprocess
import sys

import pytest

from domainkit import T0, World
from schat.chat import ChatLimits, MemoryChatStore
from schat.chat import events as ev
from schat.chat.moderation import parse_duration
from schat.chat.names import room_key, user_key
from schat.chat.errors import Refusal

MS = int(T0 * 1000)


def test_domain_imports_no_wire_sockets_or_asyncio():
    code = ("import sys, schat.chat, schat.chat.chat, schat.chat.actions; "
            "bad = [m for m in sys.modules if m in ('asyncio', 'socket', 'selectors') "
            "or m.startswith('schat.protocol') or m.startswith('schat.server')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_user_key_is_the_wire_rule():
    from schat.protocol.schema import name_key
    for name in ("Ann", "bob.B-1_x", "ZZ", "a"):
        assert user_key(name) == name_key(name)


@pytest.mark.parametrize("text,key", [("#Dev", "#dev"), ("dev", "#dev"), (" #a-b_1 ", "#a-b_1")])
def test_room_names(text, key):
    assert room_key(text) == key


@pytest.mark.parametrize("bad", ["#", "#" + "a" * 33, "#dé", "#a b", "#a\x1b", "##x"])
def test_bad_room_names_refused(bad):
    with pytest.raises(Refusal) as err:
        room_key(bad)
    assert err.value.code == "bad_room" and "\x1b" not in str(err.value)


def test_everyone_in_lobby_join_creates_and_switches():
    w = World()
    ann, bob = w.login("ann"), w.login("bob")
    welcome = w.sink.take("ann", ev.Welcome)[0]
    assert welcome.users == ("ann",)
    assert [e.user for e in w.sink.take("ann", ev.Joined)] == ["bob"]
    assert w.cmd(ann, "/join #Dev") is None
    got = w.sink.take("ann")
    state = [e for e in got if isinstance(e, ev.RoomState) and e.room == "#dev"][0]
    assert (state.room, state.owner, state.users) == ("#dev", "ann", ("ann",))
    assert ev.Focus("#dev") in got and ann.focus == "#dev"
    assert w.cmd(bob, "/join #dev") is None
    assert [e.user for e in w.sink.take("ann", ev.Joined)] == ["bob"]
    w.clear()
    done = w.say(ann, "in dev")
    assert isinstance(done, ev.Done)
    said = w.sink.take("bob", ev.Said)
    assert [(s.room, s.text) for s in said] == [("#dev", "in dev")]
    assert w.sink.take("ann", ev.Said) == []  # the sender gets the ack, not its line
    w.say(ann, "to lobby", room="#lobby")
    assert [s.room for s in w.sink.take("bob", ev.Said)] == ["#lobby"]


def test_part_focus_and_room_removed_with_last_member():
    w = World()
    ann = w.login("ann")
    w.cmd(ann, "/join #tmp")
    w.say(ann, "x")
    assert w.cmd(ann, "/part") is None
    assert ann.focus == "#lobby" and "#tmp" not in w.chat.rooms
    assert w.store.recent("#tmp", 10) == []
    refused = w.cmd(ann, "/part #nowhere")
    assert refused.code == "not_in_room"


def test_private_rooms_are_invisible_and_invite_only():
    w = World()
    ann, bob, cat = w.login("ann"), w.login("bob"), w.login("cat")
    w.cmd(ann, "/join #secret")
    w.cmd(ann, "/topic plans")
    assert w.cmd(ann, "/room private") is None
    w.clear()
    w.cmd(bob, "/rooms")
    (listing,) = w.sink.take("bob", ev.RoomList)
    assert [r.room for r in listing.rooms] == ["#lobby"]
    refused = w.cmd(bob, "/join #secret")
    assert refused.code == "invite_only" and "plans" not in refused.text
    assert w.cmd(bob, "/names #secret").code == "no_such_room"
    w.cmd(bob, "/join #pub")
    assert w.cmd(bob, "/invite cat") is None                # public room: anyone may invite
    w.cmd(bob, "/part #pub")
    assert w.cmd(ann, "/invite bob") is None
    assert [e.room for e in w.sink.take("bob", ev.Invited)] == ["#secret"]
    assert w.cmd(bob, "/join #secret") is None
    assert w.cmd(bob, "/invite cat").code == "forbidden"  # private: ops only
    w.cmd(bob, "/part")
    assert w.cmd(bob, "/join #secret").code == "invite_only"  # an invitation is used once
    w.cmd(cat, "/rooms")
    assert [r.room for r in w.sink.take("cat", ev.RoomList)[0].rooms] == ["#lobby"]


def test_rights_kick_ban_mute():
    w = World()
    ann, bob, cat, root = w.login("ann"), w.login("bob"), w.login("cat"), w.login("root")
    w.cmd(ann, "/join #dev")
    for m in (bob, cat, root):
        w.cmd(m, "/join #dev")
    assert w.cmd(bob, "/kick cat").code == "forbidden"
    assert w.cmd(ann, "/kick ann").code == "invalid"       # yourself
    assert w.cmd(ann, "/ban ann 1h").code == "invalid"
    assert w.cmd(ann, "/kick root").code == "forbidden"    # an admin
    assert w.cmd(ann, "/op bob") is None
    assert w.cmd(bob, "/kick ann").code == "forbidden"     # an op cannot kick the owner
    w.clear()
    assert w.cmd(bob, "/kick cat being loud") is None
    for name in ("ann", "cat", "root"):
        (mod,) = w.sink.take(name, ev.Moderated)
        assert (mod.action, mod.actor, mod.target, mod.reason) == ("kick", "bob", "cat",
                                                                   "being loud")
    assert cat.focus == "#lobby" and "#dev" not in cat.rooms
    assert w.cmd(cat, "/join #dev") is None                # a kick is not a ban
    assert w.cmd(bob, "/mute cat 10m spam") is None
    assert w.say(cat, "hello?", room="#dev").code == "muted"
    assert w.cmd(bob, "/ban cat 1h flooding") is None
    assert "#dev" not in cat.rooms
    refused = w.cmd(cat, "/join #dev")
    assert refused.code == "banned" and "flooding" in refused.text
    w.cmd(bob, "/bans")
    text = w.sink.take("bob", ev.Info)[-1].text
    assert "banned: cat for 1h by bob: flooding" in text and "muted: cat for 10m" in text
    assert w.cmd(ann, "/deop bob") is None
    assert w.cmd(bob, "/unban cat").code == "forbidden"


def test_ban_and_mute_expire_with_the_clock():
    w = World()
    ann, bob = w.login("ann"), w.login("bob")
    w.cmd(ann, "/join #dev")
    w.cmd(bob, "/join #dev")
    w.cmd(ann, "/ban bob 30s")
    assert w.cmd(bob, "/join #dev").code == "banned"
    w.clock.advance(29)
    assert w.cmd(bob, "/join #dev").code == "banned"
    w.clock.advance(2)
    assert w.cmd(bob, "/join #dev") is None
    w.cmd(ann, "/mute bob 1m")
    assert w.say(bob, "x").code == "muted"
    w.clock.advance(61)
    assert isinstance(w.say(bob, "x"), ev.Done)
    assert w.chat.rooms["#dev"].restrictions.active(w.chat.now_ms()) == []


def test_ban_of_an_offline_account_and_unknown_names():
    w = World()
    ann = w.login("ann")
    w.cmd(ann, "/join #dev")
    assert w.cmd(ann, "/ban dan") is None
    dan = w.login("dan")
    assert w.cmd(dan, "/join #dev").code == "banned"
    assert w.cmd(ann, "/ban nobody").code == "no_such_user"
    assert w.cmd(ann, "/ban \x1b[2J").code == "no_such_user"


def test_history_window_backlog_and_paging():
    w = World(ChatLimits(backlog=3, history_page=5))
    ann, bob = w.login("ann"), w.login("bob")
    w.cmd(ann, "/join #dev")
    for i in range(10):
        w.say(ann, f"m{i}")
    w.clear()
    w.cmd(bob, "/join #dev")
    backlog = w.sink.take("bob", ev.Said)
    assert [s.text for s in backlog] == ["m7", "m8", "m9"] and all(s.history for s in backlog)
    w.cmd(bob, "/history 2")
    assert [s.text for s in w.sink.take("bob", ev.Said)] == ["m5", "m6"]
    w.cmd(bob, "/history")
    assert [s.text for s in w.sink.take("bob", ev.Said)] == ["m2", "m3", "m4"]
    assert w.cmd(bob, "/history 6").code == "limit"        # far back: refused, not dropped
    w.cmd(bob, "/history 5")
    assert [s.text for s in w.sink.take("bob", ev.Said)] == ["m0", "m1"]
    w.cmd(bob, "/history")
    assert "no earlier messages" in w.sink.take("bob", ev.Info)[-1].text


def test_reconnect_gets_only_what_was_missed():
    w = World(ChatLimits(backlog=50))
    ann, bob = w.login("ann"), w.login("bob")
    w.cmd(ann, "/join #dev")
    w.cmd(bob, "/join #dev")
    w.say(ann, "seen")
    w.chat.leave(bob, "connection lost")
    w.say(ann, "missed 1")
    w.say(ann, "missed 2", room="#lobby")
    w.clear()
    bob = w.login("bob")
    said = w.sink.take("bob", ev.Said)
    assert [(s.room, s.text, s.history) for s in said] == [
        ("#lobby", "missed 2", True), ("#dev", "missed 1", True)]
    assert "#dev" in bob.rooms and bob.focus == "#lobby"


def test_history_days_bound():
    w = World(ChatLimits(history_days=1))
    ann, bob = w.login("ann"), w.login("bob")
    w.say(ann, "old")
    w.chat.leave(bob, "gone")
    w.clock.advance(2 * 86400)
    w.say(ann, "new")
    w.clear()
    w.login("bob")
    assert [s.text for s in w.sink.take("bob", ev.Said)] == ["new"]


def test_takeover_closes_the_old_session_without_leave_or_join():
    w = World()
    w.login("ann")
    old = w.login("bob", peer="10.0.0.1:1")
    w.cmd(old, "/join #dev")
    w.clear()
    new = w.login("bob", peer="10.0.0.2:2")
    code, reason = w.sink.closed["bob"]
    assert code == "taken_over" and "10.0.0.2:2" in reason
    assert w.sink.take("ann", ev.Joined) == [] and w.sink.take("ann", ev.Parted) == []
    assert w.chat.online("bob") is new and "#dev" in new.rooms
    w.chat.leave(old, "connection lost")           # the old link closing later changes nothing
    assert w.chat.online("bob") is new and w.sink.take("ann", ev.Parted) == []


def test_limits_are_refusals():
    w = World(ChatLimits(rooms_per_member=3, rooms_total=4, topic_bytes=10))
    ann, bob = w.login("ann"), w.login("bob")
    assert w.cmd(ann, "/join #a") is None and w.cmd(ann, "/join #b") is None
    assert w.cmd(ann, "/join #c").code == "limit"     # #lobby counts: 3 rooms
    assert w.cmd(bob, "/join #d") is None             # 4 rooms in total now
    assert w.cmd(bob, "/join #e").code == "limit"
    assert w.cmd(ann, "/topic " + "x" * 11).code == "limit"
    assert w.cmd(ann, "/topic a\nb").code == "invalid"
    assert w.cmd(ann, "/topic \x1b]0;x\x07").code == "invalid"
    assert w.cmd(ann, "/kick bob bad\x1b[2Jreason", room="#lobby").code in ("forbidden",
                                                                             "invalid")


def test_legacy_session_stays_in_lobby():
    w = World()
    ann = w.login("ann")
    old = w.login("bob", aware=False)
    assert w.sink.take("bob", ev.RoomState) == [] and w.sink.take("bob", ev.Focus) == []
    assert w.cmd(old, "/join #dev").code == "bad_command"
    w.cmd(ann, "/join #dev")
    w.say(ann, "dev only", room="#dev")
    assert w.sink.take("bob", ev.Said) == []
    w.chat.rooms["#lobby"].ops["ann"] = "ann"
    w.cmd(ann, "/kick bob go", room="#lobby")
    assert w.sink.closed["bob"][0] == "kicked"
    w.cmd(ann, "/ban bob", room="#lobby")
    assert w.chat.admissible("bob", aware=False).code == "banned"
    assert w.chat.admissible("bob", aware=True) is None


def test_admin_disconnect_lock_and_operator():
    w = World()
    ann, bob, root = w.login("ann"), w.login("bob"), w.login("root")
    w.cmd(bob, "/join #dev")
    assert w.cmd(ann, "/disconnect bob").code == "forbidden"
    assert w.cmd(root, "/disconnect root").code == "invalid"
    w.clear()
    assert w.cmd(root, "/lock bob spamming") is None
    assert w.sink.closed["bob"][0] == "locked" and "spamming" in w.sink.closed["bob"][1]
    assert w.store.user("bob").locked
    (mod,) = w.sink.take("ann", ev.Moderated)
    assert (mod.room, mod.action, mod.actor, mod.reason) == ("#lobby", "lock", "root",
                                                             "spamming")
    assert w.chat.online("bob") is None
    assert w.chat.operator_end("ann", "disconnect", "maintenance") is True
    assert w.sink.closed["ann"][0] == "disconnected"
    assert w.chat.operator_end("ann", "disconnect", "") is False
    cat = w.login("cat")
    w.cmd(cat, "/join #x")
    assert w.chat.operator_kick("cat", None, "out") == ["#lobby", "#x"]
    assert w.chat.broadcast("maintenance at noon") == 2
    assert w.sink.take("root", ev.Announcement)[-1].text == "maintenance at noon"


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10m", 600), ("2H", 7200),
                                          ("1d", 86400), ("1w", 604800), ("x", None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_describe_moderation():
    e = ev.Moderated("#dev", "ban", None, "bob", "spam", MS + 3_600_000, MS)
    assert ev.describe(e, MS) == "bob was banned from #dev for 1h by the server operator: spam"
    assert ev.describe(ev.Moderated("#dev", "private", "ann", "", "", None, MS), MS) == \
        "ann made #dev private"


def test_state_reloads_from_the_store():
    store = MemoryChatStore({"ann": False, "bob": False})
    w = World(store=store)
    ann = w.login("ann")
    w.cmd(ann, "/join #dev")
    w.cmd(ann, "/ban bob 1d rude")
    w.cmd(ann, "/topic the topic")
    w.say(ann, "kept")
    again = World(store=store)
    room = again.chat.rooms["#dev"]
    assert room.topic == "the topic" and room.owner == "ann"
    assert room.restrictions.get("ban", "bob", again.chat.now_ms()).reason == "rude"
    assert [s.text for s in room.history.unseen(0, 10)] == ["kept"]
    assert again.chat.ids.next() > w.chat.ids.next() - 1


def test_away_is_member_state_shown_in_who_and_names_per_room():
    w = World(ChatLimits(away_chars=20))
    ann, bob, cat = w.login("ann"), w.login("bob"), w.login("cat")
    w.cmd(bob, "/join #dev")
    w.cmd(ann, "/join #dev")
    w.clear()
    assert w.cmd(bob, "/away  at   lunch\t") is None
    assert bob.away == "at lunch"
    assert w.sink.got.get("ann", []) == [] and w.sink.got.get("cat", []) == []  # not announced
    w.cmd(cat, "/who")                                  # #lobby: everyone is in it
    (names,) = w.sink.take("cat", ev.Names)
    assert names.room == "#lobby" and names.away == (("bob", "at lunch"),)
    w.cmd(ann, "/names #dev")
    (names,) = w.sink.take("ann", ev.Names)
    assert names.users == ("ann", "bob") and names.away == (("bob", "at lunch"),)
    refused = w.cmd(bob, "/away " + "x" * 21)
    assert refused.code == "limit" and "at most 20 characters" in refused.text
    refused = w.cmd(bob, "/away \x07bell")
    assert refused.code == "invalid" and "an away message" in refused.text
    assert bob.away == "at lunch"                       # a refusal changes nothing
    w.cmd(bob, "/away")
    w.cmd(cat, "/who")
    assert w.sink.take("cat", ev.Names)[0].away == ()
    w.cmd(bob, "/away gone")
    again = w.login("bob")                              # a new login starts present
    assert again.away is None
