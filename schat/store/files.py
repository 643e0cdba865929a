"""Atomic, private file writes and private directories.

A file holding a secret is never visible half-written nor readable by others:
it is written to a temporary file in the same directory with mode 0600, flushed
and fsynced, then renamed over the target, and the directory is fsynced.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def make_private_dirs(path: str | os.PathLike) -> Path:
    """Create ``path`` and any missing parents, each one 0700.

    ``Path.mkdir(parents=True, mode=...)`` applies the mode to the last
    directory only; the parents would get the umask's default (often 0755).
    Directories that already exist are left as they are.
    """
    path = Path(path)
    missing = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise
    return path


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically; the new file has permissions ``mode``.

    A symbolic link is followed: the file it points to is replaced (the new file
    is written beside it), and the link stays a link.
    """
    path = Path(os.path.realpath(path))
    make_private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, mode: int = 0o600) -> None:
    """Text variant of :func:`atomic_write` (UTF-8)."""
    atomic_write(path, text.encode("utf-8"), mode)


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
