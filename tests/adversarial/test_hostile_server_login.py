"""A modified server that answers ``auth_failed`` to every key login, hoping the client
then sends the password: it never gets one, whether the client knows the key is
registered there or not, from a script or at a terminal. Only the step the user
chooses (`schat login NAME --register-key`) sends it, and says so."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from chatkit import PASSWORDS, WAIT
from hostile_server import HostileServer
from schat.cli import cli
from schat.crypto.keys import fingerprint, public_der
from schat.paths import Home
from schat.protocol import dm_messages as dmm
from schat.protocol import messages
from schat.server.login import BAD_KEY
from schat.store.keyfiles import KeyFiles
from schat.store.server_memory import ServerMemory

REPO = Path(__file__).resolve().parents[2]


def refuse_every_key(link, msg) -> None:
    """The phishing server: a key login is "refused"; a password is welcome."""
    if isinstance(msg, messages.LoginKey):
        link.send(messages.Error(code="auth_failed", text=BAD_KEY))
    else:
        link.welcome(msg.user)


@pytest.fixture
def phisher(home, host_key, user_keys):
    """The modified server, and alice's home naming it "lab" with her key in it."""
    der = public_der(user_keys["alice"])

    def keys(link, msg) -> None:
        # Asked after a login, it claims to have alice's key (and to register it).
        if isinstance(msg, dmm.GetKey):
            link.send(dmm.Key(cid=msg.cid, user=msg.user, status="ok", public_key=der,
                              fingerprint=fingerprint(der)))
        elif isinstance(msg, dmm.SetKey):
            link.send(messages.Ack(cid=msg.cid, id=0, time=0))

    srv = HostileServer(host_key, script=keys, on_login=refuse_every_key)
    (home / "servers.json").write_text(json.dumps({"lab": {"ip": srv.host, "port": srv.port}}))
    KeyFiles(Home(home)).save("alice", user_keys["alice"], None)
    yield srv
    srv.close()


def passwords_sent(srv):
    return srv.sent_of(messages.Login) + srv.sent_of(messages.Signup)


def test_refused_key_that_the_server_had_is_an_error_and_no_password_is_sent(
        phisher, runner, home, user_keys):
    # This client logged in to "lab" with this key before.
    ServerMemory(Home(home).server_memory).key_registered(
        "lab", f"127.0.0.1:{phisher.port}", "alice", fingerprint(user_keys["alice"]))
    env = {"SCHAT_PASSWORD": PASSWORDS["alice"]}
    for command in (["login", "lab", "--accept-new"], ["connect", "lab"],
                    ["connect", "lab", "--json"]):
        res = runner.invoke(cli, command, env=env, input="hello\n")
        assert res.exit_code == 1, (command, res.output)
        assert "lab refused your key for alice" in res.stderr
        assert "which it accepted before" in res.stderr
        assert "no password is tried after a refused key" in res.stderr
    assert len(phisher.sent_of(messages.LoginKey)) == 3
    assert passwords_sent(phisher) == []


def test_first_refused_key_names_the_explicit_step_and_sends_nothing(
        phisher, runner, home):
    res = runner.invoke(cli, ["connect", "lab", "--user", "alice", "--accept-new"],
                        env={"SCHAT_PASSWORD": PASSWORDS["alice"]})
    assert res.exit_code == 1
    assert res.stderr.startswith("Pinned the key of 'lab'")
    assert ("lab refused key login for alice: no key is registered for alice there, or "
            "another one is. Nothing else was sent.") in res.stderr
    assert "`schat login lab --register-key` (this sends your password to lab)" in res.stderr
    assert passwords_sent(phisher) == []
    # The step the user chooses: now, and only now, the password goes.
    res = runner.invoke(cli, ["login", "lab", "--user", "alice", "--register-key"],
                        env={"SCHAT_PASSWORD": PASSWORDS["alice"]})
    assert res.exit_code == 0, res.output
    assert [m.password for m in passwords_sent(phisher)] == [PASSWORDS["alice"]]


def test_at_a_terminal_a_refused_key_never_leads_to_a_password_prompt(phisher, home):
    ServerMemory(Home(home).server_memory).key_registered(
        "lab", f"127.0.0.1:{phisher.port}", "alice",
        fingerprint(KeyFiles(Home(home)).load_public("alice")))
    # A terminal that answers no cursor-position request, and says so (test_tui_pty.py).
    env = dict(os.environ, SCHAT_HOME=str(home), PYTHONPATH=str(REPO), TERM="xterm",
               NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1")
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
    assert passwords_sent(phisher) == []
