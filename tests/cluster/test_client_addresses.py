"""A client's server with several addresses (a cluster's nodes): connecting tries them in
order, and reconnecting after a node dies lands on another."""

from __future__ import annotations

import json
import threading

from click.testing import CliRunner

from clusterkit import USERS, WAIT
from schat.cli import cli
from schat.client.reconnect import Reconnector, relogin
from schat.commands.common import AppContext
from schat.commands.login_flow import LoginFlow
from services import free_port


def servers_json(home, *ports):
    home.mkdir(parents=True, exist_ok=True)
    (home / "servers.json").write_text(json.dumps(
        {"Team": {"addresses": [f"127.0.0.1:{p}" for p in ports]}}))


def test_connect_tries_the_addresses_in_order_and_reconnects_to_another_node(cluster, tmp_path):
    a, b = cluster.start(), cluster.start()
    home = tmp_path / "member"
    dead = free_port()
    servers_json(home, dead, a.port, b.port)
    env = {"SCHAT_HOME": str(home), "SCHAT_PASSWORD": USERS["alice"]}
    res = CliRunner().invoke(cli, ["login", "Team", "--user", "alice", "--accept-new"], env=env)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("Logged in to Team as alice with your password")
    # One pin for the server, whichever node answered: they share the host key.
    assert (home / "known_servers").read_text().count("\n") == 1

    app = AppContext(home=str(home))
    flow = LoginFlow(app, "Team")
    session = flow.connect(ask=False)
    assert session.address == ("127.0.0.1", a.port)       # the first that answers
    session.login_password("alice", USERS["alice"])
    session.start(lambda msg: None)
    a.thread.stop()                                         # the node dies
    attached, gave_up = [], []
    done = threading.Event()
    stop = threading.Event()

    def post(fn, *args):
        fn(*args)
        if fn in (attach, give_up):
            done.set()

    def attach(fresh):
        attached.append(fresh)

    def give_up(reason):
        gave_up.append(reason)

    Reconnector(relogin(flow.reopen, "alice", password=USERS["alice"]), stop, post,
                state=lambda text: None, warn=lambda text: None, attach=attach,
                give_up=give_up, backoff=(0.05, 0.5)).start()
    assert done.wait(WAIT), "no reconnection"
    stop.set()
    assert not gave_up, gave_up
    (fresh,) = attached
    assert fresh.address == ("127.0.0.1", b.port) and fresh.welcome.user == "alice"
    fresh.close()
    session.close()
    servers_json(home, dead, free_port())
    res = CliRunner().invoke(cli, ["login", "Team", "--user", "alice"], env=env)
    assert res.exit_code == 1
    assert res.output.startswith("Error: cannot reach server 'Team' at 127.0.0.1:")
    assert res.output.count("Connection refused") == 2 and res.output.count("\n") == 1
