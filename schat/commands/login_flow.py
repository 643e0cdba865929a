"""Logging in from the command line: which user, key or password, and at most three tries.

What can be checked comes before any question: the server's name, then that
it answers (and its key, which may be the trust question). The client
remembers per server (:mod:`schat.store.server_memory`) the user name and how
it logged in, so a returning ``schat connect team`` asks at most for the
password or the key's passphrase.

A refused key is never followed by a password: a server that answers
``auth_failed`` to a key login may be fishing for it. Sending the password to
register a key is a step the user chooses (``schat login NAME --register-key``
or the offer ``connect`` makes once per server, which says so).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import List, Optional

import click

from schat.commands.asking import (PASSWORD_ENV, TRIES, ask_password, ask_trust, ask_user,
                                   default_user, interactive, load_key, password_from_env)
from schat.commands.common import AppContext, echo_err
from schat.store.servers import format_address
from schat.errors import (AuthenticationFailed, ConnectionFailed, KeyFileError,
                          MissingCredentials, TrustError)

log = logging.getLogger("schat.client.login")

# A connection older than this may have outlived the server's login deadline
# (30 s by default) while questions were answered: connect again (no question).
REDIAL_AFTER = 15.0
PROBE_TIMEOUT = 10.0


# -- the server ------------------------------------------------------------------
def open_session(app: AppContext, name: str, accept_new: bool, ask: bool = True,
                 features: Optional[tuple] = None):
    """Resolve NAME and connect with the pin check done.

    ``ask=False`` never prompts about an unknown key (reconnecting from the chat screen).
    ``features``: what the login announces (default: all this client understands).
    """
    from schat.client.session import ClientSession
    from schat.client.trust import ServerKeyChanged
    from schat.store.known_servers import KnownServers
    from schat.store.servers import resolve_server

    entry = resolve_server(app.config, app.home, name)
    confirm = ask_trust(entry.name, entry.address) if ask else None
    extra = {} if features is None else {"features": features}
    session = ClientSession(entry.host, entry.port, entry.name,
                            known_servers=KnownServers(app.home.known_servers),
                            expected_fingerprint=entry.fingerprint, confirm_new=confirm,
                            accept_new=accept_new, addresses=entry.all_addresses, **extra)
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
    if session.trust_wait > REDIAL_AFTER:
        log.debug("connecting again: the trust question took %.0f s", session.trust_wait)
        session.close()
        return open_session(app, name, accept_new, ask=False, features=features)
    return session


def probe(entry) -> None:
    """Fail at once when nothing answers at any of the server's addresses (before any
    question)."""
    failed = []
    timeout = PROBE_TIMEOUT if len(entry.all_addresses) == 1 else min(PROBE_TIMEOUT, 5.0)
    for host, port in entry.all_addresses:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            failed.append(f"{format_address(host, port)}: {err.strerror or err}")
            continue
        sock.close()
        return
    raise ConnectionFailed(f"cannot reach server {entry.name!r} at {'; '.join(failed)}")


# -- one login -------------------------------------------------------------------------
class LoginFlow:
    """One login (or sign-up) to the server ``name``: who, how, three tries, what is
    remembered. The key, passphrase and password stay in memory only."""

    def __init__(self, app: AppContext, name: str, accept_new: bool = False):
        from schat.store.keyfiles import KeyFiles
        from schat.store.server_memory import ServerMemory
        from schat.store.servers import resolve_server

        self.app = app
        self.name = name
        self.accept_new = accept_new
        # An unknown name (or a broken list) fails here, before any question.
        self.entry = resolve_server(app.config, app.home, name)
        self.memory = ServerMemory(app.home.server_memory)
        self.remembered = self.memory.get(name, self.entry.address)
        self.keys = KeyFiles(app.home)
        self.user: str = ""
        self.private = None
        self.passphrase: Optional[str] = None
        self.password: Optional[str] = None
        self.method: Optional[str] = None
        # Register the loaded key after the password login (the user chose to).
        self.register = False
        self._typed_password = False
        self._opened = 0.0
        # What the login announces; () once the server turned out to be older than rooms.
        self.features: Optional[tuple] = None

    # -- connecting ---------------------------------------------------------------
    def connect(self, ask: bool = True):
        """A pinned connection (the trust question when the key is unknown and ``ask``)."""
        session = open_session(self.app, self.name, self.accept_new, ask=ask,
                               features=self.features)
        self._opened = time.monotonic()
        return session

    def reopen(self, accept_new: bool = False, ask: bool = False):
        """``open_session`` for the chat screen's reconnects (never a question)."""
        return open_session(self.app, self.name, accept_new, ask=ask, features=self.features)

    def _older_server(self, err) -> bool:
        """After a login that listed features was dropped without a word: True (and log in
        without them from now on) the first time; a server older than rooms does that."""
        if self.features == ():
            return False
        log.debug("%s; logging in again without features", err)
        echo_err(f"Note: {self.name} closed the connection at login, as a server older than "
                 f"rooms does; logging in again as an older client (one room, no /join).")
        self.features = ()
        return True

    def _fresh(self, session):
        if session is not None and session.connected and \
                time.monotonic() - self._opened < REDIAL_AFTER:
            return session
        if session is not None:
            log.debug("connecting again before logging in: the questions took a while")
            session.close()
        return self.connect(ask=session is None)

    # -- who ------------------------------------------------------------------------
    def choose_user(self, given: Optional[str], signup: bool = False) -> str:
        """``--user``, else (logging in) the name remembered for this server, else your
        login name; a person signing up is asked, with that as the default."""
        from schat.store.policy import validate_username

        if given:
            self.user = validate_username(given)
        elif not signup and self.remembered.user:
            self.user = self.remembered.user
        elif interactive() and (signup or default_user() is None):
            prompt = "User name to sign up as" if signup else f"User name on {self.name}"
            self.user = ask_user(prompt, default_user())
        elif default_user() is not None:
            self.user = default_user()
        else:
            raise MissingCredentials("give the user name with --user")
        return self.user

    # -- how ------------------------------------------------------------------------
    def choose_login(self, key: Optional[str] = None, use_password: bool = False,
                     offer_key: bool = False, register_key: bool = False,
                     mention_key: bool = False) -> str:
        """Key or password, from the options and what this server remembers.

        ``offer_key``: a person at the chat screen without a key (or with one
        this server does not have yet) is offered, once per server, to make or
        register it; ``mention_key``: a script is told so, once per server.
        ``register_key``: log in with the password to register the key.
        """
        from schat.store.server_memory import KEY, PASSWORD

        account = self.remembered.account(self.user)
        path = self.keys.private_path(self.user)
        if register_key:
            self._load_or_make_key(key, path)
            self.register = True
            self.method = PASSWORD
        elif use_password:
            self.method = PASSWORD
            if key or (path.exists() and account.key):
                # Not to log in: to open direct messages sealed to a key the server has
                # (this one, or one it replaced after `schat keys gen --force`).
                self._load(key or self.user)
        elif key:
            self._load(key)
            self.method = KEY
        elif path.exists() and (account.login != PASSWORD or account.key):
            self._load(self.user)
            self.method = KEY
        elif account.login == KEY:
            raise MissingCredentials(
                f"you log in to {self.name} as {self.user} with your key, and {path} is "
                f"missing: restore it, give another with --key, or use your password this "
                f"time with --password")
        else:
            self.method = PASSWORD
            if offer_key and not self.remembered.key_offer_declined:
                self._offer_key(path)
            elif mention_key and not self.remembered.key_offer_declined:
                self._mention_key(path)
        if self.method == PASSWORD:
            self._get_password()
        return self.method

    def _load(self, key: str) -> None:
        self.private, self.passphrase = load_key(self.app, key)

    def _load_or_make_key(self, key: Optional[str], path) -> None:
        if key or path.exists():
            self._load(key or self.user)
            return
        if not interactive():
            raise MissingCredentials(f"you have no key to register ({path}): make one with "
                                     f"`schat keys gen {self.user}`")
        echo_err(f"You have no key pair yet ({path}).")
        if not click.confirm("Generate one now?", default=True, err=True):
            raise click.Abort()
        self.generate_key()

    def generate_key(self) -> None:
        """Make the user's key pair now (as `schat keys gen USER`: passphrase asked twice)."""
        from schat.commands.keys import generate_pair

        echo_err("Generating a 3072-bit RSA key (a few seconds)...")
        self.private = generate_pair(self.app, self.user, err=True)

    def _offer_key(self, path) -> None:
        # Once per server: a "no" is remembered, and the way to do it later is named.
        question = f"Register it on {self.name}? This sends your password to {self.name}, once."
        if path.exists():
            echo_err(f"Your key {path} is not registered on {self.name} yet (as far as this "
                     f"client knows). Registered, it logs you in without your password.")
        else:
            echo_err(f"You have no key pair yet ({path}). A key logs you in without your "
                     f"password and lets you receive end-to-end encrypted direct messages.")
            question = (f"Generate one and register it on {self.name}? This sends your "
                        f"password to {self.name}, once.")
        if not click.confirm(question, default=True, err=True):
            self.memory.decline_key_offer(self.name, self.entry.address)
            later = "" if path.exists() else f"make one with `schat keys gen {self.user}`, then "
            echo_err(f"Not asked again for {self.name}: {later}register it with "
                     f"`schat login {self.name} --register-key`.")
            return
        if path.exists():
            self._load(self.user)
        else:
            self.generate_key()
        self.register = True

    def _mention_key(self, path) -> None:
        what = (f"your key {path} is not registered on {self.name}" if path.exists() else
                f"you have no key ({path}), so you cannot receive end-to-end encrypted "
                f"direct messages; make one with `schat keys gen {self.user}`")
        echo_err(f"Note: {what}; register it with `schat login {self.name} --register-key` "
                 f"(said once for {self.name}).")
        self.memory.decline_key_offer(self.name, self.entry.address)

    def _get_password(self) -> None:
        if not interactive() or os.environ.get(PASSWORD_ENV):
            self.password = password_from_env()
            return
        self.password = ask_password(f"Password for {self.user} on {self.name}")
        self._typed_password = True

    # -- logging in -----------------------------------------------------------------
    def authenticate(self, session=None, check: bool = False):
        """Log in (connecting first when ``session`` is None or went stale); return the
        logged-in session. A typed password gets three tries; a refused key is an error.

        ``check``: only check the credentials (`schat login`): the server starts no chat
        session, so a session of yours running elsewhere goes on and nobody sees a join;
        the connection may still fetch and register keys.
        """
        from schat.client.session import LoginRefused
        from schat.store.server_memory import KEY

        from schat.client.session import LoginDropped

        attempt = 0
        while attempt < TRIES:
            attempt += 1
            session = self._fresh(session)
            try:
                if self.method == KEY:
                    session.login_key(self.user, self.private, check=check)
                else:
                    session.login_password(self.user, self.password, check=check)
                return session
            except LoginDropped as err:
                session.close()
                session = None
                if not self._older_server(err):
                    raise
                attempt -= 1  # not a try of the password
            except LoginRefused as err:
                session.close()
                if err.code != "auth_failed":
                    raise
                if self.method == KEY:
                    raise self.key_refused() from None
                if not self._typed_password or attempt == TRIES:
                    raise
                echo_err(f"{err}; try again.")
                self.password = ask_password(f"Password for {self.user} on {self.name}")
            except BaseException:
                session.close()
                raise
        raise AssertionError("unreachable")

    def signup(self, session=None):
        """Create the account (with the key, when one is loaded); return the session."""
        from schat.crypto.keys import public_der

        from schat.client.session import LoginDropped

        session = self._fresh(session)
        der = public_der(self.private) if self.private is not None else None
        try:
            session.signup(self.user, self.password, der)
        except LoginDropped as err:
            session.close()
            if not self._older_server(err):
                raise
            session = self.connect(ask=False)
            try:
                session.signup(self.user, self.password, der)
            except BaseException:
                session.close()
                raise
        except BaseException:
            session.close()
            raise
        return session

    def key_refused(self) -> AuthenticationFailed:
        """The error for a refused key login: never a password prompt."""
        from schat.crypto.keys import fingerprint, fingerprints_equal

        mine = fingerprint(self.private)
        known = self.remembered.account(self.user).key
        if known and fingerprints_equal(known, mine):
            return AuthenticationFailed(
                f"{self.name} refused your key for {self.user} ({mine}), which it accepted "
                f"before. Nothing else was sent: no password is tried after a refused key. "
                f"If this is the server you know, its admin may have removed or replaced "
                f"your key: ask them.")
        if known:
            return AuthenticationFailed(
                f"{self.name} refused your key for {self.user} ({mine}): it has another key "
                f"of yours registered ({known}), the one you had before. Nothing else was "
                f"sent. Ask its admin to register the new one (give them "
                f"{self.keys.public_path(self.user)}), or log in with --password.")
        return AuthenticationFailed(
            f"{self.name} refused key login for {self.user}: no key is registered for "
            f"{self.user} there, or another one is. Nothing else was sent. To register this "
            f"key, log in once with your password: `schat login {self.name} "
            f"--register-key` (this sends your password to {self.name}).")

    # -- afterwards ---------------------------------------------------------------------
    def remember(self, session) -> None:
        """Record the user and how they logged in (and the key the server accepted)."""
        from schat.crypto.keys import fingerprint
        from schat.store.server_memory import KEY, PASSWORD

        used_key = self.method == KEY or (self.method is None and self.private is not None)
        fp = fingerprint(self.private) if used_key else None
        self.memory.logged_in(self.name, self.entry.address, session.user or self.user,
                              KEY if used_key else PASSWORD, fp)

    def register_with(self, dm) -> bool:
        """Register the loaded key through ``dm`` (a DmClient on the logged-in session);
        True when the server has this key for the account afterwards."""
        from schat.crypto.keys import fingerprint, public_der

        dm.register_key()
        reply = dm.fetch_key_status(dm.me)
        der = public_der(self.private)
        if reply.status != "ok" or not reply.public_key or bytes(reply.public_key) != der:
            return False
        self.memory.key_registered(self.name, self.entry.address, dm.me, fingerprint(der))
        return True

    def retired_keys(self) -> List:
        """Your earlier keys (kept by `schat keys gen --force`) that open with the same
        passphrase: stored direct messages sealed to them stay readable."""
        if self.private is None:
            return []
        found = []
        for path in self.keys.retired(self.user):
            try:
                found.append(self.keys.load_private(str(path), self.passphrase))
            except KeyFileError as err:
                log.debug("retired key %s not loaded: %s", path, err)
        return found

