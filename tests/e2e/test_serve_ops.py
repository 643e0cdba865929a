"""`schat serve` as an operator runs it: a process with a settings file, SIGHUP,
a rotating JSON log, a metrics endpoint scraped during a chat, the default
address and name, --init, and every refusal made before anything is created."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import List

import pytest

from chatkit import PASSWORDS, WAIT, Client, install_host_key, make_store
from schat.cli import cli
from schat.client.session import ClientSession, Disconnected, LoginRefused
from schat.paths import Home
from schat.protocol import messages
from schat.server.limits import default_crypto_workers
from schat.server.mailbox import Mailbox
from schat.store.accounts import AccountStore
from schat.store.known_servers import KnownServers

REPO = Path(__file__).resolve().parents[2]


class Serve:
    """`python -m schat --home HOME serve ARGS` with its stdout and stderr lines in queues."""

    def __init__(self, home: Path, *args: str, python_args=()):
        env = dict(os.environ)  # carries SCHAT_SCRYPT_N from tests/conftest.py
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("SCHAT_HOME", None)
        self.p = subprocess.Popen(
            [sys.executable, *python_args, "-m", "schat", "--home", str(home), "serve", *args],
            cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)
        self.out: "queue.Queue" = queue.Queue()
        self.err: "queue.Queue" = queue.Queue()
        self.err_lines: List[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.p.stderr, self.err),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, stream, sink) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if sink is self.err:
                self.err_lines.append(line)
            sink.put(line)
        sink.put(None)

    def line(self, sink, contains: str) -> str:
        while True:
            try:
                line = sink.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no line with {contains!r}; stderr: {self.stderr}") from None
            if line is None:
                raise AssertionError(f"the server exited before {contains!r}: {self.stderr}")
            if contains in line:
                return line

    def port(self) -> int:
        return int(self.line(self.out, "listening on").rsplit(":", 1)[1])

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)

    def stop(self) -> int:
        self.p.send_signal(signal.SIGTERM)
        code = self.p.wait(WAIT)
        for t in self._threads:
            t.join(WAIT)
        return code

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(WAIT)


@pytest.fixture
def served_home(tmp_path) -> Path:
    home = tmp_path / "srv"
    home.mkdir()
    install_host_key(home)
    make_store(home).close()
    return home


def session(port: int, home: Path) -> ClientSession:
    s = ClientSession("127.0.0.1", port, "ops", known_servers=KnownServers(home / "pins"),
                      accept_new=True, timeout=WAIT)
    s.connect()
    return s


def login(port: int, home: Path, user: str) -> Client:
    s = session(port, home)
    s.login_password(user, PASSWORDS[user])
    return Client(s)


def say_unpaced(client: Client, texts) -> None:
    """Send each line at once, outside the session's resend-and-pace of throttled
    requests, so that the server's every answer reaches the test."""
    for i, text in enumerate(texts):
        client.session.send(messages.Say(text=text, cid=f"raw{i}-{text[:8]}"))


def replies(client: Client, count: int) -> list:
    """The next ``count`` acknowledgements or errors, in order."""
    got = []
    while len(got) < count:
        ev = client.next()
        assert not isinstance(ev, Disconnected), ev.reason
        if isinstance(ev, (messages.Ack, messages.Error)):
            got.append(ev)
    return got


# -- SIGHUP ---------------------------------------------------------------------

