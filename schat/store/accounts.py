"""The account store: one SQLite file (server/users.db) shared by the server and `schat user`.

Concurrency: WAL mode, a busy timeout, short transactions and ``BEGIN
IMMEDIATE`` for every read-modify-write, so an admin command and a running
server can use the file at once. Within a process the store keeps one SQLite
connection per thread (created on first use), so the server may call it from
its thread pool; :meth:`AccountStore.close` closes them all.

Slow work (scrypt) always happens outside a transaction, so a login never
holds the write lock while hashing.

Schema changes are a list of migrations; ``PRAGMA user_version`` records how
many have been applied. Later features append to :data:`MIGRATIONS`.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from schat.crypto import keys, passwords
from schat.errors import AccountError, KeyFileError, PolicyError, StoreError
from schat.store.policy import check_password_policy, validate_username

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0

# Each entry is a list of statements run in one transaction; never edit an applied one.
MIGRATIONS: List[Sequence[str]] = [
    (
        """CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT NOT NULL,
            legacy INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL,
            last_login TEXT,
            locked INTEGER NOT NULL DEFAULT 0,
            public_key BLOB,
            key_fingerprint TEXT
        )""",
    ),
    # 2: stored direct-message envelopes (schat.server.mailbox), in delivery order;
    # a removed account's queue goes with it.
    (
        """CREATE TABLE mailbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            recipient TEXT NOT NULL COLLATE NOCASE,
            sender TEXT NOT NULL,
            time INTEGER NOT NULL,
            envelope BLOB NOT NULL,
            sender_key BLOB NOT NULL
        )""",
        "CREATE INDEX mailbox_by_recipient ON mailbox (recipient, id)",
        """CREATE TRIGGER mailbox_drop_account AFTER DELETE ON accounts
            BEGIN DELETE FROM mailbox WHERE recipient = OLD.name; END""",
    ),
]

_COLUMNS = "name, legacy, created, last_login, locked, public_key, key_fingerprint"


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_utc(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Account:
    """One account as stored (never its password hash)."""

    name: str
    created: datetime
    last_login: Optional[datetime]
    locked: bool
    legacy: bool
    public_key_der: Optional[bytes]
    key_fingerprint: Optional[str]

    def to_json(self) -> dict:
        """Plain JSON-ready dict; times in UTC ISO 8601."""
        return {
            "name": self.name,
            "created": _utc_text(self.created),
            "last_login": _utc_text(self.last_login) if self.last_login else None,
            "locked": self.locked,
            "legacy": self.legacy,
            "key_fingerprint": self.key_fingerprint,
        }


@dataclass(frozen=True)
class CheckResult:
    """Outcome of a password check. ``account`` is None for an unknown user."""

    ok: bool
    needs_rehash: bool
    account: Optional[Account] = None

    @property
    def locked(self) -> bool:
        return bool(self.account and self.account.locked)


@dataclass
class ImportReport:
    """What an import did: names imported, ``(line, name)`` skipped as existing,
    ``(line, problem)`` for lines that could not be used."""

    imported: List[str] = field(default_factory=list)
    skipped: List[Tuple[int, str]] = field(default_factory=list)
    errors: List[Tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class LegacyEntry:
    line: int
    name: str
    hexdigest: str


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def parse_legacy_lines(lines: Iterable[str]) -> Tuple[ImportReport, List[LegacyEntry]]:
    """Parse users.txt lines; blank lines and ``#`` comments are ignored."""
    report = ImportReport()
    entries: List[LegacyEntry] = []
    seen: dict = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, digest = line.partition(",")
        name, digest = name.strip(), digest.strip()
        if not sep or "," in digest:
            report.errors.append((number, "expected username,sha256hex"))
            continue
        try:
            validate_username(name)
        except PolicyError as err:
            report.errors.append((number, str(err)))
            continue
        if not _HEX64.fullmatch(digest):
            report.errors.append((number, "the hash is not 64 hexadecimal digits"))
            continue
        folded = name.casefold()
        if folded in seen:
            report.errors.append((number, f"duplicate of line {seen[folded]} ({name!r})"))
            continue
        seen[folded] = number
        entries.append(LegacyEntry(number, name, digest.lower()))
    return report, entries


