"""`--store URL` on the account commands, and `schat store migrate` from SQLite to PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from schat.cli import cli
from schat.crypto import keys
from schat.crypto.passwords import ScryptParams
from schat.paths import Home
from schat.chat.events import Said
from schat.chat.moderation import Restriction
from schat.chat.rooms import RoomRecord
from schat.server.mailbox import Mailbox
from schat.store.chat import SqliteChatStore, set_role
from schat.store.accounts import AccountStore
from schat.store.postgres import PostgresEngine
from services import APP_PASSWORD, free_port

REPO = Path(__file__).resolve().parents[2]
LIGHT = ScryptParams(log2_n=10)


def invoke(runner, *args, input=None, env=None):
    return runner.invoke(cli, list(args), input=input, env=env)


def pg_store(url) -> AccountStore:
    return AccountStore(PostgresEngine(url), hash_params=LIGHT, owns_engine=True)


def no_secret(text: str) -> bool:
    return APP_PASSWORD not in text and "app-Pw%253" not in text


def test_user_commands_on_postgres_by_option_and_environment(home, runner, pg_url, user_keys):
    (home / "alice.pub.pem").write_bytes(keys.export_public_pem(user_keys["alice"]))
    shown = f"{pg_url.split(':app')[0]}:***@{pg_url.split('@')[1]}"
    # A database no server has used is not made a store by a typo'd URL ...
    res = invoke(runner, "user", "list", "--store", pg_url)
    assert (res.exit_code, res.stdout) == (1, "")
    assert res.stderr == (f"Error: no account store in {shown}: no server has used this "
                          "database (check --store and $SCHAT_STORE); to start one there, give "
                          "--create or run `schat serve --init`\n")
    assert no_secret(res.output)
    # ... only on purpose.
    res = invoke(runner, "user", "add", "Alice", "--store", pg_url, "--password-stdin",
                 "--key", str(home / "alice.pub.pem"), "--create", input="tangerine42\n")
    assert res.exit_code == 0, res.output
    assert res.stderr == f"Created the account store {shown}\n" and no_secret(res.output)
    env = {"SCHAT_STORE": pg_url}
    res = invoke(runner, "user", "add", "bob", "--password-stdin", input="tangerine42\n", env=env)
    assert res.exit_code == 0, res.output
    res = invoke(runner, "user", "lock", "BOB", env=env)
    assert (res.stdout, res.stderr) == ("Locked user bob.\n", f"Account store: {shown}\n")
    res = invoke(runner, "user", "list", "--json", env=env)
    listed = json.loads(res.stdout)
    assert [(a["name"], a["locked"], a["key_fingerprint"]) for a in listed] == [
        ("Alice", False, keys.fingerprint(user_keys["alice"])), ("bob", True, None)]
    # Nothing went to the data home's SQLite store, which no server has made.
    assert not Home(home).users_db.exists()
    res = invoke(runner, "user", "list")
    assert res.exit_code == 1 and "no account store at" in res.stderr
    assert not Home(home).users_db.exists()
    with pg_store(pg_url) as store:
        assert store.check_password("alice", "tangerine42").ok


def test_store_errors_are_one_line_without_the_password(home, runner, pg_service, pg_url):
    down = pg_url.replace(f":{pg_service.port}/", f":{free_port()}/")
    wrong = pg_url.replace("%40x", "%40nope")
    for url, expected in ((down, "store unavailable (Connection refused)"),
                          (wrong, "password authentication failed")):
        res = invoke(runner, "user", "list", "--store", url)
        assert res.exit_code == 1
        assert res.output.startswith("Error: postgresql://schat_app:***@127.0.0.1:")
        assert expected in res.output and res.output.count("\n") == 1, res.output
        assert no_secret(res.output) and res.exception.__class__ is SystemExit
    res = invoke(runner, "user", "list", "--store", f"mysql://u:{APP_PASSWORD}@db/x")
    assert res.output == ("Error: --store: not a PostgreSQL URL (expected "
                          "postgresql://USER:PASSWORD@HOST:PORT/DATABASE)\n")


BLOCK_DRIVERS = """
import sys
for name in ("psycopg", "psycopg_binary", "redis", "hiredis"):
    sys.modules[name] = None  # as if the cluster extra were not installed
from schat.cli import main
main(sys.argv[1:])
"""

WATCH_IMPORTS = """
import sys
from schat.cli import cli
try:
    cli.main(sys.argv[1:], standalone_mode=False)
finally:
    print(sorted(m for m in ("psycopg", "redis") if m in sys.modules), file=sys.stderr)
