"""servers.json: the named servers a client can connect to.

Format (the original script's, plus an optional pinned fingerprint)::

    {"TestServer": {"ip": "127.0.0.1", "port": 5555, "fingerprint": "SHA256:..."}}

A server run as several nodes (a cluster, docs/CLUSTER.md) may list them all;
connecting and reconnecting try them in order (``ip``/``port``, when given,
come first)::

    {"Team": {"addresses": ["10.0.0.1:5555", "10.0.0.2:5555", "[2001:db8::3]:5555"]}}

Your own list is HOME/servers.json, where `schat servers add/remove` write.
A ``servers.json`` in the current directory (the sample this project ships,
as the original script had) is read as well; its entries are marked as coming
from that file, and a name in your own list wins. ``--config FILE`` replaces
both: that file alone is read and written.
Rewrites are atomic and keep every key and field this module does not know.
Top-level keys starting with ``_`` or ``$`` (comments, ``$schema``) are not servers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from schat.crypto.keys import normalize_fingerprint
from schat.errors import ConfigError
from schat.paths import Home
from schat.store.files import atomic_write_text

SERVER_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}", re.ASCII)
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?", re.ASCII)


@dataclass(frozen=True)
class ServerEntry:
    """One server: where it is and, optionally, the fingerprint its key must have."""

    name: str
    host: str
    port: int
    fingerprint: Optional[str] = None
    # The file the entry comes from (set when looked up through ServerLists).
    source: Optional[Path] = None
    # Every address of the server, in the order to try them (the first is host:port);
    # empty for a server with one address.
    addresses: Tuple[Tuple[str, int], ...] = ()

    @property
    def address(self) -> str:
        """The first address: the one that names the server (pins, remembered logins)."""
        return format_address(self.host, self.port)

    @property
    def all_addresses(self) -> Tuple[Tuple[str, int], ...]:
        return self.addresses or ((self.host, self.port),)

    @property
    def address_list(self) -> str:
        """Every address, as shown: ``10.0.0.1:5555, 10.0.0.2:5555``."""
        return ", ".join(format_address(h, p) for h, p in self.all_addresses)


# Addresses one servers.json entry may list.
MAX_ADDRESSES = 16


def parse_address(text) -> Tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError when malformed."""
    if not isinstance(text, str):
        raise ValueError("an address must be a string \"HOST:PORT\"")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {text[:60]!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return check_host(host), check_port(int(port))


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_server_name(name: str) -> str:
    """A server name: 1-64 letters, digits, '_', '-' or '.' (it is a word in known_servers)."""
    if not isinstance(name, str) or not SERVER_NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid server name {str(name)[:40]!r}: "
                          "use 1-64 letters, digits, '_', '-' or '.'")
    return name


def check_host(host) -> str:
    """An IP address or a DNS host name; ValueError otherwise."""
    if not isinstance(host, str) or not host:
        raise ValueError("'ip' must be a non-empty string")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME_RE.fullmatch(host):
        raise ValueError(f"'ip' is not an IP address or host name: {host[:60]!r}")
    return host


