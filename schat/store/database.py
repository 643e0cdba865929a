"""One SQLite file used by several threads and processes at once.

WAL mode, a busy timeout, short transactions and ``BEGIN IMMEDIATE`` for every
read-modify-write, so an admin command and a running server can use the file
at once. Within a process there is one SQLite connection per thread (created on
first use), so a server may call in from its thread pool; :meth:`close` closes
them all.

Schema changes are a list of migrations; ``PRAGMA user_version`` records how
many have been applied. A migration is either a sequence of SQL statements or a
callable ``step(conn, prepared)`` run inside the same transaction.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Sequence, Union

from schat.errors import StoreError
from schat.store.files import make_private_dirs

BUSY_TIMEOUT_S = 10.0

Migration = Union[Sequence[str], Callable[[sqlite3.Connection, Any], None]]


class SqliteFile:
    """Connections, transactions and migrations for one SQLite file."""

    #: What the file is called in error messages.
    kind = "database"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._local = threading.local()
        self._all: List[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._create_file()

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
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as err:
                raise self._error(err) from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _error(self, err: Exception) -> StoreError:
        text = str(err)
        if "not a database" in text or "malformed" in text:
            return StoreError(f"{self.path}: not a schat {self.kind}, or it is corrupt")
        if "locked" in text or "busy" in text:
            return StoreError(f"{self.path}: the {self.kind} is busy; try again")
        return StoreError(f"{self.path}: {self.kind} error ({text})")

    def reading(self):
        """Context manager: this thread's connection for reads (errors become StoreError)."""
        return self._read()

    def transaction(self):
        """Context manager: a ``BEGIN IMMEDIATE`` write transaction (see ``_write``)."""
        return self._write()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A short ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front,
        so a read-modify-write never fails half-way on a concurrent writer."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                raise self._error(exc) from None
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as err:
                raise self._error(err) from None

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
            for step in migrations[version:]:
                if callable(step):
                    step(conn, prepared)
                else:
                    for statement in step:
                        conn.execute(statement)
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

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """How many migrations the file has had."""
        with self._read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]