def test_sighup_changes_the_motd_and_the_rate_limit_of_a_running_server(served_home):
    workers = default_crypto_workers()
    settings = served_home / "schat.toml"
    settings.write_text('motd = "first rules"\nrate-limit = 5\nrate-burst = 20\n')
    srv = Serve(served_home, "--settings", str(settings), "--port", "0")
    try:
        port = srv.port()
        alice = login(port, served_home, "alice")
        assert alice.session.welcome.motd == "first rules"
        say_unpaced(alice, [f"fast {i}" for i in range(5)])
        assert [type(r) for r in replies(alice, 5)] == [messages.Ack] * 5

        # A new MOTD, one message at a time, sign-up closed; the port and the
        # thread count cannot change while running; --port on the command line
        # wins over the file anyway.
        settings.write_text('motd = "second rules"\nrate-limit = 0.01\nrate-burst = 3\n'
                            f'allow-signup = false\ncrypto-workers = {workers + 1}\n'
                            'port = 1\nlog-level = "debug"\nmax-unauthenticated-per-ip = 1\n'
                            'penalty-base = 3\npenalty-max = 600\n')
        assert "DEBUG" not in srv.stderr
        srv.p.send_signal(signal.SIGHUP)
        done = srv.line(srv.err, "reloaded")
        assert done.endswith(f"reloaded {settings}: allow-signup true -> false; log-level "
                             "'info' -> 'debug'; max-unauthenticated-per-ip 64 -> 1; motd "
                             "changed; penalty-base 2 -> 3; penalty-max 300 -> 600; "
                             "rate-burst 20 -> 3; rate-limit 5 -> 0.01")
        kept = srv.line(srv.err, "cannot change without a restart")
        assert kept.endswith(f"(running values kept): crypto-workers {workers} -> {workers + 1}")

        # The member already online now has a budget of three messages.
        say_unpaced(alice, [f"slow {i}" for i in range(5)])
        got = replies(alice, 5)
        assert [type(r) for r in got[:3]] == [messages.Ack] * 3
        assert [(type(r), r.code) for r in got[3:]] == [(messages.Error, "throttled")] * 2
        assert "at most 0.01 messages per second (bursts of 3)" in got[3].text
        # One connection not logged in per address now: a second is refused at once.
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as first:
            assert first.recv(1) != b""              # admitted: its ServerHello comes
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as second:
                assert second.recv(1) == b""
            assert srv.line(srv.err, "refused a connection").endswith(
                "too many connections not logged in from this address (1 refused so far)")
        # A newcomer reads the new MOTD; sign-up is refused.
        bob = login(port, served_home, "bob")
        assert bob.session.welcome.motd == "second rules"
        assert "DEBUG schat" in srv.line(srv.err, "handshake complete")  # the new log level
        newbie = session(port, served_home)
        with pytest.raises(LoginRefused) as refused:
            newbie.signup("newbie", "newbie-pass-1")
        assert refused.value.code == "signup_disabled"
        newbie.close()

        # A broken file is refused whole: the running settings stay.
        settings.write_text('motd = "third"\nrate-limit = -1\n')
        srv.p.send_signal(signal.SIGHUP)
        error = srv.line(srv.err, "reload:")
        assert error.endswith(f"reload: {settings}, line 2: rate-limit: -1.0 is not in the range "
                              "x>=0.; the running settings are kept")
        carol = login(port, served_home, "carol")
        assert carol.session.welcome.motd == "second rules"
        for client in (alice, bob, carol):
            client.close()
        assert srv.stop() == 0
    finally:
        srv.kill()
    assert "Traceback" not in srv.stderr


# -- logs -------------------------------------------------------------------------

def test_log_file_rotates_and_every_json_line_parses(served_home, tmp_path):
    log = tmp_path / "logs" / "schat.log"
    log.parent.mkdir()
    srv = Serve(served_home, "--port", "0", "--log-file", str(log), "--log-format", "json",
                "--log-rotate", "2KiB", "--log-keep", "2", "--log-level", "debug")
    try:
        port = srv.port()
        for _ in range(6):
            for user in ("alice", "bob"):
                client = login(port, served_home, user)
                client.session.say("the eagle lands at noon")
                assert client.session.wait_acked(WAIT)
                client.close()
        assert srv.stop() == 0
    finally:
        srv.kill()
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["schat.log", "schat.log.1", "schat.log.2"], files
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    records = []
    for path in log.parent.iterdir():
        assert path.stat().st_size <= 2048 + 1024  # rotated near the limit (one line over)
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            assert set(entry) == {"time", "level", "logger", "message"}, entry
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
            assert entry["level"] in ("debug", "info", "warning", "error")
            records.append(entry)
    text = "\n".join(r["message"] for r in records)
    assert "server stopped" in text and "record out seq=" in text  # debug really on
    for secret in ("the eagle lands at noon", *PASSWORDS.values()):
        assert secret not in log.parent.joinpath("schat.log").read_text() and secret not in text
    # Only the startup lines went to stderr: the log went to the file.
    assert "DEBUG" not in srv.stderr and "INFO" not in srv.stderr


