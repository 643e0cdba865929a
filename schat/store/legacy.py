"""Accounts from the original chat script: its users.txt, and its unsalted hashes.

users.txt holds one ``username,sha256hex`` per line. The digests are never
stored as they are: each is wrapped in scrypt (``$scrypt-sha256$``, see
:mod:`schat.crypto.passwords`) so that an imported account costs a failed login
as much as any other, and nothing cheap to brute-force stays on disk. Rows an
earlier schat stored as ``$sha256$<hex>`` are wrapped by a schema migration.
"""

from __future__ import annotations

import os
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Sequence, Tuple

from schat.crypto import passwords
from schat.errors import PolicyError
from schat.store.policy import validate_username

# How earlier versions stored an imported digest.
OLD_PREFIX = "$sha256$"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass
class ImportReport:
    """What an import did: names imported, ``(line, name)`` skipped as existing,
    ``(line, problem)`` for lines that could not be used."""

    imported: List[str] = field(default_factory=list)
    skipped: List[Tuple[int, str]] = field(default_factory=list)
    errors: List[Tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class LegacyEntry:
    """One usable users.txt line."""

    line: int
    name: str
    hexdigest: str


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


def wrap_digests(hexdigests: Sequence[str], params: passwords.ScryptParams) -> List[str]:
    """``$scrypt-sha256$`` hashes for ``hexdigests``, in order, one per CPU at a time.

    pycryptodome runs scrypt's core in C without the interpreter lock, so the
    threads really run in parallel; an import of many users is then bounded by
    the cores, not by one.
    """
    if len(hexdigests) <= 1:
        return [passwords.wrap_sha256(h, params) for h in hexdigests]
    workers = min(len(hexdigests), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda h: passwords.wrap_sha256(h, params), hexdigests))


def _old_rows(conn: sqlite3.Connection) -> List[Tuple[int, str]]:
    return conn.execute("SELECT id, password_hash FROM accounts WHERE substr(password_hash, 1, ?)"
                        " = ?", (len(OLD_PREFIX), OLD_PREFIX)).fetchall()


@dataclass(frozen=True)
class PreparedWraps:
    """Wraps computed before the migration takes the write lock."""

    params: passwords.ScryptParams
    ready: Dict[int, Tuple[str, str]]  # id -> (stored hash, its wrap)


def prepare_wraps(conn: sqlite3.Connection, params: passwords.ScryptParams,
                  has_accounts: bool) -> PreparedWraps:
    """Wrap every ``$sha256$`` row's digest now, without holding a lock."""
    if not has_accounts:
        return PreparedWraps(params, {})
    rows = [(i, h) for i, h in _old_rows(conn) if _HEX64.fullmatch(h[len(OLD_PREFIX):])]
    wrapped = wrap_digests([h[len(OLD_PREFIX):] for _, h in rows], params)
    return PreparedWraps(params, {i: (h, w) for (i, h), w in zip(rows, wrapped)})


def wrap_old_rows(conn: sqlite3.Connection, prepared: PreparedWraps) -> None:
    """The migration: replace every ``$sha256$`` hash with its scrypt wrap.

    Uses the wraps from :func:`prepare_wraps` where the row has not changed
    since; anything else is wrapped here. A malformed old hash becomes one no
    password matches (the account can be given a new one with `user passwd`).
    """
    params = prepared.params
    updates, todo = [], []
    for row_id, stored in _old_rows(conn):
        ready = prepared.ready.get(row_id)
        if ready and ready[0] == stored:
            updates.append((ready[1], row_id))
        else:
            todo.append((row_id, stored[len(OLD_PREFIX):]))
    good = [(i, h) for i, h in todo if _HEX64.fullmatch(h)]
    updates += [(w, i) for (i, _), w in zip(good, wrap_digests([h for _, h in good], params))]
    updates += [("!unusable", i) for i, h in todo if not _HEX64.fullmatch(h)]
    conn.executemany("UPDATE accounts SET password_hash = ? WHERE id = ?", updates)
