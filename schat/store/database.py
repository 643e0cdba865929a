"""Where a store's SQL runs: one SQLite file, or a PostgreSQL database (the engine seam).

Store code (accounts, the mailbox, rooms...) is written once, against this shape::

    with engine.reading() as conn:        # reads; each statement sees what is committed
        row = conn.execute("SELECT ... WHERE name = ?", (name,)).fetchone()
    with engine.transaction() as conn:    # one write transaction: all or nothing
        conn.execute("UPDATE ...", (...))

``conn.execute(sql, params)`` takes ``?`` placeholders on both engines and returns
a cursor with ``fetchone()``, ``fetchall()``, ``rowcount`` and ``lastrowid``.
A transaction is serialised with every other ``transaction()`` on the same
store, in every thread and process (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an
advisory lock, :mod:`schat.store.postgres`), so a read-modify-write inside one
never races. ``transaction(key)`` narrows that to the transactions with the same
key (PostgreSQL; SQLite has a single writer whatever the key) for a
read-modify-write whose invariant is local to the key, such as one recipient's
mailbox. A constraint violation raises :class:`ConstraintError` on both.

This module holds the SQLite engine, :class:`SqliteFile`: WAL mode, a busy
timeout, one connection per thread (created on first use) so a server may call
in from its thread pool; :meth:`close` closes them all.

Schema changes are a list of migrations, recorded by ``PRAGMA user_version``
(SQLite) or a ``schat_schema`` table (PostgreSQL). A migration is a sequence of
statements or a callable ``step(conn, prepared)`` run in the same transaction.
A statement names the few types that differ as ``{ID}``, ``{SERIAL}``,
``{NOCASE}`` and ``{BLOB}`` (see :data:`SQLITE_TYPES`; ``INTEGER`` is 64-bit on
both, PostgreSQL's ``BIGINT``), or is a :class:`PerEngine` where whole
statements differ.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from schat.errors import StoreError
from schat.store.files import make_private_dirs

BUSY_TIMEOUT_S = 10.0

#: The column types migrations name in braces, as SQLite spells them.
SQLITE_TYPES: Dict[str, str] = {
    "ID": "INTEGER PRIMARY KEY",  # an integer key (may be reused after a delete)
    "SERIAL": "INTEGER PRIMARY KEY AUTOINCREMENT",  # an integer key never reused
    "NOCASE": "TEXT COLLATE NOCASE",  # text that compares (and is unique) ignoring ASCII case
    "BLOB": "BLOB",  # bytes
}
_TYPE_WORD = re.compile(r"\{(ID|SERIAL|NOCASE|BLOB)\}")


class PerEngine:
    """A migration statement whose text differs between engines (a trigger, say)."""

    def __init__(self, *, sqlite: str, postgresql: str):
        self.text = {"sqlite": sqlite, "postgresql": postgresql}


Statement = Union[str, PerEngine]
Migration = Union[Sequence[Statement], Callable[[Any, Any], None]]


class ConstraintError(StoreError, sqlite3.IntegrityError):
    """A write broke a uniqueness (or other) constraint, on either engine.

    Also an ``sqlite3.IntegrityError``, so SQLite-only code that catches that
    keeps working.
    """


class Engine:
    """What every engine offers; see the module docstring for the contract."""

    #: "sqlite" or "postgresql": picks :class:`PerEngine` texts.
    name = ""
    #: The spelling of each ``{TYPE}`` word.
    types: Dict[str, str] = SQLITE_TYPES

    @property
    def where(self) -> str:
        """What error messages call this store (a path, or a URL without its password)."""
        raise NotImplementedError

    def reading(self):
        """Context manager: a connection for reads."""
        raise NotImplementedError

    def transaction(self, key: Optional[str] = None):
        """Context manager: a serialised write transaction (see the module docstring)."""
        raise NotImplementedError

    def snapshot(self):
        """Context manager: reads that all see one consistent moment (for copying a store)."""
        raise NotImplementedError

    def migrate(self, migrations: Sequence[Migration], prepare=None,
                component: str = "schat") -> None:
        """Apply the migrations of ``component`` not applied yet, in one transaction."""
        raise NotImplementedError

    def version(self, component: str = "schat") -> int:
        """How many migrations ``component`` has had."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def id_position(self, conn, table: str, key: str) -> int:
        """The highest id ``table``'s integer key has handed out, deleted rows included."""
        raise NotImplementedError

    def raise_ids(self, conn, table: str, key: str, position: int) -> None:
        """Make the next generated id of ``table`` greater than ``position``."""
        raise NotImplementedError

    @classmethod
    def render(cls, statement: Statement) -> str:
        """The text of a migration statement for this engine."""
        if isinstance(statement, PerEngine):
            return statement.text[cls.name]
        return _TYPE_WORD.sub(lambda m: cls.types[m.group(1)], statement)

    def run_steps(self, conn, migrations: Sequence[Migration], prepared: Any) -> None:
        for step in migrations:
            if callable(step):
                step(conn, prepared)
            else:
                for statement in step:
                    conn.execute(self.render(statement))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _into_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode, waiting out other connections doing the same.

    Switching a new file to WAL needs an exclusive lock, and SQLite answers a
    connection that finds another one mid-switch with SQLITE_BUSY at once,
    without its busy handler: several processes opening a fresh store together
    (``serve --workers``, an admin command beside a starting server) would fail.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            text = str(err)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


