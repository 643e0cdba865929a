"""Field validators for the JSON messages: each takes the raw JSON value and
returns the Python value, or raises RemoteProtocolError with a reason.

A validator also has an ``encode`` side (Python value → JSON value) used when
sending; local misuse there raises LocalProtocolError.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable, Optional, Tuple

from schat.errors import LocalProtocolError, RemoteProtocolError
from schat.names import name_key  # noqa: F401 - re-exported: the protocol's name rule

MAX_TEXT_BYTES = 4096          # chat text, command lines, motd
MAX_SHORT_BYTES = 1024         # error text, notices' reasons, bye reasons
MAX_PASSWORD_BYTES = 4096      # 1,024 characters after NFKC can take 4 KiB of UTF-8
MAX_LIST_ITEMS = 1024          # names in one welcome/users message
MAX_INT = 2 ** 53 - 1          # largest integer every JSON implementation keeps exact

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}\Z")
_CID_RE = re.compile(r"[\x20-\x7e]{1,64}\Z")
_CODE_RE = re.compile(r"[a-z_]{1,32}\Z")


class Kind:
    """A field type: ``check`` validates received values, ``encode`` outgoing ones."""

    __slots__ = ("name", "check", "encode")

    def __init__(self, name: str, check: Callable[[Any, str], Any],
                 encode: Optional[Callable[[Any, str], Any]] = None):
        self.name = name
        self.check = check
        self.encode = encode or _local(check)


def _local(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def encode(value: Any, field: str) -> Any:
        try:
            check(value, field)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"cannot send: {exc}") from None
        return value
    return encode


def _fail(field: str, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"field {field!r}: {why}")


def _utf8_len(value: str, field: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _fail(field, "not valid Unicode (lone surrogate)") from None


def string(min_bytes: int, max_bytes: int, pattern: Optional[re.Pattern] = None,
           prefix: str = "") -> Kind:
    """A string of ``min_bytes..max_bytes`` UTF-8 bytes, optionally matching ``pattern``."""
    def check(value: Any, field: str) -> str:
        if type(value) is not str:
            raise _fail(field, "must be a string")
        n = _utf8_len(value, field)
        if not min_bytes <= n <= max_bytes:
            raise _fail(field, f"length {n} bytes outside {min_bytes}..{max_bytes}")
        if pattern is not None and not pattern.match(value):
            raise _fail(field, "has characters that are not allowed")
        if prefix and not value.startswith(prefix):
            raise _fail(field, f"must start with {prefix!r}")
        return value
    return Kind(f"string {min_bytes}..{max_bytes} bytes", check)


def integer(lo: int = 0, hi: int = MAX_INT) -> Kind:
    """An integer in ``lo..hi`` (JSON true/false are not integers)."""
    def check(value: Any, field: str) -> int:
        if type(value) is not int:
            raise _fail(field, "must be an integer")
        if not lo <= value <= hi:
            raise _fail(field, f"out of range {lo}..{hi}")
        return value
    return Kind(f"integer {lo}..{hi}", check)


def _check_bool(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise _fail(field, "must be true or false")
    return value


def binary(max_bytes: int) -> Kind:
    """Bytes carried as standard base64 (with padding) of 1..``max_bytes`` bytes."""
    def check(value: Any, field: str) -> bytes:
        if type(value) is not str:
            raise _fail(field, "must be a base64 string")
        if len(value) > 4 * ((max_bytes + 2) // 3):
            raise _fail(field, f"longer than {max_bytes} bytes")
        try:
            raw = base64.b64decode(value.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise _fail(field, "is not valid base64") from None
        if not raw:
            raise _fail(field, "must not be empty")
        return raw

    def encode(value: Any, field: str) -> str:
        if not isinstance(value, (bytes, bytearray)) or not 0 < len(value) <= max_bytes:
            raise LocalProtocolError(f"cannot send: field {field!r} must be 1..{max_bytes} bytes")
        return base64.b64encode(bytes(value)).decode("ascii")
    return Kind(f"base64 of 1..{max_bytes} bytes", check, encode)


def list_of(item: Kind, max_items: int = MAX_LIST_ITEMS) -> Kind:
    """A JSON array of up to ``max_items`` values of ``item``; stored as a tuple."""
    def check(value: Any, field: str) -> Tuple[Any, ...]:
        if type(value) is not list:
            raise _fail(field, "must be a list")
        if len(value) > max_items:
            raise _fail(field, f"more than {max_items} items")
        return tuple(item.check(v, field) for v in value)

    def encode(value: Any, field: str) -> list:
        if not isinstance(value, (list, tuple)) or len(value) > max_items:
            raise LocalProtocolError(f"cannot send: field {field!r} must be a list of up to {max_items}")
        return [item.encode(v, field) for v in value]
    return Kind(f"list of up to {max_items} {item.name}", check, encode)


NAME = string(1, 32, _NAME_RE)


PASSWORD = string(1, MAX_PASSWORD_BYTES)
TEXT = string(1, MAX_TEXT_BYTES)
COMMAND_LINE = string(1, MAX_TEXT_BYTES, prefix="/")
OPTIONAL_TEXT = string(0, MAX_TEXT_BYTES)
SHORT_TEXT = string(0, MAX_SHORT_BYTES)
CID = string(1, 64, _CID_RE)
CODE = string(1, 32, _CODE_RE)
BOOL = Kind("boolean", _check_bool)
INT = integer()
TIME = integer()
NAMES = list_of(NAME)
ROOM = string(2, 33, re.compile(r"#[a-z0-9_\-]{1,32}\Z"))
FEATURES = list_of(CODE, 16)


def record(max_items: int = MAX_LIST_ITEMS, **fields: Kind) -> Kind:
    """A JSON array of up to ``max_items`` objects with exactly ``fields`` (each required);
    stored as a tuple of dicts."""
    def check_one(value: Any, field: str) -> dict:
        if type(value) is not dict:
            raise _fail(field, "items must be objects")
        if set(value) != set(fields):
            raise _fail(field, f"items must have exactly the fields {sorted(fields)}")
        return {name: kind.check(value[name], f"{field}.{name}") for name, kind in fields.items()}

    def encode_one(value: Any, field: str) -> dict:
        if not isinstance(value, dict) or set(value) != set(fields):
            raise LocalProtocolError(f"cannot send: field {field!r} needs {sorted(fields)}")
        return {name: kind.encode(value[name], f"{field}.{name}") for name, kind in fields.items()}
    return list_of(Kind("object", check_one, encode_one), max_items)
SIGNATURE = binary(1024)      # RSA up to 8192 bits
PUBLIC_KEY = binary(2048)     # DER SubjectPublicKeyInfo of RSA up to 8192 bits
