"""Where the server's log goes and how each line looks.

``--log-file`` writes to a file rotated by the standard library's handlers (by
size or daily, a number of old files kept; ``never`` leaves rotation to an
outside tool such as logrotate, the file being reopened when it is moved);
``--log-format json`` writes one JSON object per line for log shippers. The
records are the same in every format: schat never logs a password, a key or a
message's text, at any level.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from schat.errors import ConfigError

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
FORMATS = ("text", "json")
DEFAULT_ROTATE = "10MiB"
DEFAULT_KEEP = 5
# Smallest size that may trigger a rotation: below it every few lines would rotate.
MIN_ROTATE_BYTES = 1024

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|K|M|G|KB|MB|GB)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


@dataclass(frozen=True)
class Rotation:
    """How the log file rotates: ``"size"`` (at ``bytes``), ``"daily"`` or ``"never"``."""

    kind: str
    bytes: int = 0

    def __str__(self) -> str:
        if self.kind != "size":
            return self.kind
        for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1024)):
            if self.bytes % factor == 0:
                return f"{self.bytes // factor}{unit}"
        return str(self.bytes)


def parse_rotation(text: str) -> Rotation:
    """``10MiB``, ``500K``, ``1048576``, ``daily`` or ``never``; ValueError otherwise."""
    word = str(text).strip().lower()
    if word in ("daily", "never"):
        return Rotation(word)
    found = _SIZE.match(str(text))
    if not found:
        raise ValueError(f"{text!r} is not a size (such as 10MiB), 'daily' or 'never'")
    size = int(found.group(1)) * _UNITS[(found.group(2) or "").lower()]
    if size < MIN_ROTATE_BYTES:
        raise ValueError(f"{text!r} is below the smallest rotation size, 1KiB")
    return Rotation("size", size)


class RotationType(click.ParamType):
    """Click type of ``--log-rotate``."""

    name = "SIZE|daily|never"

    def convert(self, value, param, ctx):
        if isinstance(value, Rotation):
            return value
        try:
            return parse_rotation(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with the date and time of a second formatted once: ``time.localtime``
    and ``strftime`` per line (glibc checks /etc/localtime at each call) were a third
    of the server's logging cost per connection. The line is byte for byte the
    standard formatter's."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)
        self._second = (None, "")

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:
        second = int(record.created)
        cached, stamp = self._second
        if cached != second:
            stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, stamp)
        return self.default_msec_format % (stamp, record.msecs)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``--log-format`` ``text`` or ``json``."""
    return JsonFormatter() if fmt == "json" else TextFormatter()


class _Private:
    """Open (and reopen after each rotation) the log file 0600: a log names members
    and addresses, which are nobody else's business."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


class PrivateRotatingFileHandler(_Private, logging.handlers.RotatingFileHandler):
    pass


class PrivateTimedRotatingFileHandler(_Private, logging.handlers.TimedRotatingFileHandler):
    pass


class PrivateWatchedFileHandler(_Private, logging.handlers.WatchedFileHandler):
    pass


def file_handler(path, rotation: Rotation = Rotation("size", 10 << 20),
                 keep: int = DEFAULT_KEEP, fmt: str = "text") -> logging.Handler:
    """A handler appending to ``path`` (created 0600 if missing) that rotates as asked."""
    path = Path(path)
    try:
        if rotation.kind == "size":
            handler: logging.Handler = PrivateRotatingFileHandler(
                path, maxBytes=rotation.bytes, backupCount=keep, encoding="utf-8")
        elif rotation.kind == "daily":
            handler = PrivateTimedRotatingFileHandler(
                path, when="midnight", backupCount=keep, encoding="utf-8")
        else:
            handler = PrivateWatchedFileHandler(path, encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot open the log file ({err.strerror})") from None
    handler.setFormatter(formatter(fmt))
    return handler


def check_writable(path) -> None:
    """ConfigError unless ``path`` can be opened for appending; creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a log file")
    target = path if path.exists() else path.parent
    if not target.is_dir() and not path.exists():
        raise ConfigError(f"{path}: cannot open the log file (no directory {target})")
    if not os.access(target, os.W_OK):
        raise ConfigError(f"{path}: cannot open the log file (permission denied)")


def install(handler: logging.Handler) -> None:
    """Make ``handler`` the one that schat's records go to (replacing the previous one)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_schat", False)]:
        root.removeHandler(old)
        old.close()  # a file is closed; a stream handler leaves its stream open
    handler._schat = True  # type: ignore[attr-defined]
    root.addHandler(handler)


def use_stderr(fmt: str = "text") -> None:
    """Send schat's records to the current ``sys.stderr`` (idempotent)."""
    current = next((h for h in logging.getLogger().handlers if getattr(h, "_schat", False)),
                   None)
    if (type(current) is logging.StreamHandler
            and isinstance(current.formatter, JsonFormatter) == (fmt == "json")):
        current.setStream(sys.stderr)  # CliRunner swaps sys.stderr between commands
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    install(handler)


def lean_records() -> None:
    """Stop the standard library from gathering, for every record, what no schat format
    prints: the caller's file and line (a walk up the stack), the thread, the process
    and its multiprocessing name (the Logging HOWTO's "Optimization"). Called by
    `serve`, where two INFO lines per connection made logging an eighth of the
    Python time of a connect + key login."""
    logging._srcfile = None  # the documented switch (Logging HOWTO, "Optimization")
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def set_level(level: int) -> None:
    """Log schat's own records from ``level`` on; other libraries' from WARNING."""
    root = logging.getLogger()
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger("schat").setLevel(level if level < logging.WARNING else logging.NOTSET)


def level_name(level: int) -> str:
    return next((name for name, value in LEVELS.items() if value == level),
                logging.getLevelName(level).lower())
