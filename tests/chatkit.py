"""Shared helpers for the server, client and end-to-end tests: a real server on
127.0.0.1 port 0 in a background thread, and clients that collect events."""

from __future__ import annotations

import atexit
import queue
import shutil
import tempfile
from pathlib import Path

import pytest

from schat.client.session import ClientSession, Disconnected
from schat.crypto.keys import fingerprint
from schat.crypto.passwords import current_params
from schat.paths import Home
from schat.protocol import messages
from schat.server.app import ServerThread
from schat.server.limits import ServerSettings
from schat.store.accounts import AccountStore
from schat.store.files import make_private_dirs
from schat.store.known_servers import KnownServers

KEY_DIR = Path(__file__).parent / "data" / "keys"
PASSWORDS = {"alice": "alice-pass-1", "bob": "bob-pass-22", "carol": "carol-pass-333"}
WAIT = 10.0


def install_host_key(home: Path) -> None:
    """Put the pre-generated host key where `schat serve` looks for it."""
    target = Home(home).host_key
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(KEY_DIR / "host.pem", target)
    target.chmod(0o600)


class RunningServer:
    """A ServerThread plus what tests need to talk to it."""

    def __init__(self, thread: ServerThread, store: AccountStore, home: Path):
        self.thread = thread
        self.store = store
        self.home = home
        self.host, self.port = thread.address
        self.server = thread.server
        self.fingerprint = thread.server.fingerprint

    def session(self, name: str = "test", accept_new: bool = True, known=None,
                **kwargs) -> ClientSession:
        """A connected (handshake done) but not logged-in session."""
        if known is None:
            known = KnownServers(self.home / "client_known_servers")
        s = ClientSession(self.host, self.port, name, known_servers=known,
                          accept_new=accept_new, timeout=WAIT, **kwargs)
        s.connect()
        return s

    def login(self, user: str, password: str = None) -> "Client":
        """A logged-in client whose events go to a queue."""
        s = self.session()
        s.login_password(user, password or PASSWORDS[user])
        return Client(s)


class Client:
    """A session with its receiver thread started and events collected in a queue."""

    def __init__(self, session: ClientSession):
        self.session = session
        self.events: "queue.Queue" = queue.Queue()
        session.start(self.events.put)

    def next(self, kind=None, timeout: float = WAIT):
        """The next event (of type ``kind`` when given; others are skipped)."""
        while True:
            ev = self.events.get(timeout=timeout)
            if kind is None or isinstance(ev, kind):
                return ev
            if isinstance(ev, Disconnected) and kind is not Disconnected:
                raise AssertionError(f"disconnected while waiting for {kind}: {ev.reason}")

    def close(self):
        self.session.close()


def until(client: "Client", kind, pred=lambda m: True, timeout: float = WAIT):
    """The next event of ``kind`` for which ``pred`` holds (others are skipped)."""
    while True:
        ev = client.next(kind, timeout)
        if pred(ev):
            return ev


def answer(client: "Client", line: str, room=None):
    """Send a command; return the Error answering it, or None when it was acknowledged."""
    cid = client.session.command(line, room=room)
    while True:
        ev = client.next(None)
        if isinstance(ev, (messages.Ack, messages.Error)) and ev.cid == cid:
            return ev if isinstance(ev, messages.Error) else None
        if isinstance(ev, Disconnected):
            raise AssertionError(f"disconnected: {ev.reason}")


def drained(client: "Client"):
    out = []
    while True:
        try:
            out.append(client.events.get_nowait())
        except queue.Empty:
            return out


USERS = ("alice", "bob", "carol")
# Scrypt parameters -> a closed users.db with the current schema and alice, bob, carol.
_templates: dict = {}


def _template_store() -> Path:
    """A users.db as a test's first server (or make_store) leaves it, made once per run
    for the password hashing now in force: a test's store is a copy of it rather than a
    file migrated and filled anew (three scrypt hashes and four transactions)."""
    params = current_params()
    path = _templates.get(params)
    if path is None:
        root = Path(tempfile.mkdtemp(prefix="schat-template-"))
        atexit.register(shutil.rmtree, root, True)
        path = root / "users.db"
        store = AccountStore(path)
        for user in USERS:
            store.add(user, PASSWORDS[user])
        store.close()
        # Closed: the write-ahead log is checkpointed into the file and removed.
        assert sorted(p.name for p in root.iterdir()) == ["users.db"]
        _templates[params] = path
    return path


def copy_template_store(home: Path) -> bool:
    """Put a copy of the template store (alice, bob, carol) at the home's users.db, as
    AccountStore would have made it (0700 directories, a 0600 file); False when a file is
    there already (the caller then opens it and adds the accounts itself)."""
    target = Home(home).users_db
    if target.exists() or target.is_symlink():
        return False
    template = _template_store()
    make_private_dirs(target.parent)
    shutil.copyfile(template, target)
    target.chmod(0o600)
    return True


def make_store(home: Path, users=USERS) -> AccountStore:
    if tuple(users) == USERS and copy_template_store(home):
        return AccountStore(Home(home).users_db)
    store = AccountStore(Home(home).users_db)
    for user in users:
        store.add(user, PASSWORDS[user])
    return store


@pytest.fixture
def chat_home(tmp_path) -> Path:
    home = tmp_path / "srvhome"
    home.mkdir()
    return home


def factory(chat_home: Path, host_key, store_url: str = None):
    """(start, stop_all): ``start(**settings)`` runs a server on the home's SQLite store,
    or on the PostgreSQL database at ``store_url``; the first one creates alice, bob, carol."""
    started = []

    def open_store() -> AccountStore:
        if store_url is None:
            return AccountStore(Home(chat_home).users_db)
        from schat.store.postgres import PostgresEngine
        return AccountStore(PostgresEngine(store_url), owns_engine=True)

    def start(**settings) -> RunningServer:
        if not started and store_url is None and copy_template_store(chat_home):
            store = open_store()
        else:
            store = open_store()
            if not started:
                for user in USERS:
                    store.add(user, PASSWORDS[user])
        settings.setdefault("port", 0)
        settings.setdefault("server_name", "testsrv")
        thread = ServerThread(ServerSettings(**settings), host_key, store)
        thread.start()
        started.append(thread)
        return RunningServer(thread, store, chat_home)

    def stop_all():
        for thread in started:
            thread.stop()

    return start, stop_all


@pytest.fixture
def server_factory(chat_home, host_key):
    """Start servers with custom settings; all are stopped at the end of the test."""
    start, stop_all = factory(chat_home, host_key)
    yield start
    stop_all()


@pytest.fixture
def chat_server(server_factory) -> RunningServer:
    return server_factory(motd="welcome to the test server")


__all__ = ["factory", "until", "answer", "drained", "chat_home", "server_factory", "chat_server", "RunningServer", "Client",
           "PASSWORDS", "install_host_key", "make_store", "fingerprint", "messages", "WAIT"]
