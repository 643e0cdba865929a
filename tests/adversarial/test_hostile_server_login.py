"""A modified server that answers ``auth_failed`` to every key login, hoping the client
then sends the password: it never gets it, whether the client knows the key is
registered there or not, from a script or at a terminal."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from chatkit import PASSWORDS, WAIT
from schat.cli import cli
from schat.crypto.keys import fingerprint, public_der
from schat.paths import Home
from schat.server import login
from schat.store.keyfiles import KeyFiles
from schat.store.server_memory import ServerMemory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def lab(server_factory, home, user_keys):
    """An honest server with alice's key registered, and alice's client home naming it."""
    srv = server_factory()
    srv.store.set_public_key("alice", public_der(user_keys["alice"]))
    (home / "servers.json").write_text(json.dumps({"lab": {"ip": srv.host, "port": srv.port}}))
    KeyFiles(Home(home)).save("alice", user_keys["alice"], None)
    return srv


def turn_hostile(monkeypatch):
    """From now on the server refuses every key login and records every password."""
    received = []
    honest_check = login.check_password

    def refuse_key(store, user, signature, transcript_hash):
        return login.LoginOutcome(code="auth_failed", text=login.BAD_KEY)

    def record(store, user, password):
        received.append((user, password))
        return honest_check(store, user, password)

    monkeypatch.setattr(login, "check_key", refuse_key)
    monkeypatch.setattr(login, "check_password", record)
    return received


def test_refused_key_that_the_server_had_is_an_error_and_no_password_is_sent(
        lab, runner, home, user_keys, monkeypatch):
    env = {"SCHAT_PASSWORD": PASSWORDS["alice"]}
    ok = runner.invoke(cli, ["login", "lab", "--user", "alice", "--accept-new"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "with your key" in ok.stdout
    remembered = ServerMemory(Home(home).server_memory).get("lab", f"127.0.0.1:{lab.port}")
    assert remembered.account("alice").key == fingerprint(user_keys["alice"])

    received = turn_hostile(monkeypatch)
    for command in (["login", "lab"], ["connect", "lab"], ["connect", "lab", "--json"]):
        res = runner.invoke(cli, command, env=env, input="hello\n")
        assert res.exit_code == 1, (command, res.output)
        assert "lab refused your key for alice" in res.stderr
        assert "which it accepted before" in res.stderr
        assert "no password is tried after a refused key" in res.stderr
    assert received == []


def test_first_refused_key_names_the_explicit_step_and_sends_nothing(
        lab, runner, home, monkeypatch):
    received = turn_hostile(monkeypatch)
    res = runner.invoke(cli, ["connect", "lab", "--user", "alice", "--accept-new"],
                        env={"SCHAT_PASSWORD": PASSWORDS["alice"]})
    assert res.exit_code == 1
    assert res.stderr.startswith("Pinned the key of 'lab'")
    assert ("lab refused key login for alice: no key is registered for alice there, or "
            "another one is. Nothing else was sent.") in res.stderr
    assert "`schat login lab --register-key` (this sends your password to lab)" in res.stderr
    assert received == []
    # The step the user chooses: now, and only now, the password goes.
    res = runner.invoke(cli, ["login", "lab", "--user", "alice", "--register-key"],
                        env={"SCHAT_PASSWORD": PASSWORDS["alice"]})
    assert received == [("alice", PASSWORDS["alice"])]
    assert res.exit_code == 0, res.output  # the honest store has this very key already


def test_at_a_terminal_a_refused_key_never_leads_to_a_password_prompt(lab, home, monkeypatch):
    received = turn_hostile(monkeypatch)
    memory = ServerMemory(Home(home).server_memory)
    memory.key_registered("lab", f"127.0.0.1:{lab.port}", "alice",
                          fingerprint(KeyFiles(Home(home)).load_public("alice")))
    env = dict(os.environ, SCHAT_HOME=str(home), PYTHONPATH=str(REPO), TERM="xterm",
               NO_COLOR="1")
    env.pop("SCHAT_PASSWORD", None)
    child = pexpect.spawn(sys.executable, ["-m", "schat", "connect", "lab", "--accept-new"],
                          env=env, cwd=str(home), encoding="utf-8", timeout=WAIT,
                          dimensions=(24, 80))
    try:
        index = child.expect([pexpect.EOF, "Password for", "assphrase for"])
        output = child.before
    finally:
        child.close(force=True)
    assert index == 0, f"a password was asked for: {output!r}"
    assert child.exitstatus == 1
    assert "lab refused your key for alice" in output
    assert received == []
