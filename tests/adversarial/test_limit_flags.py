"""Every server limit is a `schat serve` flag whose help and SECURITY.md agree with the setting."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from schat.cli import cli
from schat.commands.serve import serve
from schat.server.limits import ServerSettings

SECURITY = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"
# Options that choose where and how to listen rather than limit anything.
NOT_LIMITS = {"server_name", "host", "port", "allow_signup", "motd"}
# Defaults that depend on the machine, shown in words.
IN_WORDS = {"crypto_workers": "one per core", "ping_timeout": "30, or the ping interval when shorter"}


def _limit_options():
    fields = {f.name: f for f in dataclasses.fields(ServerSettings)}
    options = [p for p in serve.params if p.name not in NOT_LIMITS and p.name in fields]
    return [(p, fields[p.name]) for p in options]


def test_every_setting_with_a_limit_has_a_flag():
    flagged = {p.name for p, _ in _limit_options()}
    unflagged = {f.name for f in dataclasses.fields(ServerSettings)} - flagged - NOT_LIMITS
    assert unflagged == set(), unflagged


@pytest.mark.parametrize("option,field", _limit_options(), ids=lambda v: getattr(v, "name", ""))
def test_flag_help_and_security_doc_match_the_setting(option, field):
    shown = re.search(r"\[default: ([^\]]+)\]", option.help).group(1)
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    assert shown == IN_WORDS.get(field.name, f"{default:g}" if isinstance(default, float)
                                 else str(default))
    flag = option.opts[0]
    rows = [line for line in SECURITY.read_text().splitlines()
            if line.startswith("|") and f"`{flag}`" in line]
    assert rows, f"{flag} is not in the limits table of SECURITY.md"


@pytest.mark.parametrize("args", [["--mailbox-limit", "0"], ["--gil-switch-interval", "0"]])
def test_out_of_range_limit_is_a_usage_error(runner, home, args):
    result = runner.invoke(cli, ["serve", "--port", "0", *args])
    assert result.exit_code == 2 and args[0] in result.output
    assert "Traceback" not in result.output
