"""`schat keys`: your RSA key pairs (for key login and end-to-end private messages)."""

from __future__ import annotations

import getpass
import json
import os
from typing import Optional

import click

from schat.commands.asking import interactive
from schat.commands.common import (
    PASSPHRASE_ENV, AppContext, echo_err, handle_errors, json_option, pass_app,
    read_password_stdin, render,
)
from schat.errors import UsageError


def new_passphrase(no_passphrase: bool, passphrase_stdin: bool) -> Optional[str]:
    """The passphrase for a new key: stdin, $SCHAT_KEY_PASSPHRASE, or prompted twice."""
    if no_passphrase and passphrase_stdin:
        raise UsageError("--no-passphrase and --passphrase-stdin cannot be used together")
    if no_passphrase:
        echo_err("Warning: the private key will be stored unencrypted; "
                 "anyone who can read the file can use it.")
        return None
    if passphrase_stdin:
        passphrase = read_password_stdin()
    elif os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV]
    else:
        passphrase = click.prompt("Passphrase for the private key", hide_input=True,
                                  confirmation_prompt=True, err=True)
    if not passphrase:
        raise UsageError("the passphrase is empty; give one, or use --no-passphrase")
    return passphrase


@click.group()
def keys():
    """Create and inspect your RSA key pairs."""


@keys.command("gen")
@click.argument("name", required=False)
@click.option("--force", is_flag=True,
              help="Replace an existing key pair of that name (the old one is kept in "
                   "HOME/keys/retired/, so direct messages sealed to it stay readable).")
@click.option("--no-passphrase", is_flag=True,
              help="Store the private key unencrypted (a warning is printed).")
@click.option("--passphrase-stdin", is_flag=True,
              help="Read the passphrase from the first line of standard input "
                   "(else $SCHAT_KEY_PASSPHRASE, else a prompt).")
@pass_app
@handle_errors
def gen_cmd(app: AppContext, name: Optional[str], force: bool, no_passphrase: bool,
            passphrase_stdin: bool):
    """Generate an RSA-3072 key pair.

    It is written to HOME/keys/NAME.pem (private, 0600) and NAME.pub.pem.
    NAME defaults to your login name. Replacing a key (--force) names the
    servers where it is registered: they keep the old key until their admin
    registers the new one.
    """
    generate_pair(app, name or getpass.getuser(), force, no_passphrase, passphrase_stdin)


def replacement_warning(app: AppContext, name: str, old_fp: str) -> str:
    """What replacing NAME's key means, naming the servers it is registered on."""
    from schat.store.server_memory import ServerMemory

    places = ServerMemory(app.home.server_memory).registered_on(old_fp)
    if not places:
        return (f"Warning: this replaces the key of {name} ({old_fp}). This client knows of "
                f"no server where it is registered; any that has it will refuse the new key "
                f"until its admin registers it.")
    where = ", ".join(f"{server} ({address}) as {user}" for server, address, user in places)
    return (f"Warning: the key of {name} ({old_fp}) is registered on {where}.\n"
            f"Those servers keep it: they refuse the new key for key login until their admin "
            f"registers it (`schat user set-key {name} FILE`, with your new {name}.pub.pem), "
            f"and members' clients will warn that your key changed.")


def _old_key(app: AppContext, name: str, new_passphrase: Optional[str]):
    """The key being replaced, loaded to be kept under the new passphrase; None when its
    passphrase is not at hand (it is then kept as it is)."""
    from schat.errors import KeyFileError
    from schat.store.keyfiles import KeyFiles

    files = KeyFiles(app.home)
    if not files.is_encrypted(name):
        try:
            return files.load_private(name, None)
        except KeyFileError:
            return None  # damaged: kept byte for byte
    for guess in (new_passphrase, os.environ.get(PASSPHRASE_ENV)):
        if guess:
            try:
                return files.load_private(name, guess)
            except KeyFileError:
                pass
    if not interactive():
        return None
    echo_err("The old key is kept in keys/retired/. Its passphrase keeps it under the new "
             "one, so one passphrase opens both (empty: keep it as it is).")
    for attempt in range(3):
        old = click.prompt("Passphrase of the old key", hide_input=True, default="",
                           show_default=False, err=True)
        if not old:
            return None
        try:
            return files.load_private(name, old)
        except KeyFileError as err:
            echo_err(f"{err}; try again." if attempt < 2 else f"{err}.")
    return None


