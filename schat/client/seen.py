"""The direct messages already received: the client's replay memory (``HOME/dm_seen.db``).

One SQLite file (0600, WAL) with a row per message received: the server as the
user named it (name + address), the sender's canonical name, the 16-byte
message id and the envelope's time. The rule (docs/PROTOCOL.md, "Envelope time
and replays"), per server:

* an envelope whose (sender, id) is remembered is a replay: ignored;
* an envelope dated at or before the *horizon* is refused as a possible replay;
* otherwise it is new, and remembered once shown.

At most ``limit`` rows are kept per server. Beyond that the oldest (by envelope
time) are forgotten in one batch, and the horizon rises to the newest time
forgotten: an id is only ever forgotten together with everything dated up to
it, so a forgotten id can never be replayed. Each message costs one indexed
look-up and one small transaction, whatever the number of senders.

The JSON file of the previous release (``HOME/dm_seen``, keyed by the server's
key fingerprint) is imported once for the server whose key it names, and left
as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Optional

from schat.errors import ConfigError
from schat.protocol.schema import name_key
from schat.store.database import SqliteFile

SEEN = "seen"
TOO_OLD = "too old"

#: Rows kept per server: 50 days of 1,000 direct messages a day.
SEEN_LIMIT = 50_000
#: The previous release's window per contact (its "full window" rule is kept as a horizon).
LEGACY_WINDOW = 1000

_SCHEMA = [(
    "CREATE TABLE servers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "horizon INTEGER NOT NULL DEFAULT -1, rows INTEGER NOT NULL DEFAULT 0, imported TEXT)",
    "CREATE TABLE seen (server INTEGER NOT NULL, sender TEXT NOT NULL, msg_id BLOB NOT NULL, "
    "time INTEGER NOT NULL, PRIMARY KEY (server, sender, msg_id)) WITHOUT ROWID",
    "CREATE INDEX seen_by_time ON seen (server, time)",
)]


class SeenFile(SqliteFile):
    kind = "file of direct messages seen"


def _raw_id(msg_id) -> bytes:
    return bytes.fromhex(msg_id) if isinstance(msg_id, str) else bytes(msg_id)


class SeenIds:
    """The replay memory for one server; the file is opened on first use."""

    def __init__(self, path: os.PathLike | str, server: str, host_key: Optional[str] = None,
                 legacy: Optional[os.PathLike | str] = None, limit: int = SEEN_LIMIT):
        self.path = Path(path)
        self.server = server
        self.host_key = host_key
        self.legacy = Path(legacy) if legacy is not None else None
        self.limit = max(1, limit)
        self._db: Optional[SeenFile] = None
        self._id: Optional[int] = None

    # -- opening -----------------------------------------------------------------
    def _open(self) -> int:
        if self._id is not None:
            return self._id
        db = SeenFile(self.path)
        try:
            db._migrate(_SCHEMA)
            with db.transaction() as conn:
                conn.execute("INSERT OR IGNORE INTO servers (name) VALUES (?)", (self.server,))
                server_id, imported = conn.execute(
                    "SELECT id, imported FROM servers WHERE name = ?", (self.server,)).fetchone()
                if imported is None and self.host_key and self.legacy is not None:
                    self._import(conn, server_id, self._legacy_entries())
                    conn.execute("UPDATE servers SET imported = ? WHERE id = ?",
                                 (self.host_key, server_id))
        except BaseException:
            db.close()
            raise
        self._db, self._id = db, server_id
        return server_id

    def _legacy_entries(self) -> dict:
        try:
            text = self.legacy.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read the seen messages file {self.legacy}: {err}") from None
        try:
            data = json.loads(text)
            servers = data["servers"]
            entries = servers.get(self.host_key, {})
            return {str(sender): [(_raw_id(i), int(t)) for i, t in ids]
                    for sender, ids in entries.items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ConfigError(f"the seen messages file {self.legacy} is corrupt; fix or remove "
                              f"it") from None

    def _import(self, conn: sqlite3.Connection, server_id: int, entries: dict) -> None:
        horizon = -1
        for sender, ids in entries.items():
            conn.executemany(
                "INSERT OR IGNORE INTO seen (server, sender, msg_id, time) VALUES (?, ?, ?, ?)",
                [(server_id, name_key(sender), msg_id, t) for msg_id, t in ids])
            if len(ids) >= LEGACY_WINDOW:
                # The old rule: older than the oldest id of a full window was a replay.
                horizon = max(horizon, min(t for _, t in ids) - 1)
        rows = conn.execute("SELECT count(*) FROM seen WHERE server = ?",
                            (server_id,)).fetchone()[0]
        conn.execute("UPDATE servers SET horizon = max(horizon, ?), rows = ? WHERE id = ?",
                     (horizon, rows, server_id))
        self._prune(conn, server_id)

    # -- the rule --------------------------------------------------------------------
    def status(self, sender: str, msg_id, time_ms: int) -> Optional[str]:
        """SEEN (a replay: ignore), TOO_OLD (at or before the horizon: refuse) or None (new)."""
        server_id = self._open()
        with self._db.reading() as conn:
            row = conn.execute("SELECT 1 FROM seen WHERE server = ? AND sender = ? AND msg_id = ?",
                               (server_id, name_key(sender), _raw_id(msg_id))).fetchone()
            if row is not None:
                return SEEN
            horizon = conn.execute("SELECT horizon FROM servers WHERE id = ?",
                                   (server_id,)).fetchone()[0]
        return TOO_OLD if time_ms <= horizon else None

    def is_replay(self, sender: str, msg_id, time_ms: int) -> bool:
        """True for SEEN and TOO_OLD alike."""
        return self.status(sender, msg_id, time_ms) is not None

    def remember(self, sender: str, msg_id, time_ms: int) -> None:
        """Record a message shown (committed before its acknowledgement goes out)."""
        server_id = self._open()
        with self._db.transaction() as conn:
            added = conn.execute(
                "INSERT OR IGNORE INTO seen (server, sender, msg_id, time) VALUES (?, ?, ?, ?)",
                (server_id, name_key(sender), _raw_id(msg_id), int(time_ms))).rowcount
            if added:
                conn.execute("UPDATE servers SET rows = rows + 1 WHERE id = ?", (server_id,))
                self._prune(conn, server_id)

    def _prune(self, conn: sqlite3.Connection, server_id: int) -> None:
        rows = conn.execute("SELECT rows FROM servers WHERE id = ?", (server_id,)).fetchone()[0]
        if rows <= self.limit:
            return
        # Forget a tenth more than needed at once, so pruning is rare.
        excess = rows - self.limit + max(1, self.limit // 10)
        cutoff = conn.execute("SELECT time FROM seen WHERE server = ? ORDER BY time "
                              "LIMIT 1 OFFSET ?", (server_id, min(excess, rows) - 1)).fetchone()[0]
        gone = conn.execute("DELETE FROM seen WHERE server = ? AND time <= ?",
                            (server_id, cutoff)).rowcount
        conn.execute("UPDATE servers SET horizon = max(horizon, ?), rows = rows - ? WHERE id = ?",
                     (cutoff, gone, server_id))

    @property
    def horizon(self) -> int:
        """Envelopes dated at or before this time (ms) are refused; -1: none yet."""
        server_id = self._open()
        with self._db.reading() as conn:
            return conn.execute("SELECT horizon FROM servers WHERE id = ?",
                                (server_id,)).fetchone()[0]

    def __len__(self) -> int:
        server_id = self._open()
        with self._db.reading() as conn:
            return conn.execute("SELECT rows FROM servers WHERE id = ?",
                                (server_id,)).fetchone()[0]

    def close(self) -> None:
        """Close the file (it is opened again on the next use)."""
        db, self._db, self._id = self._db, None, None
        if db is not None:
            db.close()
