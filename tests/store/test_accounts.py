"""The account store on both engines (SQLite and PostgreSQL): CRUD, passwords, legacy
import, concurrency, bad files and databases."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest

from schat.crypto import keys
from schat.crypto.passwords import ScryptParams
from schat.errors import AccountError, PolicyError, StoreError
from schat.store import accounts as accounts_mod
from schat.store.accounts import MIGRATIONS, AccountStore
from schat.store.database import SqliteFile

LIGHT = ScryptParams(log2_n=10)
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(engines):
    s = AccountStore(engines.new(), hash_params=LIGHT, clock=lambda: T0, owns_engine=True)
    yield s
    s.close()


def reopen(engines, params=LIGHT) -> AccountStore:
    """Another store object (its own connections) on the same store."""
    return AccountStore(engines.new(), hash_params=params, owns_engine=True)


def test_files_are_private_and_schema_current(tmp_path):
    with AccountStore(tmp_path / "server" / "users.db", hash_params=LIGHT) as store:
        store.add("alice", "tangerine42")
        assert stat.S_IMODE(os.stat(tmp_path / "server").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
        assert store.schema_version == len(MIGRATIONS)
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_schema_current_and_reopened(engines, store):
    store.add("alice", "tangerine42")
    assert store.schema_version == len(MIGRATIONS)
    with reopen(engines) as again:  # nothing left to migrate; the data is there
        assert again.schema_version == len(MIGRATIONS)
        assert again.get("ALICE").name == "alice"


def test_add_get_list(store, user_keys):
    der = keys.public_der(user_keys["alice"])
    a = store.add("Alice", "tangerine42", public_key_der=der)
    assert (a.name, a.created, a.last_login, a.locked, a.legacy) == ("Alice", T0, None, False, False)
    assert a.key_fingerprint == keys.fingerprint(user_keys["alice"])
    assert store.get("ALICE").name == "Alice"
    assert store.get("nobody") is None
    store.add("bob", "tangerine43")
    assert [x.name for x in store.list()] == ["Alice", "bob"]


def test_names_unique_regardless_of_case(store):
    store.add("Alice", "tangerine42")
    with pytest.raises(AccountError) as err:
        store.add("aLiCe", "tangerine42")
    # The error names the stored spelling.
    assert str(err.value) == "user 'Alice' already exists (names are unique regardless of case)"


def test_policy_enforced_on_add_and_passwd(store):
    with pytest.raises(PolicyError):
        store.add("bad name", "tangerine42")
    with pytest.raises(PolicyError):
        store.add("carol", "short1")
    store.add("carol", "tangerine42")
    with pytest.raises(PolicyError):
        store.set_password("carol", "password1")


def test_bad_public_key_refused(store):
    with pytest.raises(AccountError) as err:
        store.add("dave", "tangerine42", public_key_der=b"not a key")
    assert str(err.value).startswith("the public key is not usable")
    assert store.get("dave") is None


def test_check_password(store):
    store.add("alice", "tangerine42")
    assert store.check_password("ALICE", "tangerine42").ok
    bad = store.check_password("alice", "tangerine43")
    assert (bad.ok, bad.needs_rehash, bad.account.name) == (False, False, "alice")
    unknown = store.check_password("mallory", "tangerine42")
    assert (unknown.ok, unknown.account) == (False, None)


def test_lock_unlock_remove_record_login(store):
    store.add("alice", "tangerine42")
    store.lock("alice")
    res = store.check_password("alice", "tangerine42")
    assert res.ok and res.locked
    store.unlock("alice")
    assert not store.get("alice").locked
    store.record_login("alice")
    assert store.get("alice").last_login == T0
    store.remove("alice")
    for op in (store.remove, store.lock, store.unlock, store.record_login):
        with pytest.raises(AccountError) as err:
            op("alice")
        assert str(err.value) == "no such user: 'alice'"


def test_set_password_and_public_key(store, user_keys):
    store.add("alice", "tangerine42")
    store.set_password("alice", "mandarin77")
    assert not store.check_password("alice", "tangerine42").ok
    assert store.check_password("alice", "mandarin77").ok
    store.set_public_key("alice", keys.public_der(user_keys["bob"]))
    assert store.get("alice").key_fingerprint == keys.fingerprint(user_keys["bob"])
    store.set_public_key("alice", None)
    assert store.get("alice").public_key_der is None


def test_rehash_when_parameters_change(engines):
    with reopen(engines) as old:
        old.add("alice", "tangerine42")
    with reopen(engines, ScryptParams(log2_n=11)) as new:
        res = new.check_password("alice", "tangerine42")
        assert (res.ok, res.needs_rehash) == (True, True)
        assert not new.rehash("alice", "wrong-pass1")
        assert new.rehash("alice", "tangerine42")
        assert new.check_password("alice", "tangerine42").needs_rehash is False
        assert not new.rehash("alice", "tangerine42")  # nothing left to do


def sha(pw: str) -> str:
    return hashlib.sha256(pw.encode()).hexdigest()


def test_legacy_import_and_upgrade(store):
    lines = [
        f"alice,{sha('old-pass')}",
        "",
        "# a comment",
        "no comma here",
        f"bad name,{sha('x')}",
        "carol,1234",
        f"ALICE,{sha('again')}",
        f"bob,{sha('pw').upper()}",
    ]
    report = store.import_legacy(lines)
    assert report.imported == ["alice", "bob"]
    assert report.skipped == []
    assert [n for n, _ in report.errors] == [4, 5, 6, 7]
    assert report.errors[0][1] == "expected username,sha256hex"
    assert report.errors[2][1] == "the hash is not 64 hexadecimal digits"
    assert report.errors[3][1] == "duplicate of line 1 ('ALICE')"
    alice = store.get("alice")
    assert alice.legacy
    # A legacy password need not meet today's policy: it must keep working.
    res = store.check_password("alice", "old-pass")
    assert (res.ok, res.needs_rehash) == (True, True)
    assert not store.check_password("alice", "old-pasS").ok
    assert store.rehash("alice", "old-pass")
    assert not store.get("alice").legacy
    res = store.check_password("alice", "old-pass")
    assert (res.ok, res.needs_rehash) == (True, False)
    assert store.check_password("bob", "pw").ok
    # Re-running skips what exists and never overwrites.
    again = store.import_legacy([f"alice,{sha('other')}"])
    assert (again.imported, again.skipped) == ([], [(1, "alice")])
    assert store.check_password("alice", "old-pass").ok


def test_threads_share_a_store(store):
    errors = []

    def work(i):
        try:
            store.import_legacy([f"t{i}_{j},{sha(str(j))}" for j in range(20)])
            store.list()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert store.count() == 80


WRITER = """
import sys, time, hashlib
from pathlib import Path
from schat.crypto.passwords import ScryptParams
from schat.paths import Home
from schat.store.location import open_store
where, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = where if where.startswith("postgresql:") else None
with open_store(url, Home(Path(where).parent.parent), hash_params=ScryptParams(10)) as s:
    print("ready", flush=True)
    sys.stdin.readline()  # the barrier: both writers start together
    started = time.monotonic()
    for i in range(n):
        s.import_legacy([prefix + str(i) + "," + hashlib.sha256(b"x").hexdigest()])
        s.record_login(prefix + str(i))
        if i % 5 == 0:
            s.add(prefix + "p" + str(i), "tangerine42")
    print(started, time.monotonic(), flush=True)
