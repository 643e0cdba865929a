"""X25519 ephemeral Diffie-Hellman (RFC 7748) over pycryptodome.

Private keys, public keys and results are all 32 bytes. A public key is
decoded as RFC 7748 section 5 says: bit 255 is masked and a value of p or more
is reduced modulo p. pycryptodome then refuses the points of small order
(u = 0, 1, p - 1 and the two points of order 8), so :func:`import_public` is
the one place that check happens; :func:`shared_secret` still rejects an
all-zero result, as RFC 7748 section 6.1 asks.
"""

from __future__ import annotations

from Crypto.PublicKey import ECC
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Random import get_random_bytes

from schat.crypto.kdf import constant_time_equal
from schat.crypto.keys import RandFunc
from schat.errors import CryptoError

KEY_SIZE = 32

EccKey = ECC.EccKey
_ZERO = bytes(KEY_SIZE)


def generate(randfunc: RandFunc = None) -> EccKey:
    """A fresh X25519 private key from 32 random bytes (``randfunc`` for test vectors)."""
    seed = (randfunc or get_random_bytes)(KEY_SIZE)
    return import_x25519_private_key(seed)


def public_bytes(private_key: EccKey) -> bytes:
    """The 32-byte public key of ``private_key``."""
    return private_key.public_key().export_key(format="raw")


def import_public(raw: bytes) -> EccKey:
    """Import a peer's 32-byte public key; low-order and malformed points raise CryptoError."""
    if len(raw) != KEY_SIZE:
        raise CryptoError("an X25519 public key is 32 bytes")
    try:
        return import_x25519_public_key(bytes(raw))
    except ValueError:
        raise CryptoError("invalid or low-order X25519 public key") from None


def shared_secret(private_key: EccKey, peer_public: EccKey) -> bytes:
    """X25519(private, peer); an all-zero result raises CryptoError."""
    try:
        secret = key_agreement(static_priv=private_key, static_pub=peer_public, kdf=_identity)
    except ValueError:
        raise CryptoError("X25519 key agreement failed") from None
    if constant_time_equal(secret, _ZERO):
        raise CryptoError("X25519 produced the all-zero shared secret")
    return secret


def _identity(secret: bytes) -> bytes:
    return secret
