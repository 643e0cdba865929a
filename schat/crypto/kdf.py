"""Hashing, HMAC and HKDF (SHA-256) over pycryptodome."""

from __future__ import annotations

import hmac as _hmac

from Crypto.Hash import HMAC, SHA256
from Crypto.Protocol.KDF import HKDF

DIGEST_SIZE = 32


def sha256(*parts: bytes) -> bytes:
    """SHA-256 over the concatenation of ``parts``."""
    h = SHA256.new()
    for part in parts:
        h.update(part)
    return h.digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under ``key``."""
    return HMAC.new(key, data, digestmod=SHA256).digest()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt``, expand to ``length`` bytes with ``info``."""
    return HKDF(ikm, length, salt, SHA256, 1, context=info)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two byte strings without leaking where they differ."""
    return _hmac.compare_digest(a, b)
