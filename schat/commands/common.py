"""What every command shares: the app context, error handling, JSON/table output."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, List, Optional, Sequence

import click

from schat.client.sanitize import clean
from schat.errors import SchatError
from schat.paths import Home, resolve_home



class AppContext:
    """Global options, resolved once, handed to every command as ``ctx.obj``."""

    def __init__(self, home: Optional[str] = None, config: Optional[str] = None,
                 log_level: Optional[int] = None):
        self.home = Home(resolve_home(home))
        self.config = Path(config) if config else None
        self.log_level = log_level
        #: ``--store URL`` / ``$SCHAT_STORE``; None is the home's SQLite file.
        self.store_url: Optional[str] = None

    @property
    def debug(self) -> bool:
        return self.log_level == logging.DEBUG


pass_app = click.make_pass_decorator(AppContext, ensure=True)

# Read by `schat keys gen` and by key login in `schat connect`/`login`.
PASSPHRASE_ENV = "SCHAT_KEY_PASSPHRASE"

HOME_HELP = ("Data home for keys, pins and the server's files [default: $SCHAT_HOME, else "
             "the platform's user data dir, e.g. ~/.local/share/schat].")
CONFIG_HELP = ("A servers.json to use instead of yours; it must exist, except for "
               "`servers add` [default: HOME/servers.json, with ./servers.json read as well].")


def _set_home(ctx: click.Context, _param, value: Optional[str]) -> None:
    if value is not None:
        ctx.ensure_object(AppContext).home = Home(resolve_home(value))


def _set_config(ctx: click.Context, _param, value: Optional[str]) -> None:
    if value is not None:
        ctx.ensure_object(AppContext).config = Path(value)


def global_options() -> List[click.Option]:
    """``--home`` and ``--config`` for a subcommand, so they work after it too
    (`schat user list --home X` as well as `schat --home X user list`)."""
    return [
        click.Option(["--home"], type=click.Path(file_okay=False), expose_value=False,
                     callback=_set_home, help=HOME_HELP),
        click.Option(["--config"], type=click.Path(dir_okay=False), expose_value=False,
                     callback=_set_config, help=CONFIG_HELP),
    ]


STORE_ENV = "SCHAT_STORE"
STORE_HELP = ("The account store: postgresql://USER:PASSWORD@HOST:PORT/DATABASE for one "
              "shared by several servers (needs schat[cluster]) [default: "
              "HOME/server/users.db].")


def _set_store(ctx: click.Context, _param, value: Optional[str]) -> None:
    if value:
        ctx.ensure_object(AppContext).store_url = value


def store_option(command):
    """``--store URL`` (or ``$SCHAT_STORE``) on a command; on a group, on each of its
    subcommands (apply it after they are defined). Commands open the store with
    :func:`open_app_store`."""
    option = click.Option(["--store"], metavar="URL", envvar=STORE_ENV, show_envvar=True,
                          expose_value=False, callback=_set_store, help=STORE_HELP)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            store_option(sub)
    elif isinstance(command, click.Command):
        command.params.append(option)
    else:  # a function not yet made a command
        command.__dict__.setdefault("__click_params__", []).append(option)
    return command


def open_app_store(app: AppContext, **kwargs):
    """The account store the command was pointed at (see :func:`store_option`)."""
    from schat.store.location import open_store

    return open_store(app.store_url, app.home, **kwargs)


def setup_logging(level: int) -> None:
    """Log schat's records to stderr at ``level`` (idempotent: reconfigures the root handler).

    Only the ``schat`` logger goes below WARNING: ``--debug`` is about schat's
    own steps, not every library's (asyncio's debug chatter among them).
    """
    from schat import logs

    logs.set_level(level)
    logs.use_stderr()


# Exit status of a command interrupted with Ctrl-C (128 + SIGINT), as in shells.
EXIT_INTERRUPTED = 130
_interrupted = threading.Event()


def _on_sigint(signum, frame):
    _interrupted.set()
    raise KeyboardInterrupt


def watch_interrupts() -> None:
    """Note a Ctrl-C (SIGINT) before Python turns it into KeyboardInterrupt: a prompt
    turns that into ``click.Abort``, which looks the same as end of input, and only
    an interrupt exits 130."""
    _interrupted.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _on_sigint):
        signal.signal(signal.SIGINT, _on_sigint)


def handle_errors(func):
    """Turn SchatError into a clean one-line ClickException (the one place this happens);
    Ctrl-C anywhere in a command exits 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SchatError as err:
            # Messages may quote what a server sent: nothing in them reaches the
            # terminal as a control sequence.
            exc = click.ClickException(clean(str(err)))
            exc.exit_code = err.exit_code
            raise exc from None
        except KeyboardInterrupt:
            click.echo(err=True)  # the terminal's "^C" stays on its own line
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except click.Abort:
            if _interrupted.is_set():
                raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
            raise

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

