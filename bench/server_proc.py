"""The server under test: a real `schat serve` process pinned to one CPU."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from bench.procstat import cpu_seconds, memory_kib

_LISTENING = re.compile(r"listening on ([0-9.]+):(\d+)")


def pinned(cmd: List[str], cpu: Optional[int]) -> List[str]:
    """Prefix ``cmd`` with taskset when a CPU is given and taskset exists."""
    if cpu is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(cpu)] + cmd


class ServerProcess:
    """Start, measure and stop one server; always cleaned up by pid."""

    def __init__(self, home: Path, cpu: Optional[int] = 0, extra_args: Optional[List[str]] = None,
                 env: Optional[dict] = None, cwd: Optional[Path] = None):
        self.home = home
        # `python -m schat` imports schat from its working directory first, ahead of
        # PYTHONPATH: a server of another checkout must start in that checkout.
        self.cwd = cwd
        self.cpu = cpu
        self.extra_args = list(extra_args or [])
        self.env = dict(os.environ, **(env or {}))
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = home / "server.log"
        self.port = 0

    def start(self, timeout: float = 30.0) -> int:
        cmd = pinned([sys.executable, "-m", "schat", "--home", str(self.home), "serve",
                      "--host", "127.0.0.1", "--port", "0", *self.extra_args], self.cpu)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-2000:]}")
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(2))
                return self.port
            time.sleep(0.05)  # polling a log file: there is no event to wait on
        self.stop()
        raise RuntimeError("server did not report its port in time")

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def _server_pid(self) -> int:
        # taskset execs the server, so the child pid is the server's pid.
        return self.pid

    def cpu(self) -> float:
        return cpu_seconds(self._server_pid())

    def memory(self) -> dict:
        return memory_kib(self._server_pid())

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        self.proc = None
