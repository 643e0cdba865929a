"""docs/PROTOCOL.md against the code, both ways: every message type with its direction
and fields (name, kind, default), what a client must accept in each state, what a server
accepts before a login and after a credential check, and every error code.

The document is the specification a second implementation is written from; the
registry (:mod:`schat.protocol.registry` and the modules that register types) is what
this one does. A type, field, state or code missing on either side, or described
differently, fails here with its name.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from schat.errors import RemoteProtocolError
from schat.protocol import dm_messages, messages, registry, room_messages, schema

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"

# The kinds of §4 (and §5a, the DM section) by the word the tables use.
KINDS = {
    "name": schema.NAME, "text": schema.TEXT, "line": schema.COMMAND_LINE,
    "short": schema.SHORT_TEXT, "motd": schema.OPTIONAL_TEXT, "password": schema.PASSWORD,
    "cid": schema.CID, "code": schema.CODE, "codes": schema.FEATURES, "int": schema.INT,
    "time": schema.TIME, "bool": schema.BOOL, "names": schema.NAMES, "room": schema.ROOM,
    "away": messages.AWAY_LIST, "roomlist": room_messages.ROOM_LIST,
    "fingerprint": dm_messages.FINGERPRINT,
}
_B64 = re.compile(r"b64\((\d+)\)\Z")
_FIELD = re.compile(r"`(?P<name>[a-z_]+)` (?P<kind>[a-z]+|b64\(\d+\))"
                    r"(?: `=(?P<default>[^`]*)`| \*\(optional\)\*)?\Z")
_DIRECTIONS = {"c→s": (True, False), "s→c": (False, True), "both": (True, True)}

# Calls that carry an error code, and where: the first string constant among the
# positional arguments (or the one at the index given), or the keyword ``code``.
_CODE_CALLS = {"Refusal": None, "Refused": None, "Error": None, "LoginOutcome": None,
               "_refuse": None, "_error": None, "RemoteProtocolError": None, "close": 1}
_CODE_RE = re.compile(r"[a-z_]{1,32}\Z")


# -- reading the document --------------------------------------------------------------
def tables(text: str) -> Iterator[Tuple[List[str], List[List[str]]]]:
    """Every Markdown table: (header cells, rows of cells). ``\\|`` is a literal bar."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            yield header, rows
        else:
            i += 1


