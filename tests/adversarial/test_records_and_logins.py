"""Tampered records from a logged-in member; failed logins, penalties and their timing."""

from __future__ import annotations

import statistics
import time

import pytest

from hostile import Chatter, RawPeer, assert_no_traceback, disconnect_reasons
from schat.protocol import auth, messages


def _say(peer: RawPeer, text: str) -> bytes:
    return peer.record(messages.Say(text=text, cid=text[:60]))


def _flip(peer):
    rec = bytearray(_say(peer, "flipped"))
    rec[len(rec) // 2] ^= 0x10
    return [bytes(rec)]


def _replay(peer):
    rec = _say(peer, "replayed")
    return [rec, rec]


def _swap(peer):
    first, second = _say(peer, "first"), _say(peer, "second")
    return [second, first]


def _drop(peer):
    _say(peer, "dropped")
    return [_say(peer, "after the gap")]


@pytest.mark.parametrize("tamper", [_flip, _replay, _swap, _drop], ids=lambda f: f.__name__[1:])
def test_tampered_record_closes_and_delivers_nothing(server_factory, server_log, tamper):
    srv = server_factory()
    chat = Chatter(srv)
    peer = RawPeer(srv)
    assert isinstance(peer.login("carol"), messages.Welcome)
    records = tamper(peer)
    peer.send(b"".join(records))
    assert peer.closed_by_server()
    history = chat.finish()
    # No honest member saw any line of carol's (finish() fails on any foreign line).
    for name, client in chat.clients.items():
        while not client.events.empty():
            ev = client.events.get_nowait()
            assert not (isinstance(ev, messages.ChatMessage) and ev.sender == "carol")
    assert all(history.values())
    reasons = [r for r in disconnect_reasons(server_log) if " carol: " in r]
    assert len(reasons) == 1 and "protocol error" in reasons[0], reasons
    assert_no_traceback(server_log)
    chat.close()


def test_three_failures_on_one_connection_disconnect(server_factory):
    srv = server_factory(penalty_base=0)
    peer = RawPeer(srv)
    peer.handshake()
    for i in range(3):
        peer.send(peer.record(messages.Login(user="alice", password=f"guess-{i}-nope")))
        assert peer.reply().code == "auth_failed"
    assert peer.reply().code == "too_many_attempts"
    assert peer.closed_by_server()


def _fail_once(srv, user="alice", sent_at=None) -> messages.Error:
    """One wrong login on a new connection; its reply. ``sent_at``: a list that gets
    the time the login was sent."""
    peer = RawPeer(srv)
    peer.handshake()
    record = peer.record(messages.Login(user=user, password="wrong-guess-1"))
    if sent_at is not None:
        sent_at.append(time.monotonic())
    peer.send(record)
    reply = peer.reply()
    peer.close()
    return reply


def test_repeated_failures_get_a_growing_penalty_that_expires(server_factory, server_log):
    # The wait doubles once to reach the cap, then stays there twice: a wait that went
    # on doubling (4 * cap by the last one) is caught past the timing slack of 1 s.
    # (base is long enough for two more logins to be refused while it runs.)
    base, cap = 0.3, 0.6
    srv = server_factory(penalty_base=base, penalty_max=cap)
    chat = Chatter(srv)
    # max_auth_attempts (3) failures are free, from any number of connections.
    assert [_fail_once(srv, "nobody").code for _ in range(3)] == ["auth_failed"] * 3
    # The 4th failure starts a wait of `base`; while it runs, no hash is even tried.
    assert _fail_once(srv, "carol").code == "auth_failed"
    assert _fail_once(srv, "carol").code == "penalty"
    # Every account's login from the penalised address waits too.
    assert _fail_once(srv, "nobody").code == "penalty"
    waits = [base]
    for expected in (2 * base, cap, cap):  # doubles, then capped
        deadline = time.monotonic() + waits[-1] + 2
        sent_at = []
        reply = _fail_once(srv, "carol", sent_at)
        while reply.code == "penalty":
            assert time.monotonic() < deadline, "the penalty did not end"
            time.sleep(0.05)  # polling the server's clock: there is no event to wait on
            reply = _fail_once(srv, "carol", sent_at)
        assert reply.code == "auth_failed"
        # The wait starts when the server refuses this login, after it was sent: timed
        # from the sending it is never short (timed from the reply, a test thread late
        # in reading it made the wait look short).
        started = sent_at[-1]
        while _fail_once(srv, "carol").code == "penalty":
            time.sleep(0.05)
        waits.append(time.monotonic() - started)
        assert expected * 0.7 <= waits[-1] <= expected + 1.0, (expected, waits)
    # After a quiet period of penalty_max past the last wait the record is forgotten:
    # the right password works, and failures are free again.
    time.sleep(2 * cap + 0.2)
    ok = RawPeer(srv)
    assert isinstance(ok.login("carol"), messages.Welcome)
    ok.close()
    assert [_fail_once(srv, "nobody").code for _ in range(3)] == ["auth_failed"] * 3
    chat.finish()
    assert_no_traceback(server_log)
    chat.close()


def test_unknown_user_and_wrong_password_alike_in_reply_and_time(server_factory):
    srv = server_factory(penalty_base=0, max_auth_attempts=1000)
    peer = RawPeer(srv)
    peer.handshake()
    times = {"wrong": [], "unknown": []}
    replies = {}
    for i in range(120):
        kind = ("wrong", "unknown")[i % 2]
        user = "alice" if kind == "wrong" else "nobody_here"
        peer.send(peer.record(messages.Login(user=user, password="not-the-password-9")))
        started = time.perf_counter()
        reply = peer.reply()
        times[kind].append(time.perf_counter() - started)
        replies[kind] = (reply.code, reply.text)
    assert replies["wrong"] == replies["unknown"]
    # Run-to-run noise: how far the medians of two halves of the same kind drift,
    # or the spread of one kind, whichever is larger.
    med = {k: statistics.median(v[10:]) for k, v in times.items()}
    noise = max(max(abs(statistics.median(v[10::2]) - statistics.median(v[11::2])),
                    statistics.quantiles(v[10:], n=4)[2] - statistics.quantiles(v[10:], n=4)[0])
                for v in times.values())
    assert abs(med["wrong"] - med["unknown"]) < noise, (med, noise)
    peer.close()


def test_penalty_is_per_address_and_spares_key_logins(server_factory, user_keys):
    srv = server_factory(penalty_base=5, penalty_max=5)
    srv.store.set_public_key("bob", user_keys["bob"].public_key().export_key(format="DER"))
    for _ in range(4):
        _fail_once(srv, "bob")
    assert _fail_once(srv, "bob").code == "penalty"
    # Another address is not held back by this one's failures: neither for
    # another account ...
    other = RawPeer(srv, source="127.0.0.2")
    assert isinstance(other.login("carol"), messages.Welcome)
    other.close()
    # ... nor for bob's, with his password (the failures were this address's,
    # not bob's) or with his key.
    clean = RawPeer(srv, source="127.0.0.3")
    assert isinstance(clean.login("bob"), messages.Welcome)
    clean.close()
    keyed = RawPeer(srv, source="127.0.0.4")
    keyed.handshake()
    signature = auth.sign_login(user_keys["bob"], "bob", srv.fingerprint,
                                keyed.conn.transcript_hash)
    keyed.send(keyed.record(messages.LoginKey(user="bob", signature=signature)))
    assert isinstance(keyed.reply(), messages.Welcome)
    keyed.close()
