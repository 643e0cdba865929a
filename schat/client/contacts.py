"""Contact key pins (trust on first use) and the direct messages already seen.

Both live in the client's data home, written atomically with mode 0600:

* ``contacts`` — per server (keyed by the server's key fingerprint, since the
  same name on two servers is two people), per member (case-insensitive): the
  pinned public key and, when a different key has been seen, that key as
  ``pending`` until the user accepts it with ``/trust NAME``.
* ``dm_seen`` — per server and member, the ids of the last direct messages
  received, so a replayed envelope is ignored. Bounded: the oldest ids are
  forgotten, and anything older than the oldest remembered id of a full
  window is treated as a replay, so a forgotten id cannot be replayed either.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Dict, Optional

from schat.crypto.keys import fingerprint
from schat.errors import ConfigError, TrustError
from schat.store.files import atomic_write_text

PINNED = "pinned"
NEW = "new"
CHANGED = "changed"

FILE_VERSION = 1
SEEN_PER_CONTACT = 1000


def _load_json(path: Path, what: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": FILE_VERSION, "servers": {}}
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the {what} file {path}: {err}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"the {what} file {path} is corrupt (not valid JSON); "
                          f"fix or remove it") from None
    if (not isinstance(data, dict) or data.get("version") != FILE_VERSION
            or not isinstance(data.get("servers"), dict)
            or not all(isinstance(v, dict) for v in data["servers"].values())):
        raise ConfigError(f"the {what} file {path} is corrupt (unexpected layout); "
                          f"fix or remove it")
    return data


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


class Contacts:
    """The pinned public keys of the members of one server."""

    def __init__(self, path: os.PathLike | str, server: str):
        self.path = Path(path)
        self.server = server
        self._data = _load_json(self.path, "contacts")
        self._entries: Dict[str, dict] = self._data["servers"].setdefault(server, {})
        for name, entry in self._entries.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise ConfigError(f"the contacts file {self.path} is corrupt (entry for "
                                  f"{name!r}); fix or remove it")
            try:
                self._der(entry["key"])
                if entry.get("pending") is not None:
                    self._der(entry["pending"])
            except ValueError:
                raise ConfigError(f"the contacts file {self.path} is corrupt (key of "
                                  f"{name!r}); fix or remove it") from None

    @staticmethod
    def _der(text: str) -> bytes:
        return base64.b64decode(text.encode("ascii"), validate=True)

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps(self._data, indent=1, sort_keys=True) + "\n")

    def pinned(self, name: str) -> Optional[bytes]:
        """The pinned DER key of ``name``, or None when there is no pin yet."""
        entry = self._entries.get(name.lower())
        return self._der(entry["key"]) if entry else None

    def display_name(self, name: str) -> str:
        """``name`` as first recorded (the member's own spelling), else as given."""
        entry = self._entries.get(name.lower())
        return entry.get("name", name) if entry else name

    def pending(self, name: str) -> Optional[bytes]:
        """A different key seen for ``name`` and not yet trusted, or None."""
        entry = self._entries.get(name.lower())
        if entry and entry.get("pending"):
            return self._der(entry["pending"])
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
        key = name.lower()
        if status == NEW:
            self._entries[key] = {"name": name, "key": _b64(der), "fingerprint": fingerprint(der)}
            self._save()
        elif status == CHANGED and self._entries[key].get("pending") != _b64(der):
            self._entries[key]["pending"] = _b64(der)
            self._save()
        return status

    def trust(self, name: str, der: bytes) -> None:
        """Pin ``der`` as the key of ``name`` (the user checked it), clearing any pending key."""
        self._entries[name.lower()] = {"name": name, "key": _b64(der),
                                       "fingerprint": fingerprint(der)}
        self._save()


class SeenIds:
    """Ids of received direct messages, per contact, bounded and persisted (replay defence)."""

    def __init__(self, path: os.PathLike | str, server: str, limit: int = SEEN_PER_CONTACT):
        self.path = Path(path)
        self.limit = limit
        self._data = _load_json(self.path, "seen messages")
        self._entries = self._data["servers"].setdefault(server, {})
        for name, ids in self._entries.items():
            if not isinstance(ids, list) or not all(
                    isinstance(i, list) and len(i) == 2 and isinstance(i[0], str)
                    and isinstance(i[1], int) for i in ids):
                raise ConfigError(f"the seen messages file {self.path} is corrupt (entry for "
                                  f"{name!r}); fix or remove it")

    def is_replay(self, sender: str, msg_id: str, time_ms: int) -> bool:
        """True when this id was seen from ``sender``, or is older than a full window."""
        ids = self._entries.get(sender.lower(), [])
        if any(i == msg_id for i, _ in ids):
            return True
        return len(ids) >= self.limit and time_ms < min(t for _, t in ids)

    def remember(self, sender: str, msg_id: str, time_ms: int) -> None:
        """Record an id (the oldest is forgotten beyond the bound) and save."""
        ids = self._entries.setdefault(sender.lower(), [])
        ids.append([msg_id, int(time_ms)])
        if len(ids) > self.limit:
            ids.sort(key=lambda item: item[1])
            del ids[: len(ids) - self.limit]
        atomic_write_text(self.path, json.dumps(self._data, separators=(",", ":")) + "\n")


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