def generate_pair(app: AppContext, name: str, force: bool = False, no_passphrase: bool = False,
                  passphrase_stdin: bool = False, err: bool = False):
    """Generate and save NAME's key pair (what `schat keys gen` does); return the private key.

    ``err`` prints the paths on stderr (when another command makes the key).
    Replacing a pair (``force``) warns, naming the servers where it is
    registered, asks at a terminal, and keeps the old pair in keys/retired/.
    """
    from schat.crypto.keys import generate_rsa_key
    from schat.store.keyfiles import KeyFiles

    files = KeyFiles(app.home)
    # Checked before the passphrase prompt and the (slow) generation.
    files.save_check(name, force)
    replacing = force and files.private_path(name).exists()
    if replacing:
        old_fp = _current_fingerprint(files, name)
        echo_err(replacement_warning(app, name, old_fp) if old_fp else
                 f"Warning: this replaces the key of {name}, whose file cannot be read.")
        if interactive() and not click.confirm("Replace it?", default=False, err=True):
            raise click.Abort()
    passphrase = new_passphrase(no_passphrase, passphrase_stdin)
    retired = None
    if replacing:
        retired = files.retire(name, _old_key(app, name, passphrase), passphrase)
    key = generate_rsa_key()
    info = files.save(name, key, passphrase, force)
    click.echo(f"Private key: {info.path}", err=err)
    click.echo(f"Public key:  {files.public_path(name)}", err=err)
    click.echo(f"Fingerprint: {info.fingerprint}", err=err)
    if retired is not None:
        click.echo(f"Old key:     {retired} (kept: direct messages sealed to it stay readable)",
                   err=err)
    return key


def _current_fingerprint(files, name: str) -> Optional[str]:
    """The fingerprint of NAME's current pair (from its public key), None if unreadable."""
    from schat.crypto.keys import fingerprint
    from schat.errors import KeyFileError

    try:
        return fingerprint(files.load_public(name))
    except KeyFileError:
        pass
    try:
        return fingerprint(files.load_private(name, None))
    except KeyFileError:
        return None


@keys.command("show")
@click.argument("name")
@json_option
@pass_app
@handle_errors
def show_cmd(app: AppContext, name: str, as_json: bool):
    """Show a public key and its fingerprint.

    NAME is a key name in HOME/keys or the path of a .pem or .pub.pem file.
    """
    from schat.crypto.keys import export_public_pem, fingerprint
    from schat.store.keyfiles import KeyFiles

    files = KeyFiles(app.home)
    key = files.load_public(name)
    pem = export_public_pem(key).decode("ascii")
    if as_json:
        click.echo(json.dumps({"name": name, "path": str(files.resolve_public(name)),
                               "fingerprint": fingerprint(key), "public_key": pem}, indent=2))
        return
    click.echo(f"Fingerprint: {fingerprint(key)}")
    click.echo(pem.rstrip("\n"))


@keys.command("list")
@json_option
@pass_app
@handle_errors
def list_cmd(app: AppContext, as_json: bool):
    """List your key pairs.

    Name, fingerprint, whether the private key is encrypted, and its path in HOME/keys.
    """
    from schat.store.keyfiles import KeyFiles

    infos = KeyFiles(app.home).list()
    if as_json:
        render([i.to_json() for i in infos], [], True)
        return
    rows = [{"name": i.name, "fingerprint": i.fingerprint or f"({i.problem})",
             "encrypted": "?" if i.encrypted is None else i.encrypted, "path": str(i.path)}
            for i in infos]
    render(rows, ["name", "fingerprint", "encrypted", "path"], False,
           empty="No keys. Create one with `schat keys gen`.")
