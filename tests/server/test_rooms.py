"""Rooms, history and moderation through a real server with real clients, on either
store (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from chatkit import PASSWORDS, WAIT, Client, answer, drained, factory, until
from schat.client.session import Disconnected
from schat.store.chat import set_role
from schat.protocol import messages
from schat.protocol import room_messages as rm


@pytest.fixture(params=["sqlite", "postgresql"])
def server_factory(request, chat_home, host_key):
    """Every test here runs on both stores: the home's SQLite file and PostgreSQL."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    start, stop_all = factory(chat_home, host_key, url)
    yield start
    stop_all()


@pytest.fixture
def chat_server(server_factory):
    return server_factory(motd="welcome to the test server")


def test_backlog_after_reconnect_and_history_paging(chat_server):
    alice, bob = chat_server.login("alice"), chat_server.login("bob")
    assert answer(alice, "/join #dev") is None
    assert answer(bob, "/join #dev") is None
    bob.close()
    until(alice, messages.Leave, lambda m: m.room == "#dev")   # the server saw bob go
    for i in range(3):
        alice.session.say(f"while away {i}", room="#dev")
    assert alice.session.wait_acked(WAIT)
    bob = chat_server.login("bob")
    state = until(bob, rm.RoomState, lambda m: m.room == "#dev")
    assert state.owner == "alice" and "alice" in state.users
    got = [until(bob, messages.ChatMessage) for _ in range(3)]
    assert [(m.room, m.text, m.history) for m in got] == [
        ("#dev", f"while away {i}", True) for i in range(3)]
    assert until(bob, rm.Focus).room == "#lobby"
    assert answer(bob, "/history 2", room="#dev") is None
    assert answer(bob, "/history 500", room="#dev").code == "limit"
    alice.session.say("live", room="#dev")
    live = until(bob, messages.ChatMessage, lambda m: m.text == "live")
    assert live.history is False and live.room == "#dev"
    for c in (alice, bob):
        c.close()


def test_private_rooms_invisible_until_invited(chat_server):
    alice, carol = chat_server.login("alice"), chat_server.login("carol")
    answer(alice, "/join #secret")
    assert answer(alice, "/room private") is None
    carol.session.command("/rooms")
    listing = until(carol, rm.Rooms)
    assert [r["room"] for r in listing.rooms] == ["#lobby"]
    refused = answer(carol, "/join #secret")
    assert refused.code == "invite_only"
    assert answer(alice, "/invite carol") is None
    assert "invites you to #secret" in until(carol, messages.Notice).text
    assert answer(carol, "/join #secret") is None
    assert until(alice, messages.Join, lambda m: m.room == "#secret").user == "carol"
    for c in (alice, carol):
        c.close()


def test_kick_ban_mute_with_their_rights(chat_server):
    alice, bob, carol = (chat_server.login(n) for n in ("alice", "bob", "carol"))
    for c in (alice, bob, carol):
        assert answer(c, "/join #dev") is None
    assert answer(bob, "/kick carol").code == "forbidden"
    assert answer(alice, "/kick alice").code == "invalid"
    assert answer(alice, "/kick bob spamming links") is None
    mod = until(carol, rm.Moderation)
    assert (mod.room, mod.action, mod.actor, mod.target, mod.reason) == (
        "#dev", "kick", "alice", "bob", "spamming links")
    assert until(bob, rm.Moderation).target == "bob"
    assert until(bob, rm.Focus).room == "#lobby"             # plain lines go back there
    assert answer(bob, "/join #dev") is None                  # kicked, not banned
    assert answer(alice, "/ban bob 1h still spamming") is None
    refused = answer(bob, "/join #dev")
    assert refused.code == "banned" and "still spamming" in refused.text
    assert answer(alice, "/mute carol 10m") is None
    cid = carol.session.say("can I talk?", room="#dev")
    err = until(carol, messages.Error, lambda m: m.cid == cid)
    assert err.code == "muted"
    assert carol.session.connected and bob.session.connected    # refusals, not disconnects
    for c in (alice, bob, carol):
        c.close()


