"""Fixtures shared by the whole suite.

Slow-by-design costs are made cheap through the same settings an operator has:
pre-generated RSA keys (loaded from tests/data/keys) and lighter scrypt
parameters via ``SCHAT_SCRYPT_N`` (password hashes) and ``SCHAT_KEY_SCRYPT_N``
(passphrase-protected key files).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from schat.crypto import keys

KEY_DIR = Path(__file__).parent / "data" / "keys"

# Lighter password hashing and key-file protection for the suite: operator settings,
# not test-only paths (tests/store/test_keyfiles.py checks the default cost).
os.environ.setdefault("SCHAT_SCRYPT_N", "1024")
os.environ.setdefault("SCHAT_KEY_SCRYPT_N", "1024")


@functools.lru_cache(maxsize=None)
def load_test_key(name: str) -> keys.RsaKey:
    """A pre-generated RSA-3072 private key: host, alice, bob, carol, other_host.

    Loaded once per run: importing a private key checks that its factors are prime
    (about 0.1 s each time), and a key object is never changed once made."""
    return keys.import_private_pem((KEY_DIR / f"{name}.pem").read_bytes(), None)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty data home, also exported as $SCHAT_HOME; cwd moved so no ./servers.json leaks in."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("SCHAT_HOME", str(h))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return h


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def host_key() -> keys.RsaKey:
    return load_test_key("host")


@pytest.fixture(scope="session")
def other_host_key() -> keys.RsaKey:
    return load_test_key("other_host")


@pytest.fixture(scope="session")
def user_keys() -> dict:
    return {name: load_test_key(name) for name in ("alice", "bob", "carol")}


@pytest.fixture
def spare_keys(monkeypatch):
    """``spare_keys(*names)``: from then on, key generation (seconds of CPU for each
    RSA-3072 key) hands out these pre-generated keys in turn, as a random source would
    hand out fresh ones; one more generation than names given fails the test."""
    def use(*names: str) -> None:
        spare = [load_test_key(name) for name in reversed(names)]

        def generate(*args, **kwargs):
            assert spare, "more keys were generated than the test gave"
            return spare.pop()
        monkeypatch.setattr(keys, "generate_rsa_key", generate)
    return use


# Real PostgreSQL and Redis, started on first use, one of each per run (tests/services.py).
from services import engines, pg_service, pg_url, redis_service, redis_url  # noqa: E402,F401
