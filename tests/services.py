"""Real PostgreSQL and Redis for the tests, one of each per test run.

Each engine is started on first use (a session fixture) on a free loopback
port, in its own temporary directory, and stopped by its PID when the run ends.
No mocks: cluster tests talk to the real servers through the real client
libraries. An engine that cannot start FAILS the tests that need it (they never
skip): a machine that lacks one gets it from ``.ci/run``.

PostgreSQL refuses to run as root, so under root ``initdb`` and ``postgres``
run as an unprivileged account (``postgres`` when the Debian package made one,
else ``nobody``) that owns the temporary directory. The throwaway cluster runs
with ``fsync``, ``synchronous_commit`` and ``full_page_writes`` off: they only
matter when the machine crashes, and this data dies with the run anyway, while
on a loaded machine each fsync costs milliseconds per commit. Every test gets a
fresh database (``pg_url``), owned by an ordinary role with a password, as a
deployment would give schat.

Both servers get the parent-death signal, so a test run killed outright does
not leave them running on the shared machine.
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, List, Optional

import pytest

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
APP_ROLE = "schat_app"
APP_PASSWORD = "app-Pw%3@x:y/z"  # URL-special characters on purpose: the URL must quote them
ADMIN_PASSWORD = "admin-pw-for-tests"
REDIS_PASSWORD = "redis-pw-for-tests"


class ServiceError(Exception):
    """An engine could not be started or stopped; the message carries its log."""


def quote(text: str) -> str:
    from urllib.parse import quote as q

    return q(text, safe="")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortHold:
    """A loopback port kept bound (SO_REUSEADDR, never listening) while its own server
    is not on it, so that no other process takes it meanwhile: a server that sets
    SO_REUSEADDR itself (PostgreSQL, Redis, schat) can still listen on it, while a
    plain bind to it fails and no bind to port 0 is given it.

    A port picked free and bound later, or left free between a server's stop and its
    start again, can be taken by another test run on the machine in between."""

    def __init__(self, port: int = 0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def _hold(port: int) -> Optional[PortHold]:
    """Hold ``port`` just after its server stopped (None if another process was quicker:
    the start on it then fails and says so)."""
    try:
        return PortHold(port)
    except OSError:
        return None


def _run_as() -> Optional[pwd.struct_passwd]:
    """The account the engines run as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def _die_with_parent() -> None:
    """In the child, after the user switch (which would clear it): die with the test run."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _as_account(account) -> dict:
    """Popen arguments that switch to ``account`` in the child (so the PID is the engine's)."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _engine_env(home: Path) -> dict:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
            "HOME": str(home)}