def test_bans_history_and_roles_survive_a_restart(server_factory):
    srv = server_factory()
    alice, bob = srv.login("alice"), srv.login("bob")
    answer(alice, "/join #dev")
    answer(bob, "/join #dev")
    answer(alice, "/op bob")
    answer(alice, "/topic release on friday")
    bob.close()
    until(alice, messages.Leave, lambda m: m.room == "#dev")
    alice.session.say("remember me", room="#dev")
    answer(alice, "/ban carol 1d spam")
    assert alice.session.wait_acked(WAIT)
    srv.thread.stop()
    srv = server_factory()
    carol = srv.login("carol")
    assert answer(carol, "/join #dev").code == "banned"
    bob = srv.login("bob")
    state = until(bob, rm.RoomState, lambda m: m.room == "#dev")
    assert state.ops == ("bob",) and state.topic == "release on friday"
    assert until(bob, messages.ChatMessage).text == "remember me"
    assert answer(bob, "/kick carol", room="#dev").code == "not_in_room"  # an op may try
    for c in (bob, carol):
        c.close()


def test_login_check_disturbs_nobody(chat_server):
    alice, bob = chat_server.login("alice"), chat_server.login("bob")
    s = chat_server.session()
    checked = s.login_password("alice", PASSWORDS["alice"], check=True)
    assert isinstance(checked, rm.Checked) and checked.user == "alice"
    probe = Client(s)
    s.send_request(messages.Say(text="sneak", cid="x1"))
    assert until(probe, messages.Error).code == "invalid"
    s.close()
    bad = chat_server.session()
    with pytest.raises(Exception, match="wrong user name or password"):
        bad.login_password("alice", "wrong-pass-1", check=True)
    bad.close()
    alice.session.say("still here")
    assert until(bob, messages.ChatMessage).text == "still here"
    assert not [e for e in drained(bob) if isinstance(e, (messages.Join, messages.Leave))]
    assert alice.session.connected
    for c in (alice, bob):
        c.close()


def test_a_client_without_rooms_stays_in_lobby_with_old_shapes(chat_server):
    alice = chat_server.login("alice")
    s = chat_server.session(features=())
    s.login_password("bob", PASSWORDS["bob"])
    old = Client(s)
    answer(alice, "/join #dev")
    alice.session.say("dev only", room="#dev")
    alice.session.say("lobby line", room="#lobby")
    msg = until(old, messages.ChatMessage)
    assert (msg.text, msg.room, msg.history) == ("lobby line", None, False)
    assert answer(old, "/join #dev").code == "bad_command"
    assert answer(alice, "/topic hello", room="#lobby").code == "forbidden"
    set_role(chat_server.store, "carol", "admin")
    carol = chat_server.login("carol")
    assert answer(carol, "/topic be nice", room="#lobby") is None
    assert until(old, messages.Notice).text == "carol set the topic of #lobby: be nice"
    assert answer(carol, "/kick bob off you go", room="#lobby") is None
    mod = until(alice, rm.Moderation)
    assert (mod.room, mod.action, mod.target) == ("#lobby", "kick", "bob")
    leave = until(old, messages.Leave)                          # the old client's shape
    assert leave.room is None and leave.reason == "bob was kicked from #lobby by carol: off you go"
    err = until(old, messages.Error)
    assert err.code == "kicked" and "off you go" in err.text
    assert old.next(Disconnected).clean                       # nothing left for it without #lobby
    for c in (alice, carol):
        c.close()


def test_hostile_names_topics_and_reasons_are_refused_not_dropped(chat_server):
    alice, bob = chat_server.login("alice"), chat_server.login("bob")
    answer(alice, "/join #dev")
    answer(bob, "/join #dev")
    for line, code in [("/join #\x1b[2J", "bad_room"), ("/topic a\nb", "invalid"),
                       ("/topic \x1b]0;owned\x07", "invalid"), ("/kick bob \x1b[31mred", "invalid"),
                       ("/ban bob 1h line\nbreak", "invalid"), ("/topic " + "x" * 391, "limit"),
                       ("/ban \x1b[2J", "no_such_user"), ("/history -5", "bad_command"),
                       ("/join " + "#" + "a" * 40, "bad_room")]:
        err = answer(alice, line)
        assert err is not None and err.code == code, (line, err)
        assert "\x1b" not in err.text and "\n" not in err.text
    assert alice.session.connected and bob.session.connected
    alice.session.say("\x1b[2Jtext with escapes\nand a newline", room="#dev")
    got = until(bob, messages.ChatMessage)
    assert got.text == "\x1b[2Jtext with escapes\nand a newline"  # clients clean it (render.clean)
    for c in (alice, bob):
        c.close()
