"""Client authentication bound to the session.

A key login signs ``CONTEXT ‖ th`` with RSA-PSS (SHA-256). ``th`` is the
transcript hash of this very handshake, fresh on both sides, so a signature
captured in one session is useless in any other.
"""

from __future__ import annotations

from typing import Callable, Optional

from schat.crypto import pubkey
from schat.crypto.keys import RsaKey

CONTEXT = b"schat/1 login_key\x00"


def login_payload(transcript_hash: bytes) -> bytes:
    """The exact bytes a key login signs."""
    if len(transcript_hash) != 32:
        raise ValueError("a transcript hash is 32 bytes")
    return CONTEXT + transcript_hash


def sign_login(private_key: RsaKey, transcript_hash: bytes,
               randfunc: Optional[Callable[[int], bytes]] = None) -> bytes:
    """RSA-PSS signature proving possession of ``private_key`` in this session."""
    return pubkey.pss_sign(private_key, login_payload(transcript_hash), randfunc)


def verify_login(public_key: RsaKey, transcript_hash: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a key login for this session by ``public_key``."""
    if len(transcript_hash) != 32 or not isinstance(signature, (bytes, bytearray)):
        return False
    return pubkey.pss_verify(public_key, login_payload(transcript_hash), bytes(signature))
