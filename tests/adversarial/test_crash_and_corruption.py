"""Crashes and damaged files.

A server killed with SIGKILL in the middle of a burst of sign-ups keeps every
account it confirmed, in a database that opens intact. Corrupt or truncated
files (known_servers, servers.json, key files, the account database, the host
key) are refused through the real CLI with one line naming the file, never a
traceback, and are left byte for byte as they were.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import List, Optional

import pytest

from chatkit import KEY_DIR, PASSWORDS, WAIT, install_host_key, make_store
from hostile import RawPeer
from schat.cli import cli
from schat.crypto import keys
from schat.paths import Home
from schat.protocol import messages
from schat.store.accounts import AccountStore

REPO = Path(__file__).resolve().parents[2]


class ServeProcess:
    """`python -m schat --home HOME serve --port 0 ...`, its output read by threads."""

    def __init__(self, home: Path, *args: str):
        env = dict(os.environ)  # carries SCHAT_SCRYPT_N from tests/conftest.py
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("SCHAT_HOME", None)
        self.p = subprocess.Popen(
            [sys.executable, "-m", "schat", "--home", str(home), "serve", "--port", "0", *args],
            cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env)
        self.stdout: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stderr_lines: List[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.p.stdout, self.stdout.put), daemon=True),
            threading.Thread(target=self._pump, args=(self.p.stderr, self.stderr_lines.append),
                             daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))
        sink(None)

    @property
    def stderr(self) -> str:
        return "\n".join(line for line in self.stderr_lines if line is not None)

    def _next_line(self, timeout: float = WAIT) -> Optional[str]:
        try:
            return self.stdout.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the server said nothing for {timeout} s; "
                                 f"stderr: {self.stderr}") from None

    def port(self) -> int:
        """The port from the "listening on HOST:PORT" line."""
        while True:
            line = self._next_line()
            if line is None:
                raise AssertionError(f"the server exited: {self.stderr}")
            if "listening on" in line:
                return int(line.rsplit(":", 1)[1])

    def _finish(self) -> None:
        for t in self._threads:
            t.join(WAIT)
        self.p.stdout.close()
        self.p.stderr.close()

    def refusal(self):
        """(exit code, stdout, stderr) of a server that must stop before listening."""
        out = []
        while True:
            line = self._next_line()
            if line is None:
                break
            if "listening on" in line:
                self.kill()
                raise AssertionError(f"the server started: {line}")
            out.append(line)
        code = self.p.wait(WAIT)
        self._finish()
        return code, "\n".join(out), self.stderr

    def stop(self) -> int:
        self.p.send_signal(signal.SIGTERM)
        code = self.p.wait(WAIT)
        self._finish()
        return code

    def kill(self) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(WAIT)
        if not self.p.stdout.closed:
            self._finish()


def address(port: int):
    """What RawPeer needs of a server: its host and port."""
    return types.SimpleNamespace(host="127.0.0.1", port=port)


def password_of(name: str) -> str:
    return f"{name}-pass-7"


# -- 1. SIGKILL during a burst of sign-ups -------------------------------------

SIGNUPS = 40
CONFIRMED_BEFORE_KILL = 8


def test_sigkill_during_signup_burst_keeps_every_confirmed_account(tmp_path, runner):
    home = tmp_path / "srv"
    home.mkdir()
    install_host_key(home)
    make_store(home).close()
    # One crypto thread: the sign-ups queue up, so many are in flight at the kill.
    srv = ServeProcess(home, "--crypto-workers", "1", "--max-pending-logins", "256",
                       "--max-unauthenticated-per-ip", "256", "--penalty-base", "0",
                       "--signups-per-hour", "0")
    names = [f"burst{i:02d}" for i in range(SIGNUPS)]
    peers: List[RawPeer] = []
    confirmed: List[str] = []
    unanswered: List[str] = []
    refused = []
    lock = threading.Lock()
    enough = threading.Event()
    try:
        at = address(srv.port())
        peers = [RawPeer(at) for _ in names]
        for peer in peers:
            peer.handshake()
        records = [peer.record(messages.Signup(user=name, password=password_of(name)))
                   for peer, name in zip(peers, names)]
        start = threading.Barrier(SIGNUPS)

        def sign_up(i: int) -> None:
            start.wait(WAIT)
            try:
                peers[i].send(records[i])
                reply = peers[i].reply()
            except OSError:  # closed or reset by the dying server
                with lock:
                    unanswered.append(names[i])
                return
            with lock:
                if isinstance(reply, messages.Welcome):
                    confirmed.append(names[i])
                    if len(confirmed) >= CONFIRMED_BEFORE_KILL:
                        enough.set()
                else:
                    refused.append(reply)

        threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(SIGNUPS)]
        for t in threads:
            t.start()
        assert enough.wait(WAIT), (confirmed, refused, srv.stderr)
        os.kill(srv.p.pid, signal.SIGKILL)
        assert srv.p.wait(WAIT) == -signal.SIGKILL
        for t in threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in threads)
    finally:
        for peer in peers:
            peer.close()
        srv.kill()

    assert not refused, refused
    assert len(confirmed) + len(unanswered) == SIGNUPS
    # The kill really came mid-burst: some sign-ups never got an answer.
    assert unanswered, "every sign-up was answered before the kill"

    db = Home(home).users_db
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    store = AccountStore(db)
    try:
        stored = {account.name for account in store.list()}
    finally:
        store.close()
    assert set(confirmed) <= stored
    assert stored <= set(names) | set(PASSWORDS), stored - set(names)

    res = runner.invoke(cli, ["--home", str(home), "user", "list", "--json"])
    assert res.exit_code == 0, res.output
    listed = {row["name"] for row in json.loads(res.stdout)}
    assert listed == stored

    again = ServeProcess(home)
    try:
        peer = RawPeer(address(again.port()))
        try:
            name = confirmed[0]
            welcome = peer.login(name, password_of(name))
            assert isinstance(welcome, messages.Welcome), welcome
            assert welcome.user == name
        finally:
            peer.close()
        assert again.stop() == 0
    finally:
        again.kill()
    assert "Traceback" not in again.stderr


# -- 2. Corrupt or truncated files through the real CLI -----------------------

def invoke(runner, *args, env=None):
    return runner.invoke(cli, list(args), env=env)


def assert_refused(res, path: Path, code: int = 1, says: str = "") -> None:
    """Exit ``code`` through a clean error: one "Error:" line naming ``path``."""
    # CliRunner catches an escaping exception and sets exit code 1 without a
    # traceback in the output: only SystemExit means the command ended cleanly.
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.stderr
    assert str(path) in errors[0], errors[0]
    assert says in errors[0], errors[0]


def cuts(data: bytes) -> List[bytes]:
    """Truncated copies of a PEM file: after the BEGIN line, mid-body, before END."""
    begin = data.index(b"\n") + 1
    return [data[:begin], data[:len(data) // 2], data[:len(data) - 30]]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real `schat serve --port 0` with alice, bob and carol; yields its port."""
    home = tmp_path_factory.mktemp("served")
    install_host_key(home)
    make_store(home).close()
    srv = ServeProcess(home)
    try:
        port = srv.port()
        yield port
        assert srv.stop() == 0
    finally:
        srv.kill()


