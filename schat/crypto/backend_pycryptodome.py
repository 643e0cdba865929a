"""The pycryptodome backend: every primitive schat's handshake and records use.

The independent reference for :mod:`schat.crypto.backend_openssl` (the test
suite checks that both produce the same bytes) and the only backend that can
take a caller's random source (known-answer vectors fix the OAEP seed and the
PSS salt). Functions here take and return the same values as the OpenSSL
backend's; keys of the project's type (:class:`~Crypto.PublicKey.RSA.RsaKey`)
are used as they are.
"""

from __future__ import annotations

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import HMAC, SHA256
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import ECC
from Crypto.Signature import pss

from schat.errors import CryptoError

NAME = "pycryptodome"
TAG_SIZE = 16

_new = AES.new
_OCB = AES.MODE_OCB


class Ocb:
    """AES-256-OCB under one key. pycryptodome's cipher objects are single-use
    (one nonce each), so every call builds one: its key schedule is redone per
    record, which is what this backend costs on the record layer."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes):
        self._key = bytes(key)

    def seal(self, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
        """``ciphertext ‖ tag`` (16-byte tag, OCB's default)."""
        cipher = _new(self._key, _OCB, nonce=nonce)
        if associated_data:
            cipher.update(associated_data)
        ciphertext, tag = cipher.encrypt_and_digest(plaintext)
        return ciphertext + tag

    def open(self, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes:
        """The plaintext of ``ciphertext ‖ tag``; CryptoError on any mismatch."""
        if len(sealed) < TAG_SIZE:
            raise CryptoError("sealed data shorter than its tag")
        cipher = _new(self._key, _OCB, nonce=nonce)
        if associated_data:
            cipher.update(associated_data)
        try:
            return cipher.decrypt_and_verify(sealed[:-TAG_SIZE], sealed[-TAG_SIZE:])
        except ValueError:
            raise CryptoError("authentication tag mismatch") from None


# --- X25519 (RFC 7748) ---------------------------------------------------------

def x25519_private(seed: bytes) -> ECC.EccKey:
    """The private key whose 32-byte scalar (clamped per RFC 7748) is ``seed``."""
    return import_x25519_private_key(seed)


def x25519_public_bytes(private_key: ECC.EccKey) -> bytes:
    return private_key.public_key().export_key(format="raw")


def x25519_public(raw: bytes) -> ECC.EccKey:
    """A peer's public key; points of small order raise CryptoError."""
    try:
        return import_x25519_public_key(raw)
    except ValueError:
        raise CryptoError("invalid or low-order X25519 public key") from None


def x25519(private_key: ECC.EccKey, peer_public: ECC.EccKey) -> bytes:
    """X25519(private, peer) (the caller refuses an all-zero result)."""
    try:
        return key_agreement(static_priv=private_key, static_pub=peer_public, kdf=_identity)
    except ValueError:
        raise CryptoError("X25519 key agreement failed") from None


def _identity(secret: bytes) -> bytes:
    return secret


# --- hashing ---------------------------------------------------------------------

def sha256(*parts: bytes) -> bytes:
    h = SHA256.new()
    for part in parts:
        h.update(part)
    return h.digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return HMAC.new(key, data, digestmod=SHA256).digest()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(ikm, length, salt, SHA256, 1, context=info)


# --- RSA: OAEP and PSS, SHA-256 with MGF1-SHA-256 -------------------------------------

def oaep_encrypt(public_key, secret: bytes, randfunc=None) -> bytes:
    cipher = PKCS1_OAEP.new(public_key, hashAlgo=SHA256, randfunc=randfunc)
    try:
        return cipher.encrypt(secret)
    except ValueError:
        raise CryptoError("secret too long for RSA-OAEP with this key") from None


def oaep_decrypt(private_key, wrapped: bytes) -> bytes:
    try:
        return PKCS1_OAEP.new(private_key, hashAlgo=SHA256).decrypt(wrapped)
    except (ValueError, TypeError):
        raise CryptoError("RSA-OAEP decryption failed") from None


def pss_sign(private_key, data: bytes, randfunc=None) -> bytes:
    """32-byte salt (the digest size, pycryptodome's default)."""
    kwargs = {"rand_func": randfunc} if randfunc is not None else {}
    return pss.new(private_key, **kwargs).sign(SHA256.new(data))


def pss_verify(public_key, data: bytes, signature: bytes) -> bool:
    try:
        pss.new(public_key).verify(SHA256.new(data), signature)
    except (ValueError, TypeError):
        return False
    return True


def prepare_private(private_key) -> None:
    """Nothing to convert: pycryptodome uses the project's key objects as they are."""
