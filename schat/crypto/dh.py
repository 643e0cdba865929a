"""X25519 ephemeral Diffie-Hellman (RFC 7748).

Private keys, public keys and results are all 32 bytes. A public key is
decoded as RFC 7748 section 5 says: bit 255 is masked and a value of p or more
is reduced modulo p. The points of small order (u = 0, 1, p - 1 and the two
points of order 8) are refused by :func:`import_public`, the one place that
check happens (both backends refuse the same set); :func:`shared_secret` still
rejects an all-zero result, as RFC 7748 section 6.1 asks.

Key objects belong to the backend that made them: pass the same ``backend``
to every call for one key (the default for all of them).
"""

from __future__ import annotations

from schat.crypto import backend as _backend
from schat.crypto.kdf import constant_time_equal
from schat.crypto.keys import RandFunc
from schat.errors import CryptoError

KEY_SIZE = 32

_ZERO = bytes(KEY_SIZE)


def generate(randfunc: RandFunc = None, backend=None):
    """A fresh X25519 private key from 32 random bytes (``randfunc`` for test vectors)."""
    seed = (randfunc or _backend.random_bytes)(KEY_SIZE)
    return _backend.get(backend).x25519_private(seed)


def public_bytes(private_key, backend=None) -> bytes:
    """The 32-byte public key of ``private_key``."""
    return _backend.get(backend).x25519_public_bytes(private_key)


def import_public(raw: bytes, backend=None):
    """Import a peer's 32-byte public key; low-order and malformed points raise CryptoError."""
    if len(raw) != KEY_SIZE:
        raise CryptoError("an X25519 public key is 32 bytes")
    return _backend.get(backend).x25519_public(bytes(raw))


def shared_secret(private_key, peer_public, backend=None) -> bytes:
    """X25519(private, peer); an all-zero result raises CryptoError."""
    secret = _backend.get(backend).x25519(private_key, peer_public)
    if constant_time_equal(secret, _ZERO):
        raise CryptoError("X25519 produced the all-zero shared secret")
    return secret
