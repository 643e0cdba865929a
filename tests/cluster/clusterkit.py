"""Cluster nodes for the tests: real servers on one PostgreSQL database and one Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from chatkit import PASSWORDS, WAIT, Client, RunningServer, answer, until
from schat.cluster.settings import ClusterSettings
from schat.crypto.passwords import ScryptParams
from schat.server.app import ServerThread
from schat.server.limits import ServerSettings
from schat.store.accounts import AccountStore
from schat.store.postgres import PostgresEngine

LIGHT = ScryptParams(log2_n=10)
USERS = dict(PASSWORDS, dave="dave-pass-4444", erin="erin-pass-5555")


class Cluster:
    """Starts nodes on one store and bus; every node is stopped at the end."""

    def __init__(self, pg_url: str, redis_url: str, host_key, home: Path, lease: float = 10.0):
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.host_key = host_key
        self.home = home
        self.lease = lease
        self.nodes: List[RunningServer] = []
        with self.store() as store:
            for name, password in USERS.items():
                store.add(name, password)

    def store(self) -> AccountStore:
        return AccountStore(PostgresEngine(self.pg_url), hash_params=LIGHT, owns_engine=True)

    def start(self, **settings) -> RunningServer:
        settings.setdefault("port", 0)
        settings.setdefault("server_name", "cluster")
        settings.setdefault("rate_limit", 0)
        settings.setdefault("penalty_base", 0)
        settings.setdefault("durable_acks", True)
        lease = settings.pop("lease", self.lease)
        thread = ServerThread(ServerSettings(**settings), self.host_key, self.store(),
                              cluster=ClusterSettings(self.redis_url, lease=lease))
        thread.start()
        node = RunningServer(thread, thread.server.store, self.home)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        """Stop every node; a node that does not stop in time fails the test (after the
        others are stopped): a server that cannot stop is a fault, and one left running
        would keep talking on the bus."""
        stuck = []
        for node in self.nodes:
            try:
                node.thread.stop()
            except RuntimeError as err:
                stuck.append(f"{node.port}: {err}")
        assert not stuck, f"nodes that did not stop: {stuck}"


def settle(node: RunningServer, check, timeout: float = WAIT):
    """Wait until ``check(chat)`` holds on ``node``'s loop (what another node did reaches
    this one over the bus a moment later); its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = node.thread.call(check, node.server.hub.chat)
        if result or time.monotonic() > deadline:
            assert result, f"{check} did not come true on the node within {timeout} s"
            return result
        time.sleep(0.01)


def login(node: RunningServer, user: str, features=("rooms",)) -> Client:
    s = node.session(features=features)
    s.login_password(user, USERS[user])
    return Client(s)


@pytest.fixture
def cluster(pg_url, redis_url, host_key, tmp_path):
    made = Cluster(pg_url, redis_url, host_key, tmp_path)
    yield made
    made.stop()


__all__ = ["Cluster", "ProcNode", "cluster", "login", "proc_nodes", "settle", "USERS", "WAIT", "answer", "until"]


KEY_FILE = Path(__file__).resolve().parents[1] / "data" / "keys" / "host.pem"


class ProcNode:
    """`schat serve --bus ... --store ...` as a process of its own, in a data home of its
    own (another machine, as far as schat can tell), with the cluster's host key file."""

    def __init__(self, home: Path, key_file: Path, pg_url: str, redis_url: str,
                 *args: str, lease: float = 2.0):
        from test_cli_processes import Proc

        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.proc = Proc(["serve", "--port", "0", "--host-key", str(key_file),
                          "--presence-lease", str(lease), "--rate-limit", "0",
                          "--penalty-base", "0", *args], home,
                         env={"SCHAT_STORE": pg_url, "SCHAT_BUS": redis_url},
                         stdin=subprocess.DEVNULL)
        line = self.proc.line("listening on", timeout=60)
        self.port = int(line.rsplit(":", 1)[1])
        self.node = self.proc.line("cluster node", timeout=WAIT).split()[2]
        self.host = "127.0.0.1"

    def session(self, **kwargs):
        from schat.client.session import ClientSession
        from schat.store.known_servers import KnownServers

        s = ClientSession(self.host, self.port, "cluster",
                          known_servers=KnownServers(self.home / "client_known"),
                          accept_new=True, timeout=WAIT, **kwargs)
        s.connect()
        return s

    def kill(self) -> None:
        self.proc.p.send_signal(signal.SIGKILL)
        self.proc.p.wait(WAIT)

    def stop(self) -> int:
        if self.proc.p.poll() is None:
            self.proc.p.send_signal(signal.SIGTERM)
        return self.proc.finish(timeout=30)


@pytest.fixture
def proc_nodes(pg_url, redis_url, tmp_path):
    """Start process nodes: ``start(*args, lease=2)``; all are stopped at the end."""
    import shutil

    key = tmp_path / "cluster-host-key.pem"
    shutil.copyfile(KEY_FILE, key)
    key.chmod(0o600)
    with AccountStore(PostgresEngine(pg_url), hash_params=LIGHT, owns_engine=True) as store:
        for name, password in USERS.items():
            store.add(name, password)
    made: List[ProcNode] = []

    def start(*args, lease: float = 2.0) -> ProcNode:
        node = ProcNode(tmp_path / f"node{len(made)}", key, pg_url, redis_url, *args,
                        lease=lease)
        made.append(node)
        return node

    yield start
    for node in made:
        try:
            node.stop()
        except Exception:  # noqa: BLE001 - a killed one
            node.proc.kill()
