"""What the server does with direct-message requests, as PROTOCOL.md states it: the
registered spelling of names, the envelope's clock skew, a cid on every answer,
set_key re-sent, refusals without crypto first, and one rate per address."""

from __future__ import annotations

import re
import time
from pathlib import Path

from chatkit import PASSWORDS
from dm_attack import answer, login, send_dm, sealed
from hostile import RawPeer

from schat.crypto import envelope as ev
from schat.crypto.keys import public_der
from schat.protocol import dm_messages as dmm
from schat.protocol import events, messages
from schat.server.limits import DM_CHECK_BACKLOG

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def _keyed(server_factory, user_keys, **settings):
    srv = server_factory(**settings)
    for name in ("alice", "bob", "carol"):
        srv.store.set_public_key(name, public_der(user_keys[name]))
    return srv


def _stored(srv, recipient="bob"):
    return srv.server.dm.mailbox.count(recipient)


# -- #12 item 6: names on the wire -------------------------------------------------
def test_names_are_sent_as_registered_and_envelopes_carry_them_canonical(server_factory,
                                                                          user_keys):
    srv = _keyed(server_factory, user_keys)
    srv.store.add("Dave", "dave-pass-4444", public_der(user_keys["carol"]))
    alice, welcome = login(srv, "ALICE", PASSWORDS["alice"])
    assert welcome.user == "alice"
    bob_pub = user_keys["bob"].public_key()
    # Names in any other form than name_key's are refused, and nothing is stored.
    genuine = sealed("alice", user_keys["alice"], "bob", bob_pub)
    shouting = genuine.replace(b"\x03bob", b"\x03BOB", 1)
    reply = send_dm(alice, "bob", shouting, "upper")
    assert isinstance(reply, messages.Error) and reply.code == "invalid", reply
    # An envelope for another account than `to` is refused too.
    for_carol = sealed("alice", user_keys["alice"], "carol", user_keys["carol"].public_key())
    reply = send_dm(alice, "bob", for_carol, "other")
    assert reply.code == "invalid" and "alice -> bob" in reply.text, reply
    assert _stored(srv) == 0
    # `to` compares like every name; the envelope is canonical.
    assert isinstance(send_dm(alice, "BOB", genuine, "ok"), messages.Ack)
    to_dave = sealed("alice", user_keys["alice"], "Dave", user_keys["carol"].public_key())
    assert isinstance(send_dm(alice, "dave", to_dave, "dave"), messages.Ack)
    # get_key answers with the registered spelling, whatever was asked.
    for asked, registered in (("BoB", "bob"), ("dAVE", "Dave")):
        alice.send(alice.record(dmm.GetKey(user=asked, cid=asked)))
        key = _next(alice, dmm.Key)
        assert (key.cid, key.user, key.status) == (asked, registered, "ok")
    alice.close()
    # Stored and delivered under the registered spellings.
    assert [(d.recipient, d.sender) for d in srv.server.dm.mailbox.pending("dave")] == \
        [("Dave", "alice")]
    dave, welcome = login(srv, "DAVE", "dave-pass-4444")
    assert welcome.user == "Dave"
    env = _next(dave, dmm.DmEnvelope)
    assert env.sender == "alice"
    dave.close()


def _next(peer: RawPeer, kind):
    while True:
        msg = peer.next_of(events.MessageReceived).message
        if isinstance(msg, kind):
            return msg


# -- #12 item 7: the envelope's time ---------------------------------------------
def test_envelopes_dated_outside_the_clock_skew_are_refused(server_factory, user_keys):
    srv = _keyed(server_factory, user_keys)
    alice, _ = login(srv, "alice")
    bob_pub = user_keys["bob"].public_key()
    now = int(time.time() * 1000)
    for n, when in enumerate((0, now - dmm.MAX_CLOCK_SKEW_MS - 60_000,
                              now + dmm.MAX_CLOCK_SKEW_MS + 60_000)):
        env = sealed("alice", user_keys["alice"], "bob", bob_pub, time_ms=when)
        reply = send_dm(alice, "bob", env, f"t{n}")
        assert isinstance(reply, messages.Error) and reply.code == "invalid", reply
        assert "server's clock" in reply.text
    assert _stored(srv) == 0
    # Inside the skew either way: stored.
    for n, when in enumerate((now - dmm.MAX_CLOCK_SKEW_MS + 60_000,
                              now + dmm.MAX_CLOCK_SKEW_MS - 60_000)):
        env = sealed("alice", user_keys["alice"], "bob", bob_pub, time_ms=when)
        assert isinstance(send_dm(alice, "bob", env, f"ok{n}"), messages.Ack)
    assert _stored(srv) == 2
    alice.close()