# -- metrics ------------------------------------------------------------------

def scrape(url: str) -> dict:
    """Sample name (with labels) -> value, from the Prometheus text format."""
    with urllib.request.urlopen(url, timeout=WAIT) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        body = reply.read().decode()
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_scraped_during_a_chat_show_the_right_counts(served_home):
    store = AccountStore(Home(served_home).users_db)
    box = Mailbox(store)
    for i in range(2):
        box.put("carol", "bob", 1_700_000_000_000 + i, b"sealed-envelope", b"bob-key")
    store.close()
    srv = Serve(served_home, "--port", "0", "--metrics", "127.0.0.1:0", "--rate-limit", "0.1",
                "--rate-burst", "3")
    try:
        port = srv.port()
        url = srv.line(srv.out, "metrics on http://").split("metrics on ", 1)[1]
        alice = login(port, served_home, "alice")
        bob = login(port, served_home, "bob")
        wrong = session(port, served_home)
        with pytest.raises(LoginRefused):
            wrong.login_password("carol", "not-her-password-1")
        # Three lines within the burst reach bob; two more are over the rate.
        say_unpaced(alice, [f"line {i}" for i in range(5)])
        got = replies(alice, 5)
        assert [type(r) for r in got] == [messages.Ack] * 3 + [messages.Error] * 2
        assert [bob.next(messages.ChatMessage).text for _ in range(3)] == [
            "line 0", "line 1", "line 2"]

        m = scrape(url)
        assert m["schat_members"] == 2
        assert m["schat_connections"] == 3
        assert m["schat_unauthenticated_connections"] == 1
        assert m["schat_accepted_connections_total"] == 3
        assert m["schat_handshakes_total"] == 3
        assert m['schat_logins_total{method="password"}'] == 2
        assert m['schat_logins_total{method="signup"}'] == 0
        assert m['schat_login_failures_total{reason="auth_failed"}'] == 1
        # bob's join reached alice; alice's three lines reached bob.
        assert m["schat_deliveries_total"] == 4
        assert m['schat_refusals_total{limit="rate"}'] == 2
        assert m["schat_mailbox_messages"] == 2
        assert m["schat_mailbox_recipients"] == 1
        assert m["schat_mailbox_largest"] == 2
        # Per connection: the key exchange and the password check (the ServerHello's
        # X25519 key is made on the event loop).
        assert m["schat_crypto_job_seconds_count"] == 6
        assert m["schat_crypto_job_seconds_sum"] > 0
        assert m["schat_crypto_queue_depth"] == 0 and m["schat_crypto_jobs_running"] == 0
        assert m["schat_sent_bytes_total"] > 3 * 500  # three ServerHellos alone
        assert 0 <= m["schat_event_loop_lag_seconds"] <= m["schat_event_loop_lag_max_seconds"]
        assert m["process_open_fds"] > 0

        wrong.close()
        alice.close()
        assert bob.next(messages.Leave).user == "alice"
        m = scrape(url)
        assert m["schat_members"] == 1
        assert m['schat_disconnects_total{reason="left"}'] == 2
        # Every sample docs/OPERATING.md shows is served.
        documented = (REPO / "docs" / "OPERATING.md").read_text()
        sample = re.search(r"```\n(schat_info.*?)```", documented, re.S).group(1)
        def family(name: str) -> str:
            return name.split("{", 1)[0].split(" ", 1)[0]

        assert {family(line) for line in sample.splitlines()} <= {family(k) for k in m}
        bob.close()
        assert srv.stop() == 0
    finally:
        srv.kill()
    assert "Traceback" not in srv.stderr


def test_metrics_without_the_extra_is_one_line_naming_it(tmp_path):
    home = tmp_path / "empty"
    home.mkdir()
    blocked = ("import sys; sys.modules['prometheus_client'] = None; "
               "from schat.cli import main; main()")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-c", blocked, "--home", str(home), "serve",
                          "--port", "0", "--metrics", "9464"], capture_output=True, text=True, env=env,
                         timeout=WAIT)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == ("Error: --metrics needs the prometheus-client package, which is not "
                          "installed: pip install 'schat[metrics]'\n")
    assert list(home.iterdir()) == []


