"""What README.md and docs/OPERATING.md tell an operator to run is what works:
the README's two first commands and CI, the systemd units, the settings file."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from schat.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OPERATING = ROOT / "docs" / "OPERATING.md"
CI = ROOT / ".ci" / "run"

sys.path.insert(0, str(ROOT / ".ci"))
from readme_first_command import readme_commands  # noqa: E402


def blocks(path: Path, language: str):
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_readme_opens_with_the_two_commands_ci_runs():
    first, second = readme_commands(README)
    # No console block comes before them.
    assert README.read_text().index("```console") == README.read_text().index("```")
    # One command installs and starts the server on its built-in defaults, in a
    # virtual environment (system pip refuses on Debian and Ubuntu) ...
    assert first.startswith("python3 -m venv ") and first.endswith("&& schat serve")
    assert "pip install ." in first and "sudo" not in first
    # ... the other sets up and runs the whole suite: what CI runs.
    assert second == "bash .ci/run"
    ci = CI.read_text()
    steps = [line for line in ci.splitlines() if line and not line.startswith(("#", " "))]
    # .ci/run runs the README's first command as written, then exactly the suite.
    assert "python .ci/readme_first_command.py" in steps
    assert steps[-1] == "python -m pytest -q"
    assert steps.index("python .ci/readme_first_command.py") < steps.index("python -m pytest -q")
    assert "'.[test]'" in ci


def _unit_files():
    units = {}
    for block in blocks(OPERATING, "ini"):
        name = re.match(r"# /etc/systemd/system/(\S+)\n", block).group(1)
        units[name] = block
    return units


def test_the_service_unit_has_what_a_service_needs():
    unit = _unit_files()["schat.service"]
    for line in ("User=schat", "StateDirectory=schat", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ExecReload=/bin/kill -HUP $MAINPID",
                 "ExecStart=/opt/schat/bin/schat serve --settings /etc/schat/schat.toml",
                 "Environment=SCHAT_HOME=/var/lib/schat"):
        assert f"\n{line}\n" in unit, line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (.ci/run installs it as root)")
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    # verify also checks that each program exists: schat's is put where the
    # unit names it only on a real server, so it is pointed at a stand-in here.
    stand_in = tmp_path / "schat"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    units = _unit_files()
    assert set(units) == {"schat.service", "schat-backup.service", "schat-backup.timer"}
    for name, text in units.items():
        (tmp_path / name).write_text(text.replace("/opt/schat/bin/schat", str(stand_in)))
    paths = [str(tmp_path / name) for name in sorted(units)]
    res = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", ""), res.stderr


def test_the_documented_settings_file_is_valid(runner, tmp_path, monkeypatch):
    (settings,) = [b for b in blocks(OPERATING, "toml") if "/etc/schat/schat.toml" in b]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schat.toml").write_text(settings)
    home = tmp_path / "home"
    res = runner.invoke(cli, ["--home", str(home), "serve", "--settings", "schat.toml",
                              "--print-settings"])
    assert res.exit_code == 0, res.output
    # The printed settings in the document are this run's (but for machine-specific lines).
    shown = next(b for b in blocks(OPERATING, "console") if "--print-settings\n" in b)
    machine = ("home =", "host-key =", "crypto-workers =", "# schat serve:")
    expected = [line for line in shown.splitlines()[1:] if not line.startswith(machine)]
    got = [line for line in res.stdout.splitlines() if not line.startswith(machine)]
    assert got == expected
    assert not home.exists()


def test_the_documented_json_log_line_is_what_the_formatter_writes():
    import json
    import logging

    from schat.logs import JsonFormatter

    (line,) = blocks(OPERATING, "json")
    documented = json.loads(line)
    record = logging.LogRecord("schat.server", logging.INFO, __file__, 1, documented["message"],
                               None, None)
    assert set(json.loads(JsonFormatter().format(record))) == set(documented)
