"""X25519 ephemeral Diffie-Hellman (RFC 7748) over pycryptodome.

Public keys are 32 raw bytes. pycryptodome refuses low-order points (and the
all-zero encoding) when a public key is imported, so :func:`import_public`
is the one place that check happens; :func:`shared_secret` still rejects an
all-zero result, as RFC 7748 section 6.1 asks.
"""

from __future__ import annotations

import hmac
from typing import Callable, Optional

from Crypto.PublicKey import ECC
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.Random import get_random_bytes

from schat.errors import CryptoError

PUBLIC_SIZE = 32
SECRET_SIZE = 32

EccKey = ECC.EccKey
_ZERO = bytes(SECRET_SIZE)


def generate(randfunc: Optional[Callable[[int], bytes]] = None) -> EccKey:
    """A fresh X25519 private key from 32 random bytes (``randfunc`` for test vectors)."""
    seed = (randfunc or get_random_bytes)(SECRET_SIZE)
    return import_x25519_private_key(seed)


def public_bytes(private_key: EccKey) -> bytes:
    """The 32-byte public key of ``private_key``."""
    return private_key.public_key().export_key(format="raw")


def import_public(raw: bytes) -> EccKey:
    """Import a peer's 32-byte public key; low-order and malformed points raise CryptoError."""
    if len(raw) != PUBLIC_SIZE:
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
    if hmac.compare_digest(secret, _ZERO):
        raise CryptoError("X25519 produced the all-zero shared secret")
    return secret


def _identity(secret: bytes) -> bytes:
    return secret
