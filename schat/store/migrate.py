"""Copy a whole store to another engine: `schat store migrate --to postgresql://…`.

The source is read in one snapshot, so a running server cannot tear the copy
(but what it writes afterwards is not carried over: stop the servers first).
Everything is written to the target in one transaction and checked there
before it commits: every table's row count and a digest of its rows must match
the source, or nothing is kept. Ids are copied as they are, and each generated
id continues after the highest one the source ever handed out (a delivered
mailbox id is never handed out again).

A target that already holds rows is refused unless ``replace`` is given, which
empties the copied tables first, in the same transaction. So re-running after a
success changes nothing and says so; re-running with ``replace`` copies afresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from schat.errors import StoreError
from schat.paths import Home
from schat.store.database import Engine
from schat.store.location import open_store

BATCH = 1000


@dataclass(frozen=True)
class Table:
    """A table that is copied, with its integer key (copy order and id sequence), or
    ``key=None`` for a table keyed otherwise (read whole, compared in a canonical order:
    the engines sort text differently)."""

    name: str
    key: Optional[str] = "id"


#: Every store table, parents before the tables that refer to them. A store
#: feature that adds a table adds one line here.
TABLES: List[Table] = [
    Table("accounts"),
    Table("mailbox"),
    # The chat (schat.store.chat): rooms, who belongs to them (with read marks), room
    # roles and invitations, bans and mutes, server roles, history.
    Table("rooms", key=None),
    Table("room_members", key=None),
    Table("room_roles", key=None),
    Table("restrictions", key=None),
    Table("server_roles", key=None),
    Table("history"),
]


@dataclass
class MigrateReport:
    """What was copied: rows per table, and the target (without its password)."""

    target: str
    tables: Dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"target": self.target, "tables": dict(self.tables), "verified": True}


def _columns(conn, table: Table) -> List[str]:
    cur = conn.execute(f"SELECT * FROM {table.name} WHERE 1 = 0")
    return [d[0] for d in cur.description]


def _plain(row) -> tuple:
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


def _batches(conn, table: Table, columns: List[str]) -> Iterator[List[tuple]]:
    """Rows in key order, a batch at a time (a history table may not fit in memory);
    a table without an integer key in one batch, in the order of its rows' ``repr``."""
    if table.key is None:
        rows = sorted((_plain(r) for r in conn.execute(
            f"SELECT {', '.join(columns)} FROM {table.name}").fetchall()), key=repr)
        if rows:
            yield rows
        return
    sql = (f"SELECT {', '.join(columns)} FROM {table.name} WHERE {table.key} > ? "
           f"ORDER BY {table.key} LIMIT {BATCH}")
    after = None
    key_at = columns.index(table.key)
    while True:
        rows = [_plain(r) for r in conn.execute(sql, (after if after is not None else -2 ** 62,)
                                                 ).fetchall()]
        if not rows:
            return
        yield rows
        after = rows[-1][key_at]


class _Digest:
    """Count and SHA-256 of a table's rows, in key order, engine-independent."""

    def __init__(self):
        self.count = 0
        self._hash = hashlib.sha256()

    def add(self, rows: List[tuple]) -> None:
        self.count += len(rows)
        for row in rows:
            self._hash.update(repr(row).encode("utf-8"))

    def result(self) -> Tuple[int, str]:
        return self.count, self._hash.hexdigest()


def _digest(conn, table: Table, columns: List[str]) -> Tuple[int, str]:
    digest = _Digest()
    for rows in _batches(conn, table, columns):
        digest.add(rows)
    return digest.result()


def copy_store(source: Engine, target: Engine, replace: bool = False,
               tables: Optional[List[Table]] = None) -> MigrateReport:
    """Copy ``tables`` (default :data:`TABLES`) from ``source`` to ``target``; both already
    have the current schema. Returns the verified row counts."""
    tables = TABLES if tables is None else tables
    report = MigrateReport(target=target.where)
    with source.snapshot() as src, target.transaction() as dst:
        held = {t.name: dst.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
                for t in tables}
        if any(held.values()) and not replace:
            counts = ", ".join(f"{n} {name}" for name, n in held.items() if n)
            raise StoreError(f"{target.where}: already holds {counts}; nothing was copied "
                             "(--replace empties it and copies again)")
        for table in reversed(tables):  # children first
            dst.execute(f"DELETE FROM {table.name}")
        for table in tables:
            columns = _columns(src, table)
            missing = set(columns) - set(_columns(dst, table))
            if missing:
                raise StoreError(f"{target.where}: table {table.name} lacks "
                                 f"{', '.join(sorted(missing))}; nothing was copied")
            insert = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
                      f"VALUES ({', '.join('?' for _ in columns)})")
            expected = _Digest()
            for rows in _batches(src, table, columns):
                dst.executemany(insert, rows)
                expected.add(rows)
            if table.key is not None:
                target.raise_ids(dst, table.name, table.key,
                                 source.id_position(src, table.name, table.key))
            if _digest(dst, table, columns) != expected.result():
                raise StoreError(f"{target.where}: the copy of {table.name} does not match "
                                 "the source; nothing was copied")
            report.tables[table.name] = expected.count
    with target.reading() as conn:  # committed: count what others now see
        for table in tables:
            stored = conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
            if stored != report.tables[table.name]:
                raise StoreError(f"{target.where}: {table.name} holds {stored} rows after "
                                 f"the copy, not {report.tables[table.name]}")
    return report


def migrate(source_url: Optional[str], target_url: str, home: Home,
            replace: bool = False) -> MigrateReport:
    """`schat store migrate`: the store at ``source_url`` (None: the home's SQLite file,
    which must exist) copied to ``target_url``; both brought to the current schema."""
    if source_url is None and not home.users_db.exists():
        raise StoreError(f"{home.users_db}: no store to copy (use --home to point at the "
                         "data home that holds server/users.db)")
    if source_url is not None and source_url == target_url:
        raise StoreError("--to: the target is the store being copied")
    with open_store(source_url, home) as source, open_store(target_url, home) as target:
        if source.where == target.where:
            raise StoreError("--to: the target is the store being copied")
        return copy_store(source.db, target.db, replace)
