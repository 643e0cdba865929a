"""schat.logs: the log file's rotation kinds, its mode, and the level switch."""

from __future__ import annotations

import json
import logging
import logging.handlers
import stat

import pytest

from schat import logs


def emit(handler: logging.Handler, text: str) -> None:
    handler.handle(logging.LogRecord("schat.server", logging.INFO, __file__, 1, text, None, None))


@pytest.mark.parametrize("text,kind,size", [
    ("10MiB", "size", 10 << 20), ("500K", "size", 500 * 1024), ("1GiB", "size", 1 << 30),
    ("2048", "size", 2048), ("daily", "daily", 0), ("Never", "never", 0),
])
def test_parse_rotation(text, kind, size):
    rotation = logs.parse_rotation(text)
    assert (rotation.kind, rotation.bytes) == (kind, size)
    assert logs.parse_rotation(str(rotation)) == rotation


@pytest.mark.parametrize("text", ["", "10 parsecs", "-5M", "1023", "weekly", "1.5M"])
def test_bad_rotation(text):
    with pytest.raises(ValueError):
        logs.parse_rotation(text)


def test_daily_rotation_rolls_over_keeping_n_files(tmp_path):
    path = tmp_path / "schat.log"
    handler = logs.file_handler(path, logs.parse_rotation("daily"), keep=2, fmt="json")
    try:
        assert isinstance(handler, logging.handlers.TimedRotatingFileHandler)
        assert (handler.when, handler.backupCount) == ("MIDNIGHT", 2)
        # The clock is the edge: each rollover happens as if at a later midnight.
        first = handler.rolloverAt
        for day in range(4):
            emit(handler, f"day {day}")
            handler.rolloverAt = first + day * 86400
            handler.doRollover()
        emit(handler, "today")
    finally:
        handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    # Today's file and the two newest days; the older two were deleted.
    assert len(names) == 3 and names[0] == "schat.log", names
    assert "day 3" in (tmp_path / names[-1]).read_text()
    assert json.loads(path.read_text())["message"] == "today"
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_never_rotation_reopens_a_moved_file_for_logrotate(tmp_path):
    path = tmp_path / "schat.log"
    handler = logs.file_handler(path, logs.parse_rotation("never"), keep=5, fmt="text")
    try:
        emit(handler, "before the move")
        path.rename(tmp_path / "schat.log.1")  # logrotate's move
        emit(handler, "after the move")
    finally:
        handler.close()
    assert "before the move" in (tmp_path / "schat.log.1").read_text()
    assert "after the move" in path.read_text()
    assert "INFO schat.server: after the move" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_set_level_only_lowers_schat_below_warning():
    root, ours = logging.getLogger(), logging.getLogger("schat")
    saved = root.level, ours.level
    try:
        logs.set_level(logging.DEBUG)
        assert (root.level, ours.level) == (logging.WARNING, logging.DEBUG)
        logs.set_level(logging.ERROR)
        assert (root.level, ours.level) == (logging.ERROR, logging.NOTSET)
    finally:
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
