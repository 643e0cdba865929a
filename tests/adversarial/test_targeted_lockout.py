"""Nobody can lock a member out by guessing at their password: penalties belong to
(address, account) pairs, the per-account ceiling lets a clean address's right
password through, and a key login answers only for its own address."""

from __future__ import annotations

from chatkit import PASSWORDS
from dm_attack import login
from hostile import RawPeer, assert_no_traceback

from schat.crypto.keys import public_der
from schat.protocol import auth, messages

ATTACKER = "127.0.0.2"
OWNER = "127.0.0.3"


def _guess(srv, source: str, user: str = "alice") -> str:
    peer, reply = login(srv, user, "surely-not-it-9", source=source)
    peer.close()
    return reply.code


def _owner_login(srv, source: str = OWNER, user: str = "alice"):
    peer, reply = login(srv, user, PASSWORDS[user], source=source)
    peer.close()
    return reply


def test_wrong_guesses_from_elsewhere_never_refuse_the_owner(server_factory, server_log):
    # The attacker's own address is soon held back (a long first wait, so that
    # the whole test runs inside it) ...
    srv = server_factory(penalty_base=30, penalty_max=60)
    owner = []
    attacker = []
    for _ in range(15):
        attacker.append(_guess(srv, ATTACKER))
        owner.append(_owner_login(srv))
    assert attacker[:4] == ["auth_failed"] * 4 and attacker[4:] == ["penalty"] * 11, attacker
    # ... and alice, from her own address, gets in every single time.
    assert all(isinstance(r, messages.Welcome) for r in owner), owner
    assert_no_traceback(server_log)


def _key_login(srv, source: str, key):
    peer = RawPeer(srv, source=source)
    peer.handshake()
    signature = auth.sign_login(key, "alice", srv.fingerprint, peer.conn.transcript_hash)
    peer.send(peer.record(messages.LoginKey(user="alice", signature=signature)))
    reply = peer.reply()
    peer.close()
    return reply


def test_account_ceiling_lets_only_clean_addresses_try(server_factory, user_keys):
    ceiling = 4
    srv = server_factory(account_ceiling=ceiling, penalty_base=60, penalty_max=120)
    srv.store.set_public_key("alice", public_der(user_keys["alice"]))
    # A botnet: one wrong guess from each of several addresses, past the ceiling.
    botnet = [f"127.0.1.{i}" for i in range(1, ceiling + 2)]
    assert [_guess(srv, a) for a in botnet] == ["auth_failed"] * len(botnet)
    # Now a password is checked only from an address with no failure on record:
    # the bots' addresses are refused without a check, even with the right password ...
    refused = _owner_login(srv, botnet[0])
    assert refused.code == "penalty"
    # ... while the owner, from a clean address, gets in.
    assert isinstance(_owner_login(srv, OWNER), messages.Welcome)
    # A new bot address gets exactly one guess, which is checked (and fails) ...
    assert _guess(srv, "127.0.2.1") == "auth_failed"
    assert _owner_login(srv, "127.0.2.1").code == "penalty"
    # ... other accounts are not guarded ...
    assert isinstance(_owner_login(srv, botnet[1], "bob"), messages.Welcome)
    # ... and the key of the guarded account works from any address that is not
    # itself penalised, a bot's included.
    assert isinstance(_key_login(srv, botnet[2], user_keys["alice"]), messages.Welcome)
    # The owner's address stays clean: she gets in again.
    assert isinstance(_owner_login(srv, OWNER), messages.Welcome)
