"""`schat keys ...` through the real CLI."""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from schat.cli import cli
from schat.crypto import keys
from schat.paths import Home
from schat.server.app import ServerThread
from schat.server.limits import ServerSettings
from schat.store.accounts import AccountStore
from schat.store.keyfiles import KeyFiles


KEY_DIR = Path(__file__).parents[1] / "data" / "keys"


def run(runner, *args, input=None):
    return runner.invoke(cli, list(args), input=input)


def test_gen_with_prompted_passphrase(runner, home, spare_keys):
    res = run(runner, "keys", "gen", "alice", input="pass-phrase-9\npass-phrase-9\n")
    assert res.exit_code == 0, res.output
    priv, pub = home / "keys" / "alice.pem", home / "keys" / "alice.pub.pem"
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home / "keys").st_mode) == 0o700
    key = KeyFiles(Home(home)).load_private("alice", "pass-phrase-9")
    fp = keys.fingerprint(key)
    assert res.stdout.splitlines() == [f"Private key: {priv}", f"Public key:  {pub}",
                                       f"Fingerprint: {fp}"]
    assert "pass-phrase-9" not in res.output
    # The fingerprint survives a reload of the public file, and refuses overwrite.
    assert keys.fingerprint(keys.import_public_key(pub.read_bytes())) == fp
    res = run(runner, "keys", "gen", "alice", "--no-passphrase")
    assert (res.exit_code, res.stderr) == (1, f"Error: {priv} already exists; use --force to replace it\n")
    # The first key was really generated; the replacement is a pre-generated one.
    spare_keys("other_host")
    res = run(runner, "keys", "gen", "alice", "--no-passphrase", "--force")
    assert res.exit_code == 0
    assert "Warning: the private key will be stored unencrypted" in res.stderr
    assert keys.fingerprint(KeyFiles(Home(home)).load_private("alice", None)) != fp


def test_gen_passphrase_sources(runner, home, monkeypatch, spare_keys):
    spare_keys("carol", "other_host")
    res = run(runner, "keys", "gen", "bob", "--passphrase-stdin", input="from-stdin-1\n")
    assert res.exit_code == 0
    KeyFiles(Home(home)).load_private("bob", "from-stdin-1")
    monkeypatch.setenv("SCHAT_KEY_PASSPHRASE", "from-env-22")
    res = run(runner, "keys", "gen")
    assert res.exit_code == 0, res.output
    KeyFiles(Home(home)).load_private(getpass.getuser(), "from-env-22")


def test_gen_bad_input(runner, home):
    res = run(runner, "keys", "gen", "bob", "--passphrase-stdin", input="\n")
    assert (res.exit_code, res.stderr) == (2, "Error: the passphrase is empty; give one, or use --no-passphrase\n")
    res = run(runner, "keys", "gen", "bob", "--passphrase-stdin", "--no-passphrase")
    assert res.exit_code == 2
    assert "cannot be used together" in res.stderr
    res = run(runner, "keys", "gen", "../evil", "--no-passphrase")
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: invalid key name '../evil'")
    assert not (home / "keys").exists()


def test_show_and_list(runner, home, user_keys):
    files = KeyFiles(Home(home))
    files.save("alice", user_keys["alice"], "pp-123")
    files.save("bob", user_keys["bob"], None)
    fp = keys.fingerprint(user_keys["alice"])
    res = run(runner, "keys", "show", "alice")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0] == f"Fingerprint: {fp}"
    assert lines[1] == "-----BEGIN PUBLIC KEY-----" and lines[-1] == "-----END PUBLIC KEY-----"
    by_path = run(runner, "keys", "show", str(home / "keys" / "bob.pem"))
    assert by_path.stdout.splitlines()[0] == f"Fingerprint: {keys.fingerprint(user_keys['bob'])}"
    data = json.loads(run(runner, "keys", "show", "alice", "--json").stdout)
    assert data["fingerprint"] == fp and data["public_key"].startswith("-----BEGIN PUBLIC KEY")
    res = run(runner, "keys", "list")
    rows = [line.split() for line in res.stdout.splitlines()[2:]]
    assert rows == [["alice", fp, "yes", str(home / "keys" / "alice.pem")],
                    ["bob", keys.fingerprint(user_keys["bob"]), "no", str(home / "keys" / "bob.pem")]]
    data = json.loads(run(runner, "keys", "list", "--json").stdout)
    assert [(d["name"], d["encrypted"]) for d in data] == [("alice", True), ("bob", False)]


