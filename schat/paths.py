"""Where schat keeps its files: one data home per user.

The home is ``--home PATH``, else ``$SCHAT_HOME``, else the platform's user data
directory. Server files live under ``server/``, client files under ``keys/``,
``known_servers``, ``servers.json`` and ``server_memory.json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "schat"


def default_home() -> Path:
    """The platform's user data directory for schat (no directory is created)."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_NAME


def resolve_home(explicit: str | os.PathLike | None = None) -> Path:
    """Pick the data home: explicit path, then ``$SCHAT_HOME``, then the platform default."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("SCHAT_HOME")
    if env:
        return Path(env).expanduser()
    return default_home()


class Home:
    """Named locations inside one data home."""

    __slots__ = ("root",)

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def users_db(self) -> Path:
        return self.server_dir / "users.db"

    @property
    def host_key(self) -> Path:
        return self.server_dir / "host_key.pem"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def known_servers(self) -> Path:
        return self.root / "known_servers"

    @property
    def servers_json(self) -> Path:
        return self.root / "servers.json"

    @property
    def server_memory(self) -> Path:
        """Per server: your user name there, how you log in, your ignore list."""
        return self.root / "server_memory.json"