def _row_to_account(row) -> Account:
    return Account(
        name=row[0],
        legacy=bool(row[1]),
        created=_parse_utc(row[2]),
        last_login=_parse_utc(row[3]),
        locked=bool(row[4]),
        public_key_der=bytes(row[5]) if row[5] is not None else None,
        key_fingerprint=row[6],
    )


class AccountStore:
    """Accounts in a SQLite file; see the module docstring for the concurrency model."""

    def __init__(self, path: str | os.PathLike,
                 hash_params: Optional[passwords.ScryptParams] = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.path = Path(path)
        self.hash_params = hash_params or passwords.current_params()
        self._clock = clock
        self._local = threading.local()
        self._all: List[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._create_file()
        self._migrate()

    # -- connection handling -------------------------------------------------

    def _create_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # Create it 0600 ourselves: SQLite would use the umask, and gives
                # the -wal/-shm files the same mode as the database.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            elif self.path.is_dir():
                raise StoreError(f"{self.path}: is a directory, not an account database")
        except OSError as err:
            raise StoreError(f"{self.path}: cannot create the account database "
                             f"({err.strerror})") from None

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.path}: the account store is closed")
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
            return StoreError(f"{self.path}: not a schat account database, or it is corrupt")
        if "locked" in text or "busy" in text:
            return StoreError(f"{self.path}: the account database is busy; try again")
        return StoreError(f"{self.path}: account database error ({text})")

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

    def _migrate(self) -> None:
        with self._read() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: made by a newer schat (schema {version}); upgrade schat")
        if version == len(MIGRATIONS):
            return
        with self._write() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
                if tables:
                    raise StoreError(f"{self.path}: not a schat account database")
            for index in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[index]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._lock:
            conns, self._all = self._all, []
            self._closed = True
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> "AccountStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    # -- queries -------------------------------------------------------------

    def get(self, name: str) -> Optional[Account]:
        """The account called ``name`` (any case), or None."""
        with self._read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM accounts WHERE name = ?",
                               (name,)).fetchone()
        return _row_to_account(row) if row else None

    def require(self, name: str) -> Account:
        """Like :meth:`get`, but an unknown name is an AccountError."""
        account = self.get(name)
        if account is None:
            raise AccountError(f"no such user: {name!r}")
        return account

    def list(self) -> List[Account]:
        """Every account, sorted by name regardless of case."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY name").fetchall()
        return [_row_to_account(r) for r in rows]

    def count(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT count(*) FROM accounts").fetchone()[0]

    # -- changes -------------------------------------------------------------

    def add(self, name: str, password: str, public_key_der: Optional[bytes] = None) -> Account:
        """Create an account; the name and password must meet the policy."""
        validate_username(name)
        check_password_policy(password, name)
        der, fp = _check_public_key(public_key_der)
        if self.get(name) is not None:
            raise AccountError(f"user {name!r} already exists (names are unique regardless of case)")
        encoded = passwords.hash_password(password, self.hash_params)
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO accounts (name, password_hash, legacy, created, public_key,"
                    " key_fingerprint) VALUES (?, ?, 0, ?, ?, ?)",
                    (name, encoded, _utc_text(self._clock()), der, fp))
        except sqlite3.IntegrityError:
            raise AccountError(
                f"user {name!r} already exists (names are unique regardless of case)") from None
        return self.require(name)

    def remove(self, name: str) -> None:
        """Delete an account; an unknown name is an AccountError."""
        with self._write() as conn:
            if conn.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount == 0:
                raise AccountError(f"no such user: {name!r}")

    def _update(self, name: str, sql: str, params: tuple) -> None:
        with self._write() as conn:
            if conn.execute(sql, params + (name,)).rowcount == 0:
                raise AccountError(f"no such user: {name!r}")

    def set_password(self, name: str, password: str) -> None:
        """Replace the password (policy checked); clears the legacy mark."""
        account = self.require(name)
        check_password_policy(password, account.name)
        encoded = passwords.hash_password(password, self.hash_params)
        self._update(name, "UPDATE accounts SET password_hash = ?, legacy = 0 WHERE name = ?",
                     (encoded,))

    def lock(self, name: str) -> None:
        """Refuse logins for this account until unlocked."""
        self._update(name, "UPDATE accounts SET locked = 1 WHERE name = ?", ())

    def unlock(self, name: str) -> None:
        self._update(name, "UPDATE accounts SET locked = 0 WHERE name = ?", ())

    def set_public_key(self, name: str, public_key_der: Optional[bytes]) -> None:
        """Register (or with None, clear) the user's RSA public key."""
        der, fp = _check_public_key(public_key_der)
        self._update(name, "UPDATE accounts SET public_key = ?, key_fingerprint = ? WHERE name = ?",
                     (der, fp))

    def record_login(self, name: str) -> None:
        """Stamp the last successful login (UTC now)."""
        self._update(name, "UPDATE accounts SET last_login = ? WHERE name = ?",
                     (_utc_text(self._clock()),))

    # -- passwords -----------------------------------------------------------

    def _hash_of(self, name: str) -> Optional[tuple]:
        with self._read() as conn:
            row = conn.execute(f"SELECT password_hash, {_COLUMNS} FROM accounts WHERE name = ?",
                               (name,)).fetchone()
        return (row[0], _row_to_account(row[1:])) if row else None

    def check_password(self, name: str, password: str) -> CheckResult:
        """Verify a login password. Slow (scrypt): call it off the event loop.

        An unknown user costs the same time as a wrong password. A locked
        account still verifies; the caller decides what to tell a locked user.
        """
        found = self._hash_of(name)
        if found is None:
            passwords.dummy_verify(password, self.hash_params)
            return CheckResult(False, False, None)
        encoded, account = found
        try:
            ok, needs_rehash = passwords.verify_password(password, encoded, self.hash_params)
        except ValueError:
            log.warning("account %s has a malformed password hash; login refused", account.name)
            passwords.dummy_verify(password, self.hash_params)
            return CheckResult(False, False, account)
        return CheckResult(ok, needs_rehash, account)

    def rehash(self, name: str, password: str) -> bool:
        """Re-store ``password`` with the current parameters after a successful login.

        No policy check (an imported password must keep working). Only replaces
        the hash it verified, so a concurrent `schat user passwd` wins. Returns
        True when the hash was upgraded.
        """
        found = self._hash_of(name)
        if found is None:
            return False
        encoded, _ = found
        try:
            ok, needs = passwords.verify_password(password, encoded, self.hash_params)
        except ValueError:
            return False
        if not (ok and needs):
            return False
        fresh = passwords.hash_password(password, self.hash_params)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE accounts SET password_hash = ?, legacy = 0"
                " WHERE name = ? AND password_hash = ?", (fresh, name, encoded))
            return cur.rowcount == 1

    def import_legacy(self, lines: Iterable[str]) -> "ImportReport":
        """Import ``username,sha256hex`` lines (the original script's users.txt).

        Bad or duplicate lines are reported with their numbers and skipped;
        existing accounts are never overwritten, so re-running is harmless.
        """
        report, entries = parse_legacy_lines(lines)
        created = _utc_text(self._clock())
        with self._write() as conn:
            for entry in entries:
                if conn.execute("SELECT 1 FROM accounts WHERE name = ?",
                                (entry.name,)).fetchone():
                    report.skipped.append((entry.line, entry.name))
                    continue
                conn.execute(
                    "INSERT INTO accounts (name, password_hash, legacy, created)"
                    " VALUES (?, ?, 1, ?)", (entry.name, "$sha256$" + entry.hexdigest, created))
                report.imported.append(entry.name)
        return report


def _check_public_key(der: Optional[bytes]):
    if der is None:
        return None, None
    try:
        key = keys.import_public_key(der)
    except KeyFileError as err:
        raise AccountError(f"the public key is not usable: {err}") from None
    canonical = keys.public_der(key)
    return canonical, keys.fingerprint(canonical)