def test_list_marks_an_unreadable_key_unknown(runner, home, user_keys):
    KeyFiles(Home(home)).save("bob", user_keys["bob"], None)
    (home / "keys" / "junk.pem").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
    rows = [line.split() for line in run(runner, "keys", "list").stdout.splitlines()[2:]]
    assert rows[1][0] == "junk" and rows[1][-2:] == ["?", str(home / "keys" / "junk.pem")]
    assert "(not a valid RSA private key" in " ".join(rows[1])
    data = json.loads(run(runner, "keys", "list", "--json").stdout)
    assert [(d["name"], d["encrypted"]) for d in data] == [("bob", False), ("junk", None)]


def test_wrong_passphrase_for_key_login(runner, home, tmp_path, host_key, user_keys,
                                        monkeypatch):
    store = AccountStore(tmp_path / "users.db")
    store.add("alice", "tangerine42", public_key_der=keys.public_der(user_keys["alice"]))
    server = ServerThread(ServerSettings(host="127.0.0.1", port=0), host_key, store)
    host, port = server.start()
    try:
        KeyFiles(Home(home)).save("alice", user_keys["alice"], "right-pass-1")
        assert run(runner, "servers", "add", "T", "--ip", host, "--port", str(port),
                   "--fingerprint", keys.fingerprint(host_key)).exit_code == 0
        monkeypatch.setenv("SCHAT_KEY_PASSPHRASE", "wrong-pass-1")
        res = run(runner, "login", "T", "--user", "alice", "--key", "alice")
        assert res.exit_code == 1
        assert res.stderr.splitlines()[-1] == (
            f"Error: {home / 'keys' / 'alice.pem'}: wrong passphrase, or the private key "
            "file is corrupt")
        assert "pass-1" not in res.output
        monkeypatch.setenv("SCHAT_KEY_PASSPHRASE", "right-pass-1")
        res = run(runner, "login", "T", "--user", "alice", "--key", "alice")
        assert res.exit_code == 0, res.output
        assert res.stdout.startswith("Logged in to T as alice")
    finally:
        server.stop()
        store.close()


def test_fingerprint_known_answer(runner, home):
    # Computed independently: SHA-256 over the DER of the PEM's base64 body.
    pem = (KEY_DIR / "bob.pub.pem").read_text()
    der = base64.b64decode("".join(pem.strip().splitlines()[1:-1]))
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert expected == "SHA256:l5oPXLqtT6E5k0cSEIAZ95uq51XDm/iyhHDP70sZwdM"
    assert keys.fingerprint(keys.import_public_key(pem.encode())) == expected
    res = run(runner, "keys", "show", str(KEY_DIR / "bob.pub.pem"))
    assert res.stdout.splitlines()[0] == f"Fingerprint: {expected}"


def test_list_empty(runner, home):
    res = run(runner, "keys", "list")
    assert res.stdout == "No keys. Create one with `schat keys gen`.\n"


@pytest.mark.parametrize("content,problem", [
    (b"junk", "not a valid RSA public key (corrupt or truncated)"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n", "holds an encrypted private key; give the matching .pub.pem file instead"),
])
def test_show_corrupt(runner, home, tmp_path, content, problem):
    path = tmp_path / "x.pem"
    path.write_bytes(content)
    res = run(runner, "keys", "show", str(path))
    assert (res.exit_code, res.stderr) == (1, f"Error: {path}: {problem}\n")


def test_show_missing(runner, home):
    res = run(runner, "keys", "show", "nobody")
    assert (res.exit_code, res.stderr) == (1, f"Error: {home / 'keys' / 'nobody.pub.pem'}: no such key file\n")
