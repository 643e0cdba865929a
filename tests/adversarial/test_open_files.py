"""`schat serve` raises its open-file limit and survives running out of descriptors."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from chatkit import PASSWORDS, Client, install_host_key, make_store
from schat.client.session import ClientSession
from schat.errors import ConnectionFailed
from schat.store.known_servers import KnownServers

ROOT = Path(__file__).resolve().parents[2]
SOFT, HARD = 40, 64


def _limit_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


def test_serve_raises_nofile_and_survives_emfile(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    install_host_key(home)
    make_store(home).close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "schat", "--home", str(home), "serve", "--host", "127.0.0.1",
         "--port", "0", "--rate-limit", "0", "--max-unauthenticated-per-ip", "500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_limit_files)
    held = []
    try:
        line = proc.stdout.readline()
        port = int(re.search(r":(\d+)$", line.strip()).group(1))
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
        assert (int(soft.group(1)), int(soft.group(2))) == (HARD, HARD)
        # More connections than the server has descriptors: accept() fails with EMFILE.
        for _ in range(HARD + 20):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for s in held:
            s.close()
        held.clear()
        # Still serving: an honest member logs in and chats (accepting resumes within ~1 s).
        # The server drains the closed connections and resumes accepting after its pause.
        deadline = time.monotonic() + 30
        while True:
            session = ClientSession("127.0.0.1", port, "t",
                                    known_servers=KnownServers(home / "ks"),
                                    accept_new=True, timeout=5)
            try:
                session.connect()
                break
            except ConnectionFailed:
                session.close()
                assert time.monotonic() < deadline, "the server never accepted again"
        session.login_password("alice", PASSWORDS["alice"])
        member = Client(session)
        session.say("after the storm")
        assert session.wait_acked(10)
        member.close()
        assert proc.poll() is None
    finally:
        for s in held:
            s.close()
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err
    assert "cannot accept connections for now" in err
