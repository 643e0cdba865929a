"""`schat connect`, `schat signup`, `schat login`: the member's side of a server.

Each command is a few lines over :class:`schat.commands.login_flow.LoginFlow`,
which checks what can be checked before any question, remembers per server
who you are and how you log in, and never follows a refused key with a
password.
"""

from __future__ import annotations

from typing import Optional

import click

from schat.commands.common import AppContext, echo_err, handle_errors, pass_app
from schat.commands.asking import chat_terminal, interactive, load_key, new_password
from schat.commands.login_flow import LoginFlow, probe
from schat.errors import SchatError


def start_dm(app: AppContext, session, flow: LoginFlow, emit):
    """The DmClient for a logged-in session: your key, and the keys it replaced (so
    direct messages sealed to them stay readable)."""
    from schat.client.dm import DmClient

    return DmClient(session, app.home.root, flow.private, emit,
                    retired_keys=flow.retired_keys())


def finish_login(app: AppContext, session, flow: LoginFlow) -> bool:
    """After `schat login`: register the key when asked to; say when the account has none.
    Returns True when the key was registered now."""
    from schat.client.local_events import LocalWarning

    def report(event) -> None:
        # Warnings only (another key on the account...): the outcome is said below.
        if isinstance(event, LocalWarning):
            echo_err(event.text)

    dm = start_dm(app, session, flow, report)
    session.start(dm.wrap(lambda msg: None))
    if flow.register:
        if not flow.register_with(dm):
            raise SchatError(f"your key was not registered on {flow.name} (see above)")
        return True
    if flow.private is None and dm.fetch_key_status(flow.user).status == "no_key":
        echo_err(f"Note: {flow.user} has no key on {flow.name}, so nobody can send you "
                 f"end-to-end encrypted direct messages; make one with `schat keys gen "
                 f"{flow.user}`, then register it with `schat login {flow.name} --register-key`.")
    return False


server_argument = click.argument("name", metavar="NAME")
user_option = click.option("--user", "-u",
                           help="Your user name on the server [default: the one you last "
                                "used there, else your login name].")
key_option = click.option("--key", "-k", metavar="PATH|NAME",
                          help="Your private key (a path, or NAME for HOME/keys/NAME.pem) "
                               "[default: HOME/keys/USER.pem].")
password_option = click.option("--password", "use_password", is_flag=True,
                               help="Log in with your password this time, even with a key.")
accept_option = click.option("--accept-new", is_flag=True,
                             help="Trust the server key without asking if it is not pinned yet "
                                  "(a changed key is always refused).")


@click.command()
@server_argument
@user_option
@key_option
@password_option
@accept_option
@click.option("--json", "as_json", is_flag=True,
              help="Print incoming events as JSON lines (type, sender, text, time, id).")
@click.option("--no-bell", is_flag=True,
              help="No terminal bell on private messages and mentions of your name.")
@pass_app
@handle_errors
def connect(app: AppContext, name: str, user: Optional[str], key: Optional[str],
            use_password: bool, accept_new: bool, as_json: bool, no_bell: bool = False):
    """Log in and chat on the server NAME (from your servers list).

    The client remembers per server your user name and whether you log in
    with your key (HOME/keys/USER.pem) or your password, so `schat connect
    NAME` alone works from the second time on. Lines you type are sent to
    everyone; lines starting with / are commands (/help lists them, /quit
    leaves). Without a terminal, each line of standard input is sent and the
    password comes from $SCHAT_PASSWORD. Sign up with `schat signup NAME`.
    """
    flow = LoginFlow(app, name, accept_new)
    screen = chat_terminal() and not as_json
    session = flow.connect()
    try:
        flow.choose_user(user)
        flow.choose_login(key, use_password, offer_key=screen, mention_key=not screen)
    except BaseException:
        session.close()
        raise
    session = flow.authenticate(session)
    try:
        flow.remember(session)
    except BaseException:
        session.close()
        raise
    if screen:
        from schat.client.chat_screen import run_chat_screen

        code = run_chat_screen(app, flow, session, bell=not no_bell)
        click.get_current_context().exit(code)
    from schat.client.ui import LineUI

    try:
        dm = start_dm(app, session, flow, lambda msg: None)
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

    The password is asked twice (or taken from $SCHAT_PASSWORD) and checked
    against the server's rules before anything is sent. Your key (--key, else
    HOME/keys/USER.pem; offered to be generated when missing) is registered
    with the account for key login and end-to-end encrypted direct messages.
    """
    flow = LoginFlow(app, name, accept_new)
    probe(flow.entry)
    flow.choose_user(user, signup=True)
    flow.password = new_password(flow.user, name)
    path = flow.keys.private_path(flow.user)
    if key or path.exists():
        flow.private, flow.passphrase = load_key(app, key or flow.user)
    elif interactive():
        echo_err(f"You have no key pair yet ({path}). It logs you in without your password "
                 f"and seals your direct messages end to end.")
        if click.confirm("Generate one now?", default=True, err=True):
            flow.generate_key()
        else:
            flow.memory.decline_key_offer(name, flow.entry.address)
    else:
        echo_err(f"Note: you have no key ({path}); make one with `schat keys gen "
                 f"{flow.user}`, then register it with `schat login {name} --register-key`.")
    session = flow.signup()
    try:
        flow.remember(session)
    finally:
        session.close()
    suffix = " with your key" if flow.private is not None else ""
    click.echo(f"Signed up on {name} as {session.user}{suffix}.")


@click.command()
@server_argument
@user_option
@key_option
@password_option
@click.option("--register-key", is_flag=True,
              help="Log in with your password and register your key (made now if you have "
                   "none) for this account: from then on the key logs you in.")
@accept_option
@pass_app
@handle_errors
def login(app: AppContext, name: str, user: Optional[str], key: Optional[str],
          use_password: bool, register_key: bool, accept_new: bool):
    """Check your login on the server NAME: exit 0 ok, 1 refused.

    With --register-key, your password logs you in (it is sent to NAME) and
    your key is registered for the account, which must have none yet. Only a
    check: a chat session of yours elsewhere goes on, and nobody sees a join.
    """
    flow = LoginFlow(app, name, accept_new)
    session = flow.connect()
    try:
        flow.choose_user(user)
        flow.choose_login(key, use_password, register_key=register_key)
    except BaseException:
        session.close()
        raise
    session = flow.authenticate(session, check=True)
    try:
        flow.remember(session)
        registered = finish_login(app, session, flow)
    finally:
        session.close()
    how = "your key" if flow.method == "key" else "your password"
    click.echo(f"Logged in to {name} as {session.user} with {how} "
               f"(server key {session.fingerprint}).")
    if registered:
        from schat.crypto.keys import fingerprint

        click.echo(f"Registered your key {fingerprint(flow.private)} for {session.user} on "
                   f"{name}: from now on it logs you in.")
