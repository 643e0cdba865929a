"""OpenSSL and pycryptodome give the same bytes: every value one backend makes,
the other accepts and reproduces. And only schat/crypto/ imports either library."""

from __future__ import annotations

import ast
import os
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from schat.crypto import aead, backend_openssl, dh, kdf, keys, pubkey
from schat.crypto import backend as crypto_backend
from schat.errors import CryptoError, RemoteProtocolError
from schat.protocol import events, messages as m
from schat.protocol.channel import MAX_PAYLOAD, SecureChannel
from schat.protocol.connection import ClientConnection, ServerConnection

OPENSSL, PYCRYPTODOME = crypto_backend.BACKENDS["openssl"], crypto_backend.BACKENDS["pycryptodome"]
PAIRS = [("openssl", "pycryptodome"), ("pycryptodome", "openssl")]
LIBRARIES = ("Crypto", "Cryptodome", "cryptography")
REPO = Path(__file__).resolve().parents[2]  # the checkout these tests belong to
KEY_DIR = Path(__file__).resolve().parent.parent / "data" / "keys"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- only schat/crypto/ imports a crypto library ------------------------------------

def crypto_imports(source: str) -> list:
    """(line, module) of every import of a crypto library in ``source``, static or dynamic."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [(node.lineno, n) for n in names if n.split(".")[0] in LIBRARIES]
    return found


def test_the_import_scanner_sees_every_form():
    source = ("import Crypto.Cipher\nfrom cryptography.hazmat import x\n"
              "import importlib\nimportlib.import_module('Cryptodome.Hash')\n"
              "__import__('cryptography')\nfrom schat.crypto import aead\nimport cryptographyx\n")
    assert [n for _, n in crypto_imports(source)] == [
        "Crypto.Cipher", "cryptography.hazmat", "Cryptodome.Hash", "cryptography"]


def test_only_schat_crypto_imports_a_crypto_library():
    offenders = []
    for package in ("schat", "bench", "fuzz"):
        files = sorted((REPO / package).rglob("*.py"))
        assert files, f"nothing to scan in {REPO / package}"
        for path in files:
            rel = path.relative_to(REPO)
            if rel.parts[:2] == ("schat", "crypto"):
                continue
            for line, name in crypto_imports(path.read_text(encoding="utf-8")):
                offenders.append(f"{rel}:{line} imports {name}")
    assert offenders == []


# --- AES-256-OCB --------------------------------------------------------------------

SIZES = st.one_of(st.integers(0, 300), st.sampled_from([0, 1, 15, 16, 17, 1024, MAX_PAYLOAD]))


@st.composite
def filled(draw, sizes=SIZES):
    """Bytes of a drawn size, filled from a drawn pattern (large sizes stay cheap)."""
    n = draw(sizes)
    pattern = draw(st.binary(min_size=1, max_size=64))
    return (pattern * (n // len(pattern) + 1))[:n]


@FAST
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       ad=filled(st.one_of(st.integers(0, 64), st.just(4))), plaintext=filled())
def test_ocb_same_bytes_and_each_opens_the_other(key, nonce, ad, plaintext):
    a = aead.key(key, "openssl")
    b = aead.key(key, "pycryptodome")
    sealed = a.seal(nonce, plaintext, ad)
    assert sealed == b.seal(nonce, plaintext, ad)
    assert len(sealed) == len(plaintext) + aead.TAG_SIZE
    assert b.open(nonce, sealed, ad) == plaintext == a.open(nonce, sealed, ad)
    flipped = bytearray(sealed)
    flipped[len(sealed) // 2] ^= 0x40
    for ocb in (a, b):
        with pytest.raises(CryptoError):
            ocb.open(nonce, bytes(flipped), ad)
        with pytest.raises(CryptoError):
            ocb.open(nonce, sealed, ad + b"\x00")


@FAST
@given(payloads=st.lists(filled(st.one_of(st.integers(1, 200), st.just(MAX_PAYLOAD))),
                         min_size=1, max_size=6),
       keys_=st.binary(min_size=88, max_size=88), start=st.integers(0, 2 ** 24 - 10))
def test_records_identical_across_backends(payloads, keys_, start):
    k1, iv1, k2, iv2 = keys_[:32], keys_[32:44], keys_[44:76], keys_[76:]
    ours = SecureChannel(k1, iv1, k2, iv2, send_seq=start, backend="openssl")
    theirs = SecureChannel(k1, iv1, k2, iv2, send_seq=start, backend="pycryptodome")
    peer_ossl = SecureChannel(k2, iv2, k1, iv1, recv_seq=start, backend="openssl")
    peer_pycd = SecureChannel(k2, iv2, k1, iv1, recv_seq=start, backend="pycryptodome")
    for payload in payloads:
        record = ours.seal(payload)
        assert record == theirs.seal(payload)
        assert peer_pycd.open(record[:4], record[4:]) == payload
        assert peer_ossl.open(record[:4], record[4:]) == payload
    reply = peer_ossl.seal(b"reply")
    assert reply == peer_pycd.seal(b"reply")
    assert ours.open(reply[:4], reply[4:]) == theirs.open(reply[:4], reply[4:]) == b"reply"


def test_channel_copies_keep_their_backend_and_sequence():
    import copy

    ch = SecureChannel(bytes(32), bytes(12), bytes(range(32)), bytes(12), send_seq=5,
                       backend="pycryptodome")
    twin = copy.deepcopy(ch)
    assert twin.backend == "pycryptodome" and twin.send_seq == 5
    assert twin.seal(b"x") == ch.seal(b"x")


# --- X25519, hashes, HKDF ----------------------------------------------------------

@FAST
@given(seed_a=st.binary(min_size=32, max_size=32), seed_b=st.binary(min_size=32, max_size=32))
def test_x25519_same_keys_and_secrets_across_backends(seed_a, seed_b):
    pub_a = dh.public_bytes(dh.generate(lambda n: seed_a, "openssl"), "openssl")
    assert pub_a == dh.public_bytes(dh.generate(lambda n: seed_a, "pycryptodome"), "pycryptodome")
    secrets = set()
    for mine, theirs in PAIRS + [("openssl", "openssl"), ("pycryptodome", "pycryptodome")]:
        b = dh.generate(lambda n: seed_b, mine)
        secrets.add(dh.shared_secret(b, dh.import_public(pub_a, mine), mine))
        a = dh.generate(lambda n: seed_a, theirs)
        peer = dh.import_public(dh.public_bytes(b, mine), theirs)
        secrets.add(dh.shared_secret(a, peer, theirs))
    assert len(secrets) == 1


P = 2 ** 255 - 19
EDGE_U = [0, 1, 2, 9, P - 2, P - 1, P, P + 1, P + 2, 2 ** 255 - 1,
          325606250916557431795983626356110631294008115727848805560023387167927233504,
          39382357235489614581723060781553021112529911719440698176882885853963445705823]


def _accepts(name, raw):
    try:
        dh.import_public(raw, name)
    except CryptoError:
        return False
    return True


@FAST
@given(raw=st.one_of(st.binary(min_size=32, max_size=32),
                     st.sampled_from(EDGE_U).flatmap(lambda u: st.sampled_from(
                         [u.to_bytes(32, "little"), (u | 1 << 255).to_bytes(32, "little")]))))
def test_x25519_both_backends_refuse_the_same_points(raw):
    verdict = _accepts("openssl", raw)
    assert verdict == _accepts("pycryptodome", raw)
    if verdict:  # an accepted point never yields the all-zero secret
        for name in crypto_backend.BACKENDS:
            assert dh.shared_secret(dh.generate(backend=name), dh.import_public(raw, name), name)


@FAST
@given(ikm=st.binary(max_size=100), salt=st.binary(max_size=64), info=st.binary(max_size=40),
       length=st.integers(1, 255))
def test_hashes_and_hkdf_identical(ikm, salt, info, length):
    for f, args in ((kdf.hkdf_sha256, (ikm, salt, info, length)), (kdf.hmac_sha256, (salt, ikm)),
                    (kdf.sha256, (ikm, salt, info))):
        assert f(*args, backend="openssl") == f(*args, backend="pycryptodome")


# --- RSA: OAEP and PSS -----------------------------------------------------------

@pytest.mark.parametrize("maker,reader", PAIRS)
def test_oaep_wrapped_by_one_unwraps_with_the_other(host_key, maker, reader):
    secret = os.urandom(32)
    wrapped = pubkey.oaep_wrap(host_key.public_key(), secret, backend=maker)
    assert pubkey.oaep_unwrap(host_key, wrapped, reader) == secret
    fixed = pubkey.oaep_wrap(host_key.public_key(), secret, lambda n: b"\x07" * n)
    assert pubkey.oaep_unwrap(host_key, fixed, reader) == secret


@pytest.mark.parametrize("maker,reader", PAIRS)
def test_pss_signed_by_one_verifies_with_the_other(user_keys, maker, reader):
    alice = user_keys["alice"]
    for data in (b"", b"transcript" * 50):
        sig = pubkey.pss_sign(alice, data, backend=maker)
        assert pubkey.pss_verify(alice.public_key(), data, sig, reader)
        assert not pubkey.pss_verify(alice.public_key(), data + b"!", sig, reader)
        bad = bytearray(sig)
        bad[-1] ^= 1
        assert not pubkey.pss_verify(alice.public_key(), data, bytes(bad), reader)
    fixed = pubkey.pss_sign(alice, b"data", lambda n: b"\x01" * n)
    assert fixed == pubkey.pss_sign(alice, b"data", lambda n: b"\x01" * n)
    assert pubkey.pss_verify(alice.public_key(), b"data", fixed, reader)


@pytest.mark.parametrize("name", sorted(crypto_backend.BACKENDS))
def test_pss_with_another_salt_length_is_refused(user_keys, name):
    """The salt is 32 bytes: both backends insist on exactly that length."""
    from Crypto.Hash import SHA256
    from Crypto.Signature import pss

    alice = user_keys["alice"]
    for salt in (0, 20, 64):
        sig = pss.new(alice, salt_bytes=salt).sign(SHA256.new(b"data"))
        assert not pubkey.pss_verify(alice.public_key(), b"data", sig, name)


class CountingBackend(types.ModuleType):
    """A backend that counts its OAEP decryptions (the private-key operation)."""

    def __init__(self, inner):
        super().__init__(inner.__name__)
        self.__dict__.update(inner.__dict__)
        self.calls = []

        def oaep_decrypt(key, wrapped):
            self.calls.append(wrapped)
            return inner.oaep_decrypt(key, wrapped)

        self.oaep_decrypt = oaep_decrypt


@pytest.mark.parametrize("name", sorted(crypto_backend.BACKENDS))
def test_implicit_rejection_decrypts_every_input_and_falls_back(host_key, name):
    counting = CountingBackend(crypto_backend.BACKENDS[name])
    fallback = b"F" * 32
    secret = os.urandom(32)
    public = host_key.public_key()
    modulus = host_key.n.to_bytes(384, "big")
    valid = pubkey.oaep_wrap(public, secret)
    short_secret = pubkey.oaep_wrap(public, b"s" * 31)
    flipped = bytearray(valid)
    flipped[200] ^= 1
    cases = [(valid, secret), (bytes(flipped), fallback), (short_secret, fallback),
             (modulus, fallback), (b"\xff" * 384, fallback), (bytes(384), fallback),
             (valid[:-1], fallback), (valid + b"\x00", fallback)]
    for wrapped, expected in cases:
        assert pubkey.oaep_unwrap_or(host_key, wrapped, 32, fallback, counting) == expected
    assert len(counting.calls) == len(cases)  # the private-key operation ran every time
    assert all(len(c) == 384 and c < modulus for c in counting.calls)


def test_host_key_converted_once_when_the_server_is_built(monkeypatch):
    """OpenSSL's form of the host key is made at the first ServerConnection, then reused."""
    host = keys.import_private_pem((KEY_DIR / "host.pem").read_bytes(), None)  # a fresh object
    real = backend_openssl.rsa
    made = []

    def numbers(*args, **kwargs):
        made.append(1)
        return real.RSAPrivateNumbers(*args, **kwargs)

    monkeypatch.setattr(backend_openssl, "rsa", types.SimpleNamespace(
        RSAPrivateNumbers=numbers, RSAPublicNumbers=real.RSAPublicNumbers,
        RSAPrivateKey=real.RSAPrivateKey, RSAPublicKey=real.RSAPublicKey))
    servers = [ServerConnection(host, backend="openssl") for _ in range(3)]
    assert made == [1]
    for server in servers:
        client = ClientConnection(backend="openssl")
        _complete(client, server)
    assert made == [1]


