"""Many throwaway accounts flooding /join: every limit answers with a clear refusal."""

from __future__ import annotations

from chatkit import Client, answer, until
from schat.protocol import messages

THROWAWAYS = 24


def test_room_join_flood_from_throwaway_accounts(server_factory):
    # The room limits alone: sign-ups per address are not limited here (an attacker
    # with throwaway accounts made over days, or from many addresses).
    srv = server_factory(rooms_total=20, rooms_per_member=4, rate_limit=0, signups_per_hour=0)
    alice, bob = srv.login("alice"), srv.login("bob")
    answer(alice, "/join #team")
    floods = []
    refusals = {}
    for i in range(THROWAWAYS):
        s = srv.session()
        s.signup(f"throw{i:02d}", f"throwaway-pass-{i}")
        c = Client(s)
        floods.append(c)
        for j in range(6):
            err = answer(c, f"/join #spam-{i:02d}-{j}")
            if err is not None:
                refusals[err.code] = refusals.get(err.code, 0) + 1
                assert "\n" not in err.text
    assert set(refusals) == {"limit"}
    assert len(srv.server.hub.chat.rooms) == 20
    assert all(c.session.connected for c in floods)            # refused, never dropped
    assert answer(bob, "/join #team") is None                   # existing rooms stay open
    assert answer(bob, "/join #brand-new").code == "limit"
    alice.session.say("still fine", room="#team")
    assert until(bob, messages.ChatMessage, lambda m: m.room == "#team").text == "still fine"
    for c in floods:
        answer(c, "/part")                                      # rooms go with their last member
    assert len(srv.server.hub.chat.rooms) < 20
    assert answer(bob, "/join #brand-new") is None
    for c in floods + [alice, bob]:
        c.close()
