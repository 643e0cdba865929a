"""atomic_write and private directories: all or nothing, 0600, links kept."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from schat.store import files
from schat.store.files import atomic_write, make_private_dirs


@pytest.fixture
def permissive_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_is_0600_under_a_permissive_umask(tmp_path, permissive_umask):
    target = tmp_path / "secret"
    atomic_write(target, b"one")
    assert (target.read_bytes(), mode(target)) == (b"one", 0o600)
    target.chmod(0o666)
    atomic_write(target, b"two")
    assert (target.read_bytes(), mode(target)) == (b"two", 0o600)
    atomic_write(target, b"public", mode=0o644)
    assert mode(target) == 0o644


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "secret"
    atomic_write(target, b"old contents")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError):
        atomic_write(target, b"new contents that never land")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_symlink_is_followed_and_kept(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "servers.json"
    real.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"
    assert sorted(p.name for p in real_dir.iterdir()) == ["servers.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real"]


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "sub" / "target")
    atomic_write(link, b"data")
    assert link.is_symlink() and (tmp_path / "sub" / "target").read_bytes() == b"data"


def test_private_dirs_at_every_level(tmp_path):
    old = os.umask(0o022)
    try:
        deep = make_private_dirs(tmp_path / "a" / "b" / "c")
        atomic_write(tmp_path / "x" / "y" / "file", b"data")
    finally:
        os.umask(old)
    for path in (tmp_path / "a", tmp_path / "a" / "b", deep, tmp_path / "x", tmp_path / "x" / "y"):
        assert mode(path) == 0o700, path
    # Existing directories are left as they are.
    (tmp_path / "open").mkdir(mode=0o755)
    os.chmod(tmp_path / "open", 0o755)
    make_private_dirs(tmp_path / "open" / "inner")
    assert (mode(tmp_path / "open"), mode(tmp_path / "open" / "inner")) == (0o755, 0o700)


def test_a_file_in_the_way_is_an_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        make_private_dirs(tmp_path / "file" / "sub")