# -- the address, the name, --init ------------------------------------------------

def test_serve_ignores_the_client_list_and_announces_its_name(served_home, runner):
    # The client's list starts with a remote server: serve must not try to bind it.
    (served_home / "servers.json").write_text(json.dumps(
        {"faraway": {"ip": "192.0.2.10", "port": 7000}, "home": {"ip": "127.0.0.1",
                                                                  "port": 5555}}))
    res = runner.invoke(cli, ["--home", str(served_home), "--config",
                              str(served_home / "servers.json"), "serve", "--print-settings"])
    assert res.exit_code == 0, res.output
    assert 'host = "127.0.0.1"\nport = 5555\nname = "schat"\n' in res.stdout
    res = runner.invoke(cli, ["--home", str(served_home), "serve", "--print-settings",
                              "--config", str(served_home / "servers.json"), "--server", "home",
                              "--port", "6000"])
    assert 'host = "127.0.0.1"  # from' not in res.stdout
    assert 'port = 6000  # from the command line\nname = "home"\n' in res.stdout

    srv = Serve(served_home, "--port", "0", "--name", "Team Chat")
    try:
        line = srv.line(srv.out, "listening on")
        assert line.startswith("schat server 'Team Chat' listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        alice = login(port, served_home, "alice")
        assert alice.session.welcome.server == "Team Chat"
        alice.close()
        assert srv.stop() == 0
    finally:
        srv.kill()
    for bad in ("", "a" * 65, "bell\x07"):
        res = runner.invoke(cli, ["--home", str(served_home), "serve", "--name", bad])
        assert res.exit_code == 2 and "is not a server name" in res.stderr


def test_init_creates_the_server_files_once(runner, tmp_path):
    home = tmp_path / "fresh"
    res = runner.invoke(cli, ["--home", str(home), "serve", "--init"])
    assert res.exit_code == 0, res.output
    key, db = Home(home).host_key, Home(home).users_db
    assert res.stdout.startswith(f"Created {key}\nCreated {db}\nhost key fingerprint: SHA256:")
    assert oct(key.stat().st_mode & 0o777) == "0o600" and db.exists()
    fingerprint = res.stdout.splitlines()[-1]
    again = runner.invoke(cli, ["--home", str(home), "serve", "--init"])
    assert again.stdout == f"Already set up: {home / 'server'}\n{fingerprint}\n"
    # A server has now "run" here: user commands need no --create.
    res = runner.invoke(cli, ["--home", str(home), "user", "add", "ann", "--password-stdin"],
                        input="tangerine42\n")
    assert (res.exit_code, res.stdout) == (0, "Added user ann.\n")


# -- refusals before anything is created ----------------------------------------------

def _taken_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("case", ["port in use", "address not on this machine",
                                  "unknown host", "metrics port in use",
                                  "log directory missing", "corrupt users.db"])
def test_a_failing_serve_creates_nothing(runner, tmp_path, case):
    home = tmp_path / "empty-home"
    home.mkdir()
    taken = _taken_port()
    port = taken.getsockname()[1]
    args = ["--port", "0"]
    if case == "port in use":
        args, says = ["--port", str(port)], f"cannot listen on 127.0.0.1:{port}: "
    elif case == "address not on this machine":
        args, says = ["--host", "192.0.2.1"], "cannot listen on 192.0.2.1:5555: "
    elif case == "unknown host":
        args, says = ["--host", "no-such-host.invalid"], \
            "cannot listen on no-such-host.invalid:5555: "
    elif case == "metrics port in use":
        args += ["--metrics", f"127.0.0.1:{port}"]
        says = f"--metrics: cannot listen on 127.0.0.1:{port}: "
    elif case == "log directory missing":
        log = tmp_path / "no-such-dir" / "schat.log"
        args += ["--log-file", str(log)]
        says = f"{log}: cannot open the log file"
    else:
        db = Home(home).users_db
        db.parent.mkdir(mode=0o700)
        db.write_bytes(b"garbage" * 1000)
        says = f"{db}: not a schat account database, or it is corrupt"
    before = sorted(str(p) for p in home.rglob("*"))
    try:
        res = runner.invoke(cli, ["--home", str(home), "serve", *args])
    finally:
        taken.close()
    assert isinstance(res.exception, SystemExit) and res.exit_code == 1, res.output
    assert res.stderr.startswith(f"Error: {says}") and res.stderr.count("\n") == 1, res.stderr
    assert "Generating" not in res.output
    assert sorted(str(p) for p in home.rglob("*")) == before
    assert not Home(home).host_key.exists()


# -- moving to a new machine (docs/OPERATING.md, section 9) -------------------------

def test_a_server_moved_with_its_backup_is_the_same_server_to_members(served_home, tmp_path,
                                                                       runner):
    member = tmp_path / "member"
    member.mkdir()
    config = member / "servers.json"

    def as_member(*args):
        return runner.invoke(cli, ["--home", str(member), "--config", str(config), *args],
                             env={"SCHAT_PASSWORD": PASSWORDS["alice"]})

    old = Serve(served_home, "--port", "0")
    try:
        res = as_member("servers", "add", "team", "--ip", "127.0.0.1", "--port", str(old.port()))
        assert res.exit_code == 0, res.output
        res = as_member("login", "team", "--user", "alice", "--accept-new")
        assert res.exit_code == 0 and "Pinned the key of 'team'" in res.output, res.output
        moved = tmp_path / "schat-move"
        res = runner.invoke(cli, ["--home", str(served_home), "store", "backup", str(moved)])
        assert res.exit_code == 0, res.output
        assert old.stop() == 0
    finally:
        old.kill()

    # The new machine: an empty data home that receives the backup's server/.
    new_home = tmp_path / "new-machine"
    new_home.mkdir(mode=0o700)
    (moved / "server").rename(new_home / "server")
    new = Serve(new_home, "--port", "0")
    try:
        res = as_member("servers", "add", "team", "--ip", "127.0.0.1", "--port", str(new.port()),
                        "--force")
        assert res.exit_code == 0, res.output
        # No --accept-new: an unknown or changed key would stop this login.
        res = as_member("login", "team", "--user", "alice")
        assert res.exit_code == 0, res.output
        assert "Logged in to team as alice" in res.output
        assert "WARNING" not in res.output and "authenticity" not in res.output
        assert new.stop() == 0
    finally:
        new.kill()
    assert "Generating" not in new.stderr


def test_a_serve_on_a_postgres_store_checks_before_creating(runner, tmp_path, pg_service,
                                                            pg_url, spare_keys):
    spare_keys("other_host")  # the host key that `serve --init` makes
    from schat.store.postgres import PostgresEngine
    from services import free_port

    home = tmp_path / "node"
    home.mkdir()
    down = pg_url.replace(f":{pg_service.port}/", f":{free_port()}/")
    res = runner.invoke(cli, ["--home", str(home), "serve", "--port", "0", "--store", down])
    assert res.exit_code == 1 and "store unavailable" in res.stderr, res.output
    assert res.stderr.count("\n") == 1 and list(home.iterdir()) == []
    # A reachable, empty database gets no tables while another check fails ...
    taken = _taken_port()
    try:
        res = runner.invoke(cli, ["--home", str(home), "serve", "--store", pg_url,
                                  "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
    assert res.exit_code == 1 and "cannot listen on" in res.stderr, res.output
    assert list(home.iterdir()) == []
    with PostgresEngine(pg_url) as engine:
        assert engine.version("accounts") == 0
    # ... and gets them, with the host key in the home, from --init.
    res = runner.invoke(cli, ["--home", str(home), "serve", "--store", pg_url, "--init"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[:2] == [f"Created {Home(home).host_key}",
                                           f"Created {pg_url.split(':app')[0]}:***@"
                                           f"{pg_url.split('@')[1]}"]
    with PostgresEngine(pg_url) as engine:
        assert engine.version("accounts") > 0
