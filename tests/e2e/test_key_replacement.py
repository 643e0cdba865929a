"""`schat keys gen --force` on a key a server has: a warning that names the server, the old
key kept (under the new passphrase), and direct messages sealed to it still readable."""

from __future__ import annotations

import json
import os
import queue
import sys
from pathlib import Path

import pexpect
import pytest

from chatkit import KEY_DIR, PASSWORDS, WAIT
from schat.cli import cli
from schat.client.dm import DmClient
from schat.crypto.keys import fingerprint, public_der
from schat.paths import Home
from schat.store.keyfiles import KeyFiles

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = "old passphrase 11", "new passphrase 22"


@pytest.fixture(autouse=True)
def pregenerated(monkeypatch):
    """Key generation draws a fresh RSA-3072 key (seconds of CPU): these tests take a
    pre-generated one instead, as from a random source, and never one of the others."""
    from schat.crypto import keys

    spare = [keys.import_private_pem((KEY_DIR / "other_host.pem").read_bytes(), None)]
    monkeypatch.setattr(keys, "generate_rsa_key", lambda *a, **k: spare.pop())


@pytest.fixture
def lab(server_factory, home, user_keys):
    """alice and bob with keys registered; alice's key in her home under OLD, and her
    client remembering that "lab" has it (she logged in with it)."""
    srv = server_factory()
    for name in ("alice", "bob"):
        srv.store.set_public_key(name, public_der(user_keys[name]))
    (home / "servers.json").write_text(json.dumps({"lab": {"ip": srv.host, "port": srv.port}}))
    KeyFiles(Home(home)).save("alice", user_keys["alice"], OLD)
    return srv


def login(runner, *args, env):
    return runner.invoke(cli, ["login", "lab", *args], env=env)


def bob_sends(srv, user_keys, tmp_path, text):
    """bob, on his own client, seals ``text`` to alice's registered key (she is offline)."""
    session = srv.session()
    session.login_key("bob", user_keys["bob"])
    events = queue.Queue()
    dm = DmClient(session, tmp_path / "bob_home", user_keys["bob"], events.put, key_timeout=WAIT)
    session.start(dm.wrap(events.put))
    dm.send("alice", text)
    assert session.wait_acked(WAIT)
    session.close()


def test_replaced_key_is_named_kept_and_still_opens_stored_messages(
        lab, runner, home, user_keys, tmp_path):
    old_fp = fingerprint(user_keys["alice"])
    res = login(runner, "--user", "alice", "--accept-new", env={"SCHAT_KEY_PASSPHRASE": OLD})
    assert res.exit_code == 0 and "with your key" in res.stdout, res.output
    bob_sends(lab, user_keys, tmp_path, "sealed to your old key")

    res = runner.invoke(cli, ["keys", "gen", "alice", "--force", "--passphrase-stdin"],
                        input=NEW + "\n", env={"SCHAT_KEY_PASSPHRASE": OLD})
    assert res.exit_code == 0, res.output
    warning = " ".join(res.stderr.split())
    assert (f"Warning: the key of alice ({old_fp}) is registered on lab "
            f"(127.0.0.1:{lab.port}) as alice.") in warning
    assert "they refuse the new key for key login until their admin registers it" in warning
    files = KeyFiles(Home(home))
    (retired,) = files.retired("alice")
    assert f"Old key:     {retired} (kept" in res.stdout
    assert oct(retired.stat().st_mode & 0o777) == "0o600"
    # Kept under the new passphrase: one passphrase opens both.
    assert fingerprint(files.load_private(str(retired), NEW)) == old_fp
    new_fp = fingerprint(files.load_private("alice", NEW))
    assert new_fp != old_fp

    # The server still has the old key: the new one is refused, and no password follows.
    env = {"SCHAT_KEY_PASSPHRASE": NEW, "SCHAT_PASSWORD": PASSWORDS["alice"]}
    res = runner.invoke(cli, ["connect", "lab", "--json"], env=env, input="")
    assert res.exit_code == 1
    assert f"it has another key of yours registered ({old_fp}), the one you had before" in \
        res.stderr
    # Logged in with the password, the client still opens what was sealed to the old key.
    res = runner.invoke(cli, ["connect", "lab", "--password", "--json"], env=env, input="")
    events = [json.loads(line) for line in res.stdout.splitlines()]
    dms = [e for e in events if e["type"] == "dm"]
    assert [(d["sender"], d["text"], d["verified"]) for d in dms] == [
        ("bob", "sealed to your old key", True)]
    assert any(e["type"] == "warning" and "another key for your account" in e["text"]
               for e in events)


def test_at_a_terminal_replacing_is_asked_and_no_leaves_the_key(lab, runner, home):
    res = login(runner, "--user", "alice", "--accept-new", env={"SCHAT_KEY_PASSPHRASE": OLD})
    assert res.exit_code == 0, res.output
    before = (home / "keys" / "alice.pem").read_bytes()
    env = dict(os.environ, SCHAT_HOME=str(home), PYTHONPATH=str(REPO))
    env.pop("SCHAT_KEY_PASSPHRASE", None)
    child = pexpect.spawn(sys.executable, ["-m", "schat", "keys", "gen", "alice", "--force"],
                          env=env, cwd=str(home), encoding="utf-8", timeout=WAIT)
    child.expect(r"is registered on lab \(127\.0\.0\.1:\d+\) as alice")
    child.expect_exact("Replace it? [y/N]: ")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert (home / "keys" / "alice.pem").read_bytes() == before
    assert KeyFiles(Home(home)).retired("alice") == []


def test_an_old_key_without_a_passphrase_at_hand_is_kept_as_it_is(runner, home, user_keys):
    KeyFiles(Home(home)).save("alice", user_keys["alice"], OLD)
    before = (home / "keys" / "alice.pem").read_bytes()
    res = runner.invoke(cli, ["keys", "gen", "alice", "--force", "--passphrase-stdin"],
                        input=NEW + "\n")
    assert res.exit_code == 0, res.output
    assert "This client knows of no server where it is registered" in res.stderr
    (retired,) = KeyFiles(Home(home)).retired("alice")
    assert retired.read_bytes() == before  # byte for byte: nothing is lost
