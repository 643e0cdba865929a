"""AES-256-OCB authenticated encryption (RFC 7253), 12-byte nonces, 16-byte tags.

OCB and not GCM: it is what ``schat/1`` records and envelopes use (the wire
format); both backends compute it. :func:`key` makes the object the record
layer keeps per direction (OpenSSL's key schedule set up once, reused for
every record); :func:`seal` and :func:`open_` are one-shot calls.
"""

from __future__ import annotations

from schat.crypto import backend as _backend
from schat.errors import CryptoError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


def key(key_bytes: bytes, backend=None):
    """An OCB key object with ``seal(nonce, plaintext, ad) -> ciphertext ‖ tag``
    and ``open(nonce, sealed, ad) -> plaintext`` (CryptoError on any mismatch)."""
    if len(key_bytes) != KEY_SIZE:
        raise CryptoError("an AES-256-OCB key is 32 bytes")
    return _backend.get(backend).Ocb(bytes(key_bytes))


def seal(key_bytes: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes = b"",
         backend=None) -> bytes:
    """Encrypt and authenticate: returns ``ciphertext ‖ tag`` (16-byte tag)."""
    return _backend.get(backend).Ocb(key_bytes).seal(nonce, plaintext, associated_data)


def open_(key_bytes: bytes, nonce: bytes, sealed: bytes, associated_data: bytes = b"",
          backend=None) -> bytes:
    """Check and decrypt ``ciphertext ‖ tag``; raise CryptoError on any mismatch."""
    if len(sealed) < TAG_SIZE:
        raise CryptoError("sealed data shorter than its tag")
    return _backend.get(backend).Ocb(key_bytes).open(nonce, sealed, associated_data)
