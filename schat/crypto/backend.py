"""Which library computes schat's primitives: OpenSSL (pyca ``cryptography``) or pycryptodome.

Both backends are modules with the same functions and an ``Ocb`` class
(``backend_openssl``, ``backend_pycryptodome``) and produce the same bytes;
the test suite checks that across them. The default is OpenSSL, whose reused
OCB key object costs ~1 µs per record where pycryptodome's rebuilt cipher
costs ~30 µs (bench/README.md); pycryptodome is the fallback where the OpenSSL
build lacks OCB, and ``SCHAT_CRYPTO_BACKEND=pycryptodome`` selects it for a
whole process (the benchmark compares the two that way).

This module and the two backends are the only places that import either
library (tests/crypto/test_backends.py checks that by scanning the imports).
"""

from __future__ import annotations

import os
from types import ModuleType

from Crypto.Random import get_random_bytes

from schat.crypto import backend_openssl, backend_pycryptodome

ENV_VAR = "SCHAT_CRYPTO_BACKEND"
BACKENDS = {backend_openssl.NAME: backend_openssl, backend_pycryptodome.NAME: backend_pycryptodome}

#: The operating system's random source (pycryptodome's get_random_bytes: os.urandom).
random_bytes = get_random_bytes


def _default() -> ModuleType:
    chosen = os.environ.get(ENV_VAR, "").strip().lower()
    if chosen in BACKENDS:
        backend = BACKENDS[chosen]
    else:
        backend = backend_openssl
    if backend is backend_openssl and not backend_openssl.available():
        backend = backend_pycryptodome
    return backend


#: The backend every call uses unless it is given another.
DEFAULT: ModuleType = _default()


def get(name: "str | ModuleType | None" = None) -> ModuleType:
    """The backend called ``name`` (``"openssl"``, ``"pycryptodome"``), or DEFAULT for None."""
    if name is None:
        return DEFAULT
    if isinstance(name, ModuleType):
        return name
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown crypto backend {name!r} (known: {', '.join(BACKENDS)})") from None
