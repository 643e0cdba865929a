"""Known-answer and failure tests for the crypto helpers (aead, dh, kdf, pubkey)."""

from __future__ import annotations


import pytest
from Crypto.PublicKey import RSA

from schat.crypto import aead, dh, kdf, keys, pubkey
from schat.crypto import backend as crypto_backend
from schat.errors import CryptoError, KeyFileError

BACKEND_NAMES = sorted(crypto_backend.BACKENDS)


@pytest.fixture(params=BACKEND_NAMES)
def backend(request) -> str:
    """Each known-answer and failure test runs through both libraries."""
    return request.param


RFC7253_KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
# RFC 7253 Appendix A: (nonce, associated data, plaintext, ciphertext ‖ tag).
RFC7253_SAMPLES = [
    ("BBAA99887766554433221100", "", "", "785407BFFFC8AD9EDCC5520AC9111EE6"),
    ("BBAA99887766554433221101", "0001020304050607", "0001020304050607",
     "6820B3657B6F615A5725BDA0D3B4EB3A257C9AF1F8F03009"),
    ("BBAA99887766554433221102", "0001020304050607", "", "81017F8203F081277152FADE694A0A00"),
    ("BBAA99887766554433221103", "", "0001020304050607",
     "45DD69F8F5AAE72414054CD1F35D82760B2CD00D2F99BFA9"),
    ("BBAA99887766554433221104", "000102030405060708090A0B0C0D0E0F",
     "000102030405060708090A0B0C0D0E0F",
     "571D535B60B277188BE5147170A9A22C3AD7A4FF3835B8C5701C1CCEC8FC3358"),
]


@pytest.mark.parametrize("nonce,ad,pt,expected", RFC7253_SAMPLES)
def test_ocb_rfc7253_samples(nonce, ad, pt, expected, backend):
    sealed = aead.seal(RFC7253_KEY, bytes.fromhex(nonce), bytes.fromhex(pt), bytes.fromhex(ad),
                       backend=backend)
    assert sealed == bytes.fromhex(expected)
    assert aead.open_(RFC7253_KEY, bytes.fromhex(nonce), sealed, bytes.fromhex(ad),
                      backend=backend) == bytes.fromhex(pt)


@pytest.mark.parametrize("keylen,expected", [
    (16, "67E944D23256C5E0B6C61FA22FDF1EA2"),
    (32, "D90EB8E9C977C88B79DD793D7FFA161C"),  # AEAD_AES_256_OCB_TAGLEN128: what schat uses
])
def test_ocb_rfc7253_iterated_vector(keylen, expected, backend):
    """RFC 7253 Appendix A's iterated test over 128 message lengths."""
    key = bytes(keylen - 1) + bytes([128])
    nonce = lambda x: x.to_bytes(12, "big")  # noqa: E731
    c = b""
    for i in range(128):
        s = bytes(i)
        c += aead.seal(key, nonce(3 * i + 1), s, s, backend)
        c += aead.seal(key, nonce(3 * i + 2), s, b"", backend)
        c += aead.seal(key, nonce(3 * i + 3), b"", s, backend)
    assert aead.seal(key, nonce(385), b"", c, backend) == bytes.fromhex(expected)


def test_ocb_rejects_tampering(backend):
    key, nonce = bytes(range(32)), bytes(12)
    sealed = aead.seal(key, nonce, b"secret text", b"header", backend)
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(CryptoError):
            aead.open_(key, nonce, bytes(bad), b"header", backend)
    with pytest.raises(CryptoError):
        aead.open_(key, nonce, sealed, b"other header", backend)
    with pytest.raises(CryptoError):
        aead.open_(key, bytes(11) + b"\x01", sealed, b"header", backend)
    with pytest.raises(CryptoError):
        aead.open_(key, nonce, sealed[:10], b"header", backend)
    ocb = aead.key(key, backend)
    for short in (b"", sealed[:15]):
        with pytest.raises(CryptoError):
            ocb.open(nonce, short, b"header")


