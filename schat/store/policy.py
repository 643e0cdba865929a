"""Rules for user names and passwords, shared by `schat user` and the server's signup.

Passwords (NIST SP 800-63B, with the project's own composition rule): NFKC
normalised, at least 8 visible characters (spaces, combining marks and
invisible characters do not count) and at most 1,024 characters, at least one
letter and one digit, no control or format characters (zero-width, direction
marks and overrides, soft hyphens), not the user name, and not on the bundled
list of the most common passwords (schat/data/common-passwords.txt).

User names: 1-32 of ``[A-Za-z0-9_.-]`` on the wire. A *new* account's name
also needs a letter or a digit (no ``.``, ``..`` or ``-``), and must not be a
lookalike of an existing one: names compare as :func:`name_skeleton`, so
``alice.`` and ``_alice`` collide with ``alice`` while ``a1ice`` does not.
Existing accounts keep their names: these two rules apply only when an
account is created.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from importlib import resources
from typing import FrozenSet, Optional

from schat.crypto.passwords import normalize_password
from schat.errors import PolicyError
from schat.names import name_key

USERNAME_MAX = 32
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
USERNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,%d}" % USERNAME_MAX, re.ASCII)
USERNAME_RULE = f"1-{USERNAME_MAX} letters, digits, '_', '-' or '.'"
# Punctuation a name may carry at either end without becoming another name.
NAME_EDGE_PUNCTUATION = "._-"
# Unicode categories refused in passwords: control, format (zero-width
# characters, bidirectional marks and overrides, the soft hyphen), surrogates,
# line and paragraph separators. None of them is typed on purpose, and each
# makes a password that looks shorter or different from what it is.
_REFUSED_PASSWORD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _shown(text: str, limit: int = 40) -> str:
    # repr() escapes control characters, so a hostile name cannot garble the terminal.
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")


def validate_username(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise PolicyError."""
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise PolicyError(f"invalid user name {_shown(str(name))}: use {USERNAME_RULE}")
    return name


def validate_new_username(name: str) -> str:
    """Return ``name`` if an account may be *created* with it, else raise PolicyError.

    Beyond :func:`validate_username`: at least one letter or digit, so the
    name is not pure punctuation (``.``, ``..``, ``-``). Whether it is a
    lookalike of an existing name is the store's check (it needs the accounts).
    """
    validate_username(name)
    if not name_skeleton(name):
        raise PolicyError(f"invalid user name {_shown(name)}: a name needs at least one "
                          f"letter or digit")
    return name


def name_skeleton(name: str) -> str:
    """The form in which names must differ for a new account: :func:`name_key` without
    punctuation at either end (``Alice.`` and ``_alice`` both give ``alice``)."""
    return name_key(name).strip(NAME_EDGE_PUNCTUATION)


def visible_length(text: str) -> int:
    """Characters that show: not marks (combining), separators (spaces) or other (C*)."""
    return sum(1 for c in text if unicodedata.category(c)[0] not in "MZC")


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
    if len(pw) > PASSWORD_MAX:
        raise PolicyError(f"password too long: use at most {PASSWORD_MAX} characters")
    categories = {unicodedata.category(c) for c in pw}
    if "Cc" in categories:
        raise PolicyError("password must not contain control characters")
    if categories & _REFUSED_PASSWORD_CATEGORIES:
        raise PolicyError("password must not contain invisible formatting characters "
                          "(zero-width, direction or soft-hyphen characters)")
    visible = visible_length(pw)
    if visible < PASSWORD_MIN:
        hint = "" if visible == len(pw) else " (spaces and combining marks do not count)"
        raise PolicyError(f"password too short: use at least {PASSWORD_MIN} characters{hint}")
    if not any(c.isalpha() for c in pw) or not any(c.isdigit() for c in pw):
        raise PolicyError("password must contain both letters and digits")
    folded = pw.casefold()
    if username and folded == username.casefold():
        raise PolicyError("password must not be the user name")
    if folded in common_passwords():
        raise PolicyError("password is one of the most common passwords: choose another")
    return pw
