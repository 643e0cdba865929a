"""The operator's control socket: `schat admin` and `schat user` talk to the running server.

A Unix socket in the server's data home (``server/control.sock``), mode 0600
in a 0700 directory, so only the operator's system account reaches it; the
server also checks the peer's user id (``SO_PEERCRED``) and refuses any other.
One request per connection: a JSON object on one line, answered by one JSON
line, ``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

from schat.chat.errors import Refusal
from schat.errors import ConfigError, ConnectionFailed, SchatError
from schat.store.files import make_private_dirs

if TYPE_CHECKING:  # pragma: no cover
    from schat.server.app import Server

log = logging.getLogger("schat.server")

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024
TIMEOUT = 5.0
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,32}\Z")
# op -> {field: (kind, required)}
_OPS: Dict[str, Dict[str, tuple]] = {
    "who": {},
    "kick": {"name": ("name", True), "room": ("room", False), "reason": ("reason", False)},
    "disconnect": {"name": ("name", True), "reason": ("reason", False)},
    "lock": {"name": ("name", True), "reason": ("reason", False)},
    "remove": {"name": ("name", True)},
    "broadcast": {"text": ("text", True)},
    "motd": {"text": ("text", False)},
}
_BYTES = {"reason": 300, "text": 4096, "room": 33, "name": 32}


class NoServer(ConnectionFailed):
    """No server answers on this data home's control socket."""


def control_path(server_dir) -> Path:
    """Where the control socket of a data home's server lives."""
    return Path(server_dir) / SOCKET_NAME


