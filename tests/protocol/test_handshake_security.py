"""Handshake properties: server authentication, key confirmation, channel-bound logins."""

from __future__ import annotations

import logging
import os

import pytest
from Crypto.Cipher import PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA

from schat.crypto import aead, dh, keys
from schat.crypto import backend as crypto_backend
from schat.errors import CryptoError, LocalProtocolError, RemoteProtocolError
from schat.protocol import auth, events, handshake as handshake_mod, messages as m
from schat.protocol.connection import ClientConnection, ServerConnection

from protocol_pairs import drain, handshake


def test_client_sends_nothing_until_key_accepted(host_key):
    """Unknown or changed key: the application does not accept, nothing goes out."""
    server = ServerConnection(host_key)
    client = ClientConnection()
    client.receive_data(server.data_to_send())
    (ev,) = drain(client)
    assert ev.fingerprint == keys.fingerprint(host_key)
    assert ev.public_key_der == keys.public_der(host_key)
    assert client.data_to_send() == b""
    # More input while the key is unchecked (a ServerFinished-sized frame) is not even read.
    client.receive_data(b"\x00\x00\x00\x30" + bytes(48))
    assert client.next_event() is None and client.data_to_send() == b""
    client.close()
    assert client.data_to_send() == b"" and client.closed
    with pytest.raises(LocalProtocolError):
        client.accept_server_key()


def test_server_without_private_key_cannot_complete(host_key, other_host_key):
    """A man in the middle with the real server's public key but not its private key."""
    # The impostor presents host_key's public part but unwraps with another private key.
    real = ServerConnection(host_key)
    impostor = ServerConnection(other_host_key)
    impostor._handshake._host_key = other_host_key
    impostor._handshake.server_hello = real._handshake.server_hello  # claims host_key
    impostor._handshake._eph = real._handshake._eph
    impostor._handshake._modulus_bytes = 384
    client = ClientConnection()
    client.receive_data(real.data_to_send())
    drain(client)
    client.accept_server_key()
    impostor.receive_data(client.data_to_send())
    assert isinstance(impostor.next_event(), events.KeyExchangeReceived)
    impostor.complete_key_exchange()  # implicit rejection: no error on the server side
    client.receive_data(impostor.data_to_send())
    with pytest.raises(RemoteProtocolError, match="failed authentication|key confirmation"):
        drain(client)
    with pytest.raises(LocalProtocolError):
        client.send(m.Login(user="ann", password="secret"))


def test_public_key_only_cannot_build_server(host_key):
    with pytest.raises(LocalProtocolError):
        ServerConnection(host_key.public_key())


@pytest.mark.parametrize("where", ["x25519", "random", "version"])
def test_edited_server_hello_fails_key_confirmation_or_parse(host_key, where):
    server = ServerConnection(host_key)
    hello = bytearray(server.data_to_send())
    offsets = {"x25519": len(hello) - 64 + 5, "random": len(hello) - 1, "version": 4 + 3}
    hello[offsets[where]] ^= 0x01
    client = ClientConnection()
    client.receive_data(bytes(hello))
    if where == "version":
        with pytest.raises(RemoteProtocolError, match="protocol"):
            drain(client)
        return
    try:
        drain(client)
    except RemoteProtocolError:
        return  # an edited X25519 point may be rejected at import: also a failure
    client.accept_server_key()
    server.receive_data(client.data_to_send())
    drain(server)
    server.complete_key_exchange()
    drain(server)
    client.receive_data(server.data_to_send())
    with pytest.raises(RemoteProtocolError):
        drain(client)


def test_edited_key_exchange_fails(host_key):
    server = ServerConnection(host_key)
    client = ClientConnection()
    client.receive_data(server.data_to_send())
    drain(client)
    client.accept_server_key()
    cke = bytearray(client.data_to_send())
    cke[4 + 40] ^= 0x80  # inside the client random
    server.receive_data(bytes(cke))
    drain(server)
    server.complete_key_exchange()
    drain(server)
    client.receive_data(server.data_to_send())
    with pytest.raises(RemoteProtocolError):
        drain(client)


