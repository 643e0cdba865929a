"""The engine seam: the same SQL and the same guarantees on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from schat.errors import StoreError
from schat.store.database import ConstraintError, PerEngine
from schat.store.postgres import to_psycopg

WAIT = 20.0

SCHEMA = [
    ("CREATE TABLE things (id {SERIAL}, name {NOCASE} NOT NULL UNIQUE, data {BLOB}, n INTEGER)",
     "CREATE TABLE counter (v INTEGER NOT NULL)",
     "INSERT INTO counter (v) VALUES (0)"),
    (PerEngine(sqlite="CREATE VIEW engine_name AS SELECT 'sqlite' AS v",
               postgresql="CREATE VIEW engine_name AS SELECT 'postgresql'::text AS v"),),
]


@pytest.fixture
def db(engines):
    engine = engines.new()
    engine.migrate(SCHEMA, component="things")
    return engine


def test_placeholders_translate_outside_quoted_text():
    assert to_psycopg("SELECT ? WHERE a = ? AND b LIKE 'x?%''?' AND c % 2 = 0") == \
        "SELECT %s WHERE a = %s AND b LIKE 'x?%''?' AND c %% 2 = 0"


def test_same_sql_same_results(engines, db):
    assert engines.kind == db.name
    with db.transaction() as conn:
        cur = conn.execute("INSERT INTO things (name, data, n) VALUES (?, ?, ?)",
                           ("Alice", b"\x00\xffbytes", 1))
        first = cur.lastrowid
        conn.executemany("INSERT INTO things (name, data, n) VALUES (?, ?, ?)",
                         [("bob", None, 2), ("carol", b"", 3)])
        assert conn.execute("UPDATE things SET n = n + 10 WHERE n >= ?", (2,)).rowcount == 2
    with db.reading() as conn:
        assert conn.execute("SELECT v FROM engine_name").fetchone()[0] == engines.kind
        rows = conn.execute("SELECT id, name, data, n FROM things ORDER BY id").fetchall()
        # NOCASE: equality ignores ASCII case; the stored spelling comes back.
        assert conn.execute("SELECT name FROM things WHERE name = ?", ("ALICE",)).fetchone() \
            == ("Alice",)
        assert conn.execute("SELECT count(*) FROM things WHERE name LIKE ?", ("%o%",)
                            ).fetchone()[0] == 2
    assert [tuple(r[1:]) for r in rows] == [("Alice", b"\x00\xffbytes", 1), ("bob", None, 12),
                                            ("carol", b"", 13)]
    assert rows[0][0] == first and rows[0][0] < rows[1][0] < rows[2][0]
    assert isinstance(rows[0][2], bytes)


def test_unique_regardless_of_case_and_rollback(db):
    with db.transaction() as conn:
        conn.execute("INSERT INTO things (name) VALUES (?)", ("Alice",))
    with pytest.raises(ConstraintError) as err:
        with db.transaction() as conn:
            conn.execute("INSERT INTO things (name) VALUES (?)", ("zed",))
            conn.execute("INSERT INTO things (name) VALUES (?)", ("aLICE",))
    # SQLite-only code that catches sqlite3.IntegrityError still does.
    assert isinstance(err.value, sqlite3.IntegrityError)
    with db.reading() as conn:  # the whole transaction was rolled back
        assert conn.execute("SELECT name FROM things").fetchall() == [("Alice",)]


def test_an_exception_rolls_back(db):
    with pytest.raises(KeyError):
        with db.transaction() as conn:
            conn.execute("UPDATE counter SET v = 99")
            raise KeyError("boom")
    with db.reading() as conn:
        assert conn.execute("SELECT v FROM counter").fetchone()[0] == 0


def test_nesting_like_sqlite(db):
    with db.transaction() as conn:
        conn.execute("UPDATE counter SET v = 5")
        with db.reading() as inner:  # the same connection: sees its own write
            assert inner.execute("SELECT v FROM counter").fetchone()[0] == 5
        with pytest.raises((StoreError, sqlite3.OperationalError)):
            with db.transaction():
                pass
    with db.reading() as conn:
        assert conn.execute("SELECT v FROM counter").fetchone()[0] == 5


def test_read_modify_write_is_serialised(engines, db):
    """The BEGIN IMMEDIATE guarantee: no increment is lost, from threads and engines."""
    others = [engines.new() for _ in range(2)]
    start = threading.Barrier(6, timeout=WAIT)
    errors = []

    def bump(engine, times):
        try:
            start.wait()
            for _ in range(times):
                with engine.transaction() as conn:
                    v = conn.execute("SELECT v FROM counter").fetchone()[0]
                    conn.execute("UPDATE counter SET v = ?", (v + 1,))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(e, 25)) for e in [db, db, *others, *others]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []
    with db.reading() as conn:
        assert conn.execute("SELECT v FROM counter").fetchone()[0] == 150


def test_migrations_once_per_component(engines, db):
    assert db.version("things") == 2
    again = engines.new()
    again.migrate(SCHEMA, component="things")  # nothing to do
    with pytest.raises(StoreError) as err:
        again.migrate(SCHEMA[:1], component="things")
    assert "made by a newer schat" in str(err.value)
    if engines.kind == "postgresql":
        # Components are counted apart (SQLite has one version per file).
        assert again.version("other") == 0
        again.migrate([("CREATE TABLE other_t (x INTEGER)",)], component="other")
        assert (again.version("other"), again.version("things")) == (1, 2)


def test_concurrent_first_opens_migrate_once(engines):
    """Two nodes starting at once on an empty store: one migrates, the other waits."""
    opened, errors = [engines.new() for _ in range(3)], []
    start = threading.Barrier(3, timeout=WAIT)

    def run(engine):
        try:
            start.wait()
            engine.migrate(SCHEMA, component="things")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in opened]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []
    with opened[0].reading() as conn:
        assert conn.execute("SELECT v FROM counter").fetchall() == [(0,)]


def test_snapshot_sees_one_moment(engines, db):
    writer = engines.new()
    with db.snapshot() as conn:
        before = conn.execute("SELECT count(*) FROM things").fetchone()[0]
        with writer.transaction() as w:  # a writer is not blocked by the snapshot
            w.execute("INSERT INTO things (name) VALUES (?)", ("late",))
        assert conn.execute("SELECT count(*) FROM things").fetchone()[0] == before
    with db.reading() as conn:
        assert conn.execute("SELECT count(*) FROM things").fetchone()[0] == before + 1


def test_closed_engine(db):
    db.close()
    with pytest.raises(StoreError, match="closed"):
        with db.reading() as conn:
            conn.execute("SELECT 1")


def test_a_fresh_sqlite_file_opened_by_several_at_once(tmp_path):
    """Connections that find another one switching a new file to WAL wait for it
    (SQLite answers them SQLITE_BUSY at once, without its busy handler): three
    threads opening a fresh file together, a hundred times over, all get in."""
    from schat.store.database import SqliteFile

    failures = []
    for attempt in range(100):
        path = tmp_path / f"fresh{attempt}.db"
        start = threading.Barrier(3, timeout=WAIT)

        def run():
            engine = SqliteFile(path)
            try:
                start.wait()
                with engine.reading() as conn:
                    conn.execute("PRAGMA user_version").fetchone()
            except StoreError as exc:
                failures.append(str(exc))
            finally:
                engine.close()

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
    assert failures == []


def test_every_thread_s_connection_keeps_a_small_page_cache(tmp_path):
    """Each thread has its own SQLite connection; each one's page cache is capped
    (the kernel caches the file already), not SQLite's 2 MB default per connection."""
    from schat.store.database import CACHE_KIB, SqliteFile

    engine = SqliteFile(tmp_path / "cache.db")
    sizes = []

    def read():
        with engine.reading() as conn:
            sizes.append(conn.execute("PRAGMA cache_size").fetchone()[0])

    try:
        read()
        other = threading.Thread(target=read)
        other.start()
        other.join(WAIT)
    finally:
        engine.close()
    assert sizes == [-CACHE_KIB, -CACHE_KIB]
    assert CACHE_KIB < 2000