def test_x25519_rfc7748_vector(backend):
    alice = dh.generate(lambda n: bytes.fromhex(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"), backend)
    bob = dh.generate(lambda n: bytes.fromhex(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"), backend)
    assert dh.public_bytes(alice, backend).hex() == \
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert dh.public_bytes(bob, backend).hex() == \
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    bob_public = dh.import_public(dh.public_bytes(bob, backend), backend)
    alice_public = dh.import_public(dh.public_bytes(alice, backend), backend)
    assert dh.shared_secret(alice, bob_public, backend).hex() == shared
    assert dh.shared_secret(bob, alice_public, backend).hex() == shared


# Points of small order on Curve25519 (and their non-canonical encodings): the
# import boundary refuses them, so no all-zero shared secret can be produced.
LOW_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize("point", LOW_ORDER)
def test_x25519_low_order_points_rejected_at_import(point, backend):
    with pytest.raises(CryptoError, match="low-order"):
        dh.import_public(bytes.fromhex(point), backend)
    top = bytearray.fromhex(point)
    top[31] |= 0x80  # bit 255 is masked on decoding: the same point
    with pytest.raises(CryptoError, match="low-order"):
        dh.import_public(bytes(top), backend)


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33)])
def test_x25519_wrong_length_rejected(raw, backend):
    with pytest.raises(CryptoError):
        dh.import_public(raw, backend)


def test_hkdf_rfc5869_case1(backend):
    okm = kdf.hkdf_sha256(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42,
                          backend=backend)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_hmac_sha256_rfc4231_case2(backend):
    mac = kdf.hmac_sha256(b"Jefe", b"what do ya want for nothing?", backend=backend)
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_sha256_fips180_abc(backend):
    assert kdf.sha256(b"a", b"bc", backend=backend).hex() == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_oaep_roundtrip_and_wrong_key(host_key, other_host_key, backend):
    wrapped = pubkey.oaep_wrap(host_key.public_key(), b"k" * 32, backend=backend)
    assert len(wrapped) == 384
    assert pubkey.oaep_unwrap(host_key, wrapped, backend) == b"k" * 32
    with pytest.raises(CryptoError):
        pubkey.oaep_unwrap(other_host_key, wrapped, backend)
    bad = bytearray(wrapped)
    bad[100] ^= 1
    with pytest.raises(CryptoError):
        pubkey.oaep_unwrap(host_key, bytes(bad), backend)
    for odd in (wrapped[:-1], wrapped + b"\x00", b""):
        with pytest.raises(CryptoError):
            pubkey.oaep_unwrap(host_key, odd, backend)


def test_oaep_fixed_randomness_is_deterministic(host_key):
    fixed = lambda n: b"\x42" * n  # noqa: E731
    a = pubkey.oaep_wrap(host_key.public_key(), b"s" * 32, fixed)
    b = pubkey.oaep_wrap(host_key.public_key(), b"s" * 32, fixed)
    assert a == b and pubkey.oaep_unwrap(host_key, a) == b"s" * 32


def test_pss_sign_verify(user_keys, backend):
    alice, bob = user_keys["alice"], user_keys["bob"]
    sig = pubkey.pss_sign(alice, b"data", backend=backend)
    assert pubkey.pss_verify(alice.public_key(), b"data", sig, backend)
    assert pubkey.pss_verify(alice, b"data", sig, backend)  # a private key verifies too
    assert not pubkey.pss_verify(alice.public_key(), b"data!", sig, backend)
    assert not pubkey.pss_verify(bob.public_key(), b"data", sig, backend)
    assert not pubkey.pss_verify(alice.public_key(), b"data", sig[:-1], backend)
    assert not pubkey.pss_verify(alice.public_key(), b"data", b"", backend)
    assert not pubkey.pss_verify(alice.public_key(), b"data", b"\xff" * 384, backend)
    with pytest.raises(CryptoError):
        pubkey.pss_sign(alice.public_key(), b"data", backend=backend)


@pytest.mark.parametrize("name", sorted(crypto_backend.BACKENDS))
def test_x25519_all_zero_result_refused(monkeypatch, name):
    a, b = dh.generate(backend=name), dh.generate(backend=name)
    peer = dh.import_public(dh.public_bytes(b, name), name)
    # No valid point gives X25519 = 0 (low-order points are refused at import),
    # so the primitive's result is replaced at the library edge.
    monkeypatch.setattr(crypto_backend.BACKENDS[name], "x25519", lambda *args: bytes(32))
    with pytest.raises(CryptoError, match="all-zero"):
        dh.shared_secret(a, peer, name)


def _public_der(n: int, e: int) -> bytes:
    return RSA.construct((n, e), consistency_check=False).export_key(format="DER")


@pytest.mark.parametrize("n_bits,e,refused", [
    (8192, 65537, None),
    (8193, 65537, "too large"),
    (16384, 65537, "too large"),
    (3072, 3, "exponent other than 65537"),
    (3072, 2 ** 3000 + 1, "exponent other than 65537"),
])
def test_rsa_public_key_bounds(host_key, n_bits, e, refused):
    n = host_key.n if n_bits == 3072 else 2 ** (n_bits - 1) + 1
    der = _public_der(n, e)
    if refused is None:
        assert keys.import_public_key(der).size_in_bits() == n_bits
    else:
        # Refused for its size or exponent, read from the key's numbers before any use.
        with pytest.raises(KeyFileError, match=refused):
            keys.import_public_key(der)


def test_public_key_parsed_once_per_distinct_bytes(user_keys):
    der = keys.public_der(user_keys["alice"])
    first = keys.import_public_key(der)
    assert keys.import_public_key(bytearray(der)) is first
    assert keys.import_public_key(keys.public_der(user_keys["bob"])) is not first
    bad = der[:-1]
    for _ in range(2):  # a refused key is refused every time, never cached
        with pytest.raises(KeyFileError):
            keys.import_public_key(bad)