# --- whole connections: every pairing of backends talks --------------------------------

def _complete(client, server):
    client.receive_data(server.data_to_send())
    assert isinstance(client.next_event(), events.ServerKeyReceived)
    client.accept_server_key()
    server.receive_data(client.data_to_send())
    assert isinstance(server.next_event(), events.KeyExchangeReceived)
    server.complete_key_exchange()
    assert isinstance(server.next_event(), events.HandshakeComplete)
    client.receive_data(server.data_to_send())
    assert isinstance(client.next_event(), events.HandshakeComplete)
    assert client.transcript_hash == server.transcript_hash


@pytest.mark.parametrize("server_backend", sorted(crypto_backend.BACKENDS))
@pytest.mark.parametrize("client_backend", sorted(crypto_backend.BACKENDS))
def test_client_and_server_on_any_backends_talk(host_key, user_keys, server_backend,
                                                client_backend):
    server = ServerConnection(host_key, backend=server_backend)
    client = ClientConnection(backend=client_backend)
    _complete(client, server)
    alice = user_keys["alice"]
    from schat.protocol import auth

    fp = keys.fingerprint(host_key)
    sig = auth.sign_login(alice, "alice", fp, client.transcript_hash)
    client.send(m.LoginKey(user="alice", signature=sig))
    server.receive_data(client.data_to_send())
    (ev,) = [server.next_event()]
    assert auth.verify_login(alice.public_key(), "alice", fp, server.transcript_hash,
                             ev.message.signature)
    server.logged_in()
    # Twenty 4 KiB messages: a record filled to the frame cap, then the rest.
    says = [m.Say(text=chr(65 + i) * 4000, cid=str(i)) for i in range(20)]
    client.send(*says)
    wire = client.data_to_send()
    assert int.from_bytes(wire[:4], "big") > 60_000
    server.receive_data(wire)
    assert [server.next_event().message for _ in says] == says
    server.send_encoded([m.encode(m.Ping(n=3))] * 3)
    client.receive_data(server.data_to_send())
    assert [client.next_event().message for _ in range(3)] == [m.Ping(n=3)] * 3
    # A tampered record is refused whichever library opens it.
    client.send(m.Say(text="again", cid="2"))
    record = bytearray(client.data_to_send())
    record[-3] ^= 1
    server.receive_data(bytes(record))
    with pytest.raises(RemoteProtocolError, match="authentication"):
        server.next_event()


