"""Imported accounts: wrapped at import, old bare rows migrated, timing like any account."""

from __future__ import annotations

import hashlib
import sqlite3
import statistics
import time
from datetime import datetime, timezone

import pytest

from schat.crypto import keys
from schat.crypto.passwords import ScryptParams
from schat.store.accounts import MIGRATIONS, AccountStore
from schat.store.database import SqliteFile

# Heavier than the suite's 1024 so scrypt, not Python, dominates the timings.
TIMED = ScryptParams(log2_n=12)
LIGHT = ScryptParams(log2_n=10)


def sha(pw: str) -> str:
    return hashlib.sha256(pw.encode()).hexdigest()


def stored_hashes(path) -> list:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT password_hash FROM accounts ORDER BY name")]
    finally:
        conn.close()


def test_import_stores_no_bare_digest(tmp_path):
    path = tmp_path / "users.db"
    digests = [sha(f"old-pass-{i}") for i in range(5)]
    with AccountStore(path, hash_params=LIGHT) as store:
        report = store.import_legacy([f"u{i},{d}" for i, d in enumerate(digests)])
        assert report.imported == [f"u{i}" for i in range(5)]
        res = store.check_password("u3", "old-pass-3")
        assert (res.ok, res.needs_rehash) == (True, True)
    hashes = stored_hashes(path)
    assert all(h.startswith("$scrypt-sha256$ln=10,r=8,p=3$") for h in hashes)
    assert len(set(hashes)) == 5
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert not any(d.encode() in raw for d in digests)
    assert b"$sha256$" not in raw


def test_same_old_password_gets_different_salts(tmp_path):
    with AccountStore(tmp_path / "users.db", hash_params=LIGHT) as store:
        store.import_legacy([f"a,{sha('same-pw')}", f"b,{sha('same-pw')}"])
    first, second = stored_hashes(tmp_path / "users.db")
    assert first != second


def _median_times(store, attempts):
    times = {kind: [] for kind in attempts}
    for _ in range(40):
        for kind, (user, password) in attempts.items():
            started = time.perf_counter()
            res = store.check_password(user, password)
            times[kind].append(time.perf_counter() - started)
            assert not res.ok
    return times


def test_wrong_password_for_imported_account_costs_like_unknown_user(tmp_path):
    with AccountStore(tmp_path / "users.db", hash_params=TIMED) as store:
        store.import_legacy([f"olduser,{sha('old-pass-1')}"])
        store.add("newuser", "tangerine42")
        times = _median_times(store, {
            "imported": ("olduser", "not-the-password-9"),
            "native": ("newuser", "not-the-password-9"),
            "unknown": ("nobody_here", "not-the-password-9"),
        })
    # As for the server's unknown-user test: the medians may differ by no more
    # than the run-to-run noise of one kind (drift between halves, or spread).
    med = {k: statistics.median(v[5:]) for k, v in times.items()}
    noise = max(max(abs(statistics.median(v[5::2]) - statistics.median(v[6::2])),
                    statistics.quantiles(v[5:], n=4)[2] - statistics.quantiles(v[5:], n=4)[0])
                for v in times.values())
    assert abs(med["imported"] - med["unknown"]) < noise + 0.1 * med["unknown"], (med, noise)
    assert abs(med["native"] - med["unknown"]) < noise + 0.1 * med["unknown"], (med, noise)


def _schema(path, version: int, rows) -> None:
    """A database as schat with ``version`` migrations left it, holding ``rows``."""
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[:version]:
        for statement in step:
            conn.execute(SqliteFile.render(statement))
    conn.executemany(
        "INSERT INTO accounts (name, password_hash, legacy, created, last_login, locked,"
        " public_key, key_fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_old_schema_migrates_and_keeps_every_row(tmp_path, version, user_keys):
    path = tmp_path / "users.db"
    with AccountStore(tmp_path / "seed.db", hash_params=LIGHT) as seed:
        seed.add("native", "tangerine42")
    native_hash = stored_hashes(tmp_path / "seed.db")[0]
    der = keys.public_der(user_keys["bob"])
    fp = keys.fingerprint(der)
    _schema(path, version, [
        ("native", native_hash, 0, "2023-01-02T03:04:05Z", "2023-02-01T00:00:00Z", 0, None, None),
        ("Imported", "$sha256$" + sha("old-pass-1"), 1, "2023-01-02T03:04:05Z", None, 1, der, fp),
        ("other", "$sha256$" + sha("old-pass-2"), 1, "2023-01-03T00:00:00Z", None, 0, None, None),
    ])
    with AccountStore(path, hash_params=LIGHT) as store:
        assert store.schema_version == len(MIGRATIONS)
        accounts = {a.name: a for a in store.list()}
        assert sorted(accounts) == ["Imported", "native", "other"]
        imported = accounts["Imported"]
        assert (imported.legacy, imported.locked, imported.public_key_der, imported.key_fingerprint,
                imported.created) == (True, True, der, fp,
                                      datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
        assert accounts["native"].last_login == datetime(2023, 2, 1, tzinfo=timezone.utc)
        assert store.check_password("native", "tangerine42").ok
        res = store.check_password("imported", "old-pass-1")
        assert (res.ok, res.needs_rehash) == (True, True)
        assert not store.check_password("other", "old-pass-1").ok
        assert store.rehash("other", "old-pass-2")
        assert store.check_password("other", "old-pass-2").needs_rehash is False
        # The direct-message queue (migration 2) exists and works.
        with store._read() as conn:
            assert conn.execute("SELECT count(*) FROM mailbox").fetchone()[0] == 0
    hashes = stored_hashes(path)
    assert hashes[1] == native_hash
    assert not any(h.startswith("$sha256$") for h in hashes)


def test_migration_refuses_nothing_on_a_malformed_old_row(tmp_path):
    path = tmp_path / "users.db"
    _schema(path, 2, [("odd", "$sha256$not-hex", 1, "2023-01-01T00:00:00Z", None, 0, None, None)])
    with AccountStore(path, hash_params=LIGHT) as store:
        assert [a.name for a in store.list()] == ["odd"]
        assert not store.check_password("odd", "not-hex").ok
    assert not stored_hashes(path)[0].startswith("$sha256$")
