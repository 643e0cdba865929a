"""`schat servers ...` through the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from schat.cli import cli
from schat.crypto import keys
from schat.store.known_servers import KnownServers


def run(runner, *args, input=None):
    return runner.invoke(cli, list(args), input=input)


def test_add_creates_home_file_then_list(runner, home, host_key):
    fp = keys.fingerprint(host_key)
    res = run(runner, "servers", "add", "Office", "--ip", "10.1.2.3", "--port", "5555",
              "--fingerprint", fp)
    assert res.exit_code == 0, res.output
    assert res.stdout == f"Added Office (10.1.2.3:5555) to {home / 'servers.json'}.\n"
    assert json.loads((home / "servers.json").read_text()) == {
        "Office": {"ip": "10.1.2.3", "port": 5555, "fingerprint": fp}}
    run(runner, "servers", "add", "Lab", "--ip", "::1", "--port", "7000")
    data = json.loads(run(runner, "servers", "list", "--json").stdout)
    assert data == [
        {"name": "Office", "address": "10.1.2.3:5555", "addresses": ["10.1.2.3:5555"],
         "fingerprint": fp, "pinned_in": "servers.json", "listed_in": "home"},
        {"name": "Lab", "address": "[::1]:7000", "addresses": ["[::1]:7000"], "fingerprint": None,
         "pinned_in": None, "listed_in": "home"},
    ]
    table = run(runner, "servers", "list").stdout.splitlines()
    assert table[0].split() == ["name", "address", "fingerprint", "pinned", "in", "listed", "in"]
    assert table[3].split() == ["Lab", "[::1]:7000", "-", "-", "home"]


def test_list_shows_known_servers_pins(runner, home, host_key, other_host_key):
    run(runner, "servers", "add", "T", "--ip", "127.0.0.1", "--port", "5555")
    fp, other = keys.fingerprint(host_key), keys.fingerprint(other_host_key)
    known = KnownServers(home / "known_servers")
    known.pin("T", "127.0.0.1", 5555, fp)
    known.pin("Gone", "192.0.2.1", 1, other)
    data = json.loads(run(runner, "servers", "list", "--json").stdout)
    assert data == [
        {"name": "T", "address": "127.0.0.1:5555", "addresses": ["127.0.0.1:5555"],
         "fingerprint": fp, "pinned_in": "known_servers", "listed_in": "home"},
        {"name": "Gone", "address": "192.0.2.1:1", "addresses": ["192.0.2.1:1"],
         "fingerprint": other, "pinned_in": "known_servers", "listed_in": None},
    ]


def test_forget(runner, home, host_key):
    run(runner, "servers", "add", "T", "--ip", "127.0.0.1", "--port", "5555")
    known = KnownServers(home / "known_servers")
    fp = keys.fingerprint(host_key)
    known.pin("OldName", "127.0.0.1", 5555, fp)
    res = run(runner, "servers", "forget", "T")
    assert (res.exit_code, res.stdout) == (0, "Forgot the pinned key of T.\n")
    assert known.entries() == []
    res = run(runner, "servers", "forget", "T")
    assert (res.exit_code, res.stderr) == (1, f"Error: no pinned key for 'T' in {home / 'known_servers'}\n")


def test_forget_corrupt_known_servers(runner, home):
    (home / "known_servers").write_text("garbage\n")
    res = run(runner, "servers", "forget", "T")
    assert res.exit_code == 1
    assert res.stderr.startswith(f"Error: {home / 'known_servers'}, line 1: malformed entry")


def test_remove(runner, home):
    run(runner, "servers", "add", "A", "--ip", "1.2.3.4", "--port", "1")
    res = run(runner, "servers", "remove", "A")
    assert (res.exit_code, res.stdout) == (0, f"Removed A from {home / 'servers.json'}.\n")
    res = run(runner, "servers", "remove", "A")
    assert (res.exit_code, res.stderr) == (1, f"Error: {home / 'servers.json'}: no server named 'A' (known: none)\n")


def test_add_existing_needs_force(runner, home):
    run(runner, "servers", "add", "A", "--ip", "1.2.3.4", "--port", "1")
    res = run(runner, "servers", "add", "A", "--ip", "1.2.3.5", "--port", "2")
    assert res.exit_code == 1
    assert res.stderr == f"Error: {home / 'servers.json'}: server 'A' already exists; use --force to replace it\n"
    res = run(runner, "servers", "add", "A", "--ip", "1.2.3.5", "--port", "2", "--force")
    assert (res.exit_code, res.stdout) == (0, f"Replaced A (1.2.3.5:2) in {home / 'servers.json'}.\n")
    res = run(runner, "servers", "add", "B", "--ip", "1.2.3.6", "--port", "3", "--force")
    assert res.stdout == f"Added B (1.2.3.6:3) to {home / 'servers.json'}.\n"


def test_mistyped_config_is_an_error(runner, home, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHAT_PASSWORD", "tangerine42")
    missing = tmp_path / "nonexistent.json"
    for args in (["servers", "list"], ["servers", "remove", "A"], ["servers", "forget", "A"],
                 ["connect", "A", "-u", "ann"], ["login", "A", "-u", "ann"],
                 ["serve", "--server", "A"]):
        res = run(runner, "--config", str(missing), *args)
        assert res.exit_code == 1, args
        assert res.stderr.splitlines()[-1] == f"Error: {missing}: no such file (given with --config)"
    # After the subcommand too.
    res = run(runner, "servers", "list", "--config", str(missing))
    assert res.stderr == f"Error: {missing}: no such file (given with --config)\n"
    # `servers add` may create it.
    res = run(runner, "servers", "add", "A", "--ip", "1.2.3.4", "--port", "1", "--config", str(missing))
    assert (res.exit_code, res.stdout) == (0, f"Added A (1.2.3.4:1) to {missing}.\n")
    assert json.loads(missing.read_text()) == {"A": {"ip": "1.2.3.4", "port": 1}}


def test_symlinked_servers_json_stays_a_link(runner, home, tmp_path):
    real = tmp_path / "dotfiles" / "servers.json"
    real.parent.mkdir()
    real.write_text('{"A": {"ip": "1.2.3.4", "port": 1}}')
    link = home / "servers.json"
    link.symlink_to(real)
    assert run(runner, "servers", "add", "B", "--ip", "1.2.3.5", "--port", "2").exit_code == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert list(json.loads(real.read_text())) == ["A", "B"]
    assert sorted(p.name for p in real.parent.iterdir()) == ["servers.json"]


@pytest.mark.parametrize("args,code,message", [
    (["--ip", "1.2.3.4", "--port", "70000"], 2, "Invalid value for '--port': 70000 is not in the range 1<=x<=65535."),
    (["--ip", "1.2.3.4", "--port", "x"], 2, "Invalid value for '--port': 'x' is not a valid integer"),
    (["--port", "1"], 2, "Error: give both --ip and --port (or --address HOST:PORT)"),
    ([], 2, "Error: give the server's --ip and --port, or --address HOST:PORT"),
    (["--address", "1.2.3.4"], 1, "Error: --address: not HOST:PORT: '1.2.3.4'"),
    (["--ip", "1.2.3.4", "--port", "1", "--address", "x y:1"], 1,
     "Error: the address is not an IP address or host name: 'x y'"),
    (["--ip", "not valid!", "--port", "1"], 1, "Error: the address is not an IP address or host name: 'not valid!'"),
    (["--ip", "1.2.3.4", "--port", "1", "--fingerprint", "nope"], 1, "Error: a fingerprint looks like SHA256:<base64>"),
])
def test_add_bad_input(runner, home, args, code, message):
    res = run(runner, "servers", "add", "A", *args)
    assert res.exit_code == code
    assert message in res.stderr
    assert not (home / "servers.json").exists()


def test_config_option_and_cwd_lookup(runner, home, tmp_path):
    cfg = tmp_path / "mine.json"
    cfg.write_text('{"Mine": {"ip": "127.0.0.1", "port": 9, "note": "keep me"}}')
    res = run(runner, "--config", str(cfg), "servers", "add", "Two", "--ip", "127.0.0.2", "--port", "10")
    assert res.exit_code == 0
    assert json.loads(cfg.read_text())["Mine"]["note"] == "keep me"
    (tmp_path / "work" / "servers.json").write_text('{"Here": {"ip": "127.0.0.1", "port": 1}}')
    data = json.loads(run(runner, "servers", "list", "--json").stdout)
    assert [(d["name"], d["listed_in"]) for d in data] == [("Here", "./servers.json")]


def test_add_and_remove_write_the_home_list_never_the_local_file(runner, home, tmp_path):
    """The README's first run from a checkout: its sample ./servers.json stays as shipped."""
    shipped = Path(__file__).resolve().parents[2] / "servers.json"
    checkout = tmp_path / "work"
    (checkout / "servers.json").write_bytes(shipped.read_bytes())
    res = run(runner, "servers", "add", "home", "--ip", "127.0.0.1", "--port", "5555")
    assert (res.exit_code, res.stdout) == (
        0, f"Added home (127.0.0.1:5555) to {home / 'servers.json'}.\n")
    assert (checkout / "servers.json").read_bytes() == shipped.read_bytes()
    data = json.loads(run(runner, "servers", "list", "--json").stdout)
    assert [(d["name"], d["listed_in"]) for d in data] == [
        ("home", "home"), ("TestServer", "./servers.json")]
    table = run(runner, "servers", "list").stdout
    assert "TestServer  127.0.0.1:5555  -              -            ./servers.json" in table

    # The local file is read, never written: removing its entry says how instead.
    res = run(runner, "servers", "remove", "TestServer")
    assert res.exit_code == 1
    assert "comes from ./servers.json in the current directory" in res.stderr
    assert (checkout / "servers.json").read_bytes() == shipped.read_bytes()
    # An entry of yours with the same name hides the local one, and says so.
    res = run(runner, "servers", "add", "TestServer", "--ip", "192.0.2.7", "--port", "7")
    assert res.exit_code == 0
    assert "It hides the TestServer of ./servers.json (127.0.0.1:5555)." in res.stdout
    data = json.loads(run(runner, "servers", "list", "--json").stdout)
    assert [(d["name"], d["address"], d["listed_in"]) for d in data] == [
        ("home", "127.0.0.1:5555", "home"), ("TestServer", "192.0.2.7:7", "home"),
        ("TestServer", "127.0.0.1:5555", "./servers.json (hidden by yours)")]
    assert run(runner, "servers", "remove", "TestServer").exit_code == 0
    assert (checkout / "servers.json").read_bytes() == shipped.read_bytes()


