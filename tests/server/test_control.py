"""The operator's control socket and `schat admin` / `schat user` acting on a running server."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from chatkit import WAIT, RunningServer, answer, make_store, until
from schat.cli import cli
from schat.client.session import Disconnected
from schat.paths import Home
from schat.protocol import messages
from schat.protocol import room_messages as rm
from schat.server.app import ServerThread
from schat.server.control import control_path, request
from schat.server.limits import ServerSettings



def start(home: Path, host_key) -> RunningServer:
    store = make_store(home)
    thread = ServerThread(ServerSettings(port=0, server_name="testsrv"), host_key, store,
                          control_socket=control_path(Home(home).server_dir))
    thread.start()
    return RunningServer(thread, store, home)


@pytest.fixture
def srv(chat_home, host_key):
    running = start(chat_home, host_key)
    yield running
    running.thread.stop()


def store_writers():
    return [t for t in threading.enumerate() if t.name == "schat-store-writer" and t.is_alive()]


def admin(runner, home, *args):
    return runner.invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def test_socket_is_private_and_a_second_server_is_refused(srv, host_key):
    path = control_path(Home(srv.home).server_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    writers = len(store_writers())
    second = ServerThread(ServerSettings(port=0), host_key, srv.store, control_socket=path)
    with pytest.raises(Exception, match="another schat server is running"):
        second.start()
    # The refused server's chat store is closed: no writer thread of it is left on the
    # running server's store (closing that store under it would crash the process).
    assert len(store_writers()) == writers


def test_admin_who_kick_broadcast_motd_disconnect(srv, runner):
    alice, bob = srv.login("alice"), srv.login("bob")
    answer(bob, "/join #dev")
    res = admin(runner, srv.home, "admin", "who", "--json")
    sessions = json.loads(res.stdout)
    assert [(s["name"], s["rooms"]) for s in sessions] == [("alice", ["#lobby"]),
                                                          ("bob", ["#lobby", "#dev"])]
    assert "127.0.0.1:" in sessions[0]["address"]
    res = admin(runner, srv.home, "admin", "kick", "bob", "--room", "#dev", "--reason", "cool off")
    assert res.exit_code == 0 and res.stdout == "Kicked bob from #dev.\n"
    mod = until(bob, rm.Moderation)
    assert (mod.action, mod.actor, mod.reason) == ("kick", None, "cool off")
    assert admin(runner, srv.home, "admin", "broadcast", "restart at noon").stdout == \
        "Sent to 2 session(s).\n"
    assert until(alice, messages.Notice).text == "restart at noon"
    assert admin(runner, srv.home, "admin", "motd", "be kind").exit_code == 0
    assert "be kind" in until(alice, messages.Notice).text
    assert admin(runner, srv.home, "admin", "motd").stdout == "be kind\n"
    late = srv.login("carol")
    assert late.session.welcome.motd == "be kind"
    res = admin(runner, srv.home, "admin", "disconnect", "carol", "--reason", "maintenance")
    assert res.stdout == "Disconnected carol.\n"
    err = late.next(messages.Error)
    assert err.code == "disconnected" and "maintenance" in err.text
    assert late.next(Disconnected).clean
    res = runner.invoke(cli, ["--home", str(srv.home), "admin", "kick", "nobody"])
    assert res.exit_code == 1 and "nobody is not online" in res.output
    for c in (alice, bob):
        c.close()


def test_admin_without_a_server_says_so(runner, home):
    res = runner.invoke(cli, ["admin", "who"])
    assert res.exit_code == 1 and "no schat server is running on this data home" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("command", [["user", "lock", "bob", "--reason", "abuse"],
                                     ["user", "remove", "bob", "--yes"]])
def test_locked_or_removed_account_session_ends_within_a_second(srv, runner, command):
    alice, bob = srv.login("alice"), srv.login("bob")
    res = admin(runner, srv.home, *command)
    assert res.exit_code == 0 and res.stdout.endswith("Ended their live session.\n")
    # Ended by the server before the command returned: bob is no member any more and
    # his error and bye are on their way (the second is how long the network and his
    # client take, which a loaded test machine cannot promise to a timed wait).
    assert not srv.thread.call(srv.server.hub.is_online, "bob")
    assert srv.thread.call(lambda: all(link.member.closing is not None
                                       for link in srv.server.links
                                       if link.member is not None
                                       and link.member.name == "bob"))
    err = bob.next(messages.Error)
    assert err.code in ("locked", "removed")
    assert isinstance(bob.next(Disconnected), Disconnected)
    mod = until(alice, rm.Moderation)
    assert mod.target == "bob" and mod.action in ("lock", "remove") and mod.actor is None
    s = srv.session()
    with pytest.raises(Exception):
        s.login_password("bob", "bob-pass-22")
    s.close()
    alice.close()


def test_admin_role_and_admin_commands(srv, runner):
    res = admin(runner, srv.home, "user", "role", "carol", "admin")
    assert res.stdout == "carol is now a server admin.\n"
    carol, bob = srv.login("carol"), srv.login("bob")
    assert answer(bob, "/disconnect carol").code == "forbidden"
    assert answer(carol, "/kick bob off-topic", room="#lobby") is None
    assert answer(carol, "/lock bob spam") is None
    assert bob.next(messages.Error).code == "locked"
    assert srv.server.chat_store.writer.wait(WAIT)  # the lock is committed by the writer thread
    listing = json.loads(admin(runner, srv.home, "user", "list", "--json").stdout)
    assert {d["name"]: (d["role"], d["locked"]) for d in listing}["bob"] == ("member", True)
    assert admin(runner, srv.home, "user", "role", "carol", "member").exit_code == 0
    carol.close()


def test_user_add_admin(runner, home):
    res = runner.invoke(cli, ["user", "add", "root1", "--admin", "--create", "--password-stdin"],
                        input="root-pass-1\n")
    assert res.exit_code == 0 and res.stdout == "Added user root1 as a server admin.\n"
    res = runner.invoke(cli, ["user", "role", "ghost", "admin"])
    assert res.exit_code == 1 and "no such user" in res.output


def test_bad_control_requests_are_answered_not_crashing(srv):
    path = control_path(Home(srv.home).server_dir)
    for op, fields, text in [("nope", {}, "unknown op"), ("kick", {}, "name is required"),
                             ("kick", {"name": "a\x1b"}, "invalid user name"),
                             ("who", {"x": "1"}, "unknown field"),
                             ("broadcast", {"text": "x" * 5000}, "at most 4096 bytes")]:
        with pytest.raises(Exception, match=text):
            request(path, op, **fields)
    import socket
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(WAIT)
        raw.connect(str(path))
        raw.sendall(b"\xff garbage\n")
        assert b"not a JSON object" in raw.recv(4096)
    assert request(path, "who")["sessions"] == []


RUNUSER = shutil.which("runuser")
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as err:
    print("connect:", err.strerror)
    sys.exit(0)
# A refused peer is told at once, before it sends anything.
data = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
print("answer:", data.decode())
"""


@pytest.mark.skipif(os.geteuid() != 0 or RUNUSER is None,
                    reason="needs root and runuser to connect as another system user")
def test_control_socket_refused_to_another_system_user(host_key):
    base = Path(tempfile.mkdtemp(prefix="schat-ctl-", dir="/tmp"))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir(mode=0o755)
        running = start(home, host_key)
        try:
            path = control_path(Home(home).server_dir)
            as_nobody = [RUNUSER, "-u", "nobody", "--", "/usr/bin/python3", "-c", CLIENT,
                         str(path)]
            # The file modes alone keep another user out ...
            out = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30).stdout
            assert out.strip() == "connect: Permission denied"
            # ... and with them opened up, the server refuses by the peer's user id.
            path.parent.chmod(0o711)
            path.chmod(0o666)
            out = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30).stdout
            assert out.startswith("answer:") and "refused: only the server's own system user" in out
            assert '"sessions"' not in out
            assert request(path, "who")["sessions"] == []   # its own user still gets in
        finally:
            running.thread.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