"""


def _python(code, *args, home):
    env = dict(os.environ, PYTHONPATH=str(REPO), SCHAT_HOME=str(home))
    env.pop("SCHAT_STORE", None)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_without_the_cluster_extra(home, pg_url):
    AccountStore(Home(home).users_db).close()  # a server has run with this home
    res = _python(BLOCK_DRIVERS, "user", "list", "--store", pg_url, home=home)
    assert res.returncode == 1
    assert res.stderr == ("Error: PostgreSQL stores need the cluster extra: "
                          "pip install 'schat[cluster]'\n")
    res = _python(BLOCK_DRIVERS, "user", "list", home=home)  # SQLite needs none of it
    assert (res.returncode, res.stdout) == (0, "No users.\n"), res.stderr
    res = _python(WATCH_IMPORTS, "user", "list", home=home)
    assert res.stderr.splitlines()[-1] == "[]"


@pytest.fixture
def sqlite_home(home, user_keys):
    """A data home whose SQLite store has every kind of row the copy must carry."""
    store = AccountStore(Home(home).users_db, hash_params=LIGHT)
    store.add("Alice", "tangerine42", public_key_der=keys.public_der(user_keys["alice"]))
    store.add("bob", "tangerine43")
    store.import_legacy(["carol,%s" % ("ab" * 32)])
    store.lock("carol")
    store.record_login("bob")
    box = Mailbox(store)
    ids = [box.put("Alice", "bob", 1_700_000_000_000 + i, b"sealed\x00%d" % i, b"key")
           for i in range(4)]
    box.ack("alice", ids[-1])  # the highest id handed out is no longer a row
    chat = SqliteChatStore(store)
    chat.save_room(RoomRecord("#dev", topic="ship it", topic_by="Alice", topic_time=5,
                              private=True, owner="Alice", created=1))
    for name in ("Alice", "bob"):
        chat.add_membership(name, "#dev", 2)
        chat.add_membership(name, "#lobby", 1)
    chat.mark_read("bob", "#dev", 2)
    chat.set_op("#dev", "bob", True)
    chat.set_invite("#dev", "carol", True)
    chat.put_restriction(Restriction("#dev", "mute", "carol", "Alice", "noise", None, 3))
    chat.put_restriction(Restriction.lifted("#lobby", "ban", "bob", None,
                                            int(time.time() * 1000)))
    for i in range(1, 4):
        chat.append(Said("#dev", i, 10 + i, "Alice" if i % 2 else "bob", f"line {i} \u00e9"))
    chat.close()
    set_role(store, "bob", "admin")
    store.close()
    return home


CHAT_TABLES = ["rooms", "room_members", "room_roles", "restrictions", "server_roles",
               "history"]


def _chat_contents(store: AccountStore):
    out = {}
    with store.reading() as conn:
        for table in CHAT_TABLES:
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


def _contents(store: AccountStore):
    with store.reading() as conn:
        accounts = conn.execute("SELECT id, name, password_hash, legacy, created, last_login, "
                                "locked, public_key, key_fingerprint FROM accounts ORDER BY id"
                                ).fetchall()
    return [tuple(r) for r in accounts], [
        (d.id, d.recipient, d.sender, d.time, d.envelope, d.sender_key)
        for d in Mailbox(store).dump()]


def test_migrate_copies_verifies_and_refuses_to_copy_twice(sqlite_home, runner, pg_url):
    res = invoke(runner, "store", "migrate", "--to", pg_url)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"Copied to {pg_url.split(':app')[0]}:***@{pg_url.split('@')[1]}:"
    assert [line.split() for line in lines[3:11]] == [
        ["accounts", "3"], ["mailbox", "3"], ["rooms", "1"], ["room_members", "4"],
        ["room_roles", "2"], ["restrictions", "2"], ["server_roles", "1"], ["history", "3"]]
    assert lines[-1] == "Verified: every table's rows and count match the source."
    assert no_secret(res.output)
    with AccountStore(Home(sqlite_home).users_db, hash_params=LIGHT) as source, \
            pg_store(pg_url) as target:
        assert _contents(target) == _contents(source)
        assert _chat_contents(target) == _chat_contents(source)
        # The chat reads the copy as it read the original.
        copied, original = SqliteChatStore(target), SqliteChatStore(source)
        try:
            assert copied.load_rooms() == original.load_rooms()
            assert copied.profile("BOB") == original.profile("bob")
            assert copied.profile("bob").admin and copied.profile("bob").rooms == (
                ("#lobby", 0), ("#dev", 2))
            assert copied.recent("#dev", 10) == original.recent("#dev", 10)
            assert copied.last_message_id() == 3
        finally:
            copied.close()
            original.close()
        assert target.check_password("ALICE", "tangerine42").ok
        assert target.get("carol").locked and target.get("carol").legacy
        # A new stored message never reuses an id the source handed out.
        assert Mailbox(target).put("bob", "Alice", 1, b"x", b"k") == \
            Mailbox(source).put("bob", "Alice", 1, b"x", b"k")
        target.add("dave", "tangerine44")

    again = invoke(runner, "store", "migrate", "--to", pg_url)
    assert again.exit_code == 1
    assert again.output.endswith(": already holds 4 accounts, 4 mailbox, 1 rooms, 4 room_members, "
                                 "2 room_roles, 2 restrictions, 1 server_roles, 3 history; "
                                 "nothing was copied (--replace empties it and copies again)\n")
    res = invoke(runner, "store", "migrate", "--to", pg_url, "--replace", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["tables"] == {
        "accounts": 3, "mailbox": 4, "rooms": 1, "room_members": 4, "room_roles": 2,
        "restrictions": 2, "server_roles": 1, "history": 3}
    with pg_store(pg_url) as target:
        assert target.get("dave") is None


def test_migrate_refusals(home, runner, pg_url, sqlite_home):
    res = invoke(runner, "store", "migrate", "--to", pg_url, "--home", str(home / "elsewhere"))
    assert res.exit_code == 1 and "no store to copy" in res.output
    assert not (home / "elsewhere").exists()
    res = invoke(runner, "store", "migrate", "--to", pg_url, "--store", pg_url)
    assert res.output == "Error: --to: the target is the store being copied\n"
    with psycopg.connect(pg_url, autocommit=True) as conn:  # someone else's database
        conn.execute("CREATE TABLE invoices (id int)")
    res = invoke(runner, "store", "migrate", "--to", pg_url)
    assert res.exit_code == 1 and "not a schat database" in res.output
