"""Throwaway accounts: sign-ups per address are limited, refusals cost like failed
logins, new accounts share a small part of an absent member's mailbox, and a taken
name is answered no sooner than a new one."""

from __future__ import annotations

import statistics
import time

from chatkit import PASSWORDS
from dm_attack import login, send_dm, sealed, signup
from hostile import RawPeer, assert_no_traceback

from schat.crypto.keys import public_der
from schat.protocol import messages
from schat.server.limits import SIGNUPS_PER_HOUR
from schat.server.mailbox import NEW_SENDER_SHARE

ATTACKER = "127.0.0.2"
NEIGHBOUR = "127.0.0.3"


def test_signups_per_address_per_hour_are_limited_and_refusals_penalised(server_factory,
                                                                          server_log):
    limit = 3
    srv = server_factory(signups_per_hour=limit, penalty_base=30, penalty_max=60)
    before = srv.store.count()
    codes = []
    for i in range(8):
        peer, reply = signup(srv, f"throwaway{i}", f"throwaway-pass-{i}", source=ATTACKER)
        codes.append("welcome" if isinstance(reply, messages.Welcome) else reply.code)
        peer.close()
    print(f"\nsign-ups from one address in a burst of 8 (limit {limit} per hour, default "
          f"{SIGNUPS_PER_HOUR}): {codes}")
    # The first `limit` accounts are made; the rest are refused before any hashing ...
    assert codes[:limit] == ["welcome"] * limit
    assert codes[limit:limit + 3] == ["throttled"] * 3
    # ... and each refusal counted as a failed login of the address: after the free
    # ones it waits, for logins too.
    assert codes[-1] == "penalty"
    assert srv.store.count() == before + limit
    _, reply = login(srv, "alice", PASSWORDS["alice"], source=ATTACKER)
    assert reply.code == "penalty"
    # Other addresses are not affected.
    peer, reply = signup(srv, "neighbour", "neighbour-pass-1", source=NEIGHBOUR)
    assert isinstance(reply, messages.Welcome)
    peer.close()
    text = next(r.getMessage() for r in server_log.records if "throttled" in r.getMessage())
    assert "throwaway" in text
    assert_no_traceback(server_log)


def test_a_refused_signup_gives_its_slot_back(server_factory):
    srv = server_factory(signups_per_hour=1, penalty_base=0)
    # Taken name, lookalike and weak password: refused, and no slot used ...
    for user, password in (("alice", "fresh-pass-123"), ("alice.", "fresh-pass-123"),
                           ("newbie", "password1")):
        peer, reply = signup(srv, user, password, source=ATTACKER)
        assert reply.code == "policy", (user, reply)
        peer.close()
    # ... so the one sign-up of the hour is still there.
    peer, reply = signup(srv, "newbie", "newbie-pass-1", source=ATTACKER)
    assert isinstance(reply, messages.Welcome)
    peer.close()
    peer, reply = signup(srv, "second", "second-pass-1", source=ATTACKER)
    assert reply.code == "throttled" and "at most 1 new account per hour" in reply.text


def _stored_from(srv, recipient: str):
    return [d.sender for d in srv.server.dm.mailbox.pending(recipient)]


