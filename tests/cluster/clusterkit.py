"""Cluster nodes for the tests: real servers on one PostgreSQL database and one Redis."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List

import pytest

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
        for node in self.nodes:
            try:
                node.thread.stop()
            except RuntimeError:
                pass


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


__all__ = ["Cluster", "cluster", "login", "settle", "USERS", "WAIT", "answer", "until"]
