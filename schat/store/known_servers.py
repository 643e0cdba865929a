"""known_servers: trust-on-first-use pins of server keys, like SSH's known_hosts.

One line per server, ``NAME HOST:PORT SHA256:<base64>``; blank lines and ``#``
comments are allowed. A pin matches a server by name and also by address, so a
renamed servers.json entry pointing at the same host still meets its pin. The
file is never silently rewritten when it cannot be parsed: a pin that vanished
would turn a "changed key" warning into an innocent-looking first contact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from schat.crypto.keys import fingerprints_equal, normalize_fingerprint
from schat.errors import ConfigError
from schat.store.files import atomic_write_text
from schat.store.servers import (check_host, check_port, check_server_name, format_address,
                                 parse_address)

PINNED = "pinned"
UNKNOWN = "unknown"
CHANGED = "changed"


@dataclass(frozen=True)
class Pin:
    name: str
    host: str
    port: int
    fingerprint: str

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    def line(self) -> str:
        return f"{self.name} {self.address} {self.fingerprint}"


def _same_host(a: str, b: str) -> bool:
    return a.lower().rstrip(".") == b.lower().rstrip(".")


class KnownServers:
    """The pins in one known_servers file (read on every call: other clients may write it)."""

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)

    def entries(self) -> List[Pin]:
        """Every pin; a malformed line is a ConfigError naming the file and line."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot read ({err.strerror})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{self.path}: not UTF-8 text; fix or remove the file") from None
        pins = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                name, address, fp = line.split()
                check_server_name(name)
                host, port = parse_address(address)
                fp = normalize_fingerprint(fp)
            except (ValueError, ConfigError):
                raise ConfigError(
                    f"{self.path}, line {number}: malformed entry (expected NAME HOST:PORT "
                    "SHA256:...); fix or remove that line") from None
            pins.append(Pin(name, host, port, fp))
        return pins

    def _matching(self, pins: List[Pin], name: str, host: Optional[str],
                  port: Optional[int]) -> List[Pin]:
        return [p for p in pins if p.name == name
                or (host is not None and port == p.port and _same_host(p.host, host))]

    def lookup(self, name: str, host: Optional[str] = None, port: Optional[int] = None) -> List[Pin]:
        """The pins that apply to a server, by name or by address."""
        return self._matching(self.entries(), name, host, port)

    def check(self, name: str, host: str, port: int, fingerprint: str) -> str:
        """``"pinned"`` when every pin for this server (by name or address) has this
        fingerprint, ``"unknown"`` when there is none, else ``"changed"``."""
        fingerprint = normalize_fingerprint(fingerprint)
        matches = self.lookup(name, host, port)
        if not matches:
            return UNKNOWN
        if all(fingerprints_equal(p.fingerprint, fingerprint) for p in matches):
            return PINNED
        return CHANGED

    def pin(self, name: str, host: str, port: int, fingerprint: str) -> Pin:
        """Record ``fingerprint`` for this server, replacing its pins by name or address."""
        pin = Pin(check_server_name(name), check_host(host), check_port(port),
                  normalize_fingerprint(fingerprint))
        pins = self.entries()
        stale = set(map(id, self._matching(pins, name, host, port)))
        kept = [p for p in pins if id(p) not in stale]
        self._write(kept + [pin])
        return pin

    def forget(self, name: str, host: Optional[str] = None, port: Optional[int] = None) -> bool:
        """Drop the pins for ``name`` (and for ``host:port`` when given); True if any."""
        pins = self.entries()
        stale = set(map(id, self._matching(pins, name, host, port)))
        if not stale:
            return False
        self._write([p for p in pins if id(p) not in stale])
        return True

    def _write(self, pins: List[Pin]) -> None:
        text = "".join(p.line() + "\n" for p in pins)
        try:
            atomic_write_text(self.path, text, mode=0o600)
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot write ({err.strerror})") from None
