"""Every server default as a named setting.

Each value below is the operator-facing knob for one rule of the server; the
comments say where the default comes from. ``ServerSettings`` is a plain
dataclass so tests and the ``serve`` command set the same fields an operator
would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555

# Handshake + login must finish within this many seconds (OpenSSH LoginGraceTime
# is 120 s; IRC servers use ~30 s). Slow-loris connections are closed after it.
LOGIN_DEADLINE = 30.0
# Failed authentications per connection before it is closed (OpenSSH MaxAuthTries 6).
MAX_AUTH_ATTEMPTS = 3
# A client whose unsent output exceeds this is dropped, alone (IRC sendq ~100 kB).
OUTBOUND_CAP = 1 << 20
# Seconds of silence from a client before the server pings it ...
PING_INTERVAL = 60.0
# ... and further seconds without any answer before it is dropped.
PING_TIMEOUT = 30.0
# Bytes read per socket read; large enough to take a whole burst in one call.
READ_CHUNK = 1 << 18


def default_crypto_workers() -> int:
    """Threads for RSA private-key work and scrypt: about one per core."""
    return max(1, os.cpu_count() or 1)


@dataclass
class ServerSettings:
    """The knobs of one server instance (see the module constants for the reasons)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    server_name: str = "schat"
    motd: str = ""
    allow_signup: bool = True
    login_deadline: float = LOGIN_DEADLINE
    max_auth_attempts: int = MAX_AUTH_ATTEMPTS
    outbound_cap: int = OUTBOUND_CAP
    ping_interval: float = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    read_chunk: int = READ_CHUNK
    crypto_workers: int = field(default_factory=default_crypto_workers)
    # Hash/RSA jobs allowed to wait for a worker; beyond this a login gets
    # "busy" instead of queueing without bound (Ergo-style login throttling).
    max_pending_crypto: int = 64
    # Direct messages stored per recipient until acknowledged; a full mailbox
    # refuses more (the sender is told) so one absent member cannot fill the disk.
    mailbox_limit: int = 500

    def __post_init__(self) -> None:
        for name in ("login_deadline", "ping_interval", "ping_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("max_auth_attempts", "outbound_cap", "read_chunk", "crypto_workers",
                     "max_pending_crypto", "mailbox_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
