"""The installed `schat` console script, run outside the checkout.

pytest runs from the repository root, so in-process tests import the checkout;
these run the console script from another directory with no PYTHONPATH, so
they use whatever `pip install` put in place, package data included.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import schat


def installed_script() -> str:
    path = shutil.which("schat")
    if path is None:
        if os.environ.get("SCHAT_REQUIRE_INSTALLED"):
            pytest.fail("the schat console script is not on PATH after installation")
        pytest.skip("the schat console script is not on PATH: `pip install -e '.[test]'` first")
    return path


def run_installed(*args: str, cwd, input: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCHAT_HOME")}
    return subprocess.run([installed_script(), *args], input=input, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=30)


def test_console_script_version(tmp_path):
    res = run_installed("--version", cwd=tmp_path)
    assert (res.returncode, res.stdout) == (0, f"schat, version {schat.__version__}\n"), res.stderr


def test_package_data_loads_from_the_installed_package(tmp_path):
    home = str(tmp_path / "home")
    # The common-password list is package data: without it this password would pass.
    res = run_installed("--home", home, "user", "add", "carol", "--password-stdin", "--create",
                        cwd=tmp_path, input="password1\n")
    assert (res.returncode, res.stderr.splitlines()[-1]) == (
        1, "Error: password is one of the most common passwords: choose another")
    res = run_installed("--home", home, "user", "add", "carol", "--password-stdin",
                        cwd=tmp_path, input="tangerine42\n")
    assert (res.returncode, res.stdout) == (0, "Added user carol.\n"), res.stderr
