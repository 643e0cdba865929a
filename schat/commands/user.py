"""`schat user`: manage the server's accounts (works while the server runs)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, Optional

import click

from schat.commands.common import (
    AppContext, echo_err, handle_errors, json_option, open_app_store, pass_app,
    read_password_stdin, render, store_option,
)
from schat.errors import UsageError


@contextmanager
def open_store(app: AppContext) -> Iterator["AccountStore"]:  # noqa: F821
    """The account store: --store / $SCHAT_STORE, else the data home's HOME/server/users.db."""
    store = open_app_store(app)
    try:
        yield store
    finally:
        store.close()


def local_time(moment: Optional[datetime]) -> Optional[str]:
    """A stored UTC time as the user's local time, to the minute."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else None


def get_password(password_stdin: bool, prompt: str = "Password") -> str:
    """From stdin (scripts) or prompted twice with hidden input."""
    if password_stdin:
        password = read_password_stdin()
        if not password:
            raise UsageError("no password on standard input")
        return password
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


password_stdin_option = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from the first line of standard input (for scripts).")


@click.group()
def user():
    """Manage the server's accounts."""


@user.command("add")
@click.argument("name")
@password_stdin_option
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help="The user's RSA public key (NAME.pub.pem), for key login and private messages.")
@pass_app
@handle_errors
def add_cmd(app: AppContext, name: str, password_stdin: bool, key_file: Optional[str]):
    """Create the account NAME.

    The password is prompted twice, hidden (or read with --password-stdin).
    """
    from schat.crypto.keys import public_der
    from schat.store.keyfiles import KeyFiles
    from schat.store.policy import validate_username

    validate_username(name)
    der = public_der(KeyFiles(app.home).load_public(key_file)) if key_file else None
    with open_store(app) as store:
        # Refuse a taken name before asking for a password that would be thrown away.
        store.ensure_new(name)
        account = store.add(name, get_password(password_stdin), public_key_der=der)
    suffix = f" with key {account.key_fingerprint}" if account.key_fingerprint else ""
    click.echo(f"Added user {account.name}{suffix}.")


@user.command("list")
@json_option
@pass_app
@handle_errors
def list_cmd(app: AppContext, as_json: bool):
    """List the accounts.

    Name, created, last login, locked, legacy hash and key fingerprint.
    """
    with open_store(app) as store:
        accounts = store.list()
    if as_json:
        render([a.to_json() for a in accounts], [], True)
        return
    rows = [{"name": a.name, "created": local_time(a.created),
             "last login": local_time(a.last_login), "locked": a.locked,
             "legacy hash": a.legacy, "key fingerprint": a.key_fingerprint} for a in accounts]
    render(rows, ["name", "created", "last login", "locked", "legacy hash", "key fingerprint"],
           False, empty="No users.")


@user.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
@handle_errors
def remove_cmd(app: AppContext, name: str, yes: bool):
    """Delete the account NAME.

    Asks first unless --yes.
    """
    with open_store(app) as store:
        account = store.require(name)
        if not yes:
            click.confirm(f"Remove user {account.name}?", abort=True, err=True)
        store.remove(account.name)
    click.echo(f"Removed user {account.name}.")


@user.command("passwd")
@click.argument("name")
@password_stdin_option
@pass_app
@handle_errors
def passwd_cmd(app: AppContext, name: str, password_stdin: bool):
    """Set a new password for NAME.

    It is prompted twice, hidden (or read with --password-stdin).
    """
    with open_store(app) as store:
        account = store.require(name)
        store.set_password(account.name, get_password(password_stdin, "New password"))
    click.echo(f"Password changed for {account.name}.")


@user.command("lock")
@click.argument("name")
@pass_app
@handle_errors
def lock_cmd(app: AppContext, name: str):
    """Refuse logins for NAME until it is unlocked."""
    with open_store(app) as store:
        store.lock(name)
        click.echo(f"Locked user {store.require(name).name}.")


@user.command("unlock")
@click.argument("name")
@pass_app
@handle_errors
def unlock_cmd(app: AppContext, name: str):
    """Allow logins for NAME again."""
    with open_store(app) as store:
        store.unlock(name)
        click.echo(f"Unlocked user {store.require(name).name}.")


@user.command("set-key")
@click.argument("name")
@click.argument("key_file", metavar="FILE.pub.pem", required=False,
                type=click.Path(dir_okay=False))
@click.option("--clear", is_flag=True, help="Remove NAME's registered key instead.")
@pass_app
@handle_errors
def set_key_cmd(app: AppContext, name: str, key_file: Optional[str], clear: bool):
    """Register or replace NAME's public key.

    The key is the member's NAME.pub.pem, used for key login and end-to-end
    private messages; the account and its password are kept. --clear removes it.
    """
    from schat.crypto.keys import public_der
    from schat.store.keyfiles import KeyFiles

    if clear == bool(key_file):
        raise UsageError("give the public key file, or --clear (not both)")
    der = None if clear else public_der(KeyFiles(app.home).load_public(key_file))
    with open_store(app) as store:
        stored = store.require(name).name
        store.set_public_key(stored, der)
        account = store.require(stored)
    if account.key_fingerprint:
        click.echo(f"Set the key of {stored}: {account.key_fingerprint}.")
    else:
        click.echo(f"Cleared the key of {stored}.")


@user.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_app
@handle_errors
def import_cmd(app: AppContext, file: str):
    """Import the original script's users.txt.

    One username,sha256hex per line; a UTF-8 byte order mark is allowed.
    Imported passwords are upgraded to scrypt at each user's next login.
    Bad or duplicate lines are reported and skipped, every good line is still
    imported, and the exit status is then 1. Existing accounts are kept.
    """
    from schat.errors import ConfigError

    try:
        with open(file, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"{file}: cannot read ({err.strerror})") from None
    with open_store(app) as store:
        report = store.import_legacy(lines)
    notes = [(n, f"{problem}; skipped") for n, problem in report.errors]
    notes += [(n, f"user {name} already exists; skipped") for n, name in report.skipped]
    for number, note in sorted(notes):
        echo_err(f"{file}, line {number}: {note}")
    click.echo(f"Imported {len(report.imported)} user(s); {len(report.skipped)} already "
               f"existed; {len(report.errors)} bad line(s).")
    if report.errors:
        raise SystemExit(1)


# Every `schat user` command works on the store --store names (applied last, to them all).
store_option(user)
