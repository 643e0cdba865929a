"""Contact key pins (trust on first use), per server as the user named it.

``HOME/contacts`` (JSON, written atomically with mode 0600) holds, per server
— identified by the name and address the user connects to, so that a
rotation of the server's own key changes nothing, and since the same name on
two servers is two people — per member (by canonical name): the pinned public
key and, when a different key has been seen, that key as ``pending`` until the
user accepts it with ``/trust NAME``. Each server's entry also records the
host key last seen, so that a rotation is announced once.

The file of the previous release (format 1) keyed servers by their host-key
fingerprint; it is still read: such an entry is claimed by the server that
presents that key, and moved under its name and address.

The replay memory of received messages is :mod:`schat.client.seen`.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Dict, Optional

from schat.crypto.keys import fingerprint
from schat.errors import ConfigError, TrustError
from schat.protocol.schema import name_key
from schat.store.files import atomic_write_text
from schat.store.servers import format_address

PINNED = "pinned"
NEW = "new"
CHANGED = "changed"

FILE_VERSION = 2
LEGACY_VERSION = 1


def server_identity(name: str, host: str, port: int) -> str:
    """How pins and seen messages name a server: ``NAME HOST:PORT`` (host lower case)."""
    return f"{name} {format_address(host.lower().rstrip('.'), port)}"


def _corrupt(path: Path, what: str = "unexpected layout") -> ConfigError:
    return ConfigError(f"the contacts file {path} is corrupt ({what}); fix or remove it")


def _load(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": FILE_VERSION, "servers": {}, "legacy": {}}
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the contacts file {path}: {err}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise _corrupt(path, "not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
        raise _corrupt(path)
    if data.get("version") == LEGACY_VERSION:
        # Format 1: {fingerprint: {name: entry}}; claimed server by server.
        data = {"version": FILE_VERSION, "servers": {}, "legacy": data["servers"]}
    if data.get("version") != FILE_VERSION or not isinstance(data.get("legacy", {}), dict):
        raise _corrupt(path)
    data.setdefault("legacy", {})
    for entry in data["servers"].values():
        if (not isinstance(entry, dict) or not isinstance(entry.get("contacts"), dict)
                or not isinstance(entry.get("host_key"), (str, type(None)))):
            raise _corrupt(path)
    for table in [e["contacts"] for e in data["servers"].values()] + list(data["legacy"].values()):
        if not isinstance(table, dict):
            raise _corrupt(path)
        for name, entry in table.items():
            _check_entry(path, name, entry)
    return data


def _check_entry(path: Path, name: str, entry) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise _corrupt(path, f"entry for {name!r}")
    try:
        _der(entry["key"])
        if entry.get("pending") is not None:
            _der(entry["pending"])
    except (ValueError, TypeError):
        raise _corrupt(path, f"key of {name!r}") from None


def _der(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


class Contacts:
    """The pinned public keys of the members of one server.

    ``server`` is :func:`server_identity`; ``host_key`` the fingerprint the
    server presented in this session. :attr:`rotated_from` is the host key seen
    before, when it differs (a rotation to announce, then :meth:`accept_host_key`).
    """

    def __init__(self, path: os.PathLike | str, server: str, host_key: Optional[str] = None):
        self.path = Path(path)
        self.server = server
        self.host_key = host_key
        self._data = _load(self.path)
        servers = self._data["servers"]
        self._dirty = False
        if server not in servers:
            claimed = self._data["legacy"].pop(host_key, None) if host_key else None
            servers[server] = {"host_key": host_key if claimed is not None else None,
                               "contacts": {name_key(n): e for n, e in (claimed or {}).items()}}
            self._dirty = claimed is not None
        self._server = servers[server]
        self._entries: Dict[str, dict] = self._server["contacts"]
        old = self._server.get("host_key")
        self.rotated_from: Optional[str] = old if old and host_key and old != host_key else None

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps(self._data, indent=1, sort_keys=True) + "\n")
        self._dirty = False

    def accept_host_key(self) -> None:
        """Record this session's host key for the server (after announcing a rotation)."""
        if self.host_key and (self._server.get("host_key") != self.host_key or self._dirty):
            self._server["host_key"] = self.host_key
            self.rotated_from = None
            self._save()

    def pinned(self, name: str) -> Optional[bytes]:
        """The pinned DER key of ``name``, or None when there is no pin yet."""
        entry = self._entries.get(name_key(name))
        return _der(entry["key"]) if entry else None

    def display_name(self, name: str) -> str:
        """``name`` as first recorded (the member's own spelling), else as given."""
        entry = self._entries.get(name_key(name))
        return entry.get("name", name) if entry else name

    def pending(self, name: str) -> Optional[bytes]:
        """A different key seen for ``name`` and not yet trusted, or None."""
        entry = self._entries.get(name_key(name))
        if entry and entry.get("pending"):
            return _der(entry["pending"])
        return None

    def check(self, name: str, der: bytes) -> str:
        """Compare ``der`` with the pin of ``name``: NEW, PINNED or CHANGED (no change made)."""
        pin = self.pinned(name)
        if pin is None:
            return NEW
        return PINNED if pin == bytes(der) else CHANGED

    def observe(self, name: str, der: bytes) -> str:
        """Trust on first use: pin an unknown contact's key; remember a changed one as pending.

        Returns NEW (just pinned), PINNED (matches) or CHANGED (differs from the
        pin; the pin is kept and the new key recorded as pending).
        """
        status = self.check(name, der)
        key = name_key(name)
        if status == NEW:
            self._entries[key] = {"name": name, "key": _b64(der), "fingerprint": fingerprint(der)}
            self._save()
        elif status == CHANGED and self._entries[key].get("pending") != _b64(der):
            self._entries[key]["pending"] = _b64(der)
            self._save()
        elif self._dirty:
            self._save()
        return status

    def trust(self, name: str, der: bytes) -> None:
        """Pin ``der`` as the key of ``name`` (the user checked it), clearing any pending key."""
        self._entries[name_key(name)] = {"name": name, "key": _b64(der),
                                         "fingerprint": fingerprint(der)}
        self._save()


def key_changed_warning(name: str, der: bytes) -> str:
    """The loud warning for a contact whose key differs from the pinned one."""
    return (f"WARNING: {name}'s key has CHANGED (now {fingerprint(bytes(der))}) and is not the "
            f"one you trusted. It may be a new device, or someone impersonating {name}. "
            f"Compare /verify {name} with them in person or by phone, then accept it with "
            f"/trust {name}.")


def require_pin_match(contacts: Contacts, name: str, der: bytes) -> str:
    """TOFU check before encrypting to ``name``: raise TrustError when the key changed."""
    status = contacts.observe(name, der)
    if status == CHANGED:
        raise TrustError(key_changed_warning(name, der) + " Nothing was sent.")
    return status