def test_unknown_backend_name_is_refused():
    with pytest.raises(ValueError, match="unknown crypto backend"):
        crypto_backend.get("libsodium")
    assert crypto_backend.get(None) is crypto_backend.DEFAULT


@pytest.mark.parametrize("name", sorted(crypto_backend.BACKENDS))
def test_receiving_key_object_is_kept_only_for_a_peer_that_talks(name):
    """A listener's few records each get a one-shot key object; a talker's channel keeps one."""
    from schat.protocol.channel import LAZY_OPEN_RECORDS

    k1, iv1, k2, iv2 = os.urandom(32), os.urandom(12), os.urandom(32), os.urandom(12)
    sender = SecureChannel(k1, iv1, k2, iv2, backend=name)
    receiver = SecureChannel(k2, iv2, k1, iv1, backend=name)
    for i in range(LAZY_OPEN_RECORDS + 5):
        record = sender.seal(b"record %d" % i)
        assert receiver.open(record[:4], record[4:]) == b"record %d" % i
        assert (receiver._open is None) == (i < LAZY_OPEN_RECORDS)
    forged = bytearray(sender.seal(b"x"))
    forged[-1] ^= 1
    with pytest.raises(RemoteProtocolError):
        receiver.open(bytes(forged[:4]), bytes(forged[4:]))


