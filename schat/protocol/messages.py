"""The JSON messages carried inside the secure channel.

Each message type is a frozen dataclass registered under its wire ``type``;
every field names its :mod:`schat.protocol.schema` kind. Adding a type takes a
few lines::

    @message("fetch_key")
    class FetchKey(Message):
        user: str = spec(schema.NAME)

:func:`decode` is strict: invalid UTF-8, non-object JSON, duplicate keys, an
unknown ``type``, missing or unknown fields, wrong types (``true`` is not an
integer), out-of-range values and over-long strings each raise
:class:`~schat.errors.RemoteProtocolError` with a reason, never anything else.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Callable, Dict, List, Mapping, Tuple, Type, TypeVar

from schat.errors import LocalProtocolError, RemoteProtocolError
from schat.protocol import schema
from schat.protocol.schema import Kind

_DATACLASS = {"frozen": True}
if sys.version_info >= (3, 10):
    _DATACLASS["slots"] = True

_MISSING = dataclasses.MISSING
REGISTRY: Dict[str, Type["Message"]] = {}
# Compiled per type: (field name, kind, has default, default, omitted when default).
_SPECS: Dict[str, Tuple[Tuple[str, Kind, bool, Any, bool], ...]] = {}

M = TypeVar("M", bound="Message")

# Away members in a ``users`` message: {user, text}.
AWAY_LIST = schema.record(user=schema.NAME, text=schema.SHORT_TEXT)


class Message:
    """Base of every message; ``TYPE`` is the wire ``type``."""

    __slots__ = ()
    TYPE = ""


def spec(kind: Kind, default: Any = _MISSING, omit: bool = False) -> Any:
    """Declare a field of kind ``kind``; with ``default`` it may be absent on the wire.

    ``omit``: leave the field out when it holds its default, so that a message
    keeps the shape older peers know (a field added later is then only sent
    when it says something).
    """
    return dataclasses.field(default=default, metadata={"kind": kind, "omit": omit})


def message(type_name: str) -> Callable[[Type[M]], Type[M]]:
    """Class decorator: make a frozen dataclass and register it under ``type_name``."""
    def register(cls: Type[M]) -> Type[M]:
        if type_name in REGISTRY:
            raise ValueError(f"message type {type_name!r} registered twice")
        cls.TYPE = type_name
        cls = dataclasses.dataclass(**_DATACLASS)(cls)
        cls.TYPE = type_name
        _SPECS[type_name] = tuple(
            (f.name, f.metadata["kind"], f.default is not _MISSING, f.default,
             f.metadata.get("omit", False))
            for f in dataclasses.fields(cls)
        )
        REGISTRY[type_name] = cls
        return cls
    return register


# --- client -> server ---------------------------------------------------------

@message("login")
class Login(Message):
    user: str = spec(schema.NAME)
    password: str = spec(schema.PASSWORD)
    # What the client understands ("rooms"); unknown features are ignored.
    features: Tuple[str, ...] = spec(schema.FEATURES, default=(), omit=True)
    # True: only check the credentials (answered by ``checked``): no chat session,
    # no takeover, nobody sees a join or a leave.
    check: bool = spec(schema.BOOL, default=False, omit=True)

    def __repr__(self) -> str:  # never show the password
        return f"Login(user={self.user!r}, password=<hidden>)"


@message("login_key")
class LoginKey(Message):
    user: str = spec(schema.NAME)
    signature: bytes = spec(schema.SIGNATURE)
    features: Tuple[str, ...] = spec(schema.FEATURES, default=(), omit=True)
    check: bool = spec(schema.BOOL, default=False, omit=True)


@message("signup")
class Signup(Message):
    user: str = spec(schema.NAME)
    password: str = spec(schema.PASSWORD)
    public_key: Any = spec(schema.PUBLIC_KEY, default=None)
    features: Tuple[str, ...] = spec(schema.FEATURES, default=(), omit=True)

    def __repr__(self) -> str:
        return f"Signup(user={self.user!r}, password=<hidden>, public_key={'yes' if self.public_key else 'no'})"


@message("say")
class Say(Message):
    text: str = spec(schema.TEXT)
    cid: str = spec(schema.CID)
    action: bool = spec(schema.BOOL, default=False)
    # The room the line goes to; absent: the session's current room (#lobby for a
    # client that knows no rooms).
    room: Any = spec(schema.ROOM, default=None)


@message("command")
class Command(Message):
    line: str = spec(schema.COMMAND_LINE)
    cid: str = spec(schema.CID)
    # The room a room command applies to when its line names none; absent: the current room.
    room: Any = spec(schema.ROOM, default=None)


@message("who")
class Who(Message):
    room: Any = spec(schema.ROOM, default=None)


# Retired: private messages are end-to-end encrypted (``dm_send``). The type
# still decodes so that a server can refuse it with a clear error instead of
# dropping an older client for a protocol violation.
@message("msg")
class Msg(Message):
    to: str = spec(schema.NAME)
    text: str = spec(schema.TEXT)
    cid: str = spec(schema.CID)


# --- server -> client ---------------------------------------------------------

@message("welcome")
class Welcome(Message):
    user: str = spec(schema.NAME)
    server: str = spec(schema.SHORT_TEXT)
    motd: str = spec(schema.OPTIONAL_TEXT)
    users: Tuple[str, ...] = spec(schema.NAMES)
    time: int = spec(schema.TIME)


@message("error")
class Error(Message):
    code: str = spec(schema.CODE)
    text: str = spec(schema.SHORT_TEXT)
    # The cid of the request this answers; absent when it answers none.
    cid: Any = spec(schema.CID, default=None)


@message("message")
class ChatMessage(Message):
    id: int = spec(schema.INT)
    time: int = spec(schema.TIME)
    sender: str = spec(schema.NAME)
    text: str = spec(schema.TEXT)
    action: bool = spec(schema.BOOL, default=False)
    # Absent: #lobby (the shape clients that know no rooms read).
    room: Any = spec(schema.ROOM, default=None)
    # True: sent from the room's history (backlog, /history), not live.
    history: bool = spec(schema.BOOL, default=False, omit=True)
    # The cid of the request this answers (a /history or /join of a room-aware
    # client); absent on every live line.
    cid: Any = spec(schema.CID, default=None)


@message("ack")
class Ack(Message):
    cid: str = spec(schema.CID)
    id: int = spec(schema.INT)
    time: int = spec(schema.TIME)


@message("notice")
class Notice(Message):
    text: str = spec(schema.TEXT)
    time: int = spec(schema.TIME)
    # The cid of the request this answers (the offline-recipient notice of a
    # dm_send); absent when it answers none.
    cid: Any = spec(schema.CID, default=None)


@message("join")
class Join(Message):
    user: str = spec(schema.NAME)
    time: int = spec(schema.TIME)
    room: Any = spec(schema.ROOM, default=None)


@message("leave")
class Leave(Message):
    user: str = spec(schema.NAME)
    time: int = spec(schema.TIME)
    reason: str = spec(schema.SHORT_TEXT, default="")
    room: Any = spec(schema.ROOM, default=None)


@message("users")
class Users(Message):
    users: Tuple[str, ...] = spec(schema.NAMES)
    # True: the list continues in the next ``users`` message (lists over 1,024 names).
    more: bool = spec(schema.BOOL, default=False)
    room: Any = spec(schema.ROOM, default=None)
    # Those of ``users`` who are away: objects {user, text} (the away message). Sent only
    # to a client that said "away" in its login features; omitted when nobody is away.
    away: Tuple[dict, ...] = spec(AWAY_LIST, default=(), omit=True)
    # The cid of the request this answers (/who, /names, /join of a room-aware client).
    cid: Any = spec(schema.CID, default=None)


# Retired: no server sends it any more. It still decodes so that a client can
# discard one (a plaintext "private message" would be a forgery) with a warning.
@message("dm")
class Dm(Message):
    id: int = spec(schema.INT)
    time: int = spec(schema.TIME)
    sender: str = spec(schema.NAME)
    to: str = spec(schema.NAME)
    text: str = spec(schema.TEXT)


# --- both directions ----------------------------------------------------------

@message("ping")
class Ping(Message):
    n: int = spec(schema.INT)


@message("pong")
class Pong(Message):
    n: int = spec(schema.INT)


@message("bye")
class Bye(Message):
    reason: str = spec(schema.SHORT_TEXT, default="")


# --- encoding -----------------------------------------------------------------

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False, check_circular=False).encode


def encode(msg: Message) -> bytes:
    """One compact JSON object (UTF-8, never a raw newline) for ``msg``.

    Raises LocalProtocolError when a field does not meet its own limits.
    """
    specs = _SPECS.get(getattr(msg, "TYPE", None)) if isinstance(msg, Message) else None
    if specs is None:
        raise LocalProtocolError(f"not a registered message: {type(msg).__name__}")
    obj: Dict[str, Any] = {"type": msg.TYPE}
    for name, kind, has_default, default, omit in specs:
        value = getattr(msg, name)
        if has_default and ((value is None and default is None) or (omit and value == default)):
            continue
        obj[name] = kind.encode(value, name)
    return _dumps(obj).encode("utf-8")


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise RemoteProtocolError("duplicate key in a JSON object")
    return obj


def _no_constant(name: str) -> Any:
    raise RemoteProtocolError(f"{name} is not allowed in a message")


_decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def decode(data: bytes, accepted: Mapping[str, Type[Message]] = REGISTRY) -> Message:
    """Parse and validate one message; RemoteProtocolError on anything wrong.

    ``accepted`` maps the types the caller may receive to their classes (see
    :mod:`schat.protocol.registry`); any other type is a protocol error.
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("message is not valid UTF-8") from None
    try:
        obj = _decoder.decode(text)
    except RemoteProtocolError:
        raise
    except RecursionError:
        raise RemoteProtocolError("message nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        reason = getattr(exc, "msg", "number too long")
        raise RemoteProtocolError(f"message is not valid JSON ({reason})") from None
    if type(obj) is not dict:
        raise RemoteProtocolError("message is not a JSON object")
    type_name = obj.pop("type", None)
    if type(type_name) is not str:
        raise RemoteProtocolError("message has no string 'type'")
    cls = accepted.get(type_name)
    if cls is None:
        if type_name in REGISTRY:
            raise RemoteProtocolError(f"message type {type_name!r} is not allowed here",
                                      code="unexpected_message")
        raise RemoteProtocolError(f"unknown message type {type_name[:40]!r}",
                                  code="unexpected_message")
    values = {}
    for name, kind, has_default, default, _omit in _SPECS[type_name]:
        if name in obj:
            values[name] = kind.check(obj.pop(name), name)
        elif has_default:
            values[name] = default
        else:
            raise RemoteProtocolError(f"{type_name} message lacks field {name!r}")
    if obj:
        extra = sorted(obj)[0]
        raise RemoteProtocolError(f"{type_name} message has unknown field {extra[:40]!r}")
    return cls(**values)

