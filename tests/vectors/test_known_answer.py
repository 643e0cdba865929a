"""The stored known-answer vector: reproduced byte for byte through every
combination of crypto backends (server, client and the spec's own derivation
each on OpenSSL or pycryptodome), and checked against the spec
(docs/PROTOCOL.md §2-3) with each library alone, not through schat."""

from __future__ import annotations

import json

import pytest
from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import HMAC, SHA256
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import RSA
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import padding, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESOCB3
from cryptography.hazmat.primitives.kdf.hkdf import HKDF as OpenSSLHKDF

from kat import HOST_KEY, VECTOR, build
from schat.crypto.backend import BACKENDS

TEXT_FIELDS = ("description", "server_rsa_key", "server_random_source", "client_random_source")


def _stored() -> dict:
    return {k: bytes.fromhex(x) for k, x in json.loads(VECTOR.read_text()).items()
            if k not in TEXT_FIELDS}


@pytest.mark.parametrize("server", sorted(BACKENDS))
@pytest.mark.parametrize("client", sorted(BACKENDS))
def test_vector_reproduced_byte_for_byte(server, client):
    spec = "pycryptodome" if server == client == "openssl" else "openssl"
    assert build(server, client, spec) == json.loads(VECTOR.read_text())


def test_vector_key_schedule_follows_the_spec():
    v = _stored()
    hello, cke = v["server_hello"], v["client_key_exchange"]
    host = RSA.import_key(HOST_KEY.read_bytes())
    # ClientKeyExchange: 02 ‖ X25519 (32) ‖ random (32) ‖ wlen (2) ‖ OAEP(secret).
    assert cke[4] == 0x02 and int.from_bytes(cke[69:71], "big") == len(cke) - 71
    assert PKCS1_OAEP.new(host, hashAlgo=SHA256).decrypt(cke[71:]) == v["secret"]
    th = SHA256.new(hello + cke).digest()
    assert th == v["transcript_hash"]
    client_seed = bytes(range(0x80, 0xA0))  # the client's first 32 random bytes
    shared = key_agreement(static_priv=import_x25519_private_key(client_seed),
                           static_pub=import_x25519_public_key(hello[-64:-32]), kdf=lambda x: x)
    assert shared == v["x25519_shared"]
    assert cke[5:37] == import_x25519_private_key(client_seed).public_key().export_key(format="raw")
    okm = HKDF(v["secret"] + shared, 120, th, SHA256, 1, context=b"schat/1 keys")
    assert okm == (v["c2s_key"] + v["c2s_iv"] + v["s2c_key"] + v["s2c_iv"] + v["finished_key"])


def _open_record(frame: bytes, key: bytes, iv: bytes, seq: int) -> bytes:
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")
    cipher = AES.new(key, AES.MODE_OCB, nonce=nonce, mac_len=16)
    cipher.update(frame[:4])
    return cipher.decrypt_and_verify(frame[4:-16], frame[-16:])


def test_vector_records_follow_the_spec():
    v = _stored()
    finished = _open_record(v["server_finished"], v["s2c_key"], v["s2c_iv"], 0)
    expected = HMAC.new(v["finished_key"], b"schat/1 server finished" + v["transcript_hash"],
                        digestmod=SHA256).digest()
    assert finished == expected
    assert _open_record(v["server_record_1"], v["s2c_key"], v["s2c_iv"], 1) == \
        v["server_record_1_plaintext"]
    assert _open_record(v["client_record_0"], v["c2s_key"], v["c2s_iv"], 0) == \
        v["client_record_0_plaintext"]


def test_vector_follows_the_spec_with_openssl_alone():
    """The same checks as above, each value recomputed with pyca/cryptography (OpenSSL)."""
    v = _stored()
    hello, cke = v["server_hello"], v["client_key_exchange"]
    host = serialization.load_pem_private_key(HOST_KEY.read_bytes(), None)
    sha = hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(sha), algorithm=sha, label=None)
    assert host.decrypt(cke[71:], oaep) == v["secret"]
    h = hashes.Hash(sha)
    h.update(hello + cke)
    th = h.finalize()
    assert th == v["transcript_hash"]
    client = x25519.X25519PrivateKey.from_private_bytes(bytes(range(0x80, 0xA0)))
    assert client.public_key().public_bytes_raw() == cke[5:37]
    shared = client.exchange(x25519.X25519PublicKey.from_public_bytes(hello[-64:-32]))
    assert shared == v["x25519_shared"]
    okm = OpenSSLHKDF(sha, 120, th, b"schat/1 keys").derive(v["secret"] + shared)
    assert okm == (v["c2s_key"] + v["c2s_iv"] + v["s2c_key"] + v["s2c_iv"] + v["finished_key"])

    def open_record(frame, key, iv, seq):
        nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")
        return AESOCB3(key).decrypt(nonce, frame[4:], frame[:4])

    mac = hmac.HMAC(v["finished_key"], sha)
    mac.update(b"schat/1 server finished" + v["transcript_hash"])
    assert open_record(v["server_finished"], v["s2c_key"], v["s2c_iv"], 0) == mac.finalize()
    assert open_record(v["server_record_1"], v["s2c_key"], v["s2c_iv"], 1) == \
        v["server_record_1_plaintext"]
    assert open_record(v["client_record_0"], v["c2s_key"], v["c2s_iv"], 0) == \
        v["client_record_0_plaintext"]
    # The server's host key as OpenSSL reads it is the one pycryptodome reads.
    assert host.private_numbers().public_numbers.n == RSA.import_key(HOST_KEY.read_bytes()).n
