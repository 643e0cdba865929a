"""The settings file of `schat serve`: every flag of the command as a TOML key.

The keys are derived from the Click command's own options (``--rate-limit``
is ``rate-limit``, ``--allow-signup/--no-signup`` is ``allow-signup = true``),
so a flag added to ``serve`` later is a settings key without any change here.
Values are checked with the option's own Click type, so a range or a choice
means the same in the file as on the command line. Precedence: the command
line, then the file, then the environment, then the built-in defaults.

Every problem is one line naming the file, the line and the key.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import click
from click.core import ParameterSource

from schat.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9 and 3.10
    import tomli as tomllib

# Options that are actions, not settings: never keys of the file.
ACTIONS = frozenset({"settings", "print-settings", "init", "help"})
# Where a value comes from, in order of precedence.
COMMAND_LINE = "the command line"
DEFAULT = "default"
# Key names that hold a secret whatever their value looks like.
_SECRET_KEY = re.compile(r"password|passphrase|secret|token", re.I)
# The password in a URL's user information: scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*(?=@)")
MASK = "***"


def option_key(option: click.Option) -> str:
    """The settings key of an option: its first long name without the dashes."""
    longs = [opt for opt in option.opts if opt.startswith("--")]
    return (longs[0] if longs else option.opts[0]).lstrip("-")


def settings_options(command: click.Command) -> Dict[str, click.Option]:
    """key -> option, for every option of ``command`` that is a setting, in order."""
    keys: Dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option) and option_key(param) not in ACTIONS:
            keys.setdefault(option_key(param), param)
    return keys


class SettingsFile:
    """A parsed, checked settings file: values by option name, and where each was."""

    def __init__(self, path: Path, values: Dict[str, Any], lines: Dict[str, int],
                 keys: Dict[str, str]):
        self.path = path
        self.values = values   # option name -> converted value
        self.lines = lines     # option name -> line number in the file
        self.keys = keys       # option name -> key as spelled in the file

    def where(self, name: str) -> str:
        """``FILE, line N`` for the key of option ``name``."""
        return f"{self.path}, line {self.lines.get(name, '?')}"

    @classmethod
    def load(cls, path, command: click.Command,
             ctx: Optional[click.Context] = None) -> "SettingsFile":
        """Read and check ``path``; ConfigError (one line: file, line, key) on any problem."""
        path = Path(path)
        text = _read(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(_toml_error(path, err)) from None
        options = settings_options(command)
        lines = _key_lines(text)
        values: Dict[str, Any] = {}
        where: Dict[str, int] = {}
        spelled: Dict[str, str] = {}
        for key, raw in data.items():
            line = lines.get(key, "?")
            option = options.get(key)
            if option is None:
                raise ConfigError(f"{path}, line {line}: {_unknown(key, raw, options)}")
            try:
                values[option.name] = convert(option, raw, ctx)
            except click.BadParameter as err:
                raise ConfigError(f"{path}, line {line}: {key}: {err.message}") from None
            where[option.name] = line
            spelled[option.name] = key
        return cls(path, values, where, spelled)


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such settings file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a settings file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the settings file ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text") from None


def _toml_error(path: Path, err: Exception) -> str:
    message = str(err)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        what = message[:found.start()]
        return f"{path}, line {found.group(1)}: not valid TOML: {what} (column {found.group(2)})"
    found = re.search(r"\s*\(at end of document\)$", message)
    if found:
        what = message[:found.start()]
        return f"{path}, line {message.count(chr(10)) + 1}: not valid TOML: {what} (at the end)"
    return f"{path}: not valid TOML: {message}"


def _unknown(key: str, raw: Any, options: Dict[str, click.Option]) -> str:
    if isinstance(raw, dict):
        return (f"{key}: sections and dotted keys are not used; every setting is a top-level "
                "key (see `schat serve --print-settings`)")
    guess = key.replace("_", "-").lower()
    if guess in options:
        return f"unknown setting {key!r}; did you mean {guess!r}?"
    close = difflib.get_close_matches(guess, list(options), n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]!r}?" if close else " (see `schat serve --print-settings`)"
    return f"unknown setting {key!r}{hint}"


_KEY_LINE = re.compile(r"""^\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[=.\[]?""")


def _key_lines(text: str) -> Dict[str, int]:
    """Line of each top-level key (and of each table header, under its name).

    tomllib reports values without positions; this scanner finds where each
    key starts, skipping the inside of multi-line strings.
    """
    lines: Dict[str, int] = {}
    in_string: Optional[str] = None
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        stripped = line.strip()
        if stripped.startswith("["):
            name = stripped.strip("[] \t").split(".")[0].strip().strip("\"'")
            lines.setdefault(name, number)
            in_table = True
            continue
        if in_table or not stripped or stripped.startswith("#"):
            continue
        found = _KEY_LINE.match(line)
        if found:
            key = next(g for g in found.groups() if g is not None)
            if found.group(1) is not None:
                key = json.loads(f'"{key}"')
            lines.setdefault(key, number)
        for delimiter in ('"""', "'''"):
            if line.count(delimiter) % 2 == 1:
                in_string = delimiter
                break
    return lines


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _expect(option: click.Option) -> Tuple[tuple, str]:
    """The TOML value types an option accepts, and how to say so."""
    kind = option.type
    if option.is_flag and option.is_bool_flag:
        return (bool,), "true or false"
    if option.count or isinstance(kind, click.types.IntParamType):
        return (int,), "an integer"
    if isinstance(kind, click.types.FloatParamType):
        return (int, float), "a number"
    if isinstance(kind, click.types.BoolParamType):
        return (bool,), "true or false"
    if isinstance(kind, click.Choice):
        return (str,), "one of " + ", ".join(map(str, kind.choices))
    if isinstance(kind, (click.types.StringParamType, click.Path, click.File)):
        return (str,), "a string"
    # A custom type: whatever a command line could carry (text or a number).
    return (str, int, float), "a string"


def convert(option: click.Option, raw: Any, ctx: Optional[click.Context] = None) -> Any:
    """``raw`` (a TOML value) checked and converted with the option's own Click type."""
    accepted, wanted = _expect(option)
    many = option.multiple or (option.nargs != 1)
    items = raw if many else [raw]
    if many and not isinstance(raw, list):
        raise click.BadParameter(f"expected an array, got {_type_name(raw)}")
    for item in items:
        if isinstance(item, bool) and bool not in accepted or not isinstance(item, accepted):
            shown = "" if isinstance(item, (dict, list)) else f" ({_toml(item)})"
            raise click.BadParameter(f"expected {wanted}, got {_type_name(item)}{shown}")
        if isinstance(item, float) and not math.isfinite(item):
            raise click.BadParameter(f"expected a finite number, got {_toml(item)}")
    if option.is_flag and option.is_bool_flag:
        return raw
    if option.count:
        if raw < 0:
            raise click.BadParameter(f"{raw} is negative")
        return raw
    converted = [option.type.convert(item, option, ctx) for item in items]
    return tuple(converted) if many else converted[0]


# -- precedence -------------------------------------------------------------------

def on_command_line(ctx: click.Context, name: str) -> bool:
    """True when option ``name`` was given as a flag (on this command or, for the
    global options, before it)."""
    while ctx is not None:
        try:
            source = ctx.get_parameter_source(name)
        except (KeyError, TypeError):  # pragma: no cover - not a parameter here
            source = None
        if source in (ParameterSource.COMMANDLINE, ParameterSource.PROMPT):
            return True
        ctx = ctx.parent
    return False


class Sources:
    """The command line of one `serve` run, kept to merge a settings file into it again
    (at start and at every reload): flags win over the file, the file over defaults."""

    def __init__(self, ctx: click.Context, values: Dict[str, Any]):
        self.flags = {name: value for name, value in values.items()
                      if on_command_line(ctx, name)}
        self.defaults = {name: value for name, value in values.items()
                         if name not in self.flags}
        # Options that set something up instead of passing a value (--home,
        # --config, --store): their callbacks apply a value from the file.
        self.hidden = {p.name: p for p in ctx.command.params
                       if isinstance(p, click.Option) and not p.expose_value
                       and option_key(p) not in ACTIONS}
        self.global_flags = {name for name in self.hidden if on_command_line(ctx, name)}
        self.ctx = ctx

    def merge(self, file: Optional[SettingsFile]) -> Tuple[Dict[str, Any], Dict[str, str]]:
        """(values, origin): each option's effective value, and where it came from."""
        values: Dict[str, Any] = {}
        origin: Dict[str, str] = {}
        for name, value in self.defaults.items():
            if file is not None and name in file.values:
                values[name], origin[name] = file.values[name], file.where(name)
            else:
                values[name], origin[name] = value, DEFAULT
        for name, value in self.flags.items():
            values[name], origin[name] = value, COMMAND_LINE
        return values, origin

    def apply_hidden(self, file: Optional[SettingsFile], origin: Dict[str, str]) -> None:
        """Run the callback of each hidden option (--home, --store...) with the file's
        value, unless a flag gave one; record where each came from in ``origin``."""
        for name, option in self.hidden.items():
            if name in self.global_flags:
                origin[name] = COMMAND_LINE
            elif file is not None and name in file.values:
                origin[name] = file.where(name)
                if option.callback is not None:
                    option.callback(self.ctx, option, file.values[name])


# -- printing -----------------------------------------------------------------

def mask_secrets(key: str, value: Any) -> Any:
    """``value`` with secrets replaced by ***: the whole value of a secret-named key,
    the password inside a URL (``postgresql://user:***@host/db``) anywhere else."""
    if isinstance(value, (list, tuple)):
        return [mask_secrets(key, item) for item in value]
    if not isinstance(value, str):
        return value
    if _SECRET_KEY.search(key) and value:
        return MASK
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    # JSON's escapes are valid in a TOML basic string.
    return json.dumps(str(value), ensure_ascii=False)


def render(items: Iterable[Tuple[str, Any, str]], header: List[str]) -> str:
    """TOML text for ``(key, value, note)`` items; a None value is a commented-out key."""
    out = [f"# {line}" if line else "#" for line in header]
    for key, value, note in items:
        value = mask_secrets(key, value)
        suffix = f"  # {note}" if note else ""
        if value is None:
            out.append(f"# {key} is not set{suffix}")
        else:
            out.append(f"{key} = {_toml(value)}{suffix}")
    return "\n".join(out) + "\n"
