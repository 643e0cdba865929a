"""Several servers on one PostgreSQL store: accounts are one set, sign-up races have one
winner, and `schat serve --store URL` runs as a process."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chatkit import PASSWORDS, WAIT, RunningServer, install_host_key
from schat.client.session import LoginRefused
from schat.protocol import dm_messages as dmm
from schat.protocol import messages
from schat.crypto.passwords import ScryptParams
from schat.server.app import ServerThread
from schat.server.limits import ServerSettings
from schat.store.accounts import AccountStore
from schat.store.postgres import PostgresEngine
from services import APP_PASSWORD, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from test_cli_processes import Proc  # noqa: E402

LIGHT = ScryptParams(log2_n=10)


@pytest.fixture
def nodes(pg_url, host_key, tmp_path):
    """Two servers, each with its own connections to the same database."""
    started = []
    for i in range(2):
        store = AccountStore(PostgresEngine(pg_url), hash_params=LIGHT, owns_engine=True)
        # Races, not limits: sign-ups per address are not counted here.
        settings = ServerSettings(port=0, server_name="cluster", penalty_base=0,
                                  rate_limit=0, signups_per_hour=0)
        thread = ServerThread(settings, host_key, store)
        thread.start()
        started.append(RunningServer(thread, store, tmp_path / f"node{i}"))
    yield started
    for node in started:
        node.thread.stop()


def test_an_account_made_on_one_node_logs_in_on_the_other(nodes):
    a, b = nodes
    s = a.session()
    s.signup("newcomer", "newcomer-pass-1")
    s.close()
    s = b.session()
    assert s.login_password("NEWCOMER", "newcomer-pass-1").user == "newcomer"
    s.close()
    a.store.lock("newcomer")  # an operator acting on either node's store
    s = b.session()
    with pytest.raises(LoginRefused) as err:
        s.login_password("newcomer", "newcomer-pass-1")
    assert err.value.code == "locked"
    s.close()


def test_store_outage_refuses_logins_while_members_chat_on(nodes, pg_service, caplog):
    a = nodes[0]
    for name in ("alice", "bob", "carol"):
        a.store.add(name, PASSWORDS[name])
    alice, bob = a.login("alice"), a.login("bob")
    assert alice.next(messages.Join).user == "bob"
    pg_service.stop()
    try:
        s = a.session()
        with pytest.raises(LoginRefused) as err:
            s.login_password("carol", PASSWORDS["carol"])
        assert err.value.code == "busy"
        assert "store unavailable: the server cannot reach its account store" in str(err.value)
        s.close()
        bob.session.say("the store is down, we are not")
        assert alice.next(messages.ChatMessage).text == "the store is down, we are not"
        # A request that needs the store fails on its own; the member stays.
        alice.session.send(dmm.GetKey(cid="k1", user="bob"))
        refused = alice.next(messages.Error)
        assert (refused.code, refused.cid) == ("busy", "k1")
        assert refused.text.startswith("store unavailable: ")
        alice.session.say("still here")
        assert bob.next(messages.ChatMessage).text == "still here"
    finally:
        pg_service.start()
    carol = a.login("carol")  # the node's pool reconnects by itself
    assert carol.session.welcome.user == "carol"
    for client in (alice, bob, carol):
        client.close()
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("schat.server")]
    assert any("store unavailable (" in w for w in warnings), warnings
    assert not any(APP_PASSWORD in w for w in warnings)
    assert not any(r.exc_info for r in caplog.records)


def test_nodes_racing_on_one_signup_name_make_one_account(nodes):
    per_node = 3
    for round_ in range(4):
        name = f"racer{round_}"
        sessions = [node.session() for node in nodes for _ in range(per_node)]
        start = threading.Barrier(len(sessions), timeout=WAIT)
        outcomes = [None] * len(sessions)

        def sign_up(i):
            start.wait()
            try:
                outcomes[i] = sessions[i].signup(name, f"{name}-pass-{i}").user
            except LoginRefused as err:
                outcomes[i] = err

        threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(len(sessions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        for s in sessions:
            s.close()
        winners = [o for o in outcomes if o == name]
        refused = [o for o in outcomes if isinstance(o, LoginRefused)]
        assert len(winners) == 1 and len(refused) == len(sessions) - 1, outcomes
        assert all(r.code == "policy" and "already exists" in str(r) for r in refused)
    assert sorted(a.name for a in nodes[0].store.list()) == [f"racer{i}" for i in range(4)]


def test_serve_process_on_postgres(tmp_path, pg_url, pg_service, runner):
    home = tmp_path / "srv"
    home.mkdir()
    install_host_key(home)
    with AccountStore(PostgresEngine(pg_url), hash_params=LIGHT, owns_engine=True) as store:
        store.add("alice", PASSWORDS["alice"])
    srv = Proc(["serve", "--port", "0"], home, env={"SCHAT_STORE": pg_url},
               stdin=subprocess.DEVNULL)
    try:
        port = int(srv.line("listening on").rsplit(":", 1)[1])
        node = _Address(port, tmp_path)
        s = node.session()
        assert s.login_password("alice", PASSWORDS["alice"]).user == "alice"
        s.close()
        s = node.session()
        s.signup("bob", PASSWORDS["bob"])
        s.close()
        from schat.cli import cli
        res = runner.invoke(cli, ["user", "list", "--store", pg_url])
        assert res.exit_code == 0 and "bob" in res.output and "alice" in res.output
        srv.p.send_signal(signal.SIGTERM)
        assert srv.finish() == 0
    finally:
        srv.kill()
    assert "Traceback" not in srv.stderr and APP_PASSWORD not in srv.stderr
    assert not (home / "server" / "users.db").exists()

    down = pg_url.replace(f":{pg_service.port}/", f":{free_port()}/")
    srv = Proc(["serve", "--port", "0", "--store", down], home, stdin=subprocess.DEVNULL)
    assert srv.finish() == 1
    assert srv.stderr.startswith("Error: postgresql://schat_app:***@")
    assert "store unavailable (Connection refused)" in srv.stderr
    assert "Traceback" not in srv.stderr and APP_PASSWORD not in srv.stderr


class _Address:
    """Sessions to a server process (the same helpers as an in-process server's)."""

    def __init__(self, port, tmp_path):
        self.host, self.port, self.home = "127.0.0.1", port, tmp_path

    session = RunningServer.session
