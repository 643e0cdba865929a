"""A user's RSA key pairs on disk: HOME/keys/NAME.pem (private) and NAME.pub.pem.

The private key is PKCS#8, encrypted with a passphrase unless the user chose
otherwise, written atomically with mode 0600 in a 0700 directory. A pair that
`schat keys gen --force` replaces is kept in HOME/keys/retired/ as
NAME.<UTC time>.pem (and .pub.pem): direct messages sealed to it stay readable.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from schat.crypto import keys
from schat.errors import KeyFileError, PolicyError
from schat.paths import Home
from schat.store.files import atomic_write, make_private_dirs
from schat.store.policy import USERNAME_RULE, validate_username

PRIVATE_SUFFIX = ".pem"
PUBLIC_SUFFIX = ".pub.pem"
RETIRED_DIR = "retired"


@dataclass(frozen=True)
class KeyInfo:
    """What `schat keys list` shows about one key pair."""

    name: str
    fingerprint: Optional[str]
    encrypted: Optional[bool]
    path: Path
    problem: Optional[str] = None

    def to_json(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint,
                "encrypted": self.encrypted, "path": str(self.path), "problem": self.problem}


def _looks_like_path(name_or_path: str) -> bool:
    return os.sep in name_or_path or "/" in name_or_path or name_or_path.endswith(".pem")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a directory, not a key file") from None
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read ({err.strerror})") from None


class KeyFiles:
    """The key pairs kept in one data home."""

    def __init__(self, home: Union[Home, str, os.PathLike]):
        self.home = home if isinstance(home, Home) else Home(home)

    @property
    def directory(self) -> Path:
        return self.home.keys_dir

    def _check_name(self, name: str) -> str:
        try:
            return validate_username(name)
        except PolicyError:
            raise KeyFileError(f"invalid key name {name[:40]!r}: use {USERNAME_RULE}") from None

    def private_path(self, name: str) -> Path:
        return self.directory / (self._check_name(name) + PRIVATE_SUFFIX)

    def public_path(self, name: str) -> Path:
        return self.directory / (self._check_name(name) + PUBLIC_SUFFIX)

    def save(self, name: str, key: keys.RsaKey, passphrase: Optional[str],
             force: bool = False) -> KeyInfo:
        """Write ``key`` as NAME.pem (+ NAME.pub.pem); refuses to overwrite unless ``force``."""
        private, public = self.private_path(name), self.public_path(name)
        self.save_check(name, force)
        if passphrase == "":
            raise KeyFileError("an empty passphrase is not allowed; use --no-passphrase instead")
        make_private_dirs(self.directory)
        os.chmod(self.directory, 0o700)
        atomic_write(private, keys.export_private_pem(key, passphrase), mode=0o600)
        atomic_write(public, keys.export_public_pem(key), mode=0o644)
        return KeyInfo(name, keys.fingerprint(key), passphrase is not None, private)

    def generate(self, name: str, passphrase: Optional[str], force: bool = False) -> KeyInfo:
        """Create a fresh RSA-3072 pair for ``name`` (``passphrase`` None: unencrypted)."""
        # Check before the (slow) generation so a refusal is immediate.
        self.save_check(name, force)
        return self.save(name, keys.generate_rsa_key(), passphrase, force)

    def save_check(self, name: str, force: bool) -> None:
        """Raise the error :meth:`save` would raise for an existing pair."""
        if force:
            return
        for path in (self.private_path(name), self.public_path(name)):
            if path.exists():
                raise KeyFileError(f"{path} already exists; use --force to replace it")

    @property
    def retired_directory(self) -> Path:
        return self.directory / RETIRED_DIR

    def retire(self, name: str, key: Optional[keys.RsaKey] = None,
               passphrase: Optional[str] = None, when: Optional[float] = None) -> Path:
        """Keep a copy of NAME's current pair in keys/retired/ before it is replaced.

        With ``key`` (the old private key, loaded) it is written encrypted with
        ``passphrase`` (the new key's), so one passphrase opens both; without, the
        file is copied byte for byte. Returns the retired private key's path.
        """
        private, public = self.private_path(name), self.public_path(name)
        data = keys.export_private_pem(key, passphrase) if key is not None else _read(private)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
        make_private_dirs(self.retired_directory)
        os.chmod(self.directory, 0o700)
        base, number = f"{name}.{stamp}", 1
        while (self.retired_directory / (base + PRIVATE_SUFFIX)).exists():
            number += 1
            base = f"{name}.{stamp}-{number}"
        target = self.retired_directory / (base + PRIVATE_SUFFIX)
        atomic_write(target, data, mode=0o600)
        if public.exists():
            atomic_write(self.retired_directory / (base + PUBLIC_SUFFIX), _read(public),
                         mode=0o644)
        return target

    def retired(self, name: str) -> List[Path]:
        """NAME's retired private keys, newest first."""
        directory = self.retired_directory
        if not directory.is_dir():
            return []
        prefix = self._check_name(name) + "."
        found = [p for p in directory.glob(prefix + "*" + PRIVATE_SUFFIX)
                 if not p.name.endswith(PUBLIC_SUFFIX)
                 and "." not in p.name[len(prefix):-len(PRIVATE_SUFFIX)]]
        return sorted(found, reverse=True)

    def resolve_private(self, name_or_path: str) -> Path:
        if _looks_like_path(name_or_path):
            return Path(name_or_path).expanduser()
        return self.private_path(name_or_path)

    def resolve_public(self, name_or_path: str) -> Path:
        if _looks_like_path(name_or_path):
            return Path(name_or_path).expanduser()
        return self.public_path(name_or_path)

    def load_private(self, name_or_path: str, passphrase: Optional[str]) -> keys.RsaKey:
        """Load a private key by name or path; errors name the file."""
        path = self.resolve_private(name_or_path)
        data = _read(path)
        try:
            return keys.import_private_pem(data, passphrase)
        except KeyFileError as err:
            raise KeyFileError(f"{path}: {err}") from None

    def is_encrypted(self, name_or_path: str) -> bool:
        """True when the private key file needs a passphrase."""
        return keys.is_encrypted_pem(_read(self.resolve_private(name_or_path)))

    def load_public(self, name_or_path: str) -> keys.RsaKey:
        """Load a public key by name (NAME.pub.pem) or path (a public or an
        unencrypted private PEM); errors name the file."""
        path = self.resolve_public(name_or_path)
        data = _read(path)
        if keys.is_encrypted_pem(data):
            raise KeyFileError(f"{path}: holds an encrypted private key; "
                               "give the matching .pub.pem file instead")
        try:
            return keys.import_public_key(data)
        except KeyFileError as err:
            raise KeyFileError(f"{path}: {err}") from None

    def list(self) -> List[KeyInfo]:
        """Every private key in the keys directory, sorted by name; unreadable
        files are listed with the problem instead of failing the listing."""
        if not self.directory.is_dir():
            return []
        result = []
        for private in sorted(self.directory.glob("*" + PRIVATE_SUFFIX)):
            if private.name.endswith(PUBLIC_SUFFIX) or private.name.startswith("."):
                continue
            name = private.name[: -len(PRIVATE_SUFFIX)]
            result.append(self._info(name, private))
        return result

    def _info(self, name: str, private: Path) -> KeyInfo:
        try:
            data = _read(private)
        except KeyFileError as err:
            return KeyInfo(name, None, None, private, str(err))
        encrypted = keys.is_encrypted_pem(data)
        key = None
        if not encrypted:
            # Garbage is "unknown", not "unencrypted".
            try:
                key = keys.import_private_pem(data, None)
            except KeyFileError as err:
                return KeyInfo(name, None, None, private, str(err))
        public = private.with_name(name + PUBLIC_SUFFIX)
        try:
            if public.exists():
                key = keys.import_public_key(_read(public))
            elif key is None:
                return KeyInfo(name, None, True, private, "public key file missing")
        except KeyFileError as err:
            return KeyInfo(name, None, encrypted, private, str(err))
        return KeyInfo(name, keys.fingerprint(key), encrypted, private)