def test_home_list_is_used_from_any_directory(runner, home, tmp_path, monkeypatch):
    import socket

    with socket.socket() as closed:  # bound, not listening: connecting is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        assert run(runner, "servers", "add", "home", "--ip", "127.0.0.1",
                   "--port", str(port)).exit_code == 0
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        listed = json.loads(run(runner, "servers", "list", "--json").stdout)
        assert [d["name"] for d in listed] == ["home"]
        # connect finds it there too: what fails is reaching it, not its name.
        res = run(runner, "connect", "home", "--user", "ann")
        assert res.exit_code == 1
        assert res.stderr.startswith(f"Error: cannot reach server 'home' at 127.0.0.1:{port}")
    res = run(runner, "connect", "nope", "--user", "ann")
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: no server named 'nope' (known: home); add it with "
                                 "`schat servers add nope --ip ADDRESS --port PORT`")


@pytest.mark.parametrize("content,problem", [
    ("{oops", "invalid JSON at line 1 column 2: Expecting property name enclosed in double quotes"),
    ("[]", "must hold a JSON object of servers by name"),
    ('{"A": {"ip": "1.2.3.4"}}', "server 'A' has no 'port'"),
    ('{"A": {"ip": "1.2.3.4", "port": 1.5}}', "server 'A': 'port' must be an integer from 1 to 65535, not 1.5"),
    ('{"A": {"port": 5555}}', "server 'A' has no 'ip'"),
    ('{"A": {"ip": "1.2.3.4", "port": 70000}}', "server 'A': 'port' must be an integer from 1 to 65535, not 70000"),
    ('{"A": {"ip": "1.2.3.4", "port": -1}}', "server 'A': 'port' must be an integer from 1 to 65535, not -1"),
])
def test_malformed_file_is_one_line_error(runner, home, tmp_path, content, problem):
    cfg = tmp_path / "servers.json"
    cfg.write_text(content)
    for args in (["servers", "list"], ["servers", "add", "B", "--ip", "1.1.1.1", "--port", "2"],
                 ["servers", "remove", "A"]):
        res = run(runner, "--config", str(cfg), *args)
        assert (res.exit_code, res.stderr) == (1, f"Error: {cfg}: {problem}\n")
    assert cfg.read_text() == content


