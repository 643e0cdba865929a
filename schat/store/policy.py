"""Rules for user names and passwords, shared by `schat user` and the server's signup.

Passwords (NIST SP 800-63B, with the project's own composition rule): NFKC
normalised, 8 to 1,024 characters, at least one letter and one digit, no control
characters, not the user name, and not on the bundled list of the most common
passwords (schat/data/common-passwords.txt).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from importlib import resources
from typing import FrozenSet, Optional

from schat.crypto.passwords import normalize_password
from schat.errors import PolicyError

USERNAME_MAX = 32
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
USERNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,%d}" % USERNAME_MAX, re.ASCII)
USERNAME_RULE = f"1-{USERNAME_MAX} letters, digits, '_', '-' or '.'"


def _shown(text: str, limit: int = 40) -> str:
    # repr() escapes control characters, so a hostile name cannot garble the terminal.
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")


def validate_username(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise PolicyError."""
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise PolicyError(f"invalid user name {_shown(str(name))}: use {USERNAME_RULE}")
    return name


@functools.lru_cache(maxsize=1)
def common_passwords() -> FrozenSet[str]:
    """The bundled blocklist, lower-cased (loaded once)."""
    text = resources.files("schat").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().casefold()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def check_password_policy(password: str, username: Optional[str] = None) -> str:
    """Return the NFKC-normalised password if it meets the policy, else raise PolicyError.

    The messages never include the password itself.
    """
    if not isinstance(password, str):
        raise PolicyError("the password must be text")
    pw = normalize_password(password)
    if len(pw) < PASSWORD_MIN:
        raise PolicyError(f"password too short: use at least {PASSWORD_MIN} characters")
    if len(pw) > PASSWORD_MAX:
        raise PolicyError(f"password too long: use at most {PASSWORD_MAX} characters")
    if any(unicodedata.category(c) == "Cc" for c in pw):
        raise PolicyError("password must not contain control characters")
    if not any(c.isalpha() for c in pw) or not any(c.isdigit() for c in pw):
        raise PolicyError("password must contain both letters and digits")
    folded = pw.casefold()
    if username and folded == username.casefold():
        raise PolicyError("password must not be the user name")
    if folded in common_passwords():
        raise PolicyError("password is one of the most common passwords: choose another")
    return pw
