"""A node killed mid-chat, as processes: its members drop from presence within the lease,
may log in on another node at once, and find every acknowledged line there."""

from __future__ import annotations

import time

from chatkit import Client
from clusterkit import USERS, WAIT, answer, until
from schat.protocol import messages
from schat.protocol import room_messages as rm

LEASE = 2.0


def logged_in(node, user):
    s = node.session(features=("rooms",))
    s.login_password(user, USERS[user])
    return Client(s)


def test_a_killed_node_s_members_leave_and_lose_no_acknowledged_line(proc_nodes):
    a, b = proc_nodes(lease=LEASE), proc_nodes(lease=LEASE)
    assert a.node != b.node
    alice, carol, bob = logged_in(a, "alice"), logged_in(a, "carol"), logged_in(b, "bob")
    for c in (alice, carol, bob):
        assert answer(c, "/join #dev") is None
    # A burst; the node dies in the middle of it.
    sent = {}
    for i in range(40):
        sent[alice.session.say(f"line {i}", room="#dev")] = f"line {i}"
    acked = []
    deadline = time.monotonic() + WAIT
    while len(acked) < 10 and time.monotonic() < deadline:
        event = alice.next()
        if isinstance(event, messages.Ack) and event.cid in sent:
            acked.append(sent[event.cid])
    a.kill()
    killed_ms = time.time() * 1000  # node b stamps the leave with this machine's clock
    while True:  # the acks that made it out before the end
        try:
            event = alice.next(timeout=1)
        except Exception:  # noqa: BLE001 - the queue ran dry or the connection ended
            break
        if isinstance(event, messages.Ack) and event.cid in sent:
            acked.append(sent[event.cid])
        if not isinstance(event, (messages.Ack, messages.ChatMessage)):
            break
    assert len(acked) >= 10
    # Alice logs in on the other node at once: the dead node's session does not stand in
    # her way.
    again = logged_in(b, "alice")
    state = until(again, rm.RoomState, lambda m: m.room == "#dev")
    assert "alice" in state.users
    backlog = []
    while True:
        event = again.next()
        if isinstance(event, rm.Focus):
            break
        if isinstance(event, messages.ChatMessage) and event.room == "#dev":
            backlog.append(event.text)
    missing = [line for line in acked if line not in backlog]
    assert not missing, f"acknowledged but not in the backlog: {missing}"
    # Carol (gone with the node) leaves bob's room within the lease; alice does not.
    left = until(bob, messages.Leave, lambda m: m.room == "#dev")
    assert (left.user, left.reason) == ("carol", "connection lost")
    # Node b decided it within the lease (a lease, a beat, slack), by its own stamp: how
    # late this test reads it (alice's login and backlog come first) does not count.
    assert left.time - killed_ms < (LEASE + LEASE / 4 + 3.0) * 1000
    bob.session.command("/who #dev")
    assert sorted(until(bob, messages.Users, lambda m: m.room == "#dev").users) == \
        ["alice", "bob"]
    again.session.say("back", room="#dev")
    assert until(bob, messages.ChatMessage, lambda m: m.text == "back").sender == "alice"
    # Carol comes back too, on the surviving node.
    carol = logged_in(b, "carol")
    assert until(bob, messages.Join, lambda m: m.room == "#dev").user == "carol"
    for c in (again, bob, carol):
        c.close()


def admin(node, *args):
    from test_cli_processes import REPO
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(REPO), SCHAT_HOME=str(node.home))
    return subprocess.run([sys.executable, "-m", "schat", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_admin_commands_on_one_node_reach_sessions_on_another(proc_nodes, pg_url):
    a, b = proc_nodes(lease=LEASE), proc_nodes(lease=LEASE)
    bob, carol = logged_in(b, "bob"), logged_in(b, "carol")
    assert answer(bob, "/join #dev") is None
    assert answer(carol, "/join #dev") is None
    deadline = time.monotonic() + WAIT
    while True:   # node a hears of them over the bus
        who = admin(a, "admin", "who")
        if "carol" in who.stdout and "#dev" in who.stdout.split("carol")[1]:
            break
        assert time.monotonic() < deadline, who.stdout + who.stderr
        time.sleep(0.1)
    lines = who.stdout.splitlines()
    assert lines[0].split() == ["name", "address", "since", "admin", "rooms", "client", "node"]
    assert [line.split()[-1] for line in lines[2:]] == [b.node, b.node]
    res = admin(a, "admin", "kick", "carol", "--room", "#dev", "--reason", "cool off")
    assert (res.returncode, res.stdout) == (0, "Kicked carol from #dev.\n"), res.stderr
    mod = until(bob, rm.Moderation)
    assert (mod.action, mod.actor, mod.target, mod.reason) == ("kick", None, "carol",
                                                               "cool off")
    res = admin(a, "admin", "disconnect", "carol", "--reason", "maintenance")
    assert res.stdout == "Disconnected carol.\n"
    err = until(carol, messages.Error)
    assert err.code == "disconnected" and "maintenance" in err.text
    res = admin(a, "user", "lock", "bob", "--reason", "abuse",
                "--store", pg_url)
    assert res.returncode == 0 and res.stdout == "Locked user bob. Ended their live session.\n", \
        res.stdout + res.stderr
    err = until(bob, messages.Error)
    assert err.code == "locked" and "abuse" in err.text
    s = b.session(features=("rooms",))
    try:
        s.login_password("bob", USERS["bob"])
        raise AssertionError("a locked account logged in")
    except Exception as refused:  # noqa: BLE001 - LoginRefused
        assert getattr(refused, "code", "") == "locked"
    s.close()