def test_list_without_any_file(runner, home):
    res = run(runner, "servers", "list")
    assert res.exit_code == 0
    assert res.stdout.startswith("No servers.")


def test_a_server_with_several_addresses(runner, home):
    res = run(runner, "servers", "add", "Team", "--address", "10.0.0.1:5555",
              "--address", "10.0.0.2:5555", "--address", "[2001:db8::3]:5556",
              "--address", "10.0.0.1:5555")
    assert res.exit_code == 0, res.output
    assert res.stdout == ("Added Team (10.0.0.1:5555, 10.0.0.2:5555, [2001:db8::3]:5556) to "
                          f"{home / 'servers.json'}.\n")
    assert json.loads((home / "servers.json").read_text()) == {
        "Team": {"ip": "10.0.0.1", "port": 5555,
                 "addresses": ["10.0.0.2:5555", "[2001:db8::3]:5556"]}}
    (row,) = json.loads(run(runner, "servers", "list", "--json").stdout)
    assert (row["address"], row["addresses"]) == (
        "10.0.0.1:5555", ["10.0.0.1:5555", "10.0.0.2:5555", "[2001:db8::3]:5556"])
    table = run(runner, "servers", "list").stdout.splitlines()
    assert table[2].split()[:4] == ["Team", "10.0.0.1:5555,", "10.0.0.2:5555,",
                                    "[2001:db8::3]:5556"]
    # Written by hand: addresses alone, no ip/port.
    (home / "servers.json").write_text(json.dumps(
        {"Solo": {"addresses": ["192.0.2.7:5555"]},
         "Pair": {"addresses": ["192.0.2.8:1", "192.0.2.9:2"], "note": "kept"}}))
    (solo, pair) = json.loads(run(runner, "servers", "list", "--json").stdout)
    assert solo["addresses"] == ["192.0.2.7:5555"] and pair["address"] == "192.0.2.8:1"
    for bad, message in (({"addresses": []}, "'addresses' must be a list"),
                         ({"addresses": "1.2.3.4:5"}, "'addresses' must be a list"),
                         ({"addresses": [5]}, "an address must be a string"),
                         ({"addresses": ["1.2.3.4:99999"]}, "'port' must be an integer"),
                         ({"addresses": ["a:1"] * 17}, "more than 16"),
                         ({"ip": "1.2.3.4"}, "has no 'port'")):
        (home / "servers.json").write_text(json.dumps({"Bad": bad}))
        res = run(runner, "servers", "list")
        assert res.exit_code == 1 and message in res.stderr, (bad, res.stderr)
        assert res.stderr.count("\n") == 1
