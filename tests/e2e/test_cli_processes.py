"""The real CLI as processes: `python -m schat serve --port 0` and several
`schat connect` clients talking through it, plus signup/login and shutdown."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chatkit import PASSWORDS, install_host_key, make_store

REPO = Path(__file__).resolve().parents[2]
WAIT = 20.0


class Proc:
    """A subprocess whose stdout/stderr lines are collected by reader threads."""

    def __init__(self, args, home: Path, env=None, stdin=subprocess.PIPE):
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["SCHAT_HOME"] = str(home)
        full_env.pop("SCHAT_PASSWORD", None)
        full_env.update(env or {})
        self.p = subprocess.Popen([sys.executable, "-m", "schat", *args], cwd=home,
                                  stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=full_env, text=True, bufsize=1)
        self.out: "queue.Queue" = queue.Queue()
        self.err_lines = []
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out.put),
                                          daemon=True),
                         threading.Thread(target=self._pump,
                                          args=(self.p.stderr, self.err_lines.append),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink(line.rstrip("\n"))

    def line(self, contains: str = "", timeout: float = WAIT) -> str:
        """The next stdout line containing ``contains`` (earlier lines are skipped)."""
        while True:
            try:
                line = self.out.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line with {contains!r}; stderr: {self.stderr}") from None
            if contains in line:
                return line

    def send(self, text: str) -> None:
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def finish(self, timeout: float = WAIT) -> int:
        if self.p.stdin and not self.p.stdin.closed:
            self.p.stdin.close()
        rc = self.p.wait(timeout)
        for t in self._threads:
            t.join(timeout)
        return rc

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)


@pytest.fixture
def served(tmp_path):
    """A `schat serve --port 0` process with three accounts, and a client home."""
    server_home = tmp_path / "server_home"
    server_home.mkdir()
    install_host_key(server_home)
    make_store(server_home).close()
    srv = Proc(["--debug", "serve", "--port", "0", "--motd", "hello members"], server_home,
               stdin=subprocess.DEVNULL)
    line = srv.line("listening on")
    port = int(line.rsplit(":", 1)[1])
    fp_line = srv.line("fingerprint")
    client_home = tmp_path / "client_home"
    client_home.mkdir()
    (client_home / "servers.json").write_text(
        json.dumps({"local": {"ip": "127.0.0.1", "port": port}}))
    procs = []

    def client(*args, env=None, stdin=subprocess.PIPE) -> Proc:
        proc = Proc(list(args), client_home, env=env, stdin=stdin)
        procs.append(proc)
        return proc

    yield srv, client, port, fp_line.split()[-1]
    for proc in procs:
        proc.kill()
    srv.kill()


def chat(client, user, *extra):
    return client("connect", "local", "--user", user, "--accept-new", *extra,
                  env={"SCHAT_PASSWORD": PASSWORDS[user]})


def test_three_cli_clients_chat_then_server_stops(served):
    srv, client, port, fp = served
    bob = chat(client, "bob", "--json")
    welcome = json.loads(bob.line('"welcome"'))
    assert welcome["text"] == "hello members" and welcome["user"] == "bob"
    carol = chat(client, "carol")
    assert "online (2): bob, carol" in carol.line("online")
    assert json.loads(bob.line('"join"'))["sender"] == "carol"

    alice = chat(client, "alice")
    alice.send("hello from alice")
    alice.send("/me waves")
    assert alice.finish() == 0, alice.stderr  # waits for the acks, then leaves
    got = json.loads(bob.line("hello from alice"))
    assert (got["type"], got["sender"], got["text"]) == ("message", "alice", "hello from alice")
    assert isinstance(got["id"], int) and got["time"][:4].isdigit() and "T" in got["time"]
    assert json.loads(bob.line("waves"))["action"] is True
    assert "<alice> hello from alice" in carol.line("hello from alice")
    assert carol.line("waves").endswith("* alice waves")

    bob.send("hi carol")
    assert "<bob> hi carol" in carol.line("hi carol")
    carol.send("/who")
    assert carol.line("online (") == "online (2): bob, carol"
    carol.send("/frobnicate")
    assert "unknown command /frobnicate" in carol.line("frobnicate")
    carol.send("/quit")
    assert carol.finish() == 1  # a refused line makes the exit status 1
    assert "1 line(s) or request(s) were refused" in carol.stderr

    srv.p.send_signal(signal.SIGTERM)
    assert srv.finish() == 0
    assert bob.finish() == 1
    assert "server shutting down" in bob.stderr
    assert "Traceback" not in bob.stderr + srv.stderr

    # The --debug server log shows the steps, never the texts or the passwords.
    log = srv.stderr
    assert "ServerHello sent" in log and "login alice" in log and "record out" in log
    for secret in ("hello from alice", "hi carol", *PASSWORDS.values()):
        assert secret not in log


def test_signup_login_and_refusals(served):
    srv, client, port, fp = served
    env = {"SCHAT_PASSWORD": "dave-pass-4444"}
    up = client("signup", "local", "--user", "dave", "--accept-new", env=env,
                stdin=subprocess.DEVNULL)
    assert up.finish() == 0, up.stderr
    assert up.line("Signed up") == "Signed up on local as dave."
    assert fp in up.stderr  # the pin is announced
    ok = client("login", "local", "--user", "dave", env=env, stdin=subprocess.DEVNULL)
    assert ok.finish() == 0, ok.stderr
    bad = client("login", "local", "--user", "dave", env={"SCHAT_PASSWORD": "wrong-pass-1"},
                 stdin=subprocess.DEVNULL)
    assert bad.finish() == 1
    assert "wrong user name or password" in bad.stderr and "Traceback" not in bad.stderr
    assert "wrong-pass-1" not in srv.stderr and "dave-pass-4444" not in srv.stderr


def test_unreachable_server_is_a_clean_error(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "servers.json").write_text(json.dumps({"nowhere": {"ip": "127.0.0.1", "port": 1}}))
    proc = Proc(["connect", "nowhere", "--user", "alice", "--accept-new"], home,
                env={"SCHAT_PASSWORD": "x-pass-1234"}, stdin=subprocess.DEVNULL)
    assert proc.finish() == 1
    assert "cannot reach server 'nowhere'" in proc.stderr and "Traceback" not in proc.stderr