def check_port(port) -> int:
    """A TCP port 1-65535 given as a JSON integer; ValueError otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"'port' must be an integer from 1 to 65535, not {json.dumps(port)[:40]}")
    return port


def _is_meta(key: str) -> bool:
    return key.startswith("_") or key.startswith("$")


class ServerList:
    """The parsed contents of one servers.json (unknown keys are kept)."""

    def __init__(self, path: os.PathLike | str, data: Optional["OrderedDict[str, object]"] = None):
        self.path = Path(path)
        self.data: "OrderedDict[str, object]" = data if data is not None else OrderedDict()
        self._entries = OrderedDict((k, self._parse(k, v)) for k, v in self.data.items()
                                    if not _is_meta(k))

    @classmethod
    def load(cls, path: os.PathLike | str, missing_ok: bool = False) -> "ServerList":
        """Read and validate ``path``; any problem is a one-line ConfigError naming it."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return cls(path)
            raise ConfigError(f"{path}: no such file") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        except OSError as err:
            raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
        try:
            data = json.loads(text, object_pairs_hook=OrderedDict)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: "
                              f"{err.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a JSON object of servers by name")
        return cls(path, data)

    def _parse(self, name: str, value) -> ServerEntry:
        where = f"{self.path}: server {name!r}"
        try:
            check_server_name(name)
        except ConfigError as err:
            raise ConfigError(f"{self.path}: {err}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object with 'ip' and 'port'")
        listed = "addresses" in value
        for field in ("ip", "port"):
            if field not in value and not listed:
                raise ConfigError(f"{where} has no '{field}'")
        if ("ip" in value) != ("port" in value):
            raise ConfigError(f"{where} has no '{'port' if 'ip' in value else 'ip'}'")
        try:
            addresses: List[Tuple[str, int]] = []
            if "ip" in value:
                addresses.append((check_host(value["ip"]), check_port(value["port"])))
            if listed:
                items = value["addresses"]
                if not isinstance(items, list) or not items:
                    raise ValueError("'addresses' must be a list of \"HOST:PORT\" strings")
                if len(items) > MAX_ADDRESSES:
                    raise ValueError(f"'addresses' lists more than {MAX_ADDRESSES}")
                for item in items:
                    address = parse_address(item)
                    if address not in addresses:
                        addresses.append(address)
            (host, port) = addresses[0]
            fp = value.get("fingerprint")
            if fp is not None:
                if not isinstance(fp, str):
                    raise ValueError("'fingerprint' must be a string")
                try:
                    fp = normalize_fingerprint(fp)
                except ValueError as err:
                    raise ValueError(f"bad 'fingerprint': {err}") from None
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        return ServerEntry(name, host, port, fp,
                           addresses=tuple(addresses) if len(addresses) > 1 else ())

    def entries(self) -> List[ServerEntry]:
        return list(self._entries.values())

    def names(self) -> List[str]:
        return list(self._entries)

    def get(self, name: str) -> ServerEntry:
        """The server called ``name``; an unknown name is a ConfigError listing the known ones."""
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self._entries) or "none"
            raise ConfigError(f"{self.path}: no server named {name[:64]!r} (known: {known})")
        return entry

    def find(self, name: str) -> Optional[ServerEntry]:
        return self._entries.get(name)

    def add(self, name: str, host: str, port: int, fingerprint: Optional[str] = None,
            replace: bool = False, more: Tuple[str, ...] = ()) -> ServerEntry:
        """Add (or with ``replace``, update) a server; other fields of an entry are kept.
        ``more``: further addresses (``HOST:PORT``) to try after ``host:port``."""
        check_server_name(name)
        if name in self._entries and not replace:
            raise ConfigError(f"{self.path}: server {name!r} already exists; use --force to replace it")
        try:
            host = check_host(host)
            port = check_port(port)
            fingerprint = normalize_fingerprint(fingerprint) if fingerprint else None
            addresses = [(host, port)]
            for text in more:
                address = parse_address(text)
                if address not in addresses:
                    addresses.append(address)
            if len(addresses) > MAX_ADDRESSES:
                raise ValueError(f"at most {MAX_ADDRESSES} addresses")
        except ValueError as err:
            raise ConfigError(str(err).replace("'ip'", "the address")) from None
        old = self.data.get(name)
        value = OrderedDict(old) if isinstance(old, dict) else OrderedDict()
        value["ip"] = host
        value["port"] = port
        if len(addresses) > 1:
            value["addresses"] = [format_address(h, p) for h, p in addresses[1:]]
        else:
            value.pop("addresses", None)
        if fingerprint:
            value["fingerprint"] = fingerprint
        else:
            value.pop("fingerprint", None)
        self.data[name] = value
        self._entries[name] = ServerEntry(name, host, port, fingerprint,
                                          addresses=tuple(addresses) if len(addresses) > 1
                                          else ())
        return self._entries[name]

    def remove(self, name: str) -> ServerEntry:
        entry = self.get(name)
        del self.data[name]
        del self._entries[name]
        return entry

    def save(self) -> None:
        """Rewrite the file atomically (keeping its mode; new files are 0644)."""
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        try:
            atomic_write_text(self.path, json.dumps(self.data, indent=4) + "\n", mode=mode)
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot write ({err.strerror})") from None