def write_servers_json(home: Path, port: int) -> None:
    (home / "servers.json").write_text(json.dumps({"local": {"ip": "127.0.0.1", "port": port}}))


ALICE = {"SCHAT_PASSWORD": PASSWORDS["alice"]}


def pin_line(port: int, fp: str) -> str:
    return f"local 127.0.0.1:{port} {fp}"


@pytest.mark.parametrize("content,line", [
    (lambda port, fp: pin_line(port, fp) + "\n%%% not a pin %%%\n", 2),
    (lambda port, fp: pin_line(port, fp)[:-12], 1),      # cut inside the fingerprint
    (lambda port, fp: "local 127.0.0.1:", 1),            # cut inside the address
], ids=["garbage-line", "cut-fingerprint", "cut-address"])
def test_corrupt_known_servers(runner, home, served, host_key, content, line):
    write_servers_json(home, served)
    known = home / "known_servers"
    known.write_text(content(served, keys.fingerprint(host_key)))
    before = known.read_bytes()
    says = f"{known}, line {line}: malformed entry"
    # --accept-new: a client that ignored the damage would pin the key, rewriting the file.
    for args in (["connect", "local", "--user", "alice", "--accept-new"],
                 ["login", "local", "--user", "alice", "--accept-new"],
                 ["servers", "list"],
                 ["servers", "forget", "local"]):
        res = invoke(runner, *args, env=ALICE)
        assert_refused(res, known, says=says)
        assert known.read_bytes() == before, args
    assert sorted(p.name for p in home.iterdir()) == ["known_servers", "servers.json"]


