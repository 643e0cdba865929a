"""Build the ``schat/1`` known-answer vector from fixed keys and fixed randomness.

Run as a script to (re)write ``handshake.json``; the test regenerates the
vector and compares it byte for byte with the stored file.
"""

from __future__ import annotations

import json
from pathlib import Path

from schat.crypto import dh, kdf, keys
from schat.protocol import messages
from schat.protocol.connection import ClientConnection, ServerConnection
from schat.protocol.handshake import derive_keys

HERE = Path(__file__).parent
VECTOR = HERE / "handshake.json"
HOST_KEY = HERE.parent / "data" / "keys" / "host.pem"


class FixedRandom:
    """Hands out a fixed byte sequence: each call takes the next ``n`` bytes of a pattern."""

    def __init__(self, start: int):
        self.counter = start

    def __call__(self, n: int) -> bytes:
        out = bytes((self.counter + i) & 0xFF for i in range(n))
        self.counter += n
        return out


def build(server_backend=None, client_backend=None, spec_backend=None) -> dict:
    """The vector: every handshake byte, the derived keys and the first records.

    Each side computes with the crypto backend given (schat.crypto.backend;
    default OpenSSL), the keys are derived again from the spec with
    ``spec_backend``: every combination must give the same bytes.
    """
    host = keys.import_private_pem(HOST_KEY.read_bytes(), None)
    # Server draws: ephemeral X25519 seed (32), server random (32), then the
    # implicit-rejection secret (32, unused: the secret unwraps).
    server = ServerConnection(host, FixedRandom(0x00), backend=server_backend)
    # Client draws: ephemeral X25519 seed (32), client random (32), secret (32), OAEP seed (32).
    client = ClientConnection(FixedRandom(0x80), backend=client_backend)
    server_hello = server.data_to_send()
    client.receive_data(server_hello)
    client.next_event()
    client.accept_server_key()
    cke = client.data_to_send()
    server.receive_data(cke)
    server.next_event()
    server.complete_key_exchange()
    server.next_event()
    server_finished = server.data_to_send()
    client.receive_data(server_finished)
    client.next_event()
    login = messages.Login(user="alice", password="correct horse 42")
    client.send(login)
    first_client_record = client.data_to_send()
    welcome = messages.Welcome(user="alice", server="TestServer", motd="", users=("alice",), time=0)
    ping = messages.Ping(n=1)
    server.send(welcome, ping)
    first_server_record = server.data_to_send()
    # Derive the keys again from the spec, independently of the connection objects.
    secret = FixedRandom(0x80 + 64)(32)
    client_eph = dh.generate(FixedRandom(0x80), spec_backend)
    server_eph_pub = server_hello[-64:-32]
    shared = dh.shared_secret(client_eph, dh.import_public(server_eph_pub, spec_backend), spec_backend)
    th = kdf.sha256(server_hello, cke, backend=spec_backend)
    assert th == client.transcript_hash == server.transcript_hash
    session = derive_keys(secret, shared, th, spec_backend)
    return {
        "description": "schat/1 handshake with fixed randomness; all values hex",
        "server_rsa_key": "tests/data/keys/host.pem",
        "server_random_source": "bytes 00 01 02 ... (server eph seed 32, server random 32)",
        "client_random_source": "bytes 80 81 82 ... (client eph seed 32, client random 32, "
                                "secret 32, OAEP seed 32)",
        "server_hello": server_hello.hex(),
        "client_key_exchange": cke.hex(),
        "transcript_hash": client.transcript_hash.hex(),
        "secret": secret.hex(),
        "x25519_shared": shared.hex(),
        "c2s_key": session.c2s_key.hex(),
        "c2s_iv": session.c2s_iv.hex(),
        "s2c_key": session.s2c_key.hex(),
        "s2c_iv": session.s2c_iv.hex(),
        "finished_key": session.finished_key.hex(),
        "server_finished": server_finished.hex(),
        "client_record_0_plaintext": messages.encode(login).hex(),
        "client_record_0": first_client_record.hex(),
        "server_record_1_plaintext": (messages.encode(welcome) + b"\n" + messages.encode(ping)).hex(),
        "server_record_1": first_server_record.hex(),
    }


if __name__ == "__main__":
    VECTOR.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {VECTOR}")
