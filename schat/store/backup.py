"""Online backups of a server's data: consistent while the server runs.

A backup is a new data home holding a copy of ``server/``: each SQLite file
copied with SQLite's online backup API (one consistent snapshot, taken while
the server keeps writing: WAL readers never block the writer), checked with
``PRAGMA integrity_check``, and every other file (the host key) copied as it
is, all 0600 in 0700 directories. It is built beside the destination and
renamed into place, so a failed backup leaves nothing half-written. Restoring
is copying its ``server/`` back (docs/OPERATING.md); ``--home BACKUP`` reads it
as it is (``schat --home BACKUP user list``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from schat.errors import StoreError
from schat.paths import Home
from schat.store.database import BUSY_TIMEOUT_S
from schat.store.files import _fsync_dir, make_private_dirs

SQLITE_MAGIC = b"SQLite format 3\x00"
# SQLite's own side files: their content is inside the snapshot.
_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass
class BackedUpFile:
    name: str
    size: int
    database: bool
    accounts: Optional[int] = None
    stored_messages: Optional[int] = None


@dataclass
class BackupReport:
    source: Path
    destination: Path
    files: List[BackedUpFile] = field(default_factory=list)


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _count(conn: sqlite3.Connection, table: str) -> Optional[int]:
    exists = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (table,)).fetchone()[0]
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if exists else None


def backup_database(source: Path, target: Path) -> BackedUpFile:
    """Copy one live SQLite file with the online backup API, then check the copy."""
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True,
                              timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as err:
        raise StoreError(f"{source}: cannot open for the backup ({err})") from None
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        dst = sqlite3.connect(str(target))
        try:
            # One step: the whole file from a single read transaction, a snapshot
            # of one moment however busy the server is.
            src.backup(dst)
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"{source}: the backup copy fails its integrity check ({check})")
            accounts = _count(dst, "accounts")
            messages = _count(dst, "mailbox")
            # The copy is one self-contained file: no -wal beside it.
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            dst.close()
    except sqlite3.DatabaseError as err:
        text = str(err)
        if "not a database" in text or "malformed" in text:
            raise StoreError(f"{source}: not a schat database, or it is corrupt") from None
        raise StoreError(f"{source}: backup failed ({text})") from None
    finally:
        src.close()
    for suffix in _SIDE_FILES:
        side = Path(str(target) + suffix)
        if side.exists():
            side.unlink()
    _fsync_file(target)
    return BackedUpFile(source.name, target.stat().st_size, True, accounts, messages)


def backup_home(home: Home, destination) -> BackupReport:
    """Back up ``home``'s server files into the new data home ``destination``."""
    source = home.server_dir
    destination = Path(destination)
    if not home.users_db.exists():
        raise StoreError(f"no account store at {home.users_db}: nothing to back up "
                         "(check --home and $SCHAT_HOME)")
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise StoreError(f"{destination}: already exists; a backup goes into a new (or empty) "
                         "directory")
    parent = destination.resolve().parent
    try:
        make_private_dirs(parent)
        work = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial",
                                     dir=parent))
    except OSError as err:
        raise StoreError(f"{destination}: cannot create the backup ({err.strerror})") from None
    report = BackupReport(source, destination)
    try:
        target_dir = work / source.name
        target_dir.mkdir(mode=0o700)
        for path in sorted(source.iterdir()):
            if not path.is_file() or path.name.startswith(".") \
                    or path.name.endswith(_SIDE_FILES):
                continue
            target = target_dir / path.name
            if _is_sqlite(path):
                report.files.append(backup_database(path, target))
            else:
                shutil.copyfile(path, target)
                os.chmod(target, 0o600)
                _fsync_file(target)
                report.files.append(BackedUpFile(path.name, target.stat().st_size, False))
        _fsync_dir(target_dir)
        if destination.is_dir():
            destination.rmdir()  # empty: checked above
        os.rename(work, destination)
        _fsync_dir(parent)
    except OSError as err:
        shutil.rmtree(work, ignore_errors=True)
        raise StoreError(f"{destination}: backup failed ({err.strerror or err})") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report
