"""The OpenSSL backend (pyca ``cryptography``): the same functions as
:mod:`schat.crypto.backend_pycryptodome`, for the paths where measured speed
needs it (bench/README.md): the record layer, the server's RSA-OAEP
decryption, X25519, RSA-PSS, HKDF.

Keys stay the project's type (pycryptodome's ``RsaKey``, which loads, checks
and exports them); an RSA key is converted to OpenSSL's form on its first use
here and the result is kept on the key object, so a server's host key is
converted once (at start-up: ``ServerHandshake`` asks for it), never per
handshake. OpenSSL cannot take a caller's random source, so OAEP encryption
and PSS signing with a fixed ``randfunc`` (known-answer vectors) stay with
pycryptodome (:mod:`schat.crypto.pubkey` routes them).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519 as _x25519
from cryptography.hazmat.primitives.ciphers.aead import AESOCB3
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from schat.errors import CryptoError

NAME = "openssl"

_SHA256 = hashes.SHA256()
_OAEP = padding.OAEP(mgf=padding.MGF1(_SHA256), algorithm=_SHA256, label=None)
_PSS = padding.PSS(mgf=padding.MGF1(_SHA256), salt_length=32)
# The attributes under which an RsaKey keeps its OpenSSL form.
_PRIVATE_ATTR = "_schat_openssl_private"
_PUBLIC_ATTR = "_schat_openssl_public"


def available() -> bool:
    """True when this OpenSSL build has OCB (LibreSSL and BoringSSL have not)."""
    try:
        AESOCB3(bytes(32))
    except UnsupportedAlgorithm:
        return False
    return True


class Ocb:
    """AES-256-OCB under one key: OpenSSL's key schedule is set up once here and
    reused for every record (``seal`` is the C method itself, no Python frame)."""

    __slots__ = ("seal", "_decrypt")

    def __init__(self, key: bytes):
        cipher = AESOCB3(key)
        #: seal(nonce, plaintext, associated_data) -> ciphertext ‖ tag (16 bytes)
        self.seal = cipher.encrypt
        self._decrypt = cipher.decrypt

    def open(self, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes:
        """The plaintext of ``ciphertext ‖ tag``; CryptoError on any mismatch."""
        try:
            return self._decrypt(nonce, sealed, associated_data)
        except InvalidTag:
            raise CryptoError("authentication tag mismatch") from None
        except ValueError:  # shorter than the tag
            raise CryptoError("sealed data shorter than its tag") from None


# --- X25519 (RFC 7748) ---------------------------------------------------------

_P = 2 ** 255 - 19
_U_MASK = (1 << 255) - 1
# u-coordinates of the points of small order (RFC 7748 section 7, as reduced
# mod p after masking bit 255): X25519 of any of them is the all-zero string.
# pycryptodome refuses exactly these at import; refusing them here too keeps
# both backends' behaviour (and error) at the same place.
_SMALL_ORDER = frozenset({
    0, 1, _P - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})


def x25519_private(seed: bytes) -> _x25519.X25519PrivateKey:
    return _x25519.X25519PrivateKey.from_private_bytes(seed)


def x25519_public_bytes(private_key: _x25519.X25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def x25519_public(raw: bytes) -> _x25519.X25519PublicKey:
    """A peer's public key; points of small order raise CryptoError."""
    if (int.from_bytes(raw, "little") & _U_MASK) % _P in _SMALL_ORDER:
        raise CryptoError("invalid or low-order X25519 public key")
    return _x25519.X25519PublicKey.from_public_bytes(raw)


def x25519(private_key: _x25519.X25519PrivateKey, peer_public: _x25519.X25519PublicKey) -> bytes:
    try:
        return private_key.exchange(peer_public)
    except ValueError:  # OpenSSL refuses an all-zero result
        raise CryptoError("X25519 produced the all-zero shared secret") from None


# --- hashing ---------------------------------------------------------------------

def sha256(*parts: bytes) -> bytes:
    h = hashes.Hash(_SHA256)
    for part in parts:
        h.update(part)
    return h.finalize()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = _hmac.HMAC(key, _SHA256)
    h.update(data)
    return h.finalize()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(_SHA256, length, salt, info).derive(ikm)


# --- RSA -------------------------------------------------------------------------------

def prepare_private(private_key) -> rsa.RSAPrivateKey:
    """OpenSSL's form of a pycryptodome private key, made on first use and kept.

    OpenSSL's own key check (a primality test of p and q, ~0.1 s) is skipped:
    every private key reaches schat through pycryptodome's import or
    generation, which already checked p and q for primality, p·q = n,
    e·d ≡ 1 (mod λ(n)) and the CRT coefficient.
    """
    native = getattr(private_key, _PRIVATE_ATTR, None)
    if native is None:
        k = private_key
        p, q, d = int(k.p), int(k.q), int(k.d)
        numbers = rsa.RSAPrivateNumbers(
            p=p, q=q, d=d, dmp1=d % (p - 1), dmq1=d % (q - 1), iqmp=pow(q, -1, p),
            public_numbers=rsa.RSAPublicNumbers(int(k.e), int(k.n)))
        native = numbers.private_key(unsafe_skip_rsa_key_validation=True)
        setattr(private_key, _PRIVATE_ATTR, native)
    return native


def _public(key) -> rsa.RSAPublicKey:
    native = getattr(key, _PUBLIC_ATTR, None)
    if native is None:
        native = rsa.RSAPublicNumbers(int(key.e), int(key.n)).public_key()
        setattr(key, _PUBLIC_ATTR, native)
    return native


def oaep_encrypt(public_key, secret: bytes) -> bytes:
    try:
        return _public(public_key).encrypt(secret, _OAEP)
    except ValueError:
        raise CryptoError("secret too long for RSA-OAEP with this key") from None


def oaep_decrypt(private_key, wrapped: bytes) -> bytes:
    try:
        return prepare_private(private_key).decrypt(wrapped, _OAEP)
    except ValueError:
        raise CryptoError("RSA-OAEP decryption failed") from None


def pss_sign(private_key, data: bytes) -> bytes:
    return prepare_private(private_key).sign(data, _PSS, _SHA256)


def pss_verify(public_key, data: bytes, signature: bytes) -> bool:
    try:
        _public(public_key).verify(signature, data, _PSS, _SHA256)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
