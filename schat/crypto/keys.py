"""RSA keys: generation, PEM/DER encoding and fingerprints (pycryptodome only).

Fingerprints follow OpenSSH's style: ``SHA256:`` followed by the unpadded base64
of SHA-256 over the DER (SubjectPublicKeyInfo) encoding of the public key.
"""

from __future__ import annotations

import base64
import functools
import hmac
from typing import Callable, Optional, Union

from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA

from schat.crypto.passwords import scrypt_n_setting
from schat.errors import KeyFileError

RSA_BITS = 3072
MIN_RSA_BITS = 2048
# Bounds on any key read from a file or a peer: a larger modulus or exponent
# would only make every later operation with it slower.
MAX_RSA_BITS = 8192
RSA_EXPONENT = 65537
# PKCS#8 protection of private keys at rest: a memory-hard KDF plus AES-256.
PKCS8_PROTECTION = "scryptAndAES256-CBC"
# scrypt's cost N for new key files: pycryptodome's default (2^17, 128 MiB) unless set.
KEY_SCRYPT_N_ENV = "SCHAT_KEY_SCRYPT_N"

RsaKey = RSA.RsaKey
RandFunc = Optional[Callable[[int], bytes]]


def generate_rsa_key(bits: int = RSA_BITS, randfunc: RandFunc = None) -> RsaKey:
    """A fresh RSA private key (e = 65537)."""
    return RSA.generate(bits, randfunc=randfunc)


def public_der(key: RsaKey) -> bytes:
    """The DER SubjectPublicKeyInfo bytes of ``key``'s public part."""
    return key.public_key().export_key(format="DER")


def fingerprint(key_or_der: Union[RsaKey, bytes]) -> str:
    """``SHA256:<base64>`` fingerprint of a public key (or of its DER bytes)."""
    der = key_or_der if isinstance(key_or_der, (bytes, bytearray)) else public_der(key_or_der)
    digest = SHA256.new(bytes(der)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def normalize_fingerprint(text: str) -> str:
    """Canonical form of a user-typed fingerprint (whitespace and padding removed).

    Raises ValueError when ``text`` is not a ``SHA256:`` fingerprint.
    """
    text = text.strip()
    if not text.startswith("SHA256:"):
        raise ValueError("a fingerprint looks like SHA256:<base64>")
    body = text[len("SHA256:"):].rstrip("=")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (ValueError, base64.binascii.Error):
        raise ValueError("a fingerprint looks like SHA256:<base64>") from None
    if len(raw) != 32:
        raise ValueError("a SHA256 fingerprint is 32 bytes long")
    return "SHA256:" + base64.b64encode(raw).decode("ascii").rstrip("=")


def fingerprints_equal(a: str, b: str) -> bool:
    """Compare two fingerprints in constant time."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def export_private_pem(key: RsaKey, passphrase: Optional[str]) -> bytes:
    """PKCS#8 PEM of ``key``; encrypted with ``passphrase`` unless it is None.

    Raises ConfigError when ``$SCHAT_KEY_SCRYPT_N`` is set but not a power of two
    in 1024..2^20 (the file's own parameters are read back when it is opened).
    """
    if passphrase is None:
        return key.export_key(format="PEM", pkcs=8)
    n = scrypt_n_setting(KEY_SCRYPT_N_ENV)
    return key.export_key(
        format="PEM", pkcs=8, passphrase=passphrase, protection=PKCS8_PROTECTION,
        prot_params=None if n is None else {"iteration_count": n},
    )


def export_public_pem(key: RsaKey) -> bytes:
    """PEM (SubjectPublicKeyInfo) of ``key``'s public part."""
    return key.public_key().export_key(format="PEM")


def is_encrypted_pem(data: bytes) -> bool:
    """True when ``data`` is a passphrase-protected private key PEM."""
    return b"ENCRYPTED" in data[:200]


def import_private_pem(data: bytes, passphrase: Optional[str]) -> RsaKey:
    """Load a private key; raise KeyFileError on a corrupt file or wrong passphrase."""
    encrypted = is_encrypted_pem(data)
    if encrypted and not passphrase:
        raise KeyFileError("the private key is protected by a passphrase; none was given")
    try:
        key = RSA.import_key(data, passphrase=passphrase if encrypted else None)
    except (ValueError, IndexError, TypeError):
        if encrypted:
            raise KeyFileError("wrong passphrase, or the private key file is corrupt") from None
        raise KeyFileError("not a valid RSA private key (corrupt or truncated PEM)") from None
    if not key.has_private():
        raise KeyFileError("this file holds a public key, not a private key")
    _check_size(key)
    return key


def import_public_key(data: bytes) -> RsaKey:
    """Load an RSA public key from PEM or DER; raise KeyFileError when invalid.

    The same bytes give the same key object (an LRU cache of
    PUBLIC_KEY_CACHE keys): a server parses each member's key at every login
    and every signed envelope, and parsing costs several times the signature
    check; the cached object also keeps its OpenSSL form
    (schat.crypto.backend_openssl). A refused key is not cached.
    """
    return _import_public_key(bytes(data))


PUBLIC_KEY_CACHE = 1024


@functools.lru_cache(maxsize=PUBLIC_KEY_CACHE)
def _import_public_key(data: bytes) -> RsaKey:
    try:
        key = RSA.import_key(data)
    except (ValueError, IndexError, TypeError):
        raise KeyFileError("not a valid RSA public key (corrupt or truncated)") from None
    _check_size(key)
    return key.public_key()


def _check_size(key: RsaKey) -> None:
    if key.size_in_bits() < MIN_RSA_BITS:
        raise KeyFileError(
            f"RSA key of {key.size_in_bits()} bits is too small (at least {MIN_RSA_BITS})"
        )
    if key.size_in_bits() > MAX_RSA_BITS:
        raise KeyFileError(
            f"RSA key of {key.size_in_bits()} bits is too large (at most {MAX_RSA_BITS})"
        )
    if key.e != RSA_EXPONENT:
        raise KeyFileError(f"RSA key has a public exponent other than {RSA_EXPONENT}")