def test_low_order_client_share_rejected(host_key):
    server = ServerConnection(host_key)
    client = ClientConnection()
    client.receive_data(server.data_to_send())
    drain(client)
    client.accept_server_key()
    cke = bytearray(client.data_to_send())
    cke[5:37] = bytes(32)
    server.receive_data(bytes(cke))
    with pytest.raises(RemoteProtocolError, match="X25519"):
        server.next_event()


def test_key_login_signature_is_bound_to_the_session(host_key, user_keys):
    alice = user_keys["alice"]
    server_fp = keys.fingerprint(host_key)
    # A key login is verified before the server logs the connection in (it forgets the
    # hash then).
    c1, s1 = handshake(host_key, logged_in=False)
    sig = auth.sign_login(alice, "alice", server_fp, c1.transcript_hash)
    assert auth.verify_login(alice.public_key(), "alice", server_fp, s1.transcript_hash, sig)
    c2, s2 = handshake(host_key, logged_in=False)
    assert s2.transcript_hash != s1.transcript_hash
    assert not auth.verify_login(alice.public_key(), "alice", server_fp, s2.transcript_hash, sig)
    assert not auth.verify_login(user_keys["bob"].public_key(), "alice", server_fp,
                                 s1.transcript_hash, sig)
    # Carried over the channel it still verifies only in its own session.
    c1.send(m.LoginKey(user="alice", signature=sig))
    s1.receive_data(c1.data_to_send())
    (ev,) = drain(s1)
    assert auth.verify_login(alice.public_key(), "alice", server_fp, s1.transcript_hash,
                             ev.message.signature)


def test_password_login_replayed_into_new_session_fails(host_key):
    c1, s1 = handshake(host_key)
    c1.send(m.Login(user="ann", password="correct horse 1"))
    captured = c1.data_to_send()
    c2, s2 = handshake(host_key)
    with pytest.raises(RemoteProtocolError, match="authentication"):
        s2.receive_data(captured)
        drain(s2)


def test_wrong_protocol_frames_after_hello(host_key):
    """The server sends only the ServerHello before the key exchange; more is an error."""
    server = ServerConnection(host_key)
    client = ClientConnection()
    hello = server.data_to_send()
    client.receive_data(hello)
    drain(client)
    client.accept_server_key()
    client.receive_data(hello)  # a second ServerHello where ServerFinished belongs
    with pytest.raises(RemoteProtocolError):
        drain(client)


def test_debug_log_has_no_secrets(host_key, caplog):
    caplog.set_level(logging.DEBUG, logger="schat.protocol")
    draws = []

    def recording(n):  # the client's random source: its X25519 seed, random, secret, OAEP seed
        draws.append(os.urandom(n))
        return draws[-1]

    server = ServerConnection(host_key)
    client = ClientConnection(recording)
    hello = server.data_to_send()
    client.receive_data(hello)
    drain(client)
    client.accept_server_key()
    cke = client.data_to_send()
    server.receive_data(cke)
    drain(server)
    server.complete_key_exchange()
    drain(server)
    client.receive_data(server.data_to_send())
    drain(client)
    client.send(m.Login(user="ann", password="hunter2secret"))
    login = client.data_to_send()
    server.receive_data(login)
    drain(server)
    seed, _, secret, _ = draws
    th = client.transcript_hash
    shared = dh.shared_secret(dh.generate(lambda n: seed), dh.import_public(hello[-64:-32]))
    session = handshake_mod.derive_keys(secret, shared, th)
    assert b"hunter2secret" in _open_first_c2s(session, login)  # these are the session's keys
    text = caplog.text
    assert "ServerFinished verified" in text and "record in seq=" in text
    secrets = [seed, secret, shared, th, session.c2s_key, session.c2s_iv, session.s2c_key,
               session.s2c_iv, session.finished_key, handshake_mod.finished_mac(session, th),
               b"hunter2secret"]
    for value in secrets:
        for shown in (value.hex(), repr(value)[2:-1], value.decode("latin-1")):
            assert shown not in text


def test_accepting_the_key_sends_exactly_the_key_exchange(host_key):
    server = ServerConnection(host_key)
    client = ClientConnection()
    client.receive_data(server.data_to_send())
    drain(client)
    assert client.data_to_send() == b""
    client.accept_server_key()
    cke = client.data_to_send()
    assert cke[4] == handshake_mod.CLIENT_KEY_EXCHANGE
    assert int.from_bytes(cke[:4], "big") == len(cke) - 4
    assert client.data_to_send() == b""