def _addressable(path: Path):
    """A path short enough for a Unix socket (108 bytes): through /proc/self/fd when long.
    Returns (address, fd to close or None)."""
    if len(os.fsencode(str(path))) < 100:
        return str(path), None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def _connect(path: Path, timeout: float) -> socket.socket:
    address, fd = _addressable(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    finally:
        if fd is not None:
            os.close(fd)
    return sock


# -- the client (commands) ------------------------------------------------------------

def request(path: Path, op: str, timeout: float = TIMEOUT, **fields: Any) -> dict:
    """Send one request to the server of ``path``; its answer, or SchatError."""
    try:
        sock = _connect(path, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NoServer(f"no schat server is running on this data home ({path} does not "
                       f"answer)") from None
    except PermissionError:
        raise ConnectionFailed(f"{path}: permission denied (the server runs as another "
                               f"user)") from None
    except OSError as err:
        raise ConnectionFailed(f"{path}: cannot connect ({err.strerror or err})") from None
    body = {"op": op, **{k: v for k, v in fields.items() if v is not None}}
    try:
        with sock:
            sock.sendall(json.dumps(body).encode("utf-8") + b"\n")
            data = b""
            while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as err:
        raise ConnectionFailed(f"{path}: the server did not answer "
                               f"({err.strerror or err})") from None
    try:
        answer = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ConnectionFailed(f"{path}: the server's answer was cut off or unreadable") from None
    if not isinstance(answer, dict) or not answer.get("ok"):
        raise SchatError(str(answer.get("error") if isinstance(answer, dict) else answer))
    return answer


def notify(path: Path, op: str, **fields: Any) -> Optional[dict]:
    """Like :func:`request`, but None when no server is running (the store alone changed)."""
    try:
        return request(path, op, **fields)
    except NoServer:
        return None


# -- the server ---------------------------------------------------------------------

class ControlServer:
    """Serves the control socket on the server's event loop."""

    def __init__(self, server: "Server", path):
        self.server = server
        self.path = Path(path)
        self._listener: Optional[asyncio.AbstractServer] = None

    async def start(self) -> None:
        make_private_dirs(self.path.parent)
        if self.path.exists() or self.path.is_symlink():
            try:
                _connect(self.path, 1.0).close()
            except OSError:
                self.path.unlink()  # left by a server that did not stop cleanly
            else:
                raise ConfigError(f"another schat server is running on this data home "
                                  f"({self.path} answers)")
        temp = self.path.with_name(f".{SOCKET_NAME}.{os.getpid()}")
        if temp.exists():
            temp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address, fd = _addressable(temp)
        try:
            sock.bind(address)
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            sock.close()
            raise
        finally:
            if fd is not None:
                os.close(fd)
        self._listener = await asyncio.get_running_loop().create_unix_server(
            lambda: ControlLink(self), sock=sock)
        log.info("control socket %s", self.path)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            try:
                self.path.unlink()
            except OSError:
                pass

    # -- requests ---------------------------------------------------------------------
    def answer(self, data: bytes) -> dict:
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {"ok": False, "error": "the request is not a JSON object"}
        try:
            op, fields = self._check(body)
            return {"ok": True, **self._run(op, fields)}
        except (Refusal, ValueError) as err:
            return {"ok": False, "error": str(err)}

    @staticmethod
    def _check(body) -> tuple:
        if not isinstance(body, dict) or not isinstance(body.get("op"), str):
            raise ValueError("the request has no op")
        op = body.pop("op")
        spec = _OPS.get(op)
        if spec is None:
            raise ValueError(f"unknown op {op[:20]!r}")
        for key, value in body.items():
            if key not in spec:
                raise ValueError(f"{op}: unknown field {key[:20]!r}")
            if not isinstance(value, str) or len(value.encode("utf-8", "replace")) > _BYTES[key]:
                raise ValueError(f"{op}: {key} must be text of at most {_BYTES[key]} bytes")
            if key == "name" and not _NAME.match(value):
                raise ValueError(f"{op}: invalid user name {value[:40]!r}")
        for key, (_, required) in spec.items():
            if required and key not in body:
                raise ValueError(f"{op}: {key} is required")
        return op, body

    def _run(self, op: str, f: dict) -> dict:
        chat = self.server.hub.chat
        log.info("control: %s%s", op, f" {f['name']}" if "name" in f else "")
        if op == "who":
            sessions = chat.who_online()
            cluster = self.server.cluster
            if cluster is not None:  # a cluster's node: name this one too
                for item in sessions:
                    item["node"] = item["node"] or cluster.id
            return {"sessions": sessions, "server": chat.server_name}
        if op == "kick":
            return {"rooms": chat.operator_kick(f["name"], f.get("room"), f.get("reason", ""))}
        if op in ("disconnect", "lock", "remove"):
            return {"ended": chat.operator_end(f["name"], op, f.get("reason", ""))}
        if op == "broadcast":
            return {"reached": chat.broadcast(f["text"])}
        if "text" in f:
            chat.set_motd(f["text"])
        return {"motd": chat.motd}


class ControlLink(asyncio.Protocol):
    """One connection to the control socket: one request, one answer."""

    def __init__(self, control: ControlServer):
        self.control = control
        self.transport = None
        self.buffer = b""
        self.timer = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        try:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
            pid, uid, _gid = struct.unpack("3i", creds)
        except (OSError, AttributeError):
            pid, uid = -1, -1
        if uid != os.geteuid():
            log.warning("control socket: refused a connection from uid %d (pid %d)", uid, pid)
            self._finish({"ok": False, "error": "refused: only the server's own system user "
                                                "may use its control socket"})
            return
        self.timer = asyncio.get_running_loop().call_later(TIMEOUT, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.buffer += data
        if b"\n" in self.buffer:
            line = self.buffer.split(b"\n", 1)[0]
            try:
                answer = self.control.answer(line)
            except Exception:  # noqa: BLE001 - a bug must not stop the server
                log.exception("control request failed")
                answer = {"ok": False, "error": "internal error; see the server log"}
            self._finish(answer)
        elif len(self.buffer) > MAX_REQUEST:
            self._finish({"ok": False, "error": "request too long"})

    def _finish(self, answer: dict) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport.write(json.dumps(answer).encode("utf-8") + b"\n")
        self.transport.close()

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()
