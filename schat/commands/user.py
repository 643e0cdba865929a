"""`schat user`: manage the server's accounts (works while the server runs)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, Optional

import click

from schat.commands.common import (
    AppContext, echo_err, handle_errors, json_option, pass_app, read_password_stdin, render,
    store_option,
)
from schat.errors import StoreError, UsageError


@contextmanager
def open_store(app: AppContext, create: bool = False) -> Iterator["AccountStore"]:  # noqa: F821
    """The account store (--store / $SCHAT_STORE, else HOME/server/users.db), named on stderr.

    A store is only created with ``create``: a mistyped home (or database) must
    not quietly become a new, empty server.
    """
    from schat.store.accounts import AccountStore
    from schat.store.location import open_engine, redact

    url = app.store_url
    path = app.home.users_db
    if not url and not path.exists() and not create:
        raise StoreError(f"no account store at {path}: no server has run with the data home "
                         f"{app.home.root} (check --home and $SCHAT_HOME); to start a new "
                         "one there, give --create or run `schat serve --init`")
    existed = bool(url) or path.exists()
    engine = open_engine(url, app.home)
    try:
        if url:
            existed = engine.version(AccountStore.component) > 0
            if not existed and not create:
                raise StoreError(f"no account store in {redact(url)}: no server has used this "
                                 "database (check --store and $SCHAT_STORE); to start one "
                                 "there, give --create or run `schat serve --init`")
        store = AccountStore(engine, owns_engine=True)
    except BaseException:
        engine.close()
        raise
    where = redact(url) if url else path
    echo_err(f"Account store: {where}" if existed else f"Created the account store {where}")
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


create_option = click.option(
    "--create", is_flag=True,
    help="Create the account store if the data home has none yet (as `schat serve --init` "
         "does); without it a missing store is an error, so a mistyped --home creates nothing.")

password_stdin_option = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from the first line of standard input (for scripts).")


@click.group()
def user():
    """Manage the server's accounts.

    They live in HOME/server/users.db, which every command names on stderr.
    """


@user.command("add")
@click.argument("name")
@password_stdin_option
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help="The user's RSA public key (NAME.pub.pem), for key login and private messages.")
@click.option("--admin", "make_admin", is_flag=True,
              help="Make NAME a server admin (moderates every room, may /disconnect and /lock).")
@create_option
@pass_app
@handle_errors
def add_cmd(app: AppContext, name: str, password_stdin: bool, key_file: Optional[str],
            make_admin: bool, create: bool):
    """Create the account NAME.

    The password is prompted twice, hidden (or read with --password-stdin).
    """
    from schat.crypto.keys import public_der
    from schat.store.keyfiles import KeyFiles
    from schat.store.policy import validate_username

    validate_username(name)
    der = public_der(KeyFiles(app.home).load_public(key_file)) if key_file else None
    with open_store(app, create) as store:
        # Refuse a taken name before asking for a password that would be thrown away.
        store.ensure_new(name)
        account = store.add(name, get_password(password_stdin), public_key_der=der)
        if make_admin:
            from schat.store.chat import set_role

            set_role(store, account.name, "admin")
    suffix = f" with key {account.key_fingerprint}" if account.key_fingerprint else ""
    role = " as a server admin" if make_admin else ""
    click.echo(f"Added user {account.name}{role}{suffix}.")


@user.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(["admin", "member"]))
@pass_app
@handle_errors
def role_cmd(app: AppContext, name: str, role: str):
    """Make NAME a server admin, or a member again.

    Admins moderate every room and may /disconnect and /lock members; the
    change counts from NAME's next login.
    """
    from schat.store.chat import set_role

    with open_store(app) as store:
        spelling = set_role(store, name, role)
    click.echo(f"{spelling} is now {'a server admin' if role == 'admin' else 'a member'}.")


def end_sessions(app: AppContext, op: str, name: str, reason: str = "") -> str:
    """Ask the running server (if any) to end NAME's session; a sentence saying what happened."""
    from schat.server.control import control_path, notify

    fields = {"reason": reason} if op == "lock" else {}
    answer = notify(control_path(app.home.server_dir), op, name=name, **fields)
    if answer is None:
        return ""
    return " Ended their live session." if answer["ended"] else ""


@user.command("list")
@json_option
@pass_app
@handle_errors
def list_cmd(app: AppContext, as_json: bool):
    """List the accounts.

    Name, created, last login, locked, legacy hash and key fingerprint.
    """
    from schat.store.chat import roles

    with open_store(app) as store:
        accounts = store.list()
        admins = roles(store)
    if as_json:
        render([{**a.to_json(), "role": admins.get(a.name.lower(), "member")}
                for a in accounts], [], True)
        return
    rows = [{"name": a.name, "role": admins.get(a.name.lower(), "member"),
             "created": local_time(a.created),
             "last login": local_time(a.last_login), "locked": a.locked,
             "legacy hash": a.legacy, "key fingerprint": a.key_fingerprint} for a in accounts]
    render(rows, ["name", "role", "created", "last login", "locked", "legacy hash",
                  "key fingerprint"], False, empty="No users.")


@user.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
@handle_errors
def remove_cmd(app: AppContext, name: str, yes: bool):
    """Delete the account NAME.

    Asks first unless --yes. A live session of NAME is ended at once.
    """
    with open_store(app) as store:
        account = store.require(name)
        if not yes:
            click.confirm(f"Remove user {account.name}?", abort=True, err=True)
        store.remove(account.name)
    click.echo(f"Removed user {account.name}.{end_sessions(app, 'remove', account.name)}")


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
@click.option("--reason", default="", help="Shown to NAME's rooms and logged.")
@pass_app
@handle_errors
def lock_cmd(app: AppContext, name: str, reason: str = ""):
    """Refuse logins for NAME until it is unlocked.

    A live session of NAME on the running server is ended at once.
    """
    with open_store(app) as store:
        store.lock(name)
        spelling = store.require(name).name
    click.echo(f"Locked user {spelling}.{end_sessions(app, 'lock', spelling, reason)}")


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
@create_option
@pass_app
@handle_errors
def import_cmd(app: AppContext, file: str, create: bool):
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
    with open_store(app, create) as store:
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