# -- #12 item 8: every answer carries the request's cid ------------------------------
def test_offline_notice_and_every_answer_carry_the_request_cid(server_factory, user_keys):
    srv = _keyed(server_factory, user_keys)
    alice = RawPeer(srv)
    alice.handshake()
    alice.send(alice.record(messages.Login(user="alice", password=PASSWORDS["alice"],
                                           features=("rooms",))))
    assert isinstance(alice.reply(), messages.Welcome)
    env = sealed("alice", user_keys["alice"], "bob", user_keys["bob"].public_key())
    alice.send(alice.record(dmm.DmSend(to="bob", envelope=env, cid="offline-1")))
    ack = answer(alice, "offline-1")
    notices = [m for m in alice.inbox if isinstance(m, messages.Notice)]
    assert isinstance(ack, messages.Ack) and ack.id > 0
    assert [n.cid for n in notices] == ["offline-1"]
    assert "bob is offline" in notices[0].text
    # A client that knows no rooms gets the notice in the shape it always read: no cid
    # (it links the notice to its request by the ack that follows).
    carol, _ = login(srv, "carol")
    env = sealed("carol", user_keys["carol"], "bob", user_keys["bob"].public_key())
    carol.send(carol.record(dmm.DmSend(to="bob", envelope=env, cid="offline-2")))
    assert isinstance(answer(carol, "offline-2"), messages.Ack)
    notices = [m for m in carol.inbox if isinstance(m, messages.Notice)]
    assert [(n.cid, "bob is offline" in n.text) for n in notices] == [(None, True)]
    carol.close()
    # Errors carry it too, whichever check refuses.
    bad = bytearray(env)
    bad[-10] ^= 1
    assert answer_of(alice, dmm.DmSend(to="bob", envelope=bytes(bad), cid="bad-1")).cid == "bad-1"
    assert answer_of(alice, dmm.DmSend(to="nobody", envelope=env, cid="who-1")).cid == "who-1"
    alice.close()


def answer_of(peer: RawPeer, request):
    peer.send(peer.record(request))
    return answer(peer, request.cid)


# -- #12 item 5: set_key ------------------------------------------------------------
def _der_length(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x80 | 2]) + n.to_bytes(2, "big")