class Process:
    """One engine process: its output collected by a thread, readiness awaited on a log line."""

    def __init__(self, name: str, argv: List[str], ready_text: str, account, cwd: Path):
        self.name = name
        self.lines: collections.deque = collections.deque(maxlen=200)
        self._ready = threading.Event()
        self._ready_text = ready_text
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd, env=_engine_env(cwd),
                                     preexec_fn=_die_with_parent, **_as_account(account))
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._drain, name=f"{name}-log", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(line)
            if self._ready_text in line:
                self._ready.set()
        self._ready.set()  # end of output: wake the waiter, which sees the exit

    def wait_ready(self) -> None:
        if not self._ready.wait(START_TIMEOUT) or self.proc.poll() is not None:
            self.kill()
            raise ServiceError(f"{self.name} did not start:\n" + self.log())

    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int) -> None:
        """Signal the PID and wait; SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)


def _private_dir(prefix: str, account) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    return path


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _start_on_free_port(start: Callable[[int], Process], name: str) -> Process:
    """Start on a fresh free port; another run may take the port between the probe and
    the bind, so a bind failure is retried on a new one."""
    for attempt in range(3):
        proc = start(free_port())
        try:
            proc.wait_ready()
            return proc
        except ServiceError as err:
            if "in use" not in str(err) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def postgres_bin() -> Path:
    """The directory holding initdb and postgres."""
    explicit = os.environ.get("SCHAT_TEST_PG_BIN")
    if explicit:
        return Path(explicit)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("postgres") or shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ServiceError("PostgreSQL is not installed (no initdb/postgres found); "
                       "`apt-get install -y postgresql` (.ci/run does it)")


class PostgresService:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (TCP only, passwords required)."""

    def __init__(self):
        self.bin = postgres_bin()
        self.account = _run_as()
        self.root = _private_dir("schat-pg-", self.account)
        self.data = self.root / "data"
        self.port = 0
        self.proc: Optional[Process] = None
        self._names = itertools.count(1)
        self._held: Optional[PortHold] = None  # the port while the server is stopped
        # One superuser connection kept for creating and dropping the tests' databases
        # (a new one each time costs a password exchange); closed by stop().
        self._kept = None
        self._initdb()

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(ADMIN_PASSWORD + "\n")
        if self.account is not None:
            os.chown(pwfile, self.account.pw_uid, self.account.pw_gid)
        argv = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "admin",
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "--no-sync",
                "--locale=C.UTF-8", "--encoding=UTF8"]
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=self.root,
                                  env=_engine_env(self.root), timeout=START_TIMEOUT * 2,
                                  **_as_account(self.account))
        finally:
            pwfile.unlink()
        if done.returncode != 0:
            raise ServiceError(f"initdb failed (exit {done.returncode}):\n"
                               + done.stdout.decode("utf-8", "replace"))

    def _launch(self, port: int) -> Process:
        self.port = port
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=150", "-c", "shared_buffers=16MB",
                "-c", "lc_messages=C"]
        return Process("postgres", argv, "database system is ready to accept connections",
                       self.account, self.root)

    def start(self) -> None:
        """Start (again, on the same port when it ran before: held meanwhile)."""
        if self.port:
            self.proc = self._launch(self.port)
            self.proc.wait_ready()
            self._release()
        else:
            self.proc = _start_on_free_port(self._launch, "postgres")
        with self.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                  (APP_ROLE,)).fetchone()
            if not exists:
                conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'")

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster's PID): sessions are ended."""
        self._close_kept()
        if self.proc is not None:
            self.proc.stop(signal.SIGINT)
            self.proc = None
            self._held = _hold(self.port)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.proc.poll() is None

    def admin(self, db: str = "postgres"):
        """A superuser connection (autocommit)."""
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="admin",
                               password=ADMIN_PASSWORD, dbname=db, autocommit=True,
                               connect_timeout=10)

    def url(self, db: str, user: str = APP_ROLE, password: str = APP_PASSWORD) -> str:
        return f"postgresql://{quote(user)}:{quote(password)}@127.0.0.1:{self.port}/{db}"

    def _admin_execute(self, statement: str) -> None:
        """Run ``statement`` on the kept superuser connection (made on first use, and
        again after a restart or a broken connection)."""
        conn = self._kept
        if conn is None or conn.closed or conn.broken:
            self._close_kept()
            conn = self._kept = self.admin()
        conn.execute(statement)

    def _close_kept(self) -> None:
        conn, self._kept = self._kept, None
        if conn is not None:
            conn.close()

    def create_database(self) -> str:
        """A new empty database owned by the application role; its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self._admin_execute(f"CREATE DATABASE {name} OWNER {APP_ROLE} TEMPLATE template0 "
                            "STRATEGY FILE_COPY")
        return name

    def drop_database(self, name: str) -> None:
        if self.running:
            self._admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        self.stop()
        self._release()
        shutil.rmtree(self.root, ignore_errors=True)


# Databases of the run's Redis: more than the run has tests that use it.
REDIS_DATABASES = 256


class RedisService:
    """A throwaway Redis on 127.0.0.1 with a password and no persistence."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServiceError("Redis is not installed (no redis-server); "
                               "`apt-get install -y redis-server` (.ci/run does it)")
        self.account = _run_as()
        self.root = _private_dir("schat-redis-", self.account)
        self.port = 0
        self.proc: Optional[Process] = None
        self._held: Optional[PortHold] = None  # the port while the server is stopped

    def _launch(self, port: int) -> Process:
        self.port = port
        argv = [self.binary, "--port", str(port), "--bind", "127.0.0.1",
                "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--daemonize", "no", "--logfile", "",
                "--databases", str(REDIS_DATABASES)]
        return Process("redis-server", argv, "Ready to accept connections",
                       self.account, self.root)

    def start(self) -> None:
        """Start (again, on the same port when it ran before: held meanwhile)."""
        if self.port:
            self.proc = self._launch(self.port)
            self.proc.wait_ready()
            self._release()
        else:
            self.proc = _start_on_free_port(self._launch, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM)
            self.proc = None
            self._held = _hold(self.port)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.proc.poll() is None

    def url(self, db: int = 0) -> str:
        return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis.from_url(self.url(db), socket_timeout=10)

    def close(self) -> None:
        self.stop()
        self._release()
        shutil.rmtree(self.root, ignore_errors=True)


