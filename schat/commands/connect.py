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


# A trust question answered after this many seconds may have outlasted the
# server's login deadline (30 s by default): connect again once the key is pinned.
TRUST_REDIAL_AFTER = 15.0


def open_session(app: AppContext, name: str, accept_new: bool, ask: bool = True):
    """Resolve NAME in servers.json and connect with the pin check done.

    ``ask=False`` never prompts about an unknown key (reconnecting from the chat screen).
    """
    from schat.client.session import ClientSession, ServerKeyChanged
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
    except ServerKeyChanged as err:
        if not ask:
            raise TrustError(err.banner) from None
        # The banner on its own lines, so that "Error: " does not break the box.
        echo_err(err.banner)
        raise err from None
    except TrustError as err:
        if session.pin_status == "unknown" and confirm is None and not accept_new:
            raise TrustError(
                f"server {entry.name!r} offered the unknown key {session.fingerprint}; "
                "check it with the operator, then connect again with --accept-new "
                "(or from a terminal to confirm it)") from None
        raise err from None
    except BaseException:
        # known_servers unreadable, the connection lost...: never leave the socket open.
        session.close()
        raise
    if session.pin_status == "unknown":
        echo_err(f"Pinned the key of {entry.name!r}: {session.fingerprint}")
    if session.trust_wait > TRUST_REDIAL_AFTER:
        echo_err("Connecting again: the server may have given up waiting while you checked "
                 "its key.")
        session.close()
        return open_session(app, name, accept_new, ask=False)
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


def find_key(app: AppContext, user: str, key: Optional[str], offer: bool):
    """The user's private key: --key, else HOME/keys/USER.pem; None when there is none.

    Without a key file and with ``offer``, a person at the keyboard is asked
    whether to generate one now (as `schat keys gen USER` does); a script is
    told how to make one.
    """
    from schat.commands.keys import generate_pair
    from schat.store.keyfiles import KeyFiles

    if key:
        return load_key(app, key)
    path = KeyFiles(app.home).private_path(user)
    if path.exists():
        return load_key(app, user)
    if not offer:
        return None
    if not interactive():
        echo_err(f"Note: you have no key ({path}), so you cannot receive end-to-end "
                 f"encrypted direct messages; make one with `schat keys gen {user}` and "
                 f"connect again.")
        return None
    echo_err(f"You have no key pair yet ({path}). It logs you in and seals your direct "
             f"messages end to end.")
    if not click.confirm("Generate one now?", default=True, err=True):
        return None
    echo_err("Generating a 3072-bit RSA key (a few seconds)...")
    return generate_pair(app, user, err=True)


def require_server(app: AppContext, name: str) -> None:
    """Fail on an unknown server NAME (or a broken servers.json) before any question
    about the login mode, keys or passwords is asked."""
    from schat.store.servers import resolve_server

    resolve_server(app.config, app.home, name)


class Credentials:
    """What a login needs, gathered before connecting (the server's login deadline
    does not wait for prompts)."""

    def __init__(self, app: AppContext, user: str, key: Optional[str], mode: str,
                 offer_key: bool = True):
        self.app = app
        self.user = user
        self.mode = mode
        self.private = find_key(app, user, key, offer_key)
        self.password: Optional[str] = None
        if mode == "signup" or self.private is None:
            self.password = get_password(confirm=mode == "signup")
        # True once the key was refused and the password used instead.
        self.fell_back = False

    def login(self, name: str, accept_new: bool, check: bool = False):
        """Connect and log in (or sign up); return the logged-in session.

        ``check``: only check the credentials; the server starts no chat session, so
        a session already running elsewhere goes on and nobody sees a join.

        Key login when a key is loaded; when the server refuses it (the
        account has no key registered yet, or another one), the password,
        asked now, on a fresh connection.
        """
        from schat.client.session import LoginRefused
        from schat.crypto.keys import public_der

        session = open_session(self.app, name, accept_new)
        try:
            if self.mode == "signup":
                der = public_der(self.private) if self.private is not None else None
                session.signup(self.user, self.password, der)
                return session
            if self.private is None:
                session.login_password(self.user, self.password, check=check)
                return session
            try:
                session.login_key(self.user, self.private, check=check)
                return session
            except LoginRefused as err:
                if err.code != "auth_failed":
                    raise
        except BaseException:
            session.close()
            raise
        session.close()
        echo_err(f"Key login refused: {name} has not registered this key for {self.user} "
                 f"(yet). Logging in with your password to register it.")
        self.password = get_password()
        self.fell_back = True
        session = open_session(self.app, name, accept_new, ask=False)
        try:
            session.login_password(self.user, self.password, check=check)
        except BaseException:
            session.close()
            raise
        return session


