"""What every command shares: the app context, error handling, JSON/table output."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import click

from schat.errors import SchatError
from schat.paths import Home, resolve_home

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class AppContext:
    """Global options, resolved once, handed to every command as ``ctx.obj``."""

    def __init__(self, home: Optional[str] = None, config: Optional[str] = None,
                 log_level: Optional[int] = None):
        self.home = Home(resolve_home(home))
        self.config = Path(config) if config else None
        self.log_level = log_level

    @property
    def debug(self) -> bool:
        return self.log_level == logging.DEBUG


pass_app = click.make_pass_decorator(AppContext, ensure=True)


def setup_logging(level: int) -> None:
    """Log to stderr at ``level`` (idempotent: reconfigures the root handler)."""
    root = logging.getLogger()
    root.setLevel(level)
    handler = next((h for h in root.handlers if getattr(h, "_schat", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._schat = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    else:
        handler.setStream(sys.stderr)


def handle_errors(func):
    """Turn SchatError into a clean one-line ClickException (the one place this happens)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SchatError as err:
            exc = click.ClickException(str(err))
            exc.exit_code = err.exit_code
            raise exc from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper


def json_option(func):
    """The shared ``--json`` flag for listings."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON instead of a table.")(func)


def render(rows: Sequence[dict], headers: Sequence[str], as_json: bool,
           empty: str = "(none)") -> None:
    """Print ``rows`` as a table (tabulate) or as a JSON array with the same keys."""
    if as_json:
        click.echo(json.dumps(list(rows), indent=2, sort_keys=False))
        return
    if not rows:
        click.echo(empty)
        return
    from tabulate import tabulate

    table = [[_cell(row.get(h)) for h in headers] for row in rows]
    click.echo(tabulate(table, headers=list(headers)))


def _cell(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def read_password_stdin() -> str:
    """One password from stdin (the first line, without its newline)."""
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def echo_err(message: str) -> None:
    """Diagnostics go to stderr."""
    click.echo(message, err=True)


def first(iterable: Iterable, default=None):
    for item in iterable:
        return item
    return default