def _pkcs1_public_der(key) -> bytes:
    """RSAPublicKey (PKCS #1) DER, the other usual encoding of the same key."""
    ints = b"".join(b"\x02" + _der_length(len(body)) + body for body in (
        v.to_bytes(v.bit_length() // 8 + 1, "big") for v in (int(key.n), int(key.e))))
    return b"\x30" + _der_length(len(ints)) + ints


def test_set_key_resent_is_acknowledged_in_any_encoding(server_factory, user_keys):
    srv = server_factory()
    carol, _ = login(srv, "carol")
    spki = public_der(user_keys["carol"])
    pkcs1 = _pkcs1_public_der(user_keys["carol"])
    assert pkcs1 != spki
    first = answer_of(carol, dmm.SetKey(public_key=pkcs1, cid="s1"))
    assert isinstance(first, messages.Ack) and first.id == 0
    assert bytes(srv.store.get("carol").public_key_der) == spki   # stored canonical
    # The same key again, in either encoding: acknowledged, nothing changes.
    for cid, der in (("s2", spki), ("s3", pkcs1)):
        again = answer_of(carol, dmm.SetKey(public_key=der, cid=cid))
        assert isinstance(again, messages.Ack) and again.id == 0, again
    other = answer_of(carol, dmm.SetKey(public_key=public_der(user_keys["bob"]), cid="s4"))
    assert isinstance(other, messages.Error) and other.code == "key_exists"
    assert bytes(srv.store.get("carol").public_key_der) == spki
    carol.close()


def test_protocol_md_says_what_set_key_does():
    row = next(line for line in PROTOCOL.read_text().splitlines()
               if line.startswith("| `set_key` | c→s |"))
    assert "key_exists" in row
    assert re.search(r"same key again.*`ack`", row), row


# -- #11 item 9: refusals that need no crypto first; one rate per address -------------
def test_full_mailbox_and_unknown_recipient_are_answered_before_any_signature_check(
        server_factory, user_keys):
    srv = _keyed(server_factory, user_keys, mailbox_limit=4)   # one message per sender
    alice, _ = login(srv, "alice")
    bob_pub = user_keys["bob"].public_key()
    assert isinstance(send_dm(alice, "bob", sealed("alice", user_keys["alice"], "bob", bob_pub),
                              "fill"), messages.Ack)
    # A forged signature to a full mailbox: the cheap refusal, not a signature check.
    forged = bytearray(sealed("alice", user_keys["alice"], "bob", bob_pub))
    forged[-10] ^= 1
    reply = send_dm(alice, "bob", bytes(forged), "full")
    assert reply.code == "mailbox_full", reply
    reply = send_dm(alice, "nobody", bytes(forged), "nobody")
    assert reply.code == "no_such_user", reply
    # One signature checked in all: the first message's.
    assert dict(srv.server.dm.outcomes) == {"ack": 1, "mailbox_full": 1, "no_such_user": 1}
    alice.close()


def test_a_members_messages_are_stored_and_answered_in_order(server_factory, user_keys):
    srv = _keyed(server_factory, user_keys, rate_limit=0)
    alice, _ = login(srv, "alice")
    bob_pub = user_keys["bob"].public_key()
    envs = [sealed("alice", user_keys["alice"], "bob", bob_pub, f"m{i}") for i in range(12)]
    alice.send(b"".join(alice.record(dmm.DmSend(to="bob", envelope=e, cid=f"o{i}"))
                        for i, e in enumerate(envs)))
    acks = [answer(alice, f"o{i}") for i in range(12)]
    assert [a.id for a in acks] == sorted(a.id for a in acks)
    stored = srv.server.dm.mailbox.pending("bob")
    assert [ev.parse(s.envelope).msg_id for s in stored] == [ev.parse(e).msg_id for e in envs]
    alice.close()


def test_more_messages_than_the_check_backlog_wait_their_turn(server_factory, user_keys):
    # Forty messages in one write: the address's queue of signature checks fills,
    # the connection is held (not read) until there is room, and every message is
    # checked, stored and acknowledged in order; none is refused.
    srv = _keyed(server_factory, user_keys, rate_limit=0)
    alice, _ = login(srv, "alice")
    bob_pub = user_keys["bob"].public_key()
    count = 40
    assert count > 2 * DM_CHECK_BACKLOG
    alice.send(b"".join(
        alice.record(dmm.DmSend(to="bob", envelope=sealed("alice", user_keys["alice"], "bob",
                                                          bob_pub, f"w{i}"), cid=f"w{i}"))
        for i in range(count)))
    acks = [answer(alice, f"w{i}") for i in range(count)]
    assert all(isinstance(a, messages.Ack) for a in acks), acks
    assert [a.id for a in acks] == sorted(a.id for a in acks)
    assert dict(srv.server.dm.outcomes) == {"ack": count}
    alice.close()


def test_one_message_rate_for_all_members_of_an_address(server_factory):
    srv = server_factory(rate_limit=0, address_rate_limit=1, address_rate_burst=6)
    for i in range(3):
        srv.store.add(f"sock{i}", f"sock-pass-{i}1")
    socks = [login(srv, f"sock{i}", f"sock-pass-{i}1", source="127.0.0.2")[0]
             for i in range(3)]
    neighbour, _ = login(srv, "carol", source="127.0.0.3")
    for n in range(4):
        for i, sock in enumerate(socks):
            sock.send(sock.record(messages.Say(text=f"spam {n}", cid=f"x{i}-{n}")))
    codes = [type(a).__name__ if isinstance(a, messages.Ack) else a.code
             for i, sock in enumerate(socks) for a in
             (answer(sock, f"x{i}-{n}") for n in range(4))]
    # Twelve lines from three accounts on one address: about the address's burst of
    # six get through, the rest are answered throttled (with their cid).
    assert 6 <= codes.count("Ack") <= 8, codes
    assert codes.count("throttled") == 12 - codes.count("Ack")
    # Another address keeps its own rate, and the accounts stay connected.
    neighbour.send(neighbour.record(messages.Say(text="hello", cid="n1")))
    assert isinstance(answer(neighbour, "n1"), messages.Ack)
    for sock in socks + [neighbour]:
        sock.close()
