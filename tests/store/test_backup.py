"""`schat store backup`: an online backup taken while the server signs members up."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from typing import List

from chatkit import PASSWORDS, WAIT, install_host_key
from schat.cli import cli
from schat.client.session import ClientSession
from schat.crypto import keys
from schat.paths import Home
from schat.store.accounts import AccountStore
from schat.store.known_servers import KnownServers

SIGNUPS = 40
BACKUP_AFTER = 10


def test_backup_during_a_burst_of_signups_holds_every_confirmed_account(
        server_factory, chat_home, runner, tmp_path):
    install_host_key(chat_home)  # the key the server below runs with
    # One crypto thread: the sign-ups queue, so many are still running at the backup.
    srv = server_factory(crypto_workers=1, max_pending_logins=256,
                         max_unauthenticated_per_ip=256, penalty_base=0, signups_per_hour=0)
    names = [f"member{i:02d}" for i in range(SIGNUPS)]
    confirmed: List[str] = []
    failures: List[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    start = threading.Barrier(SIGNUPS)

    def sign_up(name: str) -> None:
        session = ClientSession("127.0.0.1", srv.port, "burst", accept_new=True, timeout=WAIT,
                                known_servers=KnownServers(tmp_path / f"pins-{name}"))
        try:
            session.connect()
            start.wait(WAIT)
            session.signup(name, f"{name}-pass-7")
        except Exception as err:  # noqa: BLE001 - reported below
            with lock:
                failures.append(f"{name}: {err}")
            return
        finally:
            session.close()
        with lock:
            confirmed.append(name)
            if len(confirmed) >= BACKUP_AFTER:
                enough.set()

    threads = [threading.Thread(target=sign_up, args=(name,)) for name in names]
    for t in threads:
        t.start()
    try:
        assert enough.wait(WAIT), failures
        with lock:
            before = set(confirmed)
        backup = tmp_path / "backup"
        res = runner.invoke(cli, ["--home", str(chat_home), "store", "backup", str(backup)])
        with lock:
            after_backup = set(confirmed)
    finally:
        for t in threads:
            t.join(WAIT)
    assert not failures, failures
    assert res.exit_code == 0, res.output
    assert len(confirmed) == SIGNUPS
    # The backup really ran in the middle of the burst.
    assert len(before) < SIGNUPS and len(after_backup) < SIGNUPS, (len(before), len(after_backup))

    db = Home(backup).users_db
    assert res.stdout.splitlines()[0] == f"Backed up {chat_home / 'server'} to {backup / 'server'}:"
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    with AccountStore(db) as store:
        stored = {account.name for account in store.list()}
        # Every account confirmed before the backup began is in it, and works.
        assert before <= stored
        assert stored <= set(names) | set(PASSWORDS)
        name = sorted(before)[0]
        assert store.check_password(name, f"{name}-pass-7").ok
    assert f"  users.db: {len(stored)} account(s), 0 stored message(s), integrity ok" \
        in res.stdout.splitlines()
    # The backup is itself a data home: the CLI reads it as it is, and a server
    # started from it has the same host key (members see no key change).
    listing = runner.invoke(cli, ["--home", str(backup), "user", "list", "--json"])
    assert {row["name"] for row in json.loads(listing.stdout)} == stored
    assert Home(backup).host_key.read_bytes() == Home(chat_home).host_key.read_bytes()
    restored_key = keys.import_private_pem(Home(backup).host_key.read_bytes(), None)
    assert keys.fingerprint(restored_key) == srv.fingerprint
    # Private: 0700 directories, 0600 files, no SQLite side files.
    for path in (backup, backup / "server"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    assert sorted(p.name for p in (backup / "server").iterdir()) == ["host_key.pem", "users.db"]
    for path in (backup / "server").iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_backup_refusals(runner, home, tmp_path):
    target = tmp_path / "backup"
    res = runner.invoke(cli, ["store", "backup", str(target)])
    assert (res.exit_code, res.stderr) == (
        1, f"Error: no account store at {home / 'server' / 'users.db'}: nothing to back up "
           "(check --home and $SCHAT_HOME)\n")
    assert not target.exists()
    AccountStore(home / "server" / "users.db").close()
    target.mkdir()
    (target / "something").write_text("mine")
    res = runner.invoke(cli, ["store", "backup", str(target)])
    assert (res.exit_code, res.stderr) == (
        1, f"Error: {target}: already exists; a backup goes into a new (or empty) directory\n")
    assert sorted(p.name for p in target.iterdir()) == ["something"]
    # An empty directory is fine, and nothing is left beside it.
    (target / "something").unlink()
    res = runner.invoke(cli, ["store", "backup", str(target)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup", "home", "work"]


def test_backup_of_a_corrupt_store_is_refused(runner, home, tmp_path):
    db = home / "server" / "users.db"
    db.parent.mkdir(mode=0o700)
    db.write_bytes(b"SQLite format 3\x00" + b"\x07" * 5000)
    res = runner.invoke(cli, ["store", "backup", str(tmp_path / "backup")])
    assert (res.exit_code, res.stderr) == (
        1, f"Error: {db}: not a schat database, or it is corrupt\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "work"]
