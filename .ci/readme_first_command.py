"""Run the README's first command exactly as written, as a newcomer would.

The command is read from README.md (the first ``$`` line of its first console
block), run by bash in a fresh copy of the checkout with a fresh, empty home
directory, and must install schat and start a server on the embedded
defaults: "listening on 127.0.0.1:5555", a ServerHello on that port, then a
clean exit 0 on Ctrl-C (SIGINT to the process group). Run by .ci/run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# pip builds and installs; the server then starts on the first line it prints.
INSTALL_AND_START = 900.0
STOP = 30.0
SKIP = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "build", "*.egg-info", "__pycache__",
                              ".pytest_cache", ".hypothesis")


def readme_commands(readme: Path):
    """The ``$`` commands of the README's first console block, in order."""
    text = readme.read_text(encoding="utf-8")
    block = re.search(r"```console\n(.*?)```", text, re.S)
    if block is None:
        raise SystemExit("README.md has no console block")
    return [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main() -> int:
    command = readme_commands(ROOT / "README.md")[0]
    print(f"README's first command: {command}", flush=True)
    if port_taken(5555):
        print("FAIL: 127.0.0.1:5555 is already taken by another program, so the server the "
              "README starts cannot listen there; stop that program and run this again")
        return 1
    with tempfile.TemporaryDirectory(prefix="schat-first-run-") as tmp:
        checkout = Path(tmp) / "schat"
        shutil.copytree(ROOT, checkout, ignore=SKIP)
        home = Path(tmp) / "home"
        home.mkdir()
        env = {key: value for key, value in os.environ.items()
               if key not in ("SCHAT_HOME", "PYTHONPATH", "VIRTUAL_ENV", "XDG_DATA_HOME")}
        env["HOME"] = str(home)
        # Outside any virtual environment, as on a fresh machine.
        venv = os.environ.get("VIRTUAL_ENV")
        if venv:
            env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                          if not p.startswith(venv))
        proc = subprocess.Popen(["bash", "-c", command], cwd=checkout, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        listening = threading.Event()
        output = []

        def pump() -> None:
            for line in proc.stdout:
                output.append(line)
                if "listening on 127.0.0.1:5555" in line:
                    listening.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + INSTALL_AND_START
            while not listening.wait(1.0):
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("".join(output[-40:]))
                    print("FAIL: no server listening on 127.0.0.1:5555")
                    return 1
            with socket.create_connection(("127.0.0.1", 5555), timeout=10) as sock:
                header = sock.recv(4)
                if len(header) != 4 or not 0 < int.from_bytes(header, "big") <= 65535:
                    print(f"FAIL: no ServerHello on 127.0.0.1:5555 ({header!r})")
                    return 1
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(STOP)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(STOP)
        tail = "".join(output)
        if code != 0 or "Traceback" in tail:
            print(tail[-4000:])
            print(f"FAIL: the server exited {code} on Ctrl-C")
            return 1
        if not (home / ".local" / "share" / "schat" / "server" / "host_key.pem").exists():
            print("FAIL: no host key in the default data home")
            return 1
    print("README's first command: installed, listened on 127.0.0.1:5555, stopped cleanly",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
