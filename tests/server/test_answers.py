"""Requests and their answers (docs/PROTOCOL.md §4, "Requests and answers"): the sender
of a line gets only the ack, whose id and time are the line's; a command's ack has id 0
(but /me's is the line's); every answer to a room-aware client's command carries the
command's cid, the room events it causes carry none; a lobby-only client gets the
shapes it always read, the ack and error still with the cid."""

from __future__ import annotations

import pytest

from chatkit import PASSWORDS, WAIT, Client
from schat.client.session import Disconnected
from schat.crypto.keys import public_der
from schat.protocol import dm_messages as dmm
from schat.protocol import messages
from schat.protocol import room_messages as rm

ROOM_EVENTS = (messages.Join, messages.Leave, rm.Topic, rm.Moderation)


def client(srv, user: str, rooms: bool = True) -> Client:
    session = srv.session(features=("rooms", "away") if rooms else ())
    session.login_password(user, PASSWORDS[user])
    return Client(session)


def settle(*clients: Client) -> None:
    """Read everything sent so far (the login sequence, joins of the others). ``clients``
    in the order they logged in: each waits for the joins of those after it, which the
    server holds a moment and sends together (docs/INTERNALS.md, presence coalesced)."""
    answered = [exchange(c, c.session.command("/away")) for c in clients]
    for i, c in enumerate(clients):
        waiting = {o.session.user for o in clients[i + 1:]}
        waiting -= {m.user for m in answered[i] if isinstance(m, messages.Join)}
        while waiting:
            waiting.discard(c.next(messages.Join).user)


def exchange(c: Client, cid: str):
    """Every event up to and including the final answer (ack or error) with ``cid``."""
    got = []
    while True:
        ev = c.events.get(timeout=WAIT)
        if isinstance(ev, Disconnected):
            raise AssertionError(f"disconnected: {ev.reason}")
        got.append(ev)
        if isinstance(ev, (messages.Ack, messages.Error)) and ev.cid == cid:
            return got


def ask(c: Client, line: str, room=None):
    return exchange(c, c.session.command(line, room=room))


@pytest.fixture
def srv(server_factory):
    return server_factory(backlog=1)


def test_the_sender_gets_only_the_ack_with_the_id_and_time_others_see(srv):
    ann, bob = client(srv, "alice"), client(srv, "bob", rooms=False)
    settle(ann, bob)
    got = exchange(ann, ann.session.say("hello"))
    assert [type(m) for m in got] == [messages.Ack]
    ack = got[0]
    seen = bob.next(messages.ChatMessage)
    assert (seen.id, seen.time, seen.sender, seen.text) == (ack.id, ack.time, "alice", "hello")
    assert ack.id > 0
    # /me is a line too: its ack carries the line's id.
    got = ask(ann, "/me waves")
    assert [type(m) for m in got] == [messages.Ack]
    seen = bob.next(messages.ChatMessage)
    assert seen.action and seen.id == got[0].id == ack.id + 1
    # Any other command: id 0.
    assert ask(ann, "/away back soon")[-1].id == 0
    assert ask(ann, "/help")[-1].id == 0
    for c in (ann, bob):
        c.close()


def test_set_key_is_acknowledged_with_id_0(srv, user_keys):
    ann = client(srv, "alice")
    settle(ann)
    cid = ann.session.new_cid()
    ann.session.send_request(dmm.SetKey(public_key=public_der(user_keys["alice"]), cid=cid))
    (ack,) = exchange(ann, cid)
    assert isinstance(ack, messages.Ack) and ack.id == 0
    ann.close()


def check_cids(got, cid):
    """Every answer before the final one carries ``cid``; room events carry none."""
    *answers, final = got
    assert final.cid == cid
    for msg in answers:
        if isinstance(msg, ROOM_EVENTS):
            assert getattr(msg, "cid", None) is None, msg
        else:
            assert msg.cid == cid, msg
    return [type(m) for m in answers]


def test_every_answer_to_a_room_aware_client_carries_the_cid(srv):
    ann, bob = client(srv, "alice"), client(srv, "bob")
    settle(ann, bob)
    ask(bob, "/join #dev")
    for i in range(3):
        exchange(bob, bob.session.say(f"dev line {i}", room="#dev"))
    cases = [
        ("/help", None, [messages.Notice]),
        ("/help join", None, [messages.Notice]),
        ("/rooms", None, [rm.Rooms]),
        ("/who", None, [messages.Users]),
        ("/names #dev", None, [messages.Users]),
        ("/topic", None, [messages.Notice]),
        ("/join #dev", None, [rm.RoomState, messages.ChatMessage, rm.Focus]),  # backlog=1
        ("/history 2", "#dev", [messages.ChatMessage, messages.ChatMessage]),
        ("/history", "#dev", [messages.Notice]),                 # nothing earlier
        ("/switch #lobby", None, [rm.Focus]),
        ("/join #dev", None, [rm.Focus]),                        # already in it
        ("/join #ops", None, [rm.RoomState, rm.Focus]),
        ("/topic ops only", "#ops", [rm.Topic]),
        ("/bans", "#ops", [messages.Notice]),
        ("/room private", "#ops", [rm.Moderation]),
        ("/room private", "#ops", [messages.Notice]),            # already private
        ("/part #ops", None, [messages.Leave, rm.Focus]),
    ]
    for line, room, kinds in cases:
        got = ask(ann, line, room=room)
        assert check_cids(got, got[-1].cid) == kinds, (line, got)
        assert isinstance(got[-1], messages.Ack), (line, got)
    # A history message sent as an answer says so; a live line never carries a cid.
    live = exchange(bob, bob.session.say("live", room="#dev"))
    line = ann.next(messages.ChatMessage)
    assert (line.text, line.history, line.cid) == ("live", False, None) and live
    # A refusal carries it too.
    got = ask(ann, "/who #nowhere")
    assert [type(m) for m in got] == [messages.Error] and got[0].code == "no_such_room"
    for c in (ann, bob):
        c.close()


def test_a_lobby_only_client_gets_the_old_shapes(srv):
    old, ann = client(srv, "carol", rooms=False), client(srv, "alice")
    settle(old, ann)
    ask(ann, "/join #dev")
    ask(ann, "/away lunch")
    for line, kinds in [("/help", [messages.Notice]), ("/rooms", [messages.Notice]),
                        ("/who", [messages.Users, messages.Notice]),    # who is away: a notice
                        ("/who #dev", [messages.Notice, messages.Notice]),
                        ("/topic", [messages.Notice])]:
        got = ask(old, line)
        *answers, final = got
        assert isinstance(final, messages.Ack) and final.cid
        assert [type(m) for m in answers] == kinds, (line, got)
        assert all(m.cid is None for m in answers), (line, got)
    got = ask(old, "/join #dev")
    assert [(type(m), m.code) for m in got] == [(messages.Error, "bad_command")]
    assert got[0].cid
    for c in (old, ann):
        c.close()