def cells(line: str) -> List[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [part.strip() for part in parts]


def ticked(cell: str) -> List[str]:
    return re.findall(r"`([^`]+)`", cell)


def doc_tables(header_start: Tuple[str, ...], text: str = None):
    text = PROTOCOL.read_text(encoding="utf-8") if text is None else text
    return [(h, rows) for h, rows in tables(text) if tuple(h[:len(header_start)]) == header_start]


def documented_types(text: str = None) -> Dict[str, Tuple[str, str, str]]:
    """type -> (direction, fields cell, where) from every table headed type | direction |
    fields; a type described twice is an error."""
    found: Dict[str, Tuple[str, str, str]] = {}
    for header, rows in doc_tables(("type", "direction", "fields"), text):
        for row in rows:
            assert len(row) >= 3, f"a row of a message table has too few cells: {row}"
            for name in ticked(row[0]):
                assert name not in found, f"type {name!r} is described twice in PROTOCOL.md"
                found[name] = (row[1], row[2], " | ".join(row[:2]))
    return found


def parse_fields(type_name: str, cell: str) -> List[Tuple[str, object, str]]:
    """[(field, kind, "required" | "optional" | "=<default>")] of one fields cell."""
    out = []
    for item in cell.split(", "):
        match = _FIELD.match(item.strip())
        assert match, f"{type_name}: cannot read field {item!r} (write `field` kind, " \
                      f"optionally `=default` or *(optional)*)"
        word = match["kind"]
        b64 = _B64.match(word)
        if b64:
            kind = f"base64 of 1..{b64.group(1)} bytes"
        else:
            assert word in KINDS, f"{type_name}.{match['name']}: unknown kind {word!r}"
            kind = KINDS[word]
        if match["default"] is not None:
            how = "=" + match["default"]
        elif item.endswith("*(optional)*"):
            how = "optional"
        else:
            how = "required"
        out.append((match["name"], kind, how))
    return out


def code_fields(cls) -> List[Tuple[str, object, str]]:
    """The same triples for a registered message class."""
    out = []
    for name, kind, has_default, default, _omit in messages._SPECS[cls.TYPE]:
        if kind.name.startswith("base64 of "):
            kind = kind.name
        if not has_default:
            how = "required"
        elif default is None:
            how = "optional"
        else:
            how = "=" + json.dumps(list(default) if isinstance(default, tuple) else default)
        out.append((name, kind, how))
    return out


def kind_word(kind) -> str:
    if isinstance(kind, str):
        return kind
    return next((w for w, k in KINDS.items() if k is kind), f"<{kind.name}>")


def type_drift(text: str = None) -> List[str]:
    """Every difference between the document's message tables and the registry."""
    problems = []
    documented = documented_types(text)
    for name in sorted(set(messages.REGISTRY) - set(documented)):
        problems.append(f"type {name!r} is registered but not in PROTOCOL.md's tables")
    for name in sorted(set(documented) - set(messages.REGISTRY)):
        problems.append(f"type {name!r} is in PROTOCOL.md but not registered")
    for name in sorted(set(documented) & set(messages.REGISTRY)):
        direction, cell, _ = documented[name]
        expected = (name in registry.SERVER_RECEIVES, name in registry.CLIENT_RECEIVES)
        if _DIRECTIONS.get(direction) != expected:
            problems.append(f"type {name!r}: PROTOCOL.md says {direction!r}, the registry "
                            f"{[d for d, v in _DIRECTIONS.items() if v == expected]}")
        try:
            doc = parse_fields(name, cell)
        except AssertionError as err:
            problems.append(str(err))
            continue
        code = code_fields(messages.REGISTRY[name])
        doc_names = [f for f, _, _ in doc]
        code_names = [f for f, _, _ in code]
        for field in sorted(set(code_names) - set(doc_names)):
            problems.append(f"{name}.{field} is a field in the code but not in PROTOCOL.md")
        for field in sorted(set(doc_names) - set(code_names)):
            problems.append(f"{name}.{field} is in PROTOCOL.md but not a field in the code")
        if not problems and doc_names != code_names:
            problems.append(f"{name}: fields in another order: PROTOCOL.md {doc_names}, "
                            f"the code {code_names}")
        code_by = {f: (k, how) for f, k, how in code}
        for field, kind, how in doc:
            if field not in code_by:
                continue
            code_kind, code_how = code_by[field]
            if code_kind is not kind and code_kind != kind:
                problems.append(f"{name}.{field}: PROTOCOL.md says kind {kind_word(kind)}, "
                                f"the code {kind_word(code_kind)}")
            if how != code_how and not (how.startswith("=") and code_how.startswith("=")
                                        and json.loads(how[1:]) == json.loads(code_how[1:])):
                problems.append(f"{name}.{field}: PROTOCOL.md says {how}, the code {code_how}")
    return problems


def state_drift(text: str = None) -> List[str]:
    """The table "What a client must accept" against registry.CLIENT_STATES."""
    problems = []
    (found,) = doc_tables(("state", "a client must accept"), text) or [(None, [])]
    documented = {row[0]: set(ticked(row[1])) for row in found[1]} if found else {}
    for state in sorted(set(registry.CLIENT_STATES) - set(documented)):
        problems.append(f"client state {state!r} is in the registry but not in PROTOCOL.md")
    for state in sorted(set(documented) - set(registry.CLIENT_STATES)):
        problems.append(f"client state {state!r} is in PROTOCOL.md but not in the registry")
    for state in sorted(set(documented) & set(registry.CLIENT_STATES)):
        code = set(registry.CLIENT_STATES[state])
        for name in sorted(code - documented[state]):
            problems.append(f"state {state}: a client must accept {name!r}, not in PROTOCOL.md")
        for name in sorted(documented[state] - code):
            problems.append(f"state {state}: PROTOCOL.md lists {name!r}, the registry does not")
    return problems


def server_state_drift(text: str = None) -> List[str]:
    """The server state machine's rows for logged out and checked against the registry."""
    problems = []
    rows = [row for _, rs in doc_tables(("state", "input", "next state", "output"), text)
            for row in rs]
    for state, table in (("open, logged out", registry.BEFORE_LOGIN),
                         ("open, checked", registry.CHECKED)):
        listed = [set(ticked(row[1])) for row in rows if row[0] == state and ticked(row[1])
                  and all(name in messages.REGISTRY for name in ticked(row[1]))]
        if len(listed) != 1:
            problems.append(f"server state {state!r}: expected one row listing its types, "
                            f"found {len(listed)}")
            continue
        for name in sorted(set(table) ^ listed[0]):
            problems.append(f"server state {state!r}: {name!r} "
                            f"{'missing from PROTOCOL.md' if name in table else 'not in the registry'}")
    return problems


def documented_codes(text: str = None) -> Dict[str, List[str]]:
    """code -> its "connection" cells, from the table headed code | sent when | connection."""
    found: Dict[str, List[str]] = {}
    for _, rows in doc_tables(("code", "sent when", "connection"), text):
        for row in rows:
            (code,) = ticked(row[0])
            found.setdefault(code, []).append(row[2])
    return found


def code_drift(text: str = None) -> List[str]:
    problems = []
    documented = documented_codes(text)
    for code in sorted(registry.ERROR_CODES - set(documented)):
        problems.append(f"error code {code!r} is in the registry but not in PROTOCOL.md")
    for code in sorted(set(documented) - registry.ERROR_CODES):
        problems.append(f"error code {code!r} is in PROTOCOL.md but not in the registry")
    for code, connection in documented.items():
        for cell in connection:
            if not (cell.startswith("stays open") or cell == "closes (error, bye)"):
                problems.append(f"error code {code!r}: say 'stays open…' or "
                                f"'closes (error, bye)', not {cell!r}")
        if code in registry.PROTOCOL_ERROR_CODES and connection != ["closes (error, bye)"]:
            problems.append(f"protocol error code {code!r} must close the connection")
    return problems


# -- reading the code --------------------------------------------------------------------
def _constants(node) -> List[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def codes_in_source() -> Dict[str, List[str]]:
    """Every error code a server-side module passes where a code goes: code -> places."""
    found: Dict[str, List[str]] = {}
    for package in ("server", "chat", "protocol"):
        for path in sorted((ROOT / "schat" / package).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                values: List[str] = []
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name not in _CODE_CALLS:
                        continue
                    for kw in node.keywords:
                        if kw.arg == "code":
                            values += _constants(kw.value)
                    index = _CODE_CALLS[name]
                    if index is not None:
                        if len(node.args) > index:
                            values += _constants(node.args[index])
                    elif name != "RemoteProtocolError":
                        for arg in node.args:
                            got = _constants(arg)
                            if got:
                                values += got
                                break
                elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                      and any(getattr(t, "id", "") == "CLOSE_CODES" for t in node.targets)):
                    values += [v for item in node.value.values for v in _constants(item)]
                for value in values:
                    if _CODE_RE.match(value):
                        found.setdefault(value, []).append(f"{path.relative_to(ROOT)}:"
                                                           f"{node.lineno}")
    found.setdefault(RemoteProtocolError("").code, []).append("schat/errors.py (default)")
    return found


# -- the tests -----------------------------------------------------------------------------
def test_every_message_type_its_direction_and_fields_match_the_registry():
    assert type_drift() == []


def test_what_a_client_must_accept_in_each_state_matches_the_registry():
    assert state_drift() == []


def test_the_server_state_machine_lists_what_the_registry_accepts():
    assert server_state_drift() == []


def test_every_error_code_is_documented_once_with_what_follows():
    assert code_drift() == []


def test_the_code_sends_exactly_the_registered_error_codes():
    used = codes_in_source()
    unregistered = {code: where for code, where in used.items()
                    if code not in registry.ERROR_CODES}
    assert unregistered == {}, "error codes sent but not in registry.ERROR_CODES"
    assert sorted(registry.ERROR_CODES - set(used)) == [], "registered codes nobody sends"


def test_the_client_states_use_only_server_to_client_types():
    for state, table in registry.CLIENT_STATES.items():
        assert set(table) <= set(registry.CLIENT_RECEIVES), state
    assert set(registry.CHECKED) <= set(registry.SERVER_RECEIVES)


# The checks themselves must catch drift, in each direction: a type, a field, a kind, a
# default, a direction, a state's type and a code changed in a copy of the document.
@pytest.mark.parametrize("edit, expected", [
    (("| `dm_ack` | c→s | `id` int |", ""), "type 'dm_ack' is registered but not in"),
    (("| `ack` | s→c | `cid` cid, `id` int, `time` time |",
      "| `ack` | s→c | `cid` cid, `id` int, `time` time, `seq` int |"),
     "ack.seq is in PROTOCOL.md but not a field in the code"),
    (("| `ack` | s→c | `cid` cid, `id` int, `time` time |", "| `ack` | s→c | `cid` cid, `id` int |"),
     "ack.time is a field in the code but not in PROTOCOL.md"),
    (("| `ack` | s→c | `cid` cid, `id` int, `time` time |",
      "| `ack` | s→c | `cid` cid, `id` time, `time` time |"),
     "ack.id: PROTOCOL.md says kind time, the code int"),
    (("`reason` short `=\"\"` | the last message", "`reason` short | the last message"),
     "bye.reason: PROTOCOL.md says required, the code ="),
    (("| `who` | c→s |", "| `who` | s→c |"), "type 'who': PROTOCOL.md says 's→c'"),
    (("| `join` | s→c |", "| `shout` | s→c | `text` text | |\n| `join` | s→c |"),
     "type 'shout' is in PROTOCOL.md but not registered"),
    (("| open, checked | `get_key`, `set_key`,", "| open, checked | `get_key`, `dm_send`, `set_key`,"),
     "server state 'open, checked': 'dm_send' not in the registry"),
    (("| checked | `key`, `ack`,", "| checked | `key`,"), "state checked: a client must accept 'ack'"),
    (("| `removed` |", "| `gone` |"), "error code 'removed' is in the registry but not in"),
])
def test_the_checks_catch_drift(edit, expected):
    text = PROTOCOL.read_text(encoding="utf-8")
    old, new = edit
    assert old in text, old
    changed = text.replace(old, new, 1)
    problems = (type_drift(changed) + state_drift(changed) + server_state_drift(changed)
                + code_drift(changed))
    assert any(expected in p for p in problems), problems


def test_the_source_scan_sees_every_way_a_code_is_given():
    used = codes_in_source()
    # Refusal(...), sink.close(member, code, ...), a conditional _refuse(...),
    # CLOSE_CODES, LoginOutcome(code=...), the dm relay's _refuse(member, msg, code, ...),
    # RemoteProtocolError(..., code=...) and its default.
    for code in ("muted", "taken_over", "too_many_attempts", "kicked", "penalty",
                 "mailbox_full", "bad_record", "bad_message"):
        assert code in used, code
    # ... and not a reason: sink.close(member, "", "quit") gives no code.
    assert "quit" not in used and "" not in used


def test_the_numbers_in_the_text_are_the_servers_defaults():
    """Keep-alive, message rate, login deadline and attempts, as the server has them."""
    from schat.server import limits

    text = " ".join(PROTOCOL.read_text(encoding="utf-8").split())
    tick = min(limits.PING_INTERVAL, limits.PING_TIMEOUT) / 2
    quiet = limits.PING_INTERVAL + limits.PING_TIMEOUT
    expected = [
        f"`ping_interval` seconds without any (default **{limits.PING_INTERVAL:g}**)",
        f"`ping_timeout` more seconds (default **{limits.PING_TIMEOUT:g}**)",
        f"({tick:g} s by default)",
        f"pinged {limits.PING_INTERVAL:g}–{limits.PING_INTERVAL + tick:g} s after",
        f"dropped {quiet:g}–{quiet + tick:g} s after its last bytes",
        f"default {limits.RATE_LIMIT:g} messages a second, in bursts of up to {limits.RATE_BURST}",
        f"default {limits.ADDRESS_RATE_LIMIT:g} a second, bursts of {limits.ADDRESS_RATE_BURST}",
        f"`login_deadline` (default {limits.LOGIN_DEADLINE:g} s",
        f"cap of {limits.OUTBOUND_CAP >> 20} MiB",
    ]
    assert limits.MAX_AUTH_ATTEMPTS == 3 and "three refused attempts" in text
    assert [phrase for phrase in expected if phrase not in text] == []
