"""The account store, shared by the server and `schat user`: by default one SQLite file
(server/users.db), or a PostgreSQL database shared by a cluster's nodes.

Connections, transactions and migrations are the engine's
(:mod:`schat.store.database`): an admin command and a running server can use
the store at once. Slow work (scrypt) always happens outside a transaction, so
a login never holds the write lock while hashing. Later features append to
:data:`MIGRATIONS`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, List, Optional, Union

from schat.crypto import keys, passwords
from schat.errors import AccountError, KeyFileError
from schat.store import chat as chat_tables
from schat.store import legacy
from schat.protocol.schema import name_key
from schat.store.database import ConstraintError, Engine, Migration, PerEngine, Store
from schat.store.legacy import ImportReport
from schat.store.policy import check_password_policy, name_skeleton, validate_new_username

log = logging.getLogger(__name__)

# Each entry runs in one transaction; never change what an applied one does. The
# {TYPE} words are spelled per engine (schat.store.database.SQLITE_TYPES).
MIGRATIONS: List[Migration] = [
    (
        """CREATE TABLE accounts (
            id {ID},
            name {NOCASE} NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            legacy INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL,
            last_login TEXT,
            locked INTEGER NOT NULL DEFAULT 0,
            public_key {BLOB},
            key_fingerprint TEXT
        )""",
    ),
    # 2: stored direct-message envelopes (schat.server.mailbox), in delivery order;
    # a removed account's queue goes with it.
    (
        """CREATE TABLE mailbox (
            id {SERIAL},
            recipient {NOCASE} NOT NULL,
            sender TEXT NOT NULL,
            time INTEGER NOT NULL,
            envelope {BLOB} NOT NULL,
            sender_key {BLOB} NOT NULL
        )""",
        "CREATE INDEX mailbox_by_recipient ON mailbox (recipient, id)",
        PerEngine(
            sqlite="""CREATE TRIGGER mailbox_drop_account AFTER DELETE ON accounts
                BEGIN DELETE FROM mailbox WHERE recipient = OLD.name; END""",
            postgresql="""CREATE FUNCTION mailbox_drop_account() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN DELETE FROM mailbox WHERE recipient = OLD.name; RETURN OLD; END $$;
                CREATE TRIGGER mailbox_drop_account AFTER DELETE ON accounts
                FOR EACH ROW EXECUTE FUNCTION mailbox_drop_account()""",
        ),
    ),
    # 3: imported SHA-256 digests stored bare by earlier versions get wrapped in scrypt.
    legacy.wrap_old_rows,
    # 4: rooms, memberships, room roles, bans and mutes, server roles, history
    # (schat.store.chat).
    chat_tables.MIGRATION,
    # 5: abuse limits (_add_abuse_columns).
    lambda conn, prepared: _add_abuse_columns(conn),
]
# The first schema that has the accounts table (before it, nothing to wrap).
_ACCOUNTS_SINCE = 1

_COLUMNS = ("name, legacy, created, last_login, locked, public_key, key_fingerprint, "
            "established")


def _add_abuse_columns(conn) -> None:
    """Migration 5. An account made by sign-up starts not ``established`` (every existing
    and admin-made account is); a stored DM remembers whether its sender was new; every
    name gets its lookalike ``skeleton`` (:func:`schat.store.policy.name_skeleton`),
    indexed, so a new name is compared with all of them at once. No name changes."""
    conn.execute("ALTER TABLE accounts ADD COLUMN established INTEGER NOT NULL DEFAULT 1")
    conn.execute("ALTER TABLE accounts ADD COLUMN skeleton TEXT")
    conn.execute("ALTER TABLE mailbox ADD COLUMN new_sender INTEGER NOT NULL DEFAULT 0")
    for (row_id, name) in conn.execute("SELECT id, name FROM accounts").fetchall():
        conn.execute("UPDATE accounts SET skeleton = ? WHERE id = ?",
                     (name_skeleton(name), row_id))
    conn.execute("CREATE INDEX accounts_by_skeleton ON accounts (skeleton)")


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_utc(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    if text.endswith("Z"):
        # The format _utc_text writes; fromisoformat is many times faster than
        # strptime, and the server reads an account for every direct message.
        try:
            return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
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
    # False for an account made by sign-up until an established member writes to
    # it (the server's limits on new accounts; docs/SECURITY.md).
    established: bool = True

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


def _row_to_account(row) -> Account:
    return Account(
        name=row[0],
        legacy=bool(row[1]),
        created=_parse_utc(row[2]),
        last_login=_parse_utc(row[3]),
        locked=bool(row[4]),
        public_key_der=bytes(row[5]) if row[5] is not None else None,
        key_fingerprint=row[6],
        established=bool(row[7]),
    )


class AccountStore(Store):
    """Accounts in a SQLite file (a path) or on any :class:`~schat.store.database.Engine`
    (see :mod:`schat.store.database` for the concurrency model)."""

    kind = "account database"
    component = "accounts"

    def __init__(self, where: Union[str, os.PathLike, Engine],
                 hash_params: Optional[passwords.ScryptParams] = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 owns_engine: bool = False):
        super().__init__(where, owns_engine)
        self.hash_params = hash_params or passwords.current_params()
        self._clock = clock
        self._migrate(MIGRATIONS, lambda conn, version: legacy.prepare_wraps(
            conn, self.hash_params, has_accounts=version >= _ACCOUNTS_SINCE))

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
            rows = conn.execute(f"SELECT {_COLUMNS} FROM accounts").fetchall()
        # Sorted here: PostgreSQL would order punctuation by the database's locale.
        return sorted((_row_to_account(r) for r in rows), key=lambda a: name_key(a.name))

    def count(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT count(*) FROM accounts").fetchone()[0]

    # -- changes -------------------------------------------------------------

    def ensure_new(self, name: str) -> None:
        """Raise AccountError if an account may not be created as ``name``: the name is
        taken (any case, the error names the stored spelling) or is a lookalike of an
        existing name (the same :func:`~schat.store.policy.name_skeleton`); PolicyError
        if no account may have that name (:func:`~schat.store.policy.validate_new_username`)."""
        validate_new_username(name)
        with self._read() as conn:
            _check_free(conn, name)

    def add(self, name: str, password: str, public_key_der: Optional[bytes] = None,
            established: bool = True) -> Account:
        """Create an account; the name and password must meet the policy.

        ``established=False`` marks an account made by sign-up (see
        :meth:`mark_established`). The password is hashed before the name is
        compared with the stored ones, so a taken name costs a caller as much
        as a new one: probing for names is as slow as signing up.
        """
        validate_new_username(name)
        check_password_policy(password, name)
        der, fp = _check_public_key(public_key_der)
        encoded = passwords.hash_password(password, self.hash_params)
        try:
            # Serialised with every other write (both engines), so the check holds.
            with self._write() as conn:
                _check_free(conn, name)
                conn.execute(
                    "INSERT INTO accounts (name, password_hash, legacy, created, public_key,"
                    " key_fingerprint, established, skeleton) VALUES (?, ?, 0, ?, ?, ?, ?, ?)",
                    (name, encoded, _utc_text(self._clock()), der, fp, int(established),
                     name_skeleton(name)))
        except ConstraintError:
            self.ensure_new(name)
            raise
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

    def mark_established(self, name: str) -> bool:
        """An established member wrote to ``name``: it is no longer a new account.
        True when this changed anything."""
        with self._write() as conn:
            cur = conn.execute("UPDATE accounts SET established = 1 WHERE name = ? "
                               "AND established = 0", (name,))
            return cur.rowcount > 0

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

    def import_legacy(self, lines: Iterable[str]) -> ImportReport:
        """Import ``username,sha256hex`` lines (the original script's users.txt).

        Each digest is stored wrapped in scrypt (:mod:`schat.store.legacy`).
        Bad or duplicate lines are reported with their numbers and skipped;
        existing accounts are never overwritten, so re-running is harmless.
        """
        report, entries = legacy.parse_legacy_lines(lines)
        fresh = [e for e in entries if self.get(e.name) is None]
        # The slow part, before the write lock is taken.
        wrapped = dict(zip((e.line for e in fresh),
                           legacy.wrap_digests([e.hexdigest for e in fresh], self.hash_params)))
        created = _utc_text(self._clock())
        with self._write() as conn:
            for entry in entries:
                row = conn.execute("SELECT name FROM accounts WHERE name = ?",
                                   (entry.name,)).fetchone()
                if row:
                    report.skipped.append((entry.line, row[0]))
                    continue
                encoded = wrapped.get(entry.line) or passwords.wrap_sha256(
                    entry.hexdigest, self.hash_params)
                # Imported names are existing accounts: no lookalike check, but
                # their skeleton is kept so that later names are compared with them.
                conn.execute(
                    "INSERT INTO accounts (name, password_hash, legacy, created, skeleton)"
                    " VALUES (?, ?, 1, ?, ?)",
                    (entry.name, encoded, created, name_skeleton(entry.name)))
                report.imported.append(entry.name)
        return report


def _check_free(conn, name: str) -> None:
    row = conn.execute("SELECT name FROM accounts WHERE name = ?", (name,)).fetchone()
    if row:
        raise _exists(row[0])
    row = conn.execute("SELECT name FROM accounts WHERE skeleton = ? LIMIT 1",
                       (name_skeleton(name),)).fetchone()
    if row:
        raise AccountError(f"user name {name!r} is too like the existing {row[0]!r} "
                           "(names may not differ only in case or in punctuation at either "
                           "end); choose another")


def _exists(stored_name: str) -> AccountError:
    return AccountError(f"user {stored_name!r} already exists "
                        "(names are unique regardless of case)")


def _check_public_key(der: Optional[bytes]):
    if der is None:
        return None, None
    try:
        key = keys.import_public_key(der)
    except KeyFileError as err:
        raise AccountError(f"the public key is not usable: {err}") from None
    canonical = keys.public_der(key)
    return canonical, keys.fingerprint(canonical)
