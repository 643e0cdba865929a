"""RSA operations: OAEP key wrapping and PSS signatures (SHA-256, MGF1-SHA-256)."""

from __future__ import annotations

from Crypto.Cipher import PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.Signature import pss

from schat.crypto.keys import RandFunc, RsaKey
from schat.errors import CryptoError


def oaep_wrap(public_key: RsaKey, secret: bytes, randfunc: RandFunc = None) -> bytes:
    """Encrypt ``secret`` for ``public_key`` with RSA-OAEP (SHA-256, MGF1-SHA-256)."""
    cipher = PKCS1_OAEP.new(public_key, hashAlgo=SHA256, randfunc=randfunc)
    try:
        return cipher.encrypt(secret)
    except ValueError:
        raise CryptoError("secret too long for RSA-OAEP with this key") from None


def oaep_unwrap(private_key: RsaKey, wrapped: bytes) -> bytes:
    """Decrypt an RSA-OAEP ciphertext; raise CryptoError when it does not decrypt."""
    cipher = PKCS1_OAEP.new(private_key, hashAlgo=SHA256)
    try:
        return cipher.decrypt(wrapped)
    except (ValueError, TypeError):
        raise CryptoError("RSA-OAEP decryption failed") from None


def pss_sign(private_key: RsaKey, data: bytes, randfunc: RandFunc = None) -> bytes:
    """RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) signature over ``data``."""
    kwargs = {"rand_func": randfunc} if randfunc is not None else {}
    return pss.new(private_key, **kwargs).sign(SHA256.new(data))


def pss_verify(public_key: RsaKey, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid RSA-PSS signature of ``data`` by ``public_key``."""
    try:
        pss.new(public_key).verify(SHA256.new(data), signature)
    except (ValueError, TypeError):
        return False
    return True
