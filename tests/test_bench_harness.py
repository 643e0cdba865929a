"""The connect A/B benchmark's harness: each named checkout's server runs that checkout's code.

`python -m schat` imports `schat` from its working directory ahead of PYTHONPATH, so a
server meant to run another checkout must start in it (it once did not, and every
"checkout" of an A/B run was the benchmark's own).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench.connect_ab import split_spec
from bench.server_proc import ServerProcess

pytestmark = pytest.mark.timeout(30)


def test_split_spec_reads_a_directory_and_its_serve_options(tmp_path):
    assert split_spec(str(tmp_path)) == (tmp_path.resolve(), [])
    assert split_spec(f"{tmp_path}::--crypto-nice 0  --log-level warning") == (
        tmp_path.resolve(), ["--crypto-nice", "0", "--log-level", "warning"])


def fake_checkout(root: Path, port: int) -> Path:
    """A checkout whose `schat` only says it listens on ``port``, then waits to be stopped
    (the real one would listen on a port of the kernel's choosing)."""
    package = root / "schat"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(f"""
        import time
        print("listening on 127.0.0.1:{port}", flush=True)
        time.sleep(60)  # SIGTERM from ServerProcess.stop ends it
    """))
    return root


def test_a_server_started_in_another_checkout_runs_that_checkout(tmp_path, monkeypatch):
    checkout = fake_checkout(tmp_path / "other", 4321)
    home = tmp_path / "home"
    home.mkdir()
    # The benchmark's own checkout on PYTHONPATH, as bench.connect_ab runs it: the
    # working directory must still win.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    server = ServerProcess(home, cpu=None, cwd=checkout,
                           env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    try:
        assert server.start(timeout=20) == 4321
    finally:
        server.stop(timeout=10)
