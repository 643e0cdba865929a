"""Hashing, HMAC and HKDF (SHA-256)."""

from __future__ import annotations

import hmac as _hmac

from schat.crypto import backend as _backend

DIGEST_SIZE = 32


def sha256(*parts: bytes, backend=None) -> bytes:
    """SHA-256 over the concatenation of ``parts``."""
    return _backend.get(backend).sha256(*parts)


def hmac_sha256(key: bytes, data: bytes, backend=None) -> bytes:
    """HMAC-SHA256 of ``data`` under ``key``."""
    return _backend.get(backend).hmac_sha256(key, data)


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int, backend=None) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt``, expand to ``length`` bytes with ``info``."""
    return _backend.get(backend).hkdf_sha256(ikm, salt, info, length)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two byte strings without leaking where they differ."""
    return _hmac.compare_digest(a, b)
