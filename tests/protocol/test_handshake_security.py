"""Handshake properties: server authentication, key confirmation, channel-bound logins."""

from __future__ import annotations

import pytest

from schat.crypto import keys
from schat.errors import LocalProtocolError, RemoteProtocolError
from schat.protocol import auth, events, messages as m
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
    c1, s1 = handshake(host_key)
    sig = auth.sign_login(alice, c1.transcript_hash)
    assert auth.verify_login(alice.public_key(), s1.transcript_hash, sig)
    c2, s2 = handshake(host_key)
    assert s2.transcript_hash != s1.transcript_hash
    assert not auth.verify_login(alice.public_key(), s2.transcript_hash, sig)
    assert not auth.verify_login(user_keys["bob"].public_key(), s1.transcript_hash, sig)
    # Carried over the channel it still verifies only in its own session.
    c1.send(m.LoginKey(user="alice", signature=sig))
    s1.receive_data(c1.data_to_send())
    (ev,) = drain(s1)
    assert auth.verify_login(alice.public_key(), s1.transcript_hash, ev.message.signature)


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
    import logging
    caplog.set_level(logging.DEBUG, logger="schat.protocol")
    client, server = handshake(host_key)
    client.send(m.Login(user="ann", password="hunter2secret"))
    server.receive_data(client.data_to_send())
    drain(server)
    text = caplog.text
    assert "ServerFinished verified" in text and "record in seq=" in text
    assert "hunter2secret" not in text
    assert client.transcript_hash.hex() not in text