def _recorded_session(host_key):
    """A session as a passive attacker records it, plus the server's ephemeral key
    (taken before complete_key_exchange() drops it) as a control."""
    server = ServerConnection(host_key)
    hs = server._handshake
    server_eph = hs._eph
    client = ClientConnection()
    hello = server.data_to_send()
    client.receive_data(hello)
    drain(client)
    client.accept_server_key()
    cke = client.data_to_send()
    server.receive_data(cke)
    drain(server)
    server.complete_key_exchange()
    drain(server)
    client.receive_data(server.data_to_send())
    drain(client)
    server.logged_in()
    client.send(m.Login(user="ann", password="long-term secret"))
    record = client.data_to_send()
    return hs, server_eph, hello, cke, record


def _open_first_c2s(session, record):
    nonce = session.c2s_iv
    return aead.open_(session.c2s_key, nonce, record[4:], record[:4])


def test_forward_secrecy_host_key_alone_does_not_open_a_recorded_session(host_key):
    hs, server_eph, hello, cke, record = _recorded_session(host_key)
    assert hs._eph is None  # the server's ephemeral key is gone after complete()
    # The attacker holds host.pem and the recording: `secret` unwraps...
    wrapped = cke[4 + 67:]
    secret = PKCS1_OAEP.new(host_key, hashAlgo=SHA256).decrypt(wrapped)
    assert len(secret) == 32
    th = SHA256.new(hello + cke).digest()
    client_pub = dh.import_public(cke[5:37])
    # ...but without an ephemeral private key no guess at the X25519 input works.
    for guess in (bytes(32), dh.shared_secret(dh.generate(), client_pub),
                  hello[-64:-32], cke[5:37]):
        with pytest.raises(CryptoError):
            _open_first_c2s(handshake_mod.derive_keys(secret, guess, th), record)
    # Control: the same recording opens with the ephemeral key the server dropped.
    real = handshake_mod.derive_keys(secret, dh.shared_secret(server_eph, client_pub), th)
    assert b"long-term secret" in _open_first_c2s(real, record)


def test_every_session_uses_fresh_ephemeral_keys(host_key):
    shares = set()
    for _ in range(3):
        _, _, hello, cke, _ = _recorded_session(host_key)
        shares.add(hello[-64:-32])
        shares.add(cke[5:37])
    assert len(shares) == 6


def test_all_zero_x25519_result_aborts_the_handshake(host_key, monkeypatch):
    server = ServerConnection(host_key)
    client = ClientConnection()
    client.receive_data(server.data_to_send())
    drain(client)
    client.accept_server_key()
    server.receive_data(client.data_to_send())
    drain(server)
    # No valid point gives X25519 = 0 (low-order points are refused at import),
    # so the primitive's result is replaced at the library edge.
    monkeypatch.setattr(crypto_backend.DEFAULT, "x25519", lambda *args: bytes(32))
    with pytest.raises(RemoteProtocolError, match="all-zero"):
        server.complete_key_exchange()
    assert server.closed and server.data_to_send() == b""
    with pytest.raises(RemoteProtocolError, match="all-zero"):
        server.next_event()
    other = ClientConnection()
    other.receive_data(ServerConnection(host_key).data_to_send())
    drain(other)
    with pytest.raises(RemoteProtocolError, match="all-zero"):
        other.accept_server_key()
    assert other.closed and other.data_to_send() == b""


@pytest.mark.parametrize("n_bits,e", [(16384, 65537), (3072, 2 ** 3000 + 1)])
def test_server_hello_with_an_oversized_key_is_refused(host_key, n_bits, e):
    n = host_key.n if n_bits == 3072 else 2 ** (n_bits - 1) + 1
    der = RSA.construct((n, e), consistency_check=False).export_key(format="DER")
    body = (bytes([handshake_mod.SERVER_HELLO, 7]) + b"schat/1" + len(der).to_bytes(2, "big")
            + der + dh.public_bytes(dh.generate()) + bytes(32))
    client = ClientConnection()
    client.receive_data(len(body).to_bytes(4, "big") + body)
    with pytest.raises(RemoteProtocolError, match="too large|exponent"):
        client.next_event()
    assert client.closed and client.data_to_send() == b""
