"""`schat user ...` through the real CLI (CliRunner, and once as a subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from schat.cli import cli
from schat.crypto import keys
from schat.store.accounts import AccountStore

KEYS = Path(__file__).parents[1] / "data" / "keys"


@pytest.fixture(autouse=True)
def server_has_run(home):
    """The data home of a server that has run: its account store exists."""
    AccountStore(home / "server" / "users.db").close()


def errors(res) -> str:
    """stderr without the line naming the account store (checked on its own below)."""
    return "".join(line for line in res.stderr.splitlines(keepends=True)
                   if not line.startswith("Account store: "))


def run(runner, *args, input=None):
    return runner.invoke(cli, list(args), input=input)


def add(runner, name, password="tangerine42", *extra):
    return run(runner, "user", "add", name, "--password-stdin", *extra, input=password + "\n")


def test_add_prompted_twice_hidden(runner, home):
    res = run(runner, "user", "add", "alice", input="tangerine42\ntangerine42\n")
    assert res.exit_code == 0, res.output
    assert res.stdout.endswith("Added user alice.\n")
    assert "tangerine42" not in res.output
    with AccountStore(home / "server" / "users.db") as store:
        assert store.check_password("alice", "tangerine42").ok


def test_add_prompt_mismatch_reprompts(runner, home):
    res = run(runner, "user", "add", "alice", input="tangerine42\ntangerine43\nmandarin77\nmandarin77\n")
    assert res.exit_code == 0
    assert "do not match" in res.output
    with AccountStore(home / "server" / "users.db") as store:
        assert store.check_password("alice", "mandarin77").ok


def test_add_with_key_and_list(runner, home, user_keys):
    res = add(runner, "alice", "tangerine42", "--key", str(KEYS / "alice.pub.pem"))
    fp = keys.fingerprint(user_keys["alice"])
    assert res.exit_code == 0 and res.stdout == f"Added user alice with key {fp}.\n"
    assert add(runner, "Bob").exit_code == 0
    res = run(runner, "user", "list")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["name", "role", "created", "last", "login", "locked", "legacy",
                                "hash", "key", "fingerprint"]
    assert lines[2].split()[0] == "alice" and lines[2].split()[-1] == fp
    assert lines[3].split()[0] == "Bob" and lines[3].split()[-1] == "-"
    data = json.loads(run(runner, "user", "list", "--json").stdout)
    assert [(d["name"], d["locked"], d["key_fingerprint"], d["role"]) for d in data] == [
        ("alice", False, fp, "member"), ("Bob", False, None, "member")]
    assert data[0]["created"].endswith("Z")


def test_list_empty(runner, home):
    res = run(runner, "user", "list")
    assert (res.exit_code, res.stdout) == (0, "No users.\n")


@pytest.mark.parametrize("name,password,message", [
    ("bad name", "tangerine42", "Error: invalid user name 'bad name': use 1-32 letters, digits, '_', '-' or '.'"),
    ("x" * 33, "tangerine42", "Error: invalid user name '" + "x" * 33 + "': use 1-32 letters, digits, '_', '-' or '.'"),
    ("alice", "short1", "Error: password too short: use at least 8 characters"),
    ("alice", "onlyletters", "Error: password must contain both letters and digits"),
    ("alice", "password1", "Error: password is one of the most common passwords: choose another"),
    ("alice", "", "Error: no password on standard input"),
])
def test_add_bad_input(runner, home, name, password, message):
    res = add(runner, name, password)
    assert errors(res).strip() == message
    assert res.exit_code == (2 if password == "" else 1)
    assert not password or password not in errors(res)


def test_add_duplicate_any_case(runner, home):
    assert add(runner, "alice").exit_code == 0
    res = add(runner, "ALICE")
    assert res.exit_code == 1
    assert errors(res) == "Error: user 'alice' already exists (names are unique regardless of case)\n"


def test_add_existing_name_refused_before_the_password_prompt(runner, home):
    assert add(runner, "alice").exit_code == 0
    # No input at all: a prompt would abort with "Aborted!" instead of this error.
    res = run(runner, "user", "add", "Alice")
    assert (res.exit_code, errors(res)) == (
        1, "Error: user 'alice' already exists (names are unique regardless of case)\n")
    assert "Password" not in res.output


@pytest.mark.parametrize("name", ["j\u00f6rg", "\u0430lice", "\u540d\u524d", "al\u200bice"])
def test_add_non_ascii_name_refused(runner, home, name):
    res = add(runner, name)
    assert res.exit_code == 1
    assert errors(res) == (f"Error: invalid user name {name!r}: use 1-32 letters, digits, "
                          "'_', '-' or '.'\n")
    assert run(runner, "user", "list").stdout == "No users.\n"


def test_add_password_over_1024_characters_refused(runner, home):
    res = add(runner, "alice", "a1" * 512 + "b")
    assert (res.exit_code, errors(res)) == (1, "Error: password too long: use at most 1024 characters\n")
    assert add(runner, "alice", "a1" * 512).exit_code == 0


def test_add_bad_key_file(runner, home, tmp_path):
    bad = tmp_path / "bad.pub.pem"
    bad.write_text("not a key")
    res = add(runner, "alice", "tangerine42", "--key", str(bad))
    assert res.exit_code == 1
    assert errors(res) == f"Error: {bad}: not a valid RSA public key (corrupt or truncated)\n"
    missing = tmp_path / "missing.pub.pem"
    res = add(runner, "alice", "tangerine42", "--key", str(missing))
    assert errors(res) == f"Error: {missing}: no such key file\n"


def test_remove_confirms(runner, home):
    add(runner, "alice")
    res = run(runner, "user", "remove", "alice", input="n\n")
    assert res.exit_code == 1 and "Aborted" in errors(res)
    res = run(runner, "user", "remove", "alice", input="y\n")
    assert res.exit_code == 0 and res.stdout == "Removed user alice.\n"
    add(runner, "bob")
    res = run(runner, "user", "remove", "BOB", "--yes")
    assert res.stdout == "Removed user bob.\n"
    res = run(runner, "user", "remove", "nobody", "--yes")
    assert (res.exit_code, errors(res)) == (1, "Error: no such user: 'nobody'\n")


def test_passwd_lock_unlock(runner, home):
    add(runner, "alice")
    res = run(runner, "user", "passwd", "alice", "--password-stdin", input="mandarin77\n")
    assert res.exit_code == 0 and res.stdout == "Password changed for alice.\n"
    res = run(runner, "user", "passwd", "alice", input="mandarin88\nmandarin88\n")
    assert res.exit_code == 0
    res = run(runner, "user", "passwd", "alice", "--password-stdin", input="password1\n")
    assert res.exit_code == 1 and "most common" in errors(res)
    assert run(runner, "user", "lock", "ALICE").stdout == "Locked user alice.\n"
    assert json.loads(run(runner, "user", "list", "--json").stdout)[0]["locked"] is True
    assert run(runner, "user", "unlock", "alice").stdout == "Unlocked user alice.\n"
    for args in (("lock", "ghost"), ("unlock", "ghost"), ("passwd", "ghost", "--password-stdin")):
        res = run(runner, "user", *args, input="mandarin99\n")
        assert (res.exit_code, errors(res)) == (1, "Error: no such user: 'ghost'\n")
    with AccountStore(home / "server" / "users.db") as store:
        assert store.check_password("alice", "mandarin88").ok


def sha(pw):
    return hashlib.sha256(pw.encode()).hexdigest()


def test_import(runner, home, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text(f"alice,{sha('old-one')}\nbroken line\nbob,{sha('old-two')}\n"
                     f"Alice,{sha('x')}\ncarol,abc\n")
    res = run(runner, "user", "import", str(users))
    # Malformed lines make the exit status 1, yet every good line is imported.
    assert res.exit_code == 1
    assert res.stdout == "Imported 2 user(s); 0 already existed; 3 bad line(s).\n"
    assert errors(res).splitlines() == [
        f"{users}, line 2: expected username,sha256hex; skipped",
        f"{users}, line 4: duplicate of line 1 ('Alice'); skipped",
        f"{users}, line 5: the hash is not 64 hexadecimal digits; skipped",
    ]
    res = run(runner, "user", "import", str(users))
    assert res.exit_code == 1
    assert res.stdout == "Imported 0 user(s); 2 already existed; 3 bad line(s).\n"
    # Skipped and bad lines are reported together, in line order.
    assert errors(res).splitlines() == [
        f"{users}, line 1: user alice already exists; skipped",
        f"{users}, line 2: expected username,sha256hex; skipped",
        f"{users}, line 3: user bob already exists; skipped",
        f"{users}, line 4: duplicate of line 1 ('Alice'); skipped",
        f"{users}, line 5: the hash is not 64 hexadecimal digits; skipped",
    ]
    with AccountStore(home / "server" / "users.db") as store:
        result = store.check_password("bob", "old-two")
        assert (result.ok, result.needs_rehash) == (True, True)
    rows = json.loads(run(runner, "user", "list", "--json").stdout)
    assert [r["legacy"] for r in rows] == [True, True]


def test_import_with_byte_order_mark_and_existing_spelling(runner, home, tmp_path):
    assert add(runner, "Carol").exit_code == 0
    users = tmp_path / "users.txt"
    users.write_bytes(b"\xef\xbb\xbf" + f"alice,{sha('old-one')}\r\ncarol,{sha('x')}\r\n".encode())
    res = run(runner, "user", "import", str(users))
    assert res.exit_code == 0, res.output
    assert res.stdout == "Imported 1 user(s); 1 already existed; 0 bad line(s).\n"
    assert errors(res) == f"{users}, line 2: user Carol already exists; skipped\n"
    with AccountStore(home / "server" / "users.db") as store:
        assert store.check_password("alice", "old-one").ok


def test_set_key_and_clear(runner, home, user_keys):
    assert add(runner, "alice").exit_code == 0
    fp = keys.fingerprint(user_keys["bob"])
    res = run(runner, "user", "set-key", "ALICE", str(KEYS / "bob.pub.pem"))
    assert (res.exit_code, res.stdout) == (0, f"Set the key of alice: {fp}.\n")
    res = run(runner, "user", "set-key", "alice", str(KEYS / "carol.pub.pem"))
    assert res.stdout == f"Set the key of alice: {keys.fingerprint(user_keys['carol'])}.\n"
    with AccountStore(home / "server" / "users.db") as store:
        assert store.get("alice").public_key_der == keys.public_der(user_keys["carol"])
        assert store.check_password("alice", "tangerine42").ok  # the account is kept
    res = run(runner, "user", "set-key", "alice", "--clear")
    assert (res.exit_code, res.stdout) == (0, "Cleared the key of alice.\n")
    assert json.loads(run(runner, "user", "list", "--json").stdout)[0]["key_fingerprint"] is None


def test_set_key_bad_input(runner, home, tmp_path, spare_keys):
    assert add(runner, "alice").exit_code == 0
    for args in ((), (str(KEYS / "bob.pub.pem"), "--clear")):
        res = run(runner, "user", "set-key", "alice", *args)
        assert (res.exit_code, errors(res)) == (2, "Error: give the public key file, or --clear (not both)\n")
    res = run(runner, "user", "set-key", "ghost", str(KEYS / "bob.pub.pem"))
    assert (res.exit_code, errors(res)) == (1, "Error: no such user: 'ghost'\n")
    bad = tmp_path / "bad.pub.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")
    res = run(runner, "user", "set-key", "alice", str(bad))
    assert (res.exit_code, errors(res)) == (1, f"Error: {bad}: not a valid RSA public key (corrupt or truncated)\n")
    # An encrypted private key is not a public key file.
    spare_keys("carol")
    res = run(runner, "keys", "gen", "mine", "--passphrase-stdin", input="pass-phrase-9\n")
    assert res.exit_code == 0
    res = run(runner, "user", "set-key", "alice", str(home / "keys" / "mine.pem"))
    assert res.exit_code == 1 and "holds an encrypted private key" in errors(res)


def test_global_options_after_the_subcommand(runner, home, tmp_path):
    other = tmp_path / "other-home"
    res = run(runner, "user", "add", "zed", "--password-stdin", "--home", str(other), "--create",
              input="tangerine42\n")
    assert res.exit_code == 0, res.output
    assert json.loads(run(runner, "user", "list", "--json", "--home", str(other)).stdout)[0]["name"] == "zed"
    assert json.loads(run(runner, "--home", str(other), "user", "list", "--json").stdout)[0]["name"] == "zed"
    # The default home (from $SCHAT_HOME) was not touched.
    assert run(runner, "user", "list").stdout == "No users.\n"


def test_implicit_home_is_private_at_every_level(runner, tmp_path):
    deep = tmp_path / "a" / "b" / "home"
    res = run(runner, "--home", str(deep), "user", "add", "zed", "--password-stdin", "--create",
              input="tangerine42\n")
    assert res.exit_code == 0, res.output
    for directory in (tmp_path / "a", tmp_path / "a" / "b", deep, deep / "server"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory


def test_import_bad_files(runner, home, tmp_path):
    res = run(runner, "user", "import", str(tmp_path / "none.txt"))
    assert (res.exit_code, errors(res)) == (1, f"Error: {tmp_path / 'none.txt'}: no such file\n")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\xfa")
    res = run(runner, "user", "import", str(binary))
    assert (res.exit_code, errors(res)) == (1, f"Error: {binary}: not UTF-8 text\n")


def test_corrupt_database(runner, home):
    (home / "server" / "users.db").write_bytes(b"garbage" * 200)
    res = run(runner, "user", "list")
    assert res.exit_code == 1
    assert errors(res) == (f"Error: {home / 'server' / 'users.db'}: not a schat account "
                          "database, or it is corrupt\n")


def test_invalid_scrypt_setting(runner, home, monkeypatch):
    monkeypatch.setenv("SCHAT_SCRYPT_N", "1000")
    res = add(runner, "alice")
    assert res.exit_code == 1
    assert errors(res) == ("Error: SCHAT_SCRYPT_N must be a power of two from 1024 to "
                          "1048576, not '1000'\n")


def test_missing_argument_is_usage_error(runner, home):
    res = run(runner, "user", "add")
    assert res.exit_code == 2 and "Missing argument 'NAME'" in errors(res)


def test_subprocess_round_trip(home):
    # No PYTHONPATH: the installed package runs (cwd is outside the checkout).
    env = dict(os.environ, SCHAT_HOME=str(home))
    add_ = subprocess.run([sys.executable, "-m", "schat", "user", "add", "zed", "--password-stdin"],
                          input="tangerine42\n", capture_output=True, text=True, env=env, timeout=30)
    assert add_.returncode == 0, add_.stderr
    listing = subprocess.run([sys.executable, "-m", "schat", "user", "list", "--json"],
                             capture_output=True, text=True, env=env, timeout=30)
    assert listing.returncode == 0
    assert json.loads(listing.stdout)[0]["name"] == "zed"


# -- which store: named on stderr, never created by a typo -------------------------

def test_every_user_command_names_its_store(runner, home):
    db = home / "server" / "users.db"
    assert add(runner, "alice").stderr == f"Account store: {db}\n"
    for args in (["list"], ["list", "--json"], ["lock", "alice"], ["unlock", "alice"],
                 ["set-key", "alice", "--clear"], ["remove", "alice", "--yes"]):
        res = run(runner, "user", *args)
        assert res.exit_code == 0, (args, res.output)
        assert res.stderr == f"Account store: {db}\n", args
    res = run(runner, "user", "list", "--json")
    assert json.loads(res.stdout) == []  # the store line never mixes into stdout


def test_a_mistyped_home_creates_nothing(runner, home, tmp_path):
    typo = tmp_path / "schat-sever"
    (tmp_path / "users.txt").write_text(f"carol,{sha('old-one')}\n")
    for args in (["add", "ann", "--password-stdin"], ["list"], ["list", "--json"],
                 ["remove", "ann", "--yes"], ["passwd", "ann", "--password-stdin"],
                 ["lock", "ann"], ["unlock", "ann"], ["set-key", "ann", "--clear"],
                 ["import", str(tmp_path / "users.txt")]):
        res = runner.invoke(cli, ["--home", str(typo), "user", *args], input="tangerine42\n")
        assert (res.exit_code, res.stdout) == (1, ""), args
        assert res.stderr == (
            f"Error: no account store at {typo / 'server' / 'users.db'}: no server has run "
            f"with the data home {typo} (check --home and $SCHAT_HOME); to start a new one "
            "there, give --create or run `schat serve --init`\n"), args
        assert not typo.exists(), args
    # The same through $SCHAT_HOME, the issue's own example.
    res = runner.invoke(cli, ["user", "add", "ann", "--password-stdin"], input="tangerine42\n",
                        env={"SCHAT_HOME": str(typo)})
    assert res.exit_code == 1 and "no account store" in res.stderr and not typo.exists()


def test_create_starts_a_store_once(runner, tmp_path):
    fresh = tmp_path / "new-home"
    db = fresh / "server" / "users.db"
    res = runner.invoke(cli, ["--home", str(fresh), "user", "add", "ann", "--password-stdin",
                              "--create"], input="tangerine42\n")
    assert (res.exit_code, res.stdout) == (0, "Added user ann.\n"), res.output
    assert res.stderr == f"Created the account store {db}\n"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    # From now on it exists: --create changes nothing, and other commands work.
    res = runner.invoke(cli, ["--home", str(fresh), "user", "add", "bob", "--password-stdin",
                              "--create"], input="tangerine42\n")
    assert (res.exit_code, res.stderr) == (0, f"Account store: {db}\n")
    users = tmp_path / "users.txt"
    users.write_text(f"carol,{sha('old-one')}\n")
    other = tmp_path / "other-home"
    res = runner.invoke(cli, ["--home", str(other), "user", "import", str(users), "--create"])
    assert res.exit_code == 0 and res.stdout == "Imported 1 user(s); 0 already existed; 0 bad line(s).\n"
    assert res.stderr == f"Created the account store {other / 'server' / 'users.db'}\n"
    listed = runner.invoke(cli, ["--home", str(fresh), "user", "list", "--json"])
    assert [row["name"] for row in json.loads(listed.stdout)] == ["ann", "bob"]
