"""Password hashing with scrypt (pycryptodome), in a self-describing format.

A stored hash records its own parameters, so they can be raised later without
invalidating existing accounts::

    $scrypt$ln=15,r=8,p=3$<salt, base64>$<hash, base64>

Accounts imported from the original chat script come with an unsalted SHA-256
of the password. That digest is never stored as is: it is wrapped in scrypt,
with the same parameters as every other hash, so a wrong password for an
imported account costs exactly as much as one for a native account or an
unknown user::

    $scrypt-sha256$ln=15,r=8,p=3$<salt, base64>$<scrypt over the SHA-256 hex, base64>

A wrapped hash verifies, but always reports that a rehash is needed, so the
server replaces it with a plain scrypt hash at the next successful login.

The current parameters are N=2^15, r=8, p=3 (OWASP's recommendation), unless the
operator sets ``SCHAT_SCRYPT_N`` (a power of two >= 1024) for a low-power host.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Optional, Tuple

from Crypto.Protocol.KDF import scrypt
from Crypto.Random import get_random_bytes

from schat.errors import ConfigError

SALT_BYTES = 16
HASH_BYTES = 32
DEFAULT_LOG2_N = 15
DEFAULT_R = 8
DEFAULT_P = 3
MIN_LOG2_N = 10
# 2^20 with r=8 is 1 GiB of memory per hash: anything above is a typo, not a setting.
MAX_LOG2_N = 20
MAX_R = 32
MAX_P = 16
SCRYPT_N_ENV = "SCHAT_SCRYPT_N"

_SCRYPT_RE = re.compile(
    r"\$(scrypt|scrypt-sha256)\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})"
)
_SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")
SCRYPT_PREFIX = "$scrypt$"
WRAPPED_PREFIX = "$scrypt-sha256$"


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters: N = 2**log2_n, block size r, parallelism p."""

    log2_n: int = DEFAULT_LOG2_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P

    def __post_init__(self):
        if not MIN_LOG2_N <= self.log2_n <= MAX_LOG2_N:
            raise ValueError(f"scrypt log2(N) must be in {MIN_LOG2_N}..{MAX_LOG2_N}")
        if not 1 <= self.r <= MAX_R or not 1 <= self.p <= MAX_P:
            raise ValueError("scrypt r or p out of range")

    @property
    def n(self) -> int:
        return 1 << self.log2_n

    def encode(self) -> str:
        return f"ln={self.log2_n},r={self.r},p={self.p}"


def current_params() -> ScryptParams:
    """The parameters new hashes use: the defaults, with N from ``$SCHAT_SCRYPT_N`` if set.

    Raises ConfigError when the setting is not a power of two in 1024..2^20.
    """
    n = scrypt_n_setting(SCRYPT_N_ENV)
    return ScryptParams() if n is None else ScryptParams(log2_n=n.bit_length() - 1)


def scrypt_n_setting(env: str) -> Optional[int]:
    """The scrypt cost N set by the environment variable ``env``; None when it is unset.

    Raises ConfigError when the setting is not a power of two in 1024..2^20.
    """
    raw = os.environ.get(env, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < (1 << MIN_LOG2_N) or n > (1 << MAX_LOG2_N) or n & (n - 1):
        raise ConfigError(
            f"{env} must be a power of two from {1 << MIN_LOG2_N} to "
            f"{1 << MAX_LOG2_N}, not {raw[:40]!r}"
        )
    return n


def normalize_password(password: str) -> str:
    """NFKC form of a password: what is hashed, so equivalent spellings log in alike."""
    return unicodedata.normalize("NFKC", password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    secret = normalize_password(password).encode("utf-8")
    return scrypt(secret, salt, HASH_BYTES, N=params.n, r=params.r, p=params.p)


def _encode(prefix: str, params: ScryptParams, salt: bytes, digest: bytes) -> str:
    return f"{prefix}{params.encode()}${_b64(salt)}${_b64(digest)}"


def hash_password(password: str, params: Optional[ScryptParams] = None,
                  salt: Optional[bytes] = None) -> str:
    """Hash ``password`` with a fresh 16-byte random salt; return the encoded string."""
    params = params or current_params()
    salt = get_random_bytes(SALT_BYTES) if salt is None else salt
    return _encode(SCRYPT_PREFIX, params, salt, _derive(password, salt, params))


def _sha256_hex(password: str) -> str:
    # The original script hashed the password exactly as typed (no normalisation).
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def wrap_sha256(hexdigest: str, params: Optional[ScryptParams] = None,
                salt: Optional[bytes] = None) -> str:
    """Store an imported unsalted SHA-256 hex digest as a ``$scrypt-sha256$`` hash.

    Raises ValueError unless ``hexdigest`` is 64 hexadecimal digits.
    """
    hexdigest = hexdigest.lower()
    if not _SHA256_HEX_RE.fullmatch(hexdigest):
        raise ValueError("a SHA-256 digest is 64 hexadecimal digits")
    params = params or current_params()
    salt = get_random_bytes(SALT_BYTES) if salt is None else salt
    return _encode(WRAPPED_PREFIX, params, salt, _derive(hexdigest, salt, params))


def parse_scrypt(encoded: str) -> Tuple[bool, ScryptParams, bytes, bytes]:
    """Split an encoded hash into (wrapped, params, salt, digest); ValueError if malformed.

    ``wrapped`` is True for a ``$scrypt-sha256$`` hash (an imported SHA-256).
    """
    m = _SCRYPT_RE.fullmatch(encoded)
    if not m:
        raise ValueError("not an encoded scrypt hash")
    params = ScryptParams(int(m.group(2)), int(m.group(3)), int(m.group(4)))
    salt = base64.b64decode(m.group(5), validate=True)
    digest = base64.b64decode(m.group(6), validate=True)
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("scrypt salt or digest too short")
    return m.group(1) == "scrypt-sha256", params, salt, digest


def verify_password(password: str, encoded: str,
                    params: Optional[ScryptParams] = None) -> Tuple[bool, bool]:
    """Check ``password`` against a stored hash: ``(ok, needs_rehash)``.

    Costs one scrypt with the stored parameters whatever the hash's kind.
    ``needs_rehash`` is meaningful only when ``ok``: the hash wraps an imported
    SHA-256, or was made with parameters other than ``params`` (default: the
    current ones). Raises ValueError when ``encoded`` is not a hash this module wrote.
    """
    params = params or current_params()
    wrapped, stored_params, salt, digest = parse_scrypt(encoded)
    secret = _sha256_hex(password) if wrapped else password
    computed = _derive(secret, salt, stored_params)
    ok = hmac.compare_digest(computed, digest)
    return ok, ok and (wrapped or stored_params != params or len(salt) != SALT_BYTES)


@functools.lru_cache(maxsize=8)
def _dummy_hash(params: ScryptParams) -> str:
    """A stored hash of no password: the form and parameters of a real one, with a random
    salt and digest (made without scrypt: nothing can match it but by chance, 2^-256)."""
    return _encode(SCRYPT_PREFIX, params, get_random_bytes(SALT_BYTES),
                   get_random_bytes(HASH_BYTES))


def dummy_verify(password: str, params: Optional[ScryptParams] = None) -> Tuple[bool, bool]:
    """Spend the time of a real verification and fail: ``(False, False)``.

    Used for an unknown user so that a login attempt takes as long as one with a
    wrong password, and the timing does not reveal which names exist: it is the very
    same check (parsing the stored form, scrypt, the comparison), against a hash of
    no password with the same parameters.
    """
    verify_password(password, _dummy_hash(params or current_params()), params)
    return False, False