SERVERS = json.dumps({"local": {"ip": "127.0.0.1", "port": 1},
                      "backup": {"ip": "127.0.0.2", "port": 2}}, indent=4)


@pytest.mark.parametrize("content", [SERVERS[:len(SERVERS) // 2], SERVERS[:-2], SERVERS[:1]],
                         ids=["half", "no-closing-brace", "one-byte"])
def test_truncated_servers_json(runner, home, content):
    path = home / "servers.json"
    path.write_text(content)
    before = path.read_bytes()
    for args in (["connect", "local", "--user", "alice"],
                 ["login", "local", "--user", "alice"],
                 ["servers", "list"],
                 ["servers", "add", "third", "--ip", "127.0.0.3", "--port", "3"],
                 ["servers", "remove", "backup"]):
        res = invoke(runner, *args, env=ALICE)
        assert_refused(res, path, says="invalid JSON")
        assert path.read_bytes() == before, args
    assert sorted(p.name for p in home.iterdir()) == ["servers.json"]


@pytest.mark.parametrize("cut", range(3), ids=["begin-line-only", "half", "no-end-line"])
def test_truncated_private_key(runner, home, served, cut):
    # As ssh: the server is reached (and its key checked) first, then the key file is read.
    write_servers_json(home, served)
    keydir = home / "keys"
    keydir.mkdir(mode=0o700)
    shutil.copyfile(KEY_DIR / "alice.pub.pem", keydir / "alice.pub.pem")
    path = keydir / "alice.pem"
    path.write_bytes(cuts((KEY_DIR / "alice.pem").read_bytes())[cut])
    path.chmod(0o600)
    before = path.read_bytes()
    for args in (["login", "local", "--user", "alice", "--accept-new"],
                 ["connect", "local", "--user", "alice", "--accept-new"],
                 ["login", "local", "--user", "bob", "--key", str(path), "--accept-new"]):
        res = invoke(runner, *args, env=ALICE)
        assert_refused(res, path, says="not a valid RSA private key (corrupt or truncated PEM)")
        assert path.read_bytes() == before, args
    # `keys gen` must not replace it either without --force.
    res = invoke(runner, "keys", "gen", "alice", "--no-passphrase")
    assert_refused(res, path, says="already exists")
    assert path.read_bytes() == before


def test_truncated_encrypted_private_key(runner, home, served, user_keys):
    write_servers_json(home, served)
    path = home / "keys" / "alice.pem"
    path.parent.mkdir(mode=0o700)
    data = keys.export_private_pem(user_keys["alice"], "lime-tree-41")
    path.write_bytes(data[:len(data) // 2])
    before = path.read_bytes()
    res = invoke(runner, "login", "local", "--user", "alice", "--accept-new",
                 env=dict(ALICE, SCHAT_KEY_PASSPHRASE="lime-tree-41"))
    assert_refused(res, path, says="wrong passphrase, or the private key file is corrupt")
    assert path.read_bytes() == before


@pytest.mark.parametrize("cut", range(3), ids=["begin-line-only", "half", "no-end-line"])
def test_truncated_public_key(runner, home, cut):
    keydir = home / "keys"
    keydir.mkdir(mode=0o700)
    path = keydir / "alice.pub.pem"
    path.write_bytes(cuts((KEY_DIR / "alice.pub.pem").read_bytes())[cut])
    before = path.read_bytes()
    make_store(home, users=("alice",)).close()
    says = "not a valid RSA public key (corrupt or truncated)"
    for args in (["keys", "show", "alice"],
                 ["keys", "show", str(path), "--json"],
                 ["user", "set-key", "alice", str(path)]):
        res = invoke(runner, *args)
        assert_refused(res, path, says=says)
        assert path.read_bytes() == before, args
    res = runner.invoke(cli, ["user", "add", "dave", "--password-stdin", "--key", str(path)],
                        input="dave-pass-12\n")
    assert_refused(res, path, says=says)
    assert path.read_bytes() == before


def real_database(home: Path) -> bytes:
    """The bytes of a real account database: 60 accounts, some with keys, checkpointed."""
    store = make_store(home)
    der = keys.public_der(keys.import_public_key((KEY_DIR / "bob.pub.pem").read_bytes()))
    for i in range(60):
        store.add(f"member{i:02d}", f"member-pass-{i}", public_key_der=der if i % 2 else None)
    store.close()
    data = Home(home).users_db.read_bytes()
    for leftover in Home(home).server_dir.iterdir():
        leftover.unlink()
    return data


DB_DAMAGE = {
    "random-bytes": lambda data: random.Random(5).randbytes(len(data)),
    "header-only": lambda data: data[:100],
    "first-page": lambda data: data[:4096],
    "half": lambda data: data[:len(data) // 2],
    "last-page-missing": lambda data: data[:len(data) - 4096],
}


@pytest.fixture(scope="module")
def real_db(tmp_path_factory) -> bytes:
    return real_database(tmp_path_factory.mktemp("realdb"))


@pytest.mark.parametrize("damage", sorted(DB_DAMAGE))
def test_damaged_account_database(runner, home, real_db, damage):
    db = Home(home).users_db
    db.parent.mkdir(mode=0o700)
    install_host_key(home)
    db.write_bytes(DB_DAMAGE[damage](real_db))
    db.chmod(0o600)
    before = db.read_bytes()
    says = "not a schat account database, or it is corrupt"
    for args in (["user", "list"], ["user", "list", "--json"],
                 ["user", "add", "erin", "--password-stdin"]):
        res = runner.invoke(cli, args, input="erin-pass-12\n")
        assert_refused(res, db, says=says)
        assert db.read_bytes() == before, args
    code, out, err = ServeProcess(home).refusal()
    assert code == 1, err
    assert "Traceback" not in err + out
    assert err.splitlines()[-1] == f"Error: {db}: {says}", err
    assert db.read_bytes() == before


@pytest.mark.parametrize("content", [
    cuts((KEY_DIR / "host.pem").read_bytes())[1],
    cuts((KEY_DIR / "host.pem").read_bytes())[2],
    b"",
    random.Random(9).randbytes(2000),
], ids=["half", "no-end-line", "empty", "random-bytes"])
def test_damaged_host_key(home, content):
    path = Home(home).host_key
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    path.chmod(0o600)
    code, out, err = ServeProcess(home).refusal()
    assert code == 1, err
    assert "Traceback" not in err + out
    last = err.splitlines()[-1]
    assert last.startswith(f"Error: {path}: ") and "RSA private key" in last, err
    assert path.read_bytes() == content
    assert not Home(home).users_db.exists()  # stopped before touching anything else
