"""Account checks run in the crypto thread pool (scrypt and RSA are slow by design),
and the :class:`LoginGate` that decides, before any of that work, whether an
attempt may be made at all.

Each job returns a :class:`LoginOutcome`; it never raises for a refusal, and
its texts are what the client reads. An unknown user and a wrong password get
the very same outcome (and, through the dummy hash, the same time); so do a
taken name and a new one at sign-up (the password is hashed either way).
"""

from __future__ import annotations

import logging
import math
from typing import Optional

from schat.crypto import keys
from schat.errors import AccountError, KeyFileError, PolicyError
from schat.protocol import auth, messages
from schat.server.guard import LoginPenalties, SignupLimit
from schat.server.limits import PENALTY_ENTRIES

log = logging.getLogger("schat.server")

BAD_CREDENTIALS = "wrong user name or password"
BAD_KEY = "key login refused: unknown user, no key registered, or wrong key"


class LoginOutcome:
    """``name`` (the account's own spelling) on success, else an error code and text."""

    __slots__ = ("name", "code", "text", "how")

    def __init__(self, name: Optional[str] = None, code: str = "", text: str = "",
                 how: str = ""):
        self.name = name
        self.code = code
        self.text = text
        self.how = how

    @property
    def ok(self) -> bool:
        return self.name is not None


def check_password(store, user: str, password: str) -> LoginOutcome:
    """Password login; upgrades a legacy or outdated hash after a success."""
    result = store.check_password(user, password)
    if not result.ok or result.account is None:
        return LoginOutcome(code="auth_failed", text=BAD_CREDENTIALS)
    account = result.account
    if account.locked:
        return LoginOutcome(code="locked", text=f"account {account.name} is locked; "
                                                "ask the server operator")
    if result.needs_rehash and store.rehash(account.name, password):
        log.info("upgraded the password hash of %s to scrypt", account.name)
    return LoginOutcome(name=account.name, how="password")


def check_key(store, user: str, signature: bytes, transcript_hash: bytes,
              server_fingerprint: str) -> LoginOutcome:
    """Key login: the signature over the account's name, this server's key fingerprint and
    the transcript must verify with the registered key (docs/PROTOCOL.md §5)."""
    account = store.get(user)
    der = account.public_key_der if account is not None else None
    if der is None:
        return LoginOutcome(code="auth_failed", text=BAD_KEY)
    try:
        public = keys.import_public_key(der)
    except KeyFileError:
        log.warning("account %s has an unusable registered key", account.name)
        return LoginOutcome(code="auth_failed", text=BAD_KEY)
    verified = auth.verify_login(public, account.name, server_fingerprint, transcript_hash,
                                 signature)
    log.debug("key login signature for %s: %s", account.name,
              "verified" if verified else "did not verify")
    if not verified:
        return LoginOutcome(code="auth_failed", text=BAD_KEY)
    if account.locked:
        return LoginOutcome(code="locked", text=f"account {account.name} is locked; "
                                                "ask the server operator")
    return LoginOutcome(name=account.name, how="key")


def signup(store, user: str, password: str, public_key_der: Optional[bytes]) -> LoginOutcome:
    """Create an account under the same policy as `schat user add`, then log it in.

    The account starts as a new one (not established): see
    :meth:`schat.server.dm_relay.DmRelay.is_new`.
    """
    try:
        account = store.add(user, password, public_key_der, established=False)
    except PolicyError as err:
        return LoginOutcome(code="policy", text=str(err))
    except AccountError as err:
        # A taken name and an unusable key are both the requester's to fix.
        return LoginOutcome(code="policy", text=str(err))
    return LoginOutcome(name=account.name, how="signup")



class LoginGate:
    """Who may try to log in or sign up now, and what each outcome costs the address.

    The rules (docs/SECURITY.md, "Failed logins" and "Sign-ups"): failures wait
    per address and per (address, account) pair, with a per-account ceiling
    (:class:`~schat.server.guard.LoginPenalties`); an address creates at most
    ``signups_per_hour`` accounts in any hour, and every refused sign-up counts
    as a failed login of that address.
    """

    def __init__(self, settings):
        self.settings = settings
        self.penalties = LoginPenalties(settings.penalty_base, settings.penalty_max,
                                        settings.max_auth_attempts, settings.account_ceiling,
                                        PENALTY_ENTRIES)
        self.signups = SignupLimit(settings.signups_per_hour, 3600.0, PENALTY_ENTRIES)

    def admit(self, address: str, msg, now: float) -> Optional[LoginOutcome]:
        """None lets ``msg`` (a login, key login or sign-up) be checked; else the refusal
        to answer with, decided before any hashing."""
        password_user = msg.user if type(msg) is messages.Login else None
        wait = self.penalties.admit(address, password_user, now)
        if wait > 0:
            return LoginOutcome(code="penalty", text=f"too many failed logins; try again in "
                                                     f"{math.ceil(wait)} s")
        if type(msg) is not messages.Signup:
            return None
        if not self.settings.allow_signup:
            return LoginOutcome(code="signup_disabled", text="this server does not allow "
                                                             "sign-up; ask the operator for an "
                                                             "account")
        wait = self.signups.reserve(address, now)
        if wait > 0:
            self.penalties.failed(address, None, now)
            limit = self.settings.signups_per_hour
            return LoginOutcome(code="throttled", text=(
                f"sign-up limit reached: at most {limit} new account{'s' if limit != 1 else ''} "
                f"per hour from one address; try again in {math.ceil(wait / 60)} min"))
        return None

    def settle(self, address: str, msg, outcome: LoginOutcome, now: float) -> None:
        """Book the outcome of an admitted attempt."""
        kind = type(msg)
        penalties = self.penalties
        if kind is messages.Signup:
            if not outcome.ok:
                self.signups.cancel(address)
                penalties.failed(address, None, now)
        elif kind is messages.Login:
            if outcome.ok:
                penalties.succeeded(address, msg.user)
            elif outcome.code == "auth_failed":
                penalties.failed(address, msg.user, now)
            else:
                penalties.settled(address, msg.user)
        elif outcome.code == "auth_failed":
            # A key cannot be guessed: a failed key login counts against its address only.
            penalties.failed(address, None, now)