# SQLite's own page cache per connection, in KiB (its default is 2,000). Every
# thread has its own connection and the kernel already caches the file, so a large
# cache mostly holds a second copy of account rows read once at login: on a server
# with 2,000 members it grew by ~0.8 KiB per member. The B-tree's inner pages, which
# every lookup and insert needs, fit many times over in 512 KiB.
CACHE_KIB = 512


class SqliteFile(Engine):
    """Connections, transactions and migrations for one SQLite file."""

    name = "sqlite"
    #: What the file is called in error messages.
    kind = "database"

    def __init__(self, path: str | os.PathLike, kind: Optional[str] = None):
        self.path = Path(path)
        if kind:
            self.kind = kind
        self._local = threading.local()
        self._all: List[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._create_file()

    @property
    def where(self) -> str:
        return str(self.path)

    def _create_file(self) -> None:
        try:
            make_private_dirs(self.path.parent)
            if not self.path.exists():
                # Create it 0600 ourselves: SQLite would use the umask, and gives
                # the -wal/-shm files the same mode as the database.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            elif self.path.is_dir():
                raise StoreError(f"{self.path}: is a directory, not an {self.kind}")
        except OSError as err:
            raise StoreError(f"{self.path}: cannot create the {self.kind} "
                             f"({err.strerror})") from None

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.path}: the {self.kind} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                # check_same_thread=False only so close() may close it from any
                # thread; each thread otherwise uses its own connection.
                conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                _into_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            except sqlite3.DatabaseError as err:
                raise self._error(err) from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _error(self, err: Exception) -> StoreError:
        text = str(err)
        if isinstance(err, sqlite3.IntegrityError):
            return ConstraintError(f"{self.path}: {text}")
        if "not a database" in text or "malformed" in text:
            return StoreError(f"{self.path}: not a schat {self.kind}, or it is corrupt")
        if "locked" in text or "busy" in text:
            return StoreError(f"{self.path}: the {self.kind} is busy; try again")
        return StoreError(f"{self.path}: {self.kind} error ({text})")

    def reading(self):
        """Context manager: this thread's connection for reads (errors become StoreError)."""
        return self._read()

    def transaction(self, key: Optional[str] = None):
        """Context manager: a ``BEGIN IMMEDIATE`` write transaction (see ``_write``).

        SQLite has one writer at a time, so ``key`` narrows nothing here.
        """
        return self._write()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    @contextmanager
    def _write(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """A short ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front,
        so a read-modify-write never fails half-way on a concurrent writer."""
        conn = self._conn()
        try:
            conn.execute(begin)
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, StoreError):
                raise self._error(exc) from None
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as err:
                raise self._error(err) from None

    def snapshot(self):
        """A deferred read transaction: in WAL mode it sees one moment, without
        blocking writers."""
        return self._write("BEGIN DEFERRED")

    def migrate(self, migrations: Sequence[Migration], prepare=None,
                component: str = "schat") -> None:
        """The file has one schema version, whatever the component."""
        self._migrate(migrations, prepare or (lambda conn, version: None))

    def _migrate(self, migrations: Sequence[Migration],
                 prepare: Callable[[sqlite3.Connection, int], Any] = lambda conn, version: None
                 ) -> None:
        """Apply the migrations not applied yet, in one transaction.

        ``prepare(conn, version)`` runs first, outside the write lock, for slow
        work a callable migration can use (it must re-check under the lock).
        """
        with self._read() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(migrations):
            raise StoreError(f"{self.path}: made by a newer schat (schema {version}); upgrade schat")
        if version == len(migrations):
            return
        with self._read() as conn:
            prepared = prepare(conn, version)
        with self._write() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
                if tables:
                    raise StoreError(f"{self.path}: not a schat {self.kind}")
            self.run_steps(conn, migrations[version:], prepared)
            conn.execute(f"PRAGMA user_version = {len(migrations)}")

    def close(self) -> None:
        """Close every connection this object opened (in any thread)."""
        with self._lock:
            conns, self._all = self._all, []
            self._closed = True
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def id_position(self, conn, table: str, key: str) -> int:
        used = conn.execute(f"SELECT coalesce(max({key}), 0) FROM {table}").fetchone()[0]
        # AUTOINCREMENT tables remember ids handed out and deleted since.
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone() \
            if self._has_sequences(conn) else None
        return max(used, seq[0] if seq else 0)

    def raise_ids(self, conn, table: str, key: str, position: int) -> None:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (table,)).fetchone()
        if not (sql and "AUTOINCREMENT" in sql[0].upper()):
            return  # SQLite's next key is then max(key) + 1: the rows decide
        if conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                        (position, table)).rowcount == 0:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                         (table, position))

    @staticmethod
    def _has_sequences(conn) -> bool:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                            "AND name = 'sqlite_sequence'").fetchone()[0] > 0

    def version(self, component: str = "schat") -> int:
        with self._read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    @property
    def schema_version(self) -> int:
        """How many migrations the file has had."""
        return self.version()


