"""Every command in the tree has help text, and so has every option and the top level."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest

import schat
from schat import cli as cli_module


def walk(command: click.Command, path: str):
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{path} {name}: listed but cannot be loaded"
            yield from walk(sub, f"{path} {name}")


@pytest.mark.parametrize("name", sorted(cli_module.COMMANDS))
def test_command_and_options_have_help(name):
    # Import failures are real failures: a registered command must load.
    module_name, attr = cli_module.COMMANDS[name].split(":")
    command = getattr(importlib.import_module(module_name), attr)
    for path, cmd in walk(command, f"schat {name}"):
        assert (cmd.help or "").strip(), f"{path}: no help text"
        assert cmd.get_short_help_str().strip(), f"{path}: no one-line summary"
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert (param.help or "").strip(), f"{path} {param.opts[0]}: no help text"


def test_top_level_options_have_help():
    for param in cli_module.cli.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip() or param.is_eager, param.opts


def test_help_lists_every_command(runner):
    res = runner.invoke(cli_module.cli, ["--help"])
    assert res.exit_code == 0
    for name in cli_module.COMMANDS:
        assert any(line.split()[:1] == [name] for line in res.stdout.splitlines()), name


def groups(command: click.Command, path: str):
    return [(p, c) for p, c in walk(command, path) if isinstance(c, click.Group)]


def test_no_summary_is_cut_off(runner):
    # What a user sees at the usual 80 columns: every command's whole one-line summary.
    for path, group in groups(cli_module.cli, "schat"):
        res = runner.invoke(cli_module.cli, path.split()[1:] + ["--help"], terminal_width=80)
        assert res.exit_code == 0, res.output
        listing = res.stdout.split("Commands:\n", 1)[1]
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            summary = group.get_command(ctx, name).get_short_help_str(limit=1000)
            assert not summary.endswith("..."), f"{path} {name}: {summary!r}"
            assert f"{name}  " in listing and summary in listing, f"{path} {name}: cut off"


def test_global_options_accepted_after_any_command():
    for path, cmd in walk(cli_module.cli, "schat"):
        if cmd is cli_module.cli:
            continue
        names = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        assert {"--home", "--config"} <= names, path


def test_version_and_python_m(home):
    # No PYTHONPATH: this must work from the installed package (cwd is outside the checkout).
    res = subprocess.run([sys.executable, "-m", "schat", "--version"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0
    assert res.stdout == f"schat, version {schat.__version__}\n"