@pytest.mark.parametrize("name", sorted(crypto_backend.BACKENDS))
def test_a_channel_that_drops_and_remakes_its_key_objects_keeps_the_same_bytes(name):
    """trim() drops the key objects of an idle channel and they are made again when it is
    busy: every record, sealed one-shot or by a kept object, is the bytes the other
    library's channel (which never drops them) makes, and each side opens the other's."""
    from schat.protocol.channel import LAZY_OPEN_RECORDS, LAZY_SEAL_RECORDS

    other = "pycryptodome" if name == "openssl" else "openssl"
    k1, iv1, k2, iv2 = os.urandom(32), os.urandom(12), os.urandom(32), os.urandom(12)
    ours = SecureChannel(k1, iv1, k2, iv2, backend=name)
    twin = SecureChannel(k1, iv1, k2, iv2, backend=other)
    peer = SecureChannel(k2, iv2, k1, iv1, backend=other)
    peer_twin = SecureChannel(k2, iv2, k1, iv1, backend=name)
    sizes = iter(range(1, 10_000, 37))

    def both_ways(count):
        for _ in range(count):
            payload = os.urandom(next(sizes))
            record = ours.seal(payload)
            assert record == twin.seal(payload)
            assert peer.open(record[:4], record[4:]) == payload
            assert peer_twin.open(record[:4], record[4:]) == payload
            reply = peer.seal(payload[::-1])
            assert reply == peer_twin.seal(payload[::-1])
            assert ours.open(reply[:4], reply[4:]) == payload[::-1]
            assert twin.open(reply[:4], reply[4:]) == payload[::-1]

    both_ways(max(LAZY_SEAL_RECORDS, LAZY_OPEN_RECORDS) + 4)
    assert ours._seal is not None and ours._open is not None
    ours.trim()                      # records since the last sweep: kept
    assert ours._seal is not None and ours._open is not None
    ours.trim()                      # none since: both dropped
    assert ours._seal is None and ours._open is None
    both_ways(3)                     # a few records: one-shot objects again
    assert ours._seal is None and ours._open is None
    both_ways(max(LAZY_SEAL_RECORDS, LAZY_OPEN_RECORDS) + 4)
    assert ours._seal is not None and ours._open is not None
    forged = bytearray(peer.seal(b"x"))
    forged[-1] ^= 1
    with pytest.raises(RemoteProtocolError):
        ours.open(bytes(forged[:4]), bytes(forged[4:]))


def _dm_envelope_tests():
    """tests/e2e_dm/test_dm_envelope.py, for its known answer and its random source."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "e2e_dm" / "test_dm_envelope.py"
    spec = importlib.util.spec_from_file_location("dm_envelope_kat", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(crypto_backend.BACKENDS))
def test_dm_envelope_known_answer_through_each_backend(monkeypatch, user_keys, name):
    """The envelope vector (OCB content, OAEP wraps, PSS signature) is rebuilt and
    opened with either library as the process's default."""
    import hashlib

    from schat.crypto import envelope as ev

    kat = _dm_envelope_tests()
    monkeypatch.setattr(crypto_backend, "DEFAULT", crypto_backend.BACKENDS[name])
    data = ev.seal("known answer", "alice", user_keys["alice"], "bob",
                   user_keys["bob"].public_key(), kat.T0, randfunc=kat._counter_rand())
    assert hashlib.sha256(data).hexdigest() == kat.KAT_SHA256
    env = ev.parse(data)
    ev.verify(env, user_keys["alice"].public_key())
    assert ev.open_(env, "bob", user_keys["bob"]) == "known answer"
    assert ev.open_(env, "alice", user_keys["alice"]) == "known answer"