def test_new_accounts_share_a_small_part_of_an_offline_mailbox(server_factory, user_keys):
    limit = 20  # a quarter (5) per sender, a tenth (2) for all new accounts together
    srv = server_factory(mailbox_limit=limit, signups_per_hour=0)
    bob_pub = user_keys["bob"].public_key()
    srv.store.set_public_key("bob", public_der(user_keys["bob"]))
    srv.store.set_public_key("alice", public_der(user_keys["alice"]))
    carol_der = public_der(user_keys["carol"])
    # Four throwaway accounts (one attacker's key on each) write to bob, who is offline.
    answers = []
    for n in range(4):
        peer, reply = signup(srv, f"spam{n}", f"spam-pass-{n}1", carol_der, source=ATTACKER)
        assert isinstance(reply, messages.Welcome)
        for i in range(5):
            env = sealed(f"spam{n}", user_keys["carol"], "bob", bob_pub, f"buy {i}")
            answers.append(send_dm(peer, "bob", env, f"s{n}-{i}"))
        peer.close()
    codes = [a.code if isinstance(a, messages.Error) else "ack" for a in answers]
    assert codes.count("ack") == limit // NEW_SENDER_SHARE, codes
    refusal = next(a for a in answers if isinstance(a, messages.Error))
    assert refusal.code == "mailbox_full" and "from new accounts" in refusal.text
    # The established members' messages still get through.
    alice, _ = login(srv, "alice", PASSWORDS["alice"])
    env = sealed("alice", user_keys["alice"], "bob", bob_pub, "lunch?")
    assert isinstance(send_dm(alice, "bob", env, "a1"), messages.Ack)
    # Once an established member has written to one of them, it is no longer new:
    # it has its own share like anyone.
    bob, _ = login(srv, "bob", PASSWORDS["bob"])
    env = sealed("bob", user_keys["bob"], "spam0", user_keys["carol"].public_key(), "who?")
    assert isinstance(send_dm(bob, "spam0", env, "b1"), messages.Ack)
    bob.close()
    assert srv.store.get("spam0").established and not srv.store.get("spam1").established
    spam0, _ = login(srv, "spam0", "spam-pass-01", source=ATTACKER)
    env = sealed("spam0", user_keys["carol"], "bob", bob_pub, "it's me")
    assert isinstance(send_dm(spam0, "bob", env, "s0-answered"), messages.Ack)
    spam0.close()
    alice.close()


def test_new_account_age_is_a_setting(server_factory, user_keys):
    # With no waiting period, a signed-up account is an ordinary sender at once.
    srv = server_factory(mailbox_limit=20, signups_per_hour=0, new_account_age=0)
    srv.store.set_public_key("bob", public_der(user_keys["bob"]))
    peer, _ = signup(srv, "quick", "quick-pass-1", public_der(user_keys["carol"]))
    bob_pub = user_keys["bob"].public_key()
    acks = [send_dm(peer, "bob", sealed("quick", user_keys["carol"], "bob", bob_pub, str(i)),
                    f"q{i}") for i in range(5)]
    assert all(isinstance(a, messages.Ack) for a in acks), acks
    assert _stored_from(srv, "bob") == ["quick"] * 5


def _signup_seconds(srv, user: str) -> tuple:
    peer = RawPeer(srv)
    peer.handshake()
    record = peer.record(messages.Signup(user=user, password=f"{user}-pass-77x"))
    started = time.perf_counter()
    peer.send(record)
    reply = peer.reply()
    seconds = time.perf_counter() - started
    peer.close()
    return seconds, reply


def test_taken_name_is_answered_no_sooner_than_a_new_one(server_factory, monkeypatch):
    # Heavier hashing (an operator setting) so that a hash stands out from the noise.
    monkeypatch.setenv("SCHAT_SCRYPT_N", "8192")
    srv = server_factory(signups_per_hour=0, penalty_base=0)
    taken, fresh, lookalike = [], [], []
    for i in range(3):
        seconds, reply = _signup_seconds(srv, "alice")
        assert reply.code == "policy" and "already exists" in reply.text
        taken.append(seconds)
        seconds, reply = _signup_seconds(srv, f"fresh{i}")
        assert isinstance(reply, messages.Welcome)
        fresh.append(seconds)
        seconds, reply = _signup_seconds(srv, "Alice_")
        assert reply.code == "policy" and "too like the existing 'alice'" in reply.text
        lookalike.append(seconds)
    med = {k: statistics.median(v) for k, v in
           (("taken", taken), ("fresh", fresh), ("lookalike", lookalike))}
    print(f"\nsign-up reply medians: {({k: round(v * 1000, 1) for k, v in med.items()})} ms")
    # Both refusals come after a full hash, like a new account's welcome: probing
    # for names costs what signing up costs.
    assert med["taken"] >= 0.5 * med["fresh"], med
    assert med["lookalike"] >= 0.5 * med["fresh"], med
