"""`schat connect`, `schat signup`, `schat login`: the member's side of a server."""

from __future__ import annotations

import os
import sys
from typing import Optional

import click

from schat.commands.common import PASSPHRASE_ENV, AppContext, echo_err, handle_errors, pass_app
from schat.errors import TrustError, UsageError

PASSWORD_ENV = "SCHAT_PASSWORD"


def interactive() -> bool:
    """True when a person is at the keyboard (stdin is a terminal)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def ask_trust(name: str, address: str):
    """A confirm callback for an unknown server key (None when nobody can answer)."""
    if not interactive():
        return None

    def confirm(fp: str) -> bool:
        echo_err(f"The authenticity of server {name!r} ({address}) can't be established.")
        echo_err(f"Its key fingerprint is {fp}.")
        echo_err("Compare it with the fingerprint the server's operator gave you.")
        return click.confirm("Trust this key and connect?", default=False, err=True)
    return confirm


def open_session(app: AppContext, name: str, accept_new: bool, ask: bool = True):
    """Resolve NAME in servers.json and connect with the pin check done.

    ``ask=False`` never prompts about an unknown key (reconnecting from the chat screen).
    """
    from schat.client.session import ClientSession
    from schat.store.known_servers import KnownServers
    from schat.store.servers import resolve_server

    entry = resolve_server(app.config, app.home, name)
    confirm = ask_trust(entry.name, entry.address) if ask else None
    session = ClientSession(entry.host, entry.port, entry.name,
                            known_servers=KnownServers(app.home.known_servers),
                            expected_fingerprint=entry.fingerprint, confirm_new=confirm,
                            accept_new=accept_new)
    try:
        session.connect()
    except TrustError as err:
        if session.pin_status == "unknown" and confirm is None and not accept_new:
            raise TrustError(
                f"server {entry.name!r} offered the unknown key {session.fingerprint}; "
                "check it with the operator, then connect again with --accept-new "
                "(or from a terminal to confirm it)") from None
        raise err from None
    if session.pin_status == "unknown":
        echo_err(f"Pinned the key of {entry.name!r}: {session.fingerprint}")
    return session


def get_user(user: Optional[str]) -> str:
    from schat.store.policy import validate_username

    if not user:
        if not interactive():
            raise UsageError("give the user name with --user")
        user = click.prompt("User name", err=True).strip()
    return validate_username(user)


def load_key(app: AppContext, key: str):
    """The private key for key login; passphrase from $SCHAT_KEY_PASSPHRASE or prompted."""
    from schat.store.keyfiles import KeyFiles

    files = KeyFiles(app.home)
    passphrase = None
    if files.is_encrypted(key):
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if not passphrase:
            if not interactive():
                raise UsageError(f"the key is protected by a passphrase: set ${PASSPHRASE_ENV}")
            passphrase = click.prompt("Passphrase for the private key", hide_input=True, err=True)
    return files.load_private(key, passphrase)


def get_password(confirm: bool = False) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not interactive():
        raise UsageError(f"no password: set ${PASSWORD_ENV}, or use --key for key login")
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm, err=True)


def authenticate(app: AppContext, session, user: str, key: Optional[str], mode: str,
                 private=None, password: Optional[str] = None):
    """Log in (password or key) or sign up on an open session; return the welcome."""
    if mode == "signup":
        from schat.crypto.keys import public_der

        if key and private is None:
            private = load_key(app, key)
        der = public_der(private) if private is not None else None
        return session.signup(user, password or get_password(confirm=True), der)
    if key:
        return session.login_key(user, private if private is not None else load_key(app, key))
    return session.login_password(user, password or get_password())


server_argument = click.argument("name", metavar="NAME")
user_option = click.option("--user", "-u", help="Your user name on the server.")
key_option = click.option("--key", "-k", metavar="PATH|NAME",
                          help="Your private key (a path, or NAME for HOME/keys/NAME.pem).")
accept_option = click.option("--accept-new", is_flag=True,
                             help="Trust the server key without asking if it is not pinned yet "
                                  "(a changed key is always refused).")


@click.command()
@server_argument
@user_option
@key_option
@accept_option
@click.option("--json", "as_json", is_flag=True,
              help="Print incoming events as JSON lines (type, sender, text, time, id).")
@click.option("--no-bell", is_flag=True,
              help="No terminal bell on private messages and mentions of your name.")
@pass_app
@handle_errors
def connect(app: AppContext, name: str, user: Optional[str], key: Optional[str],
            accept_new: bool, as_json: bool, no_bell: bool = False):
    """Chat on the server NAME (from servers.json).

    Lines you type are sent to everyone; lines starting with / are commands
    (/help lists them, /quit leaves). Without a terminal, each line of
    standard input is sent and the password comes from $SCHAT_PASSWORD.
    """
    from schat.client.ui import LineUI

    mode = "login"
    if interactive() and not key:
        choice = click.prompt("Log in or sign up?", type=click.Choice(["login", "signup"]),
                              default="login", err=True)
        mode = choice
    user = get_user(user)
    session = open_session(app, name, accept_new)
    from schat.client.dm import DmClient

    try:
        # Loaded once: the same key logs in and seals/opens direct messages.
        private = load_key(app, key) if key else None
        # Kept in memory only, so the chat screen can log in again after a drop.
        password = None if key else get_password(confirm=mode == "signup")
        authenticate(app, session, user, key, mode, private, password)
        dm = DmClient(session, app.home.root, private, lambda msg: None)
    except BaseException:
        session.close()
        raise
    if interactive() and sys.stdout.isatty() and not as_json:
        from schat.client.tui import run_chat_screen

        code = run_chat_screen(app, name, session, user, private, password,
                               bell=not no_bell, reopen=open_session)
        click.get_current_context().exit(code)
    ui = LineUI(session, as_json=as_json, dm=dm)
    dm.emit = ui.show
    code = ui.run()
    click.get_current_context().exit(code)


@click.command()
@server_argument
@user_option
@key_option
@accept_option
@pass_app
@handle_errors
def signup(app: AppContext, name: str, user: Optional[str], key: Optional[str],
           accept_new: bool):
    """Create your account on the server NAME (if it allows sign-up).

    The password is prompted twice (or taken from $SCHAT_PASSWORD); --key also
    registers your public key for key login and private messages.
    """
    user = get_user(user)
    session = open_session(app, name, accept_new)
    try:
        welcome = authenticate(app, session, user, key, "signup")
    finally:
        session.close()
    click.echo(f"Signed up on {name} as {welcome.user}.")


@click.command()
@server_argument
@user_option
@key_option
@accept_option
@pass_app
@handle_errors
def login(app: AppContext, name: str, user: Optional[str], key: Optional[str],
          accept_new: bool):
    """Check your login on the server NAME: exit 0 ok, 1 refused."""
    user = get_user(user)
    session = open_session(app, name, accept_new)
    try:
        welcome = authenticate(app, session, user, key, "login")
    finally:
        session.close()
    click.echo(f"Logged in to {name} as {welcome.user} (server key {session.fingerprint}).")
