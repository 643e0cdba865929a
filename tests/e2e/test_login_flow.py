"""Logging in as a returning user: remembered name and method, three tries, what is checked
before any question, exit statuses. The real CLI, in-process and under a pseudo-terminal."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pexpect
import pytest

from chatkit import PASSWORDS, WAIT, drained, until
from schat.cli import cli
from schat.crypto.keys import fingerprint
from schat.paths import Home
from schat.store.keyfiles import KeyFiles
from schat.store.known_servers import KnownServers
from schat.store.server_memory import ServerMemory

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "a long passphrase 9"


@pytest.fixture
def lab(server_factory, home):
    """A server (no login penalties, so a test may fail on purpose) named "lab" in the
    member's list, its key pinned."""
    srv = server_factory(penalty_base=0)
    (home / "servers.json").write_text(json.dumps({"lab": {"ip": srv.host, "port": srv.port}}))
    KnownServers(Home(home).known_servers).pin("lab", srv.host, srv.port, srv.fingerprint)
    return srv


def remembered(home, srv):
    return ServerMemory(Home(home).server_memory).get("lab", f"{srv.host}:{srv.port}")


def _as_from_a_shell_prompt():
    """In the child: Ctrl-C's SIGINT at its default, as for a command typed at a shell
    prompt. A test run started as a background job of a script (`pytest ... &`) has
    SIGINT ignored, every child inherits that, and a program rightly leaves a signal
    ignored that it was started with: Ctrl-C would then do nothing at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(home, *args, env=None):
    # A terminal that answers no cursor-position request, and says so (test_tui_pty.py).
    full = dict(os.environ, SCHAT_HOME=str(home), PYTHONPATH=str(REPO), TERM="xterm",
                NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1")
    full.pop("SCHAT_PASSWORD", None)
    full.update(env or {})
    return pexpect.spawn(sys.executable, ["-m", "schat", *args], env=full, cwd=str(home),
                         encoding="utf-8", timeout=WAIT, dimensions=(24, 100),
                         preexec_fn=_as_from_a_shell_prompt)


def finish(child):
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before


# -- item 1: who and how, remembered ---------------------------------------------------
def test_user_and_method_are_remembered_per_server(lab, runner, home):
    env = {"SCHAT_PASSWORD": PASSWORDS["alice"], "LOGNAME": "alice", "USER": "alice"}
    # The first time, your login name is the default.
    res = runner.invoke(cli, ["login", "lab"], env=env)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("Logged in to lab as alice with your password")
    memory = remembered(home, lab)
    assert (memory.user, memory.account("alice").login) == ("alice", "password")
    # Then the remembered name wins over the login name...
    res = runner.invoke(cli, ["login", "lab"], env=dict(env, LOGNAME="carol", USER="carol"))
    assert res.stdout.startswith("Logged in to lab as alice")
    # ...and --user over both, and is remembered in turn.
    res = runner.invoke(cli, ["login", "lab", "--user", "bob"],
                        env=dict(env, SCHAT_PASSWORD=PASSWORDS["bob"]))
    assert res.stdout.startswith("Logged in to lab as bob"), res.output
    res = runner.invoke(cli, ["connect", "lab"], env=dict(env, SCHAT_PASSWORD=PASSWORDS["bob"]),
                        input="/quit\n")
    assert res.exit_code == 0 and "connected to testsrv as bob" in res.stdout
    # The memory is the data home's, private, and names no secret.
    path = Home(home).server_memory
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert all(pw not in text for pw in PASSWORDS.values())


def test_no_valid_name_and_nobody_to_ask(lab, runner, home):
    res = runner.invoke(cli, ["login", "lab"], env={"LOGNAME": "not a name!", "USER": "x y",
                                                    "SCHAT_PASSWORD": "whatever-1"})
    assert (res.exit_code, res.stderr) == (1, "Error: give the user name with --user\n")


def test_a_changed_address_is_another_server(lab, runner, home):
    env = {"SCHAT_PASSWORD": PASSWORDS["alice"]}
    assert runner.invoke(cli, ["login", "lab", "--user", "alice"], env=env).exit_code == 0
    memory = ServerMemory(Home(home).server_memory)
    assert memory.get("lab", f"127.0.0.1:{lab.port}").user == "alice"
    assert memory.get("lab", "192.0.2.1:5555").user is None


def test_damaged_memory_is_reported_by_name_and_left_alone(lab, runner, home):
    path = Home(home).server_memory
    path.write_text('{"version": 1, "servers": {"lab": {"address": 7}}}')
    res = runner.invoke(cli, ["login", "lab", "--user", "alice"],
                        env={"SCHAT_PASSWORD": PASSWORDS["alice"]})
    assert res.exit_code == 1
    assert res.stderr == (f"Error: {path}: the entry of server 'lab' is damaged; fix or "
                          f"remove the file\n")
    assert path.read_text() == '{"version": 1, "servers": {"lab": {"address": 7}}}'


# -- item 2: three tries, and checks before questions ---------------------------------------
def test_three_tries_for_the_password(lab, home):
    child = spawn(home, "login", "lab", "--user", "alice")
    for wrong in ("nope-1", "nope-2"):
        child.expect_exact("Password for alice on lab: ")
        child.sendline(wrong)
        child.expect_exact("lab: wrong user name or password; try again.")
    child.expect_exact("Password for alice on lab: ")
    child.sendline(PASSWORDS["alice"])
    code, out = finish(child)
    assert code == 0 and "Logged in to lab as alice with your password" in out

    child = spawn(home, "login", "lab")
    for wrong in ("nope-1", "nope-2", "nope-3"):
        child.expect_exact("Password for alice on lab: ")
        child.sendline(wrong)
    code, out = finish(child)
    assert code == 1
    assert out.count("Password for alice") == 0  # no fourth question
    assert out.strip().endswith("Error: lab: wrong user name or password")


def test_three_tries_for_the_key_passphrase(lab, home, user_keys):
    lab.store.set_public_key("alice", user_keys["alice"].public_key().export_key("DER"))
    KeyFiles(Home(home)).save("alice", user_keys["alice"], PASSPHRASE)
    child = spawn(home, "login", "lab", "--user", "alice")
    child.expect("Passphrase for .*alice.pem: ")
    child.sendline("not it 1")
    child.expect("wrong passphrase, or the private key file is corrupt; try again.")
    child.expect("Passphrase for .*alice.pem: ")
    child.sendline(PASSPHRASE)
    code, out = finish(child)
    assert code == 0 and "with your key" in out, out
    assert remembered(home, lab).account("alice").key == fingerprint(user_keys["alice"])


def free_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound but not listening: connecting is refused
    return sock


@pytest.mark.parametrize("command", ["connect", "login", "signup"])
def test_an_unreachable_server_fails_before_any_question(home, command):
    with free_port() as closed:
        port = closed.getsockname()[1]
        (home / "servers.json").write_text(json.dumps({"gone": {"ip": "127.0.0.1",
                                                                "port": port}}))
        child = spawn(home, command, "gone")
        code, out = finish(child)
    assert code == 1
    assert f"cannot reach server 'gone' at 127.0.0.1:{port}" in out
    for question in ("User name", "Password", "password for", "Generate", "Trust"):
        assert question not in out, out


def test_signup_checks_the_password_rules_before_the_key_and_the_fingerprint(
        server_factory, home):
    srv = server_factory()
    (home / "servers.json").write_text(json.dumps({"lab": {"ip": srv.host, "port": srv.port}}))
    child = spawn(home, "signup", "lab", env={"LOGNAME": "dave", "USER": "dave"})
    child.expect_exact("User name to sign up as [dave]: ")
    child.sendline("")
    child.expect_exact("Choose a password for dave on lab: ")
    child.sendline("password1")
    child.expect_exact("Repeat for confirmation: ")
    child.sendline("password1")
    child.expect_exact("password is one of the most common passwords: choose another; "
                       "try again.")
    child.expect_exact("Choose a password for dave on lab: ")
    child.sendline("dave-pass-4444")
    child.expect_exact("Repeat for confirmation: ")
    child.sendline("dave-pass-4444")
    child.expect_exact("Generate one now? [Y/n]: ")
    child.sendline("n")
    child.expect_exact("Trust this key and connect? [y/N]: ")
    child.sendline("y")
    code, out = finish(child)
    assert code == 0 and "Signed up on lab as dave." in out
    assert srv.store.get("dave") is not None


def test_signup_with_a_weak_password_in_a_script_sends_nothing(server_factory, runner, home):
    srv = server_factory()
    (home / "servers.json").write_text(json.dumps({"lab": {"ip": srv.host, "port": srv.port}}))
    res = runner.invoke(cli, ["signup", "lab", "--user", "dave", "--accept-new"],
                        env={"SCHAT_PASSWORD": "password1"})
    assert res.exit_code == 1
    assert "password is one of the most common passwords" in res.stderr
    # Refused before the handshake: no key was pinned, no account was made.
    assert KnownServers(Home(home).known_servers).entries() == []
    assert srv.store.get("dave") is None


# -- item 4: exit statuses and help ----------------------------------------------------------
def test_ctrl_c_at_a_prompt_exits_130(lab, home):
    child = spawn(home, "login", "lab", "--user", "alice")
    child.expect_exact("Password for alice on lab: ")
    child.send("\x03")
    code, out = finish(child)
    assert code == 130, out
    assert "Traceback" not in out and "Aborted" not in out


def test_end_of_input_at_a_prompt_is_not_an_interrupt(lab, home):
    child = spawn(home, "login", "lab", "--user", "alice")
    child.expect_exact("Password for alice on lab: ")
    child.sendeof()
    code, out = finish(child)
    assert code == 1


def test_bare_schat_prints_help_and_help_command_works(runner):
    res = runner.invoke(cli, [], prog_name="schat")
    assert res.exit_code == 0 and res.stdout.startswith("Usage: schat [OPTIONS] [COMMAND]")
    assert "Exit status: 0 done, 1 failed or refused" in " ".join(res.stdout.split())
    direct = runner.invoke(cli, ["servers", "add", "--help"], prog_name="schat")
    via = runner.invoke(cli, ["help", "servers", "add"], prog_name="schat")
    assert via.exit_code == 0 and via.stdout == direct.stdout
    assert runner.invoke(cli, ["help"], prog_name="schat").stdout == res.stdout
    res = runner.invoke(cli, ["help", "servers", "nope"], prog_name="schat")
    assert res.exit_code == 2 and "no command `schat servers nope`" in res.stderr


def test_a_script_without_a_key_is_told_once_per_server(lab, runner, home):
    env = {"SCHAT_PASSWORD": PASSWORDS["alice"]}
    first = runner.invoke(cli, ["connect", "lab", "--user", "alice"], env=env, input="/quit\n")
    assert first.exit_code == 0, first.output
    assert "Note: you have no key" in first.stderr and "schat keys gen alice" in first.stderr
    again = runner.invoke(cli, ["connect", "lab"], env=env, input="/quit\n")
    assert again.exit_code == 0 and "Note:" not in again.stderr


def test_register_key_while_chatting_elsewhere_disturbs_nothing(lab, runner, home, user_keys):
    """`schat login --register-key` logs in with check: the running chat session is not
    taken over, nobody sees a join or a leave, and the key is registered all the same."""
    from schat.client.session import Disconnected
    from schat.crypto.keys import public_der
    from schat.protocol import messages

    KeyFiles(Home(home)).save("alice", user_keys["alice"], None)
    alice, bob = lab.login("alice"), lab.login("bob")
    until(alice, messages.Join, lambda m: m.user == "bob")
    drained(alice), drained(bob)
    res = runner.invoke(cli, ["login", "lab", "--user", "alice", "--register-key"],
                        env={"SCHAT_PASSWORD": PASSWORDS["alice"]})
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("Logged in to lab as alice with your password")
    assert "Registered your key SHA256:" in res.stdout
    assert bytes(lab.store.get("alice").public_key_der) == public_der(user_keys["alice"])
    alice.session.say("still here")
    assert until(bob, messages.ChatMessage).text == "still here"
    seen = drained(alice) + drained(bob)
    assert not [e for e in seen if isinstance(e, (messages.Join, messages.Leave, Disconnected))]
    assert not [e for e in seen if isinstance(e, messages.Error)]
    assert alice.session.connected
    # From now on the key logs in, still without disturbing the chat.
    again = runner.invoke(cli, ["login", "lab"], env={})
    assert again.exit_code == 0 and "as alice with your key" in again.stdout
    assert alice.session.connected
    for c in (alice, bob):
        c.close()