def register_key(app: AppContext, session, creds: Credentials) -> None:
    """After a login without a UI: upload the key when the account has none (then close)."""
    from schat.client.dm import DmClient, no_key_help
    from schat.client.local_events import LocalWarning

    def report(event) -> None:
        text = getattr(event, "text", None)
        if isinstance(event, LocalWarning) or text:
            echo_err(text)

    dm = DmClient(session, app.home.root, creds.private, report)
    session.start(dm.wrap(lambda msg: None))
    if creds.private is not None:
        dm.register_key()
    elif dm.fetch_key_status(creds.user).status == "no_key":
        echo_err(f"Note: {no_key_help(creds.user)}")


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
    Your key (--key, else HOME/keys/USER.pem) logs you in and seals your
    direct messages; it is registered on the server at your first login.
    """
    require_server(app, name)
    mode = "login"
    if interactive() and not key:
        mode = click.prompt("Log in or sign up?", type=click.Choice(["login", "signup"]),
                            default="login", err=True)
    user = get_user(user)
    # Kept in memory only, so the chat screen can log in again after a drop.
    creds = Credentials(app, user, key, mode)
    session = creds.login(name, accept_new)
    if interactive() and sys.stdout.isatty() and not as_json:
        from schat.client.chat_screen import run_chat_screen

        code = run_chat_screen(app, name, session, user, creds.private, creds.password,
                               bell=not no_bell, reopen=open_session)
        click.get_current_context().exit(code)
    from schat.client.dm import DmClient
    from schat.client.ui import LineUI

    try:
        dm = DmClient(session, app.home.root, creds.private, lambda msg: None)
    except BaseException:
        session.close()
        raise
    code = LineUI(session, dm, as_json=as_json).run()
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

    The password is prompted twice (or taken from $SCHAT_PASSWORD). Your key
    (--key, else HOME/keys/USER.pem; offered to be generated when missing) is
    registered for key login and end-to-end encrypted direct messages.
    """
    require_server(app, name)
    user = get_user(user)
    creds = Credentials(app, user, key, "signup")
    session = creds.login(name, accept_new)
    session.close()
    suffix = " with your key" if creds.private is not None else ""
    click.echo(f"Signed up on {name} as {session.user}{suffix}.")


@click.command()
@server_argument
@user_option
@key_option
@accept_option
@pass_app
@handle_errors
def login(app: AppContext, name: str, user: Optional[str], key: Optional[str],
          accept_new: bool):
    """Check your login on the server NAME: exit 0 ok, 1 refused.

    With a key (--key, else HOME/keys/USER.pem) that the account has not
    registered yet, the password logs in and the key is registered. Only a
    check: a chat session of yours elsewhere goes on, and nobody sees a join.
    """
    require_server(app, name)
    user = get_user(user)
    creds = Credentials(app, user, key, "login", offer_key=False)
    session = creds.login(name, accept_new, check=True)
    try:
        register_key(app, session, creds)
    finally:
        session.close()
    how = "your password" if creds.private is None or creds.fell_back else "your key"
    click.echo(f"Logged in to {name} as {session.user} with {how} "
               f"(server key {session.fingerprint}).")
