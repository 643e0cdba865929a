"""What the client remembers about each server: HOME/server_memory.json.

Per server, as you named it (and at the address it had then): the user name
you last logged in with, how each account last logged in (``key`` or
``password``) with the fingerprint of the key the server accepted, whether you
declined the offer to make a key, and the members you ignore. It is what lets
``schat connect team`` log in with no question the second time, what tells a
refused key that the server has registered (an error: someone may be
phishing for the password) from one it never had, and what ``schat keys gen
--force`` reads to name the servers a key is registered on.

The file holds no secret, but is written like every file of the data home:
atomically, mode 0600. A damaged file is reported by name, never replaced.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from schat.crypto.keys import fingerprints_equal, normalize_fingerprint
from schat.errors import ConfigError
from schat.protocol.schema import name_key
from schat.store.files import atomic_write_text
from schat.store.policy import USERNAME_RE

FILE_VERSION = 1
KEY, PASSWORD = "key", "password"
# Bound on the ignore list of one server (it is read at every connect).
MAX_IGNORED = 1000


@dataclass
class Account:
    """How one account last logged in on one server."""

    name: str
    login: Optional[str] = None
    # Fingerprint of the key this server accepted for the account (key login or registration).
    key: Optional[str] = None


@dataclass
class Remembered:
    """What is remembered about one server (empty for a server never logged in to)."""

    address: Optional[str] = None
    user: Optional[str] = None
    accounts: Dict[str, Account] = field(default_factory=dict)
    key_offer_declined: bool = False
    ignored: List[str] = field(default_factory=list)

    def account(self, user: str) -> Account:
        """The memory of ``user`` on this server (a fresh one when there is none)."""
        return self.accounts.get(name_key(user)) or Account(user)

    def to_json(self) -> dict:
        data: dict = {"address": self.address}
        if self.user:
            data["user"] = self.user
        if self.accounts:
            data["accounts"] = {k: {f: v for f, v in vars(a).items() if v is not None}
                                for k, a in sorted(self.accounts.items())}
        if self.key_offer_declined:
            data["key_offer_declined"] = True
        if self.ignored:
            data["ignored"] = list(self.ignored)
        return data


class ServerMemory:
    """The memory file of one data home (read on every call: other clients may write it)."""

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)

    # -- reading -----------------------------------------------------------
    def _load(self) -> Dict[str, Remembered]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{self.path}: cannot read ({getattr(err, 'strerror', None) or err})"
                              "; fix or remove the file") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(f"{self.path}: not valid JSON; fix or remove the file") from None
        if (not isinstance(data, dict) or data.get("version") != FILE_VERSION
                or not isinstance(data.get("servers"), dict)):
            raise ConfigError(f"{self.path}: unexpected layout; fix or remove the file")
        servers = {}
        for name, entry in data["servers"].items():
            try:
                servers[name] = _parse(entry)
            except (TypeError, ValueError, AttributeError):
                raise ConfigError(f"{self.path}: the entry of server {name[:64]!r} is damaged; "
                                  f"fix or remove the file") from None
        return servers

    def get(self, server: str, address: str) -> Remembered:
        """What is remembered of ``server``; nothing when it was at another address then
        (the same name now means another server)."""
        entry = self._load().get(server)
        if entry is None or entry.address != address:
            return Remembered(address=address)
        return entry

    def registered_on(self, fingerprint: str) -> List[Tuple[str, str, str]]:
        """(server, address, user) for every account this key is remembered registered on."""
        found = []
        for name, entry in sorted(self._load().items()):
            for account in entry.accounts.values():
                if account.key and fingerprints_equal(account.key, fingerprint):
                    found.append((name, entry.address or "?", account.name))
        return found

    # -- writing -------------------------------------------------------------
    def _change(self, server: str, address: str, change) -> Remembered:
        servers = self._load()
        entry = servers.get(server)
        if entry is None or entry.address != address:
            entry = Remembered(address=address)
        change(entry)
        servers[server] = entry
        text = json.dumps({"version": FILE_VERSION,
                           "servers": {k: v.to_json() for k, v in sorted(servers.items())}},
                          indent=1) + "\n"
        try:
            atomic_write_text(self.path, text, mode=0o600)
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot write ({err.strerror})") from None
        return entry

    def logged_in(self, server: str, address: str, user: str, login: str,
                  key_fingerprint: Optional[str] = None) -> None:
        """Remember a successful login (``login`` is KEY or PASSWORD); with a key, that
        the server has this key for ``user``."""
        def change(entry: Remembered) -> None:
            entry.user = user
            account = entry.account(user)
            account.name, account.login = user, login
            if key_fingerprint:
                account.key = normalize_fingerprint(key_fingerprint)
            entry.accounts[name_key(user)] = account
        self._change(server, address, change)

    def key_registered(self, server: str, address: str, user: str, fingerprint: str) -> None:
        """Remember that ``server`` has the key ``fingerprint`` for ``user``: from now on
        it logs in with it."""
        self.logged_in(server, address, user, KEY, fingerprint)

    def decline_key_offer(self, server: str, address: str) -> None:
        """The user said no to making a key for this server: do not ask again."""
        self._change(server, address, lambda e: setattr(e, "key_offer_declined", True))

    def set_ignored(self, server: str, address: str, names: List[str]) -> None:
        """Replace the ignore list of ``server`` (at most MAX_IGNORED names)."""
        if len(names) > MAX_IGNORED:
            raise ConfigError(f"you can ignore at most {MAX_IGNORED} members per server")
        self._change(server, address, lambda e: setattr(e, "ignored", list(names)))


def _parse(entry) -> Remembered:
    if not isinstance(entry, dict):
        raise TypeError("not an object")
    address = entry.get("address")
    user = entry.get("user")
    if not isinstance(address, str) or (user is not None and not _is_name(user)):
        raise ValueError("bad address or user")
    accounts = {}
    for key, value in (entry.get("accounts") or {}).items():
        name, login, fp = value.get("name"), value.get("login"), value.get("key")
        if not _is_name(name) or login not in (None, KEY, PASSWORD) or key != name_key(name):
            raise ValueError("bad account")
        accounts[key] = Account(name, login, normalize_fingerprint(fp) if fp else None)
    ignored = entry.get("ignored") or []
    if not isinstance(ignored, list) or not all(_is_name(n) for n in ignored):
        raise ValueError("bad ignore list")
    return Remembered(address, user, accounts, entry.get("key_offer_declined") is True,
                      ignored[:MAX_IGNORED])


def _is_name(name) -> bool:
    return isinstance(name, str) and USERNAME_RE.fullmatch(name) is not None
