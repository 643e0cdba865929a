"""Account checks run in the crypto thread pool (scrypt and RSA are slow by design).

Each job returns a :class:`LoginOutcome`; it never raises for a refusal, and
its texts are what the client reads. An unknown user and a wrong password get
the very same outcome (and, through the dummy hash, the same time).
"""

from __future__ import annotations

import logging
from typing import Optional

from schat.crypto import keys
from schat.errors import AccountError, KeyFileError, PolicyError
from schat.protocol import auth

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
    """Create an account under the same policy as `schat user add`, then log it in."""
    try:
        account = store.add(user, password, public_key_der)
    except PolicyError as err:
        return LoginOutcome(code="policy", text=str(err))
    except AccountError as err:
        # A taken name and an unusable key are both the requester's to fix.
        return LoginOutcome(code="policy", text=str(err))
    return LoginOutcome(name=account.name, how="signup")

