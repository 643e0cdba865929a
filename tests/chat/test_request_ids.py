"""The domain carries each request's id to its answers without knowing what it is: every
reply to the requester gets the id of the command it answers, and nothing else does (not
the focus change a kick causes for its target, not the login's room states)."""

from __future__ import annotations

from domainkit import World
from schat.chat import events as ev


def answers(world: World, name: str):
    """(event, request id) of each reply since the last call; an ack or a refusal names
    its request itself."""
    got = world.sink.answer_cids.get(name, [])
    world.sink.answer_cids[name] = []
    return [(e, e.cid if isinstance(e, (ev.Done, ev.Refused)) else cid) for e, cid in got]


def test_each_reply_carries_its_requests_id_and_only_that():
    w = World()
    ann, bob = w.login("ann"), w.login("bob")
    login = answers(w, "ann")
    assert login and all(cid is None for _, cid in login)   # the welcome, rooms, focus
    answers(w, "bob")
    w.cmd(ann, "/join #dev")       # cid c1
    got = answers(w, "ann")
    assert [type(e) for e, _ in got] == [ev.RoomState, ev.Focus, ev.Done]
    assert {cid for _, cid in got} == {"c1"}
    w.cmd(bob, "/join #dev")       # c2
    answers(w, "bob")
    for line, kinds in [("/who", [ev.Names]), ("/rooms", [ev.RoomList]), ("/help", [ev.Info]),
                        ("/topic", [ev.Info]), ("/switch #lobby", [ev.Focus])]:
        w.cmd(ann, line, room="#dev")
        got = answers(w, "ann")
        cid = f"c{w._cids}"
        assert [type(e) for e, _ in got] == kinds + [ev.Done], line
        assert {c for _, c in got} == {cid}, line
    # ann owns #dev: her kick moves bob's focus, an event for bob that answers nothing of his.
    w.cmd(ann, "/kick bob spam", room="#dev")
    assert {c for _, c in answers(w, "ann")} == {f"c{w._cids}"}
    (focus, cid), = answers(w, "bob")
    assert isinstance(focus, ev.Focus) and cid is None