def _started(service_class):
    try:
        service = service_class()
    except ServiceError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        service.start()
    except ServiceError as err:
        service.close()
        pytest.fail(str(err), pytrace=False)
    return service


@pytest.fixture(scope="session")
def pg_service():
    """The run's PostgreSQL (started on first use)."""
    service = _started(PostgresService)
    yield service
    service.close()


@pytest.fixture
def pg_url(pg_service) -> str:
    """A URL for a fresh, empty database of this test's own (dropped afterwards)."""
    if not pg_service.running:  # a test that stopped it and failed before restarting
        pg_service.start()
    name = pg_service.create_database()
    yield pg_service.url(name)
    if not pg_service.running:
        pg_service.start()
    pg_service.drop_database(name)


@pytest.fixture(scope="session")
def redis_service():
    """The run's Redis (started on first use)."""
    service = _started(RedisService)
    yield service
    service.close()


# Database numbers handed out to tests in turn: a node's channels are named after the
# number in its bus URL (pub/sub channels are shared by every database number), so a
# test's nodes never hear another test's.
_REDIS_DBS = itertools.cycle(range(REDIS_DATABASES))


@pytest.fixture
def redis_url(redis_service) -> str:
    """A URL for the run's Redis, emptied for this test, with a database number (and so
    bus channels) of its own in the run."""
    if not redis_service.running:
        redis_service.start()
    with redis_service.client() as client:
        client.flushall()
    return redis_service.url(next(_REDIS_DBS))


class Engines:
    """Opens engines on one test's store, SQLite or PostgreSQL; all closed at the end."""

    def __init__(self, kind: str, location: str):
        self.kind = kind
        #: The SQLite file's path, or the PostgreSQL URL.
        self.location = location
        self._opened: list = []

    def new(self, **kwargs):
        """A new engine (its own connections) on the same store."""
        if self.kind == "sqlite":
            from schat.store.database import SqliteFile

            engine = SqliteFile(self.location, **kwargs)
        else:
            from schat.store.postgres import PostgresEngine

            engine = PostgresEngine(self.location, **kwargs)
        self._opened.append(engine)
        return engine

    def close(self) -> None:
        for engine in self._opened:
            engine.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def engines(request, tmp_path):
    """The same test on both engines: ``engines.new()`` opens this test's store."""
    if request.param == "sqlite":
        location = str(tmp_path / "server" / "users.db")
    else:
        location = request.getfixturevalue("pg_url")
    opened = Engines(request.param, location)
    yield opened
    opened.close()


__all__ = ["pg_service", "pg_url", "redis_service", "redis_url", "engines", "Engines",
           "PostgresService", "RedisService", "PortHold", "free_port", "APP_ROLE", "APP_PASSWORD"]
