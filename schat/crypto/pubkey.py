"""RSA operations: OAEP key wrapping and PSS signatures (SHA-256, MGF1-SHA-256, 32-byte salt).

Keys are the project's ``RsaKey`` objects whatever the backend. A caller's
``randfunc`` (known-answer vectors) routes OAEP encryption and PSS signing to
pycryptodome, the backend that can take one; everything else goes to the
backend asked for (the default: OpenSSL).
"""

from __future__ import annotations

from schat.crypto import backend as _backend
from schat.crypto import backend_pycryptodome
from schat.crypto.keys import RandFunc, RsaKey
from schat.errors import CryptoError


def oaep_wrap(public_key: RsaKey, secret: bytes, randfunc: RandFunc = None, backend=None) -> bytes:
    """Encrypt ``secret`` for ``public_key`` with RSA-OAEP (SHA-256, MGF1-SHA-256)."""
    if randfunc is not None:
        return backend_pycryptodome.oaep_encrypt(public_key, secret, randfunc)
    return _backend.get(backend).oaep_encrypt(public_key, secret)


def oaep_unwrap(private_key: RsaKey, wrapped: bytes, backend=None) -> bytes:
    """Decrypt an RSA-OAEP ciphertext; raise CryptoError when it does not decrypt."""
    return _backend.get(backend).oaep_decrypt(private_key, wrapped)


def oaep_unwrap_or(private_key: RsaKey, wrapped: bytes, size: int, fallback: bytes,
                   backend=None) -> bytes:
    """Implicit rejection: the ``size``-byte secret inside ``wrapped``, or ``fallback``.

    Every input costs the same work: a ciphertext of the wrong length or not
    below the modulus (which OpenSSL and pycryptodome refuse before the
    private-key operation) is replaced by one that is below it, decrypted, and
    its result thrown away; a failed decryption (OpenSSL's and pycryptodome's
    OAEP decoding are constant-time inside) and a plaintext of the wrong size
    both give ``fallback``, which the caller drew before the call, so the
    paths differ only by an exception raised and caught. docs/SECURITY.md has
    the measured reply times of valid and invalid ciphertexts.
    """
    k = (private_key.size_in_bits() + 7) // 8
    modulus = private_key.n.to_bytes(k, "big")
    usable = len(wrapped) == k and wrapped < modulus
    try:
        secret = _backend.get(backend).oaep_decrypt(
            private_key, wrapped if usable else b"\x00" + bytes(wrapped[1:k]).ljust(k - 1, b"\x00"))
    except CryptoError:
        secret = fallback
    return secret if usable and len(secret) == size else fallback


def pss_sign(private_key: RsaKey, data: bytes, randfunc: RandFunc = None, backend=None) -> bytes:
    """RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) signature over ``data``."""
    if randfunc is not None:
        return backend_pycryptodome.pss_sign(private_key, data, randfunc)
    if not private_key.has_private():
        raise CryptoError("signing needs the private part of the key")
    return _backend.get(backend).pss_sign(private_key, data)


def pss_verify(public_key: RsaKey, data: bytes, signature: bytes, backend=None) -> bool:
    """True when ``signature`` is a valid RSA-PSS signature of ``data`` by ``public_key``."""
    return _backend.get(backend).pss_verify(public_key, data, bytes(signature))
