"""The key-login signature names the account and the server (issue #11 item 6).

Signed data, from docs/PROTOCOL.md §5:
``"schat/1 login_key v2" ‖ 0x00 ‖ len(name) ‖ name_key(user) ‖ SHA-256(server key DER) ‖ th``.
The signatures here are made with pycryptodome straight from that text, so the
document and the server are checked against each other; the client's own
signature is checked the same way by a modified server that records it.
"""

from __future__ import annotations

import queue

import pytest
from Crypto.Hash import SHA256
from Crypto.Signature import pss

from chatkit import WAIT
from hostile import RawPeer
from hostile_server import HostileServer
from schat.client.session import ClientSession
from schat.crypto.keys import public_der
from schat.protocol import messages

CONTEXT = b"schat/1 login_key v2\x00"


def payload(user: str, server_der: bytes, th: bytes) -> bytes:
    name = user.lower().encode("ascii")
    return CONTEXT + bytes([len(name)]) + name + SHA256.new(server_der).digest() + th


def sign(key, data: bytes) -> bytes:
    return pss.new(key, salt_bytes=32).sign(SHA256.new(data))


@pytest.fixture
def srv(server_factory, user_keys):
    srv = server_factory()
    alice_der = public_der(user_keys["alice"])
    srv.store.set_public_key("alice", alice_der)
    # dave uses the same key as alice (one person, two accounts).
    srv.store.add("Dave", "dave-pass-4444", alice_der)
    return srv


def attempt(peer: RawPeer, user: str, signature: bytes):
    peer.send(peer.record(messages.LoginKey(user=user, signature=signature)))
    return peer.reply()


def test_the_documented_signature_logs_in_and_the_old_one_does_not(srv, user_keys, host_key):
    peer = RawPeer(srv)
    peer.handshake()
    th = peer.conn.transcript_hash
    old = sign(user_keys["alice"], b"schat/1 login_key\x00" + th)
    assert attempt(peer, "alice", old).code == "auth_failed"
    new = sign(user_keys["alice"], payload("alice", public_der(host_key), th))
    assert isinstance(attempt(peer, "alice", new), messages.Welcome)
    peer.close()


def test_a_signature_names_its_account(srv, user_keys, host_key):
    peer = RawPeer(srv)
    peer.handshake()
    th = peer.conn.transcript_hash
    for_alice = sign(user_keys["alice"], payload("alice", public_der(host_key), th))
    # Same key, same session: a signature for alice does not log in dave.
    assert attempt(peer, "Dave", for_alice).code == "auth_failed"
    # The name signed is the canonical one, whatever the case typed.
    for_dave = sign(user_keys["alice"], payload("dave", public_der(host_key), th))
    welcome = attempt(peer, "DAVE", for_dave)
    assert isinstance(welcome, messages.Welcome) and welcome.user == "Dave"
    peer.close()


def test_a_signature_names_its_server(srv, user_keys, host_key, other_host_key):
    peer = RawPeer(srv)
    peer.handshake()
    th = peer.conn.transcript_hash
    elsewhere = sign(user_keys["alice"], payload("alice", public_der(other_host_key), th))
    assert attempt(peer, "alice", elsewhere).code == "auth_failed"
    here = sign(user_keys["alice"], payload("alice", public_der(host_key), th))
    assert isinstance(attempt(peer, "alice", here), messages.Welcome)
    peer.close()


def test_the_client_signs_the_documented_bytes(host_key, user_keys):
    got: "queue.Queue" = queue.Queue()

    def record(link, msg):
        got.put((link.conn.transcript_hash, msg))
        link.welcome(msg.user)

    hostile = HostileServer(host_key, on_login=record)
    try:
        session = ClientSession(hostile.host, hostile.port, "evil", accept_new=True,
                                timeout=WAIT)
        session.connect()
        session.login_key("Alice", user_keys["alice"])
        session.close()
    finally:
        hostile.close()
    th, msg = got.get(timeout=WAIT)
    assert isinstance(msg, messages.LoginKey) and msg.user == "Alice"
    verifier = pss.new(user_keys["alice"].public_key(), salt_bytes=32)
    verifier.verify(SHA256.new(payload("alice", public_der(host_key), th)), msg.signature)


# The bytes signed for "Alice" in the session of the known-answer vector
# (docs/PROTOCOL.md §7: server key tests/data/keys/host.pem, th = 42cd…ce92).
KAT_TH = bytes.fromhex("42cd4420da141da02d5dcafb57821f02d94922048832c12228c7e028b778ce92")
KAT_PAYLOAD = bytes.fromhex(
    "73636861742f31206c6f67696e5f6b65792076320005616c6963651cb1ba19535dd2f0add096d97c526366"
    "7acbf864b293da0b33de954b195566bb42cd4420da141da02d5dcafb57821f02d94922048832c12228c7e0"
    "28b778ce92")


def test_known_answer_payload(host_key):
    from schat.crypto.keys import fingerprint
    from schat.protocol import auth

    assert payload("Alice", public_der(host_key), KAT_TH) == KAT_PAYLOAD
    assert auth.login_payload("Alice", fingerprint(host_key), KAT_TH) == KAT_PAYLOAD
    assert len(KAT_PAYLOAD) == 21 + 1 + 5 + 32 + 32