"""


def test_two_writer_processes_overlap(engines):
    reopen(engines).close()
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, engines.location, prefix, str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for prefix in ("a", "b")]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        spans = []
        for p in procs:
            out, err = p.communicate(timeout=50)
            assert p.returncode == 0, err
            spans.append(tuple(map(float, out.split())))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    # The two runs of writes really overlapped in time.
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    with reopen(engines) as s:
        names = {a.name for a in s.list()}
        assert len(names) == 2 * (n + n // 5)
        assert all(s.get(f"{p}{i}").last_login is not None for p in "ab" for i in range(n))
        assert s.check_password("ap35", "tangerine42").ok
    if engines.kind == "sqlite":
        conn = sqlite3.connect(engines.location)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


SIGNER = """
import json, sys, threading
from pathlib import Path
from schat.crypto.passwords import ScryptParams
from schat.errors import AccountError
from schat.paths import Home
from schat.store.location import open_store
where, tag = sys.argv[1], sys.argv[2]
url = where if where.startswith("postgresql:") else None
results = []
with open_store(url, Home(Path(where).parent.parent), hash_params=ScryptParams(10)) as s:
    print("ready", flush=True)
    sys.stdin.readline()  # the barrier: every process starts together

    def sign_up(thread):
        for n in range(6):
            try:
                s.add(f"Racer{n}", f"tangerine{n}{thread}")
                results.append((n, "won"))
            except AccountError as err:
                results.append((n, str(err)))

    threads = [threading.Thread(target=sign_up, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
print(json.dumps(results), flush=True)
"""


def test_racing_signups_of_one_name_have_one_winner(engines):
    """Three processes of two threads each create the same six names at once."""
    reopen(engines).close()
    procs = [subprocess.Popen([sys.executable, "-c", SIGNER, engines.location, str(i)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=50)
            assert p.returncode == 0, err
            results += json.loads(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for n in range(6):
        outcomes = [r for i, r in results if i == n]
        assert outcomes.count("won") == 1, outcomes
        assert all(r == f"user 'Racer{n}' already exists (names are unique regardless of case)"
                   for r in outcomes if r != "won"), outcomes
    with reopen(engines) as s:
        assert [a.name for a in s.list()] == [f"Racer{n}" for n in range(6)]


def test_not_a_database(tmp_path):
    path = tmp_path / "users.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError) as err:
        AccountStore(path, hash_params=LIGHT)
    assert str(err.value) == f"{path}: not a schat account database, or it is corrupt"


def test_foreign_sqlite_database(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE stuff (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as err:
        AccountStore(path, hash_params=LIGHT)
    assert str(err.value) == f"{path}: not a schat account database"


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "users.db"
    AccountStore(path, hash_params=LIGHT).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError) as err:
        AccountStore(path, hash_params=LIGHT)
    assert "made by a newer schat" in str(err.value)


def test_path_is_a_directory(tmp_path):
    with pytest.raises(StoreError) as err:
        AccountStore(tmp_path, hash_params=LIGHT)
    assert str(err.value) == f"{tmp_path}: is a directory, not an account database"


def test_malformed_stored_hash_fails_login(store):
    store.add("alice", "tangerine42")
    with store.transaction() as conn:
        conn.execute("UPDATE accounts SET password_hash = 'garbage'")
    assert not store.check_password("alice", "tangerine42").ok
    assert not store.rehash("alice", "tangerine42")


def test_closed_store(store):
    store.close()
    with pytest.raises(StoreError):
        store.list()


def test_a_store_from_before_the_abuse_limits_opens_with_its_names(tmp_path):
    # Schema 3 (before the lookalike and new-account rules), with names those rules
    # now refuse for new accounts: they stay, and log in as before.
    path = tmp_path / "users.db"
    conn = sqlite3.connect(path)
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
        conn.execute(SqliteFile.render(statement))
    from schat.crypto.passwords import hash_password
    for name in ("alice", "alice.", "."):
        conn.execute("INSERT INTO accounts (name, password_hash, created) VALUES (?, ?, ?)",
                     (name, hash_password(f"{name}-pass-1x", LIGHT), "2024-01-01T00:00:00Z"))
    conn.execute("INSERT INTO mailbox (recipient, sender, time, envelope, sender_key) "
                 "VALUES ('alice', 'alice.', 1, x'00', x'00')")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    store = AccountStore(path, hash_params=LIGHT)
    assert store.schema_version == len(MIGRATIONS)
    for name in ("alice", "alice.", "."):
        account = store.get(name)
        assert account.name == name and account.established
        assert store.check_password(name, f"{name}-pass-1x").ok
    with pytest.raises(AccountError, match="too like the existing"):
        store.ensure_new("ALICE_")
    with pytest.raises(PolicyError, match="at least one letter or digit"):
        store.add("..", "fresh-pass-123")
    newcomer = store.add("bob", "fresh-pass-123", established=False)
    assert not newcomer.established
    assert store.mark_established("bob") and not store.mark_established("bob")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT new_sender FROM mailbox").fetchall() == [(0,)]
    store.close()


def test_postgres_newer_schema_refused(pg_url):
    import psycopg

    from schat.store.postgres import PostgresEngine

    AccountStore(PostgresEngine(pg_url), hash_params=LIGHT, owns_engine=True).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schat_schema SET version = version + 1")
    with pytest.raises(StoreError) as err:
        AccountStore(PostgresEngine(pg_url), hash_params=LIGHT, owns_engine=True)
    newer = len(accounts_mod.MIGRATIONS) + 1
    assert f"made by a newer schat (accounts schema {newer}); upgrade schat" in str(err.value)


def test_postgres_foreign_database_refused(pg_url):
    import psycopg

    from schat.store.postgres import PostgresEngine

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    engine = PostgresEngine(pg_url)
    with pytest.raises(StoreError) as err:
        AccountStore(engine, hash_params=LIGHT)
    engine.close()
    assert str(err.value).endswith(": not a schat database (it holds 1 other table(s)); "
                                   "give schat a database of its own")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # left as it was
        assert conn.execute("SELECT to_regclass('accounts')").fetchone()[0] is None