class Store:
    """A store's tables on an engine: a SQLite path, or an :class:`Engine` it is given.

    Subclasses hold the SQL and call :meth:`reading`/:meth:`transaction`
    (``_read``/``_write`` are the same). A store closes the engine it opened
    itself, or one it was handed with ``owns_engine=True``.
    """

    #: What a SQLite file of this store is called in error messages.
    kind = "database"
    #: Its migrations' row in PostgreSQL's schema table.
    component = "schat"

    def __init__(self, where: Union[str, os.PathLike, Engine], owns_engine: bool = False):
        if isinstance(where, Engine):
            self.db, self.owns_engine = where, owns_engine
        else:
            self.db, self.owns_engine = SqliteFile(where, kind=self.kind), True

    def reading(self):
        return self.db.reading()

    def transaction(self, key: Optional[str] = None):
        return self.db.transaction(key)

    _read = reading
    _write = transaction

    def _migrate(self, migrations: Sequence[Migration], prepare=None) -> None:
        self.db.migrate(migrations, prepare, self.component)

    @property
    def where(self) -> str:
        return self.db.where

    @property
    def path(self) -> Optional[Path]:
        """The SQLite file (None on PostgreSQL)."""
        return getattr(self.db, "path", None)

    @property
    def schema_version(self) -> int:
        return self.db.version(self.component)

    def close(self) -> None:
        if self.owns_engine:
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
