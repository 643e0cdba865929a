"""Client authentication bound to the session, the account and the server.

A key login signs, with RSA-PSS (SHA-256)::

    CONTEXT ‖ len(name) ‖ name_key(user) ‖ SHA-256(server key DER) ‖ th

``th`` is the transcript hash of this very handshake, fresh on both sides, so
a signature captured in one session is useless in any other. The account name
(canonical form) and the server's key fingerprint are named as well, so a
signature says on its own what it authorises: this account, on this server,
in this session. It cannot log in another account that shares the key, and
does not rest on the transcript alone to name the server (docs/PROTOCOL.md §5).
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable, Optional

from schat.crypto import pubkey
from schat.crypto.keys import RsaKey, normalize_fingerprint
from schat.protocol.schema import name_key

# Version 2 of the login signature: the first (b"schat/1 login_key\x00" ‖ th) named
# neither the account nor the server and is no longer accepted.
CONTEXT = b"schat/1 login_key v2\x00"


def server_key_digest(server_fingerprint: str) -> bytes:
    """The 32 bytes of SHA-256 behind a ``SHA256:<base64>`` fingerprint."""
    body = normalize_fingerprint(server_fingerprint)[len("SHA256:"):]
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):  # normalize_fingerprint has checked it
        raise ValueError("not a SHA256 fingerprint") from None


def login_payload(user: str, server_fingerprint: str, transcript_hash: bytes) -> bytes:
    """The exact bytes a key login signs."""
    if len(transcript_hash) != 32:
        raise ValueError("a transcript hash is 32 bytes")
    name = name_key(user).encode("ascii")
    if not 1 <= len(name) <= 32:
        raise ValueError("a user name is 1 to 32 characters")
    return (CONTEXT + bytes([len(name)]) + name + server_key_digest(server_fingerprint)
            + transcript_hash)


def sign_login(private_key: RsaKey, user: str, server_fingerprint: str, transcript_hash: bytes,
               randfunc: Optional[Callable[[int], bytes]] = None) -> bytes:
    """RSA-PSS signature proving possession of ``private_key`` for ``user`` on the server
    with ``server_fingerprint``, in the session with ``transcript_hash``."""
    return pubkey.pss_sign(private_key, login_payload(user, server_fingerprint, transcript_hash),
                           randfunc)


def verify_login(public_key: RsaKey, user: str, server_fingerprint: str,
                 transcript_hash: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a key login for ``user``, this server and this session."""
    if len(transcript_hash) != 32 or not isinstance(signature, (bytes, bytearray)):
        return False
    try:
        data = login_payload(user, server_fingerprint, transcript_hash)
    except (ValueError, UnicodeEncodeError):
        return False
    return pubkey.pss_verify(public_key, data, bytes(signature))