LOCAL_NAME = "servers.json"
# How `servers list` and error messages name the file in the current directory.
LOCAL_LABEL = "./servers.json"


def find_servers_json(config: Optional[os.PathLike | str], home: Home,
                      creating: bool = False) -> Path:
    """The list `servers add` and `servers remove` change: ``config``, else HOME/servers.json.

    A ``config`` path must exist (a typo is an error, not an empty list) unless
    ``creating``, as `servers add` is. The home's file may not exist yet: then
    `servers add` creates it.
    """
    if config:
        path = Path(config)
        if not creating and not path.exists():
            raise ConfigError(f"{path}: no such file (given with --config)")
        return path
    return home.servers_json


def local_servers_json(home: Home) -> Optional[Path]:
    """./servers.json when there is one and it is not the home's own file."""
    local = Path.cwd() / LOCAL_NAME
    if not local.is_file():
        return None
    try:
        if local.resolve() == home.servers_json.resolve():
            return None
    except OSError:
        return None
    return local


class ServerLists:
    """Every server a client can name: your own list and, without ``--config``,
    ./servers.json. An entry of your own hides one of the same name in ./servers.json."""

    def __init__(self, own: ServerList, local: Optional[ServerList] = None,
                 explicit: bool = False):
        self.own = own
        self.local = local
        self.explicit = explicit

    @classmethod
    def load(cls, config: Optional[os.PathLike | str], home: Home) -> "ServerLists":
        """Read the lists that apply (any problem is a one-line ConfigError naming the file)."""
        own = ServerList.load(find_servers_json(config, home), missing_ok=not config)
        if config:
            return cls(own, explicit=True)
        local = local_servers_json(home)
        return cls(own, ServerList.load(local) if local is not None else None)

    def label(self, path: Path) -> str:
        """How a file is named to the user: ``home``, ``./servers.json`` or its path."""
        if self.local is not None and path == self.local.path:
            return LOCAL_LABEL
        return str(path) if self.explicit else "home"

    def entries(self) -> List[ServerEntry]:
        """Every usable entry, yours first, each with its ``source``."""
        result = [_sourced(e, self.own.path) for e in self.own.entries()]
        if self.local is not None:
            result += [_sourced(e, self.local.path) for e in self.local.entries()
                       if self.own.find(e.name) is None]
        return result

    def hidden(self) -> List[ServerEntry]:
        """Entries of ./servers.json hidden by one of yours with the same name."""
        if self.local is None:
            return []
        return [_sourced(e, self.local.path) for e in self.local.entries()
                if self.own.find(e.name) is not None]

    def find(self, name: str) -> Optional[ServerEntry]:
        return next((e for e in self.entries() if e.name == name), None)

    def get(self, name: str) -> ServerEntry:
        """The server called ``name``; an unknown name is a ConfigError that lists the known."""
        entry = self.find(name)
        if entry is not None:
            return entry
        shown = name[:64]
        known = [e.name + ("" if e.source == self.own.path else f" ({self.label(e.source)})")
                 for e in self.entries()]
        where = f"{self.own.path}: " if self.explicit else ""
        if not known:
            raise ConfigError(f"{where}no server named {shown!r}: you have no servers yet; add "
                              f"it with `schat servers add {_arg(shown)} --ip ADDRESS --port PORT`")
        raise ConfigError(f"{where}no server named {shown!r} (known: {', '.join(known)}); add it "
                          f"with `schat servers add {_arg(shown)} --ip ADDRESS --port PORT`")


def _sourced(entry: ServerEntry, path: Path) -> ServerEntry:
    return ServerEntry(entry.name, entry.host, entry.port, entry.fingerprint, path,
                       entry.addresses)


def _arg(name: str) -> str:
    # Shown inside a suggested command: only a valid server name is echoed as it is.
    return name if SERVER_NAME_RE.fullmatch(name) else "NAME"


def resolve_server(config: Optional[os.PathLike | str], home: Home, name: str) -> ServerEntry:
    """Look ``name`` up in the lists that apply (yours, then ./servers.json)."""
    return ServerLists.load(config, home).get(name)
