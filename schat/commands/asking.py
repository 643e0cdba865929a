"""Questions at the terminal: is anyone there, the user name, a key's passphrase, a
password, and the server's unknown key. Three tries for anything typed, as ssh
gives; nothing is asked when nobody is at the keyboard (the environment gives
it, or a clear error says how).
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Optional

import click

from schat.commands.common import PASSPHRASE_ENV, AppContext, echo_err
from schat.errors import KeyFileError, MissingCredentials, PolicyError

PASSWORD_ENV = "SCHAT_PASSWORD"
# Like ssh: three tries for a password or a passphrase typed at the keyboard.
TRIES = 3


def interactive() -> bool:
    """True when a person is at the keyboard (stdin is a terminal)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def chat_terminal() -> bool:
    """True when ``connect`` opens the chat screen (stdin and stdout are terminals)."""
    try:
        return interactive() and sys.stdout.isatty()
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


def default_user() -> Optional[str]:
    """Your login name when it is a valid schat user name, else None."""
    from schat.store.policy import USERNAME_RE

    try:
        name = getpass.getuser()
    except (KeyError, OSError, ImportError):
        return None
    return name if USERNAME_RE.fullmatch(name or "") else None


def ask_user(prompt: str, default: Optional[str]) -> str:
    """A user name from the keyboard, asked again (up to three times) when invalid."""
    from schat.store.policy import validate_username

    for attempt in range(TRIES):
        name = click.prompt(prompt, default=default, err=True).strip()
        try:
            return validate_username(name)
        except PolicyError as err:
            if attempt == TRIES - 1:
                raise
            echo_err(f"{err}; try again.")
    raise AssertionError("unreachable")


def load_key(app: AppContext, key: str):
    """The private key NAME or PATH and the passphrase that opened it.

    The passphrase comes from $SCHAT_KEY_PASSPHRASE (one try) or the keyboard
    (three tries); a script without it is told how to give it.
    """
    from schat.store.keyfiles import KeyFiles

    files = KeyFiles(app.home)
    if not files.is_encrypted(key):
        return files.load_private(key, None), None
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return files.load_private(key, passphrase), passphrase
    if not interactive():
        raise MissingCredentials(f"the key {files.resolve_private(key)} is protected by a "
                                 f"passphrase: set ${PASSPHRASE_ENV}")
    for attempt in range(TRIES):
        passphrase = click.prompt(f"Passphrase for {files.resolve_private(key)}",
                                  hide_input=True, err=True)
        try:
            return files.load_private(key, passphrase), passphrase
        except KeyFileError as err:
            if attempt == TRIES - 1:
                raise
            echo_err(f"{err}; try again.")
    raise AssertionError("unreachable")


def ask_password(prompt: str) -> str:
    """One password, hidden (``prompt`` names the user and the server)."""
    return click.prompt(prompt, hide_input=True, err=True)


def password_from_env() -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    raise MissingCredentials(f"no password: set ${PASSWORD_ENV}, or log in with a key "
                             f"(--key, or `schat login NAME --register-key` once)")


def new_password(user: str, server: str) -> str:
    """A new account's password, checked against the server's policy before it is sent
    (asked twice, three tries at a terminal)."""
    from schat.store.policy import check_password_policy

    if not interactive():
        password = password_from_env()
        check_password_policy(password, user)
        return password
    for attempt in range(TRIES):
        password = click.prompt(f"Choose a password for {user} on {server}", hide_input=True,
                                confirmation_prompt=True, err=True)
        try:
            check_password_policy(password, user)
            return password
        except PolicyError as err:
            if attempt == TRIES - 1:
                raise
            echo_err(f"{err}; try again.")
    raise AssertionError("unreachable")
