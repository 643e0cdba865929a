"""A person at a terminal: the first-contact question, the hidden password, a changed key."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect

from chatkit import PASSWORDS
from schat.crypto.keys import fingerprint
from schat.store.known_servers import KnownServers

REPO = Path(__file__).resolve().parents[2]


def spawn(home, *args):
    env = dict(os.environ, SCHAT_HOME=str(home), PYTHONPATH=str(REPO))
    env.pop("SCHAT_PASSWORD", None)
    return pexpect.spawn(sys.executable, ["-m", "schat", *args], cwd=str(home), env=env,
                         encoding="utf-8", timeout=20)


def test_first_contact_asks_then_pins(chat_server, tmp_path):
    home = tmp_path / "member"
    home.mkdir()
    (home / "servers.json").write_text(
        json.dumps({"local": {"ip": "127.0.0.1", "port": chat_server.port}}))

    # As ssh: the server's key first (nothing is typed for a server not trusted yet),
    # then the password.
    child = spawn(home, "login", "local", "--user", "alice")
    child.expect_exact(f"Its key fingerprint is {chat_server.fingerprint}.")
    child.expect_exact("Trust this key and connect? [y/N]: ")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and "not accepted" in child.before
    assert "Password" not in child.before
    assert KnownServers(home / "known_servers").entries() == []

    child = spawn(home, "login", "local", "--user", "alice")
    child.expect_exact("Trust this key and connect? [y/N]: ")
    child.sendline("y")
    child.expect_exact("Password for alice on local: ")
    child.sendline(PASSWORDS["alice"])
    child.expect_exact("Logged in to local as alice")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert PASSWORDS["alice"] not in child.before  # the password was not echoed

    child = spawn(home, "login", "local")  # pinned, and alice is remembered: one question
    child.expect_exact("Password for alice on local: ")
    child.sendline(PASSWORDS["alice"])
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "Trust this key" not in child.before


def test_changed_key_offers_no_way_on(chat_server, tmp_path, other_host_key):
    home = tmp_path / "member"
    home.mkdir()
    (home / "servers.json").write_text(
        json.dumps({"local": {"ip": "127.0.0.1", "port": chat_server.port}}))
    KnownServers(home / "known_servers").pin("local", "127.0.0.1", chat_server.port,
                                             fingerprint(other_host_key))
    child = spawn(home, "login", "local", "--user", "alice", "--accept-new")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "WARNING: SERVER KEY HAS CHANGED" in child.before
    assert "Trust this key" not in child.before and "Password" not in child.before
    # The banner stands on its own lines; the error after it is one line.
    lines = child.before.replace("\r", "").splitlines()
    banner = [line for line in lines if line.startswith("@")]
    assert len(banner) == 3 and len({len(line) for line in banner}) == 1
    assert lines[-1].startswith("Error: the key of server 'local' has changed")


def test_unknown_server_name_fails_before_any_question(tmp_path):
    home = tmp_path / "member"
    home.mkdir()
    (home / "servers.json").write_text(json.dumps({"lab": {"ip": "127.0.0.1", "port": 1}}))
    for args in (["connect", "nope", "--user", "alice"], ["signup", "nope", "--user", "alice"],
                 ["login", "nope", "--user", "alice"]):
        child = spawn(home, *args)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 1, args
        assert "no server named 'nope'" in child.before, child.before
        # Neither a user name, a key, a passphrase nor a password was asked for.
        for question in ("User name", "Generate one", "assphrase", "Password", "password"):
            assert question not in child.before, (args, child.before)
