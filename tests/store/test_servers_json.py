"""servers.json: lookup order, validation, atomic rewrites that keep unknown fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schat.errors import ConfigError
from schat.paths import Home
from schat.store.servers import ServerList, find_servers_json, resolve_server

FP = "SHA256:" + "A" * 43


def write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_sample_file_shape(tmp_path):
    path = write(tmp_path / "servers.json", {"TestServer": {"ip": "127.0.0.1", "port": 5555}})
    entry = ServerList.load(path).get("TestServer")
    assert (entry.host, entry.port, entry.fingerprint, entry.address) == (
        "127.0.0.1", 5555, None, "127.0.0.1:5555")


def test_shipped_servers_json_parses_as_is():
    shipped = Path(__file__).resolve().parents[2] / "servers.json"
    servers = ServerList.load(shipped)
    assert [(e.name, e.host, e.port, e.fingerprint) for e in servers.entries()] == [
        ("TestServer", "127.0.0.1", 5555, None)]


@pytest.mark.parametrize("content,problem", [
    ("{not json", "invalid JSON at line 1 column 2: Expecting property name enclosed in double quotes"),
    ("[1, 2]", "must hold a JSON object of servers by name"),
    ({"S": 5}, "server 'S' must be an object with 'ip' and 'port'"),
    ({"S": {"port": 1}}, "server 'S' has no 'ip'"),
    ({"S": {"ip": "1.2.3.4"}}, "server 'S' has no 'port'"),
    ({"S": {"ip": "1.2.3.4", "port": "5555"}}, "server 'S': 'port' must be an integer from 1 to 65535, not \"5555\""),
    ({"S": {"ip": "1.2.3.4", "port": 0}}, "server 'S': 'port' must be an integer from 1 to 65535, not 0"),
    ({"S": {"ip": "1.2.3.4", "port": 65536}}, "server 'S': 'port' must be an integer from 1 to 65535, not 65536"),
    ({"S": {"ip": "1.2.3.4", "port": True}}, "server 'S': 'port' must be an integer from 1 to 65535, not true"),
    ({"S": {"ip": "", "port": 1}}, "server 'S': 'ip' must be a non-empty string"),
    ({"S": {"ip": "no spaces allowed", "port": 1}}, "server 'S': 'ip' is not an IP address or host name: 'no spaces allowed'"),
    ({"S": {"ip": "1.2.3.4", "port": 1, "fingerprint": "MD5:xx"}}, "server 'S': bad 'fingerprint': a fingerprint looks like SHA256:<base64>"),
    ({"bad name": {"ip": "1.2.3.4", "port": 1}}, "invalid server name 'bad name': use 1-64 letters, digits, '_', '-' or '.'"),
])
def test_malformed(tmp_path, content, problem):
    path = write(tmp_path / "servers.json", content)
    with pytest.raises(ConfigError) as err:
        ServerList.load(path)
    assert str(err.value) == f"{path}: {problem}"
    assert "\n" not in str(err.value)


def test_unknown_server_and_missing_file(tmp_path):
    path = write(tmp_path / "servers.json", {"A": {"ip": "::1", "port": 1}, "B": {"ip": "h.example", "port": 2}})
    with pytest.raises(ConfigError) as err:
        ServerList.load(path).get("C")
    assert str(err.value) == f"{path}: no server named 'C' (known: A, B)"
    with pytest.raises(ConfigError) as err:
        ServerList.load(tmp_path / "nope.json")
    assert str(err.value) == f"{tmp_path / 'nope.json'}: no such file"


def test_rewrite_keeps_unknown_fields(tmp_path):
    path = write(tmp_path / "servers.json", {
        "_comment": "kept", "A": {"ip": "10.0.0.1", "port": 1, "color": "blue"}})
    servers = ServerList.load(path)
    servers.add("A", "10.0.0.2", 2, FP, replace=True)
    servers.add("B", "10.0.0.3", 3)
    servers.save()
    data = json.loads(path.read_text())
    assert data == {"_comment": "kept",
                    "A": {"ip": "10.0.0.2", "port": 2, "color": "blue", "fingerprint": FP},
                    "B": {"ip": "10.0.0.3", "port": 3}}
    with pytest.raises(ConfigError) as err:
        ServerList.load(path).add("B", "1.1.1.1", 1)
    assert "server 'B' already exists; use --force to replace it" in str(err.value)
    servers = ServerList.load(path)
    servers.remove("A")
    servers.save()
    assert list(json.loads(path.read_text())) == ["_comment", "B"]


def test_lookup_order(tmp_path, monkeypatch):
    home = Home(tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert find_servers_json(None, home) == home.servers_json
    with pytest.raises(ConfigError) as err:
        resolve_server(None, home, "X")
    assert "you have no servers yet" in str(err.value)
    write(work / "servers.json", {"X": {"ip": "1.2.3.4", "port": 9}})
    # ./servers.json is read, but the list that add/remove change stays the home's.
    assert find_servers_json(None, home) == home.servers_json
    entry = resolve_server(None, home, "X")
    assert (entry.port, entry.source.resolve()) == (9, (work / "servers.json").resolve())
    # A name in your own list wins over ./servers.json.
    home.root.mkdir()
    write(home.servers_json, {"X": {"ip": "1.2.3.4", "port": 10}})
    assert resolve_server(None, home, "X").port == 10
    explicit = tmp_path / "explicit.json"
    # A --config path must exist, except when it is about to be created.
    with pytest.raises(ConfigError) as err:
        find_servers_json(str(explicit), home)
    assert str(err.value) == f"{explicit}: no such file (given with --config)"
    assert find_servers_json(str(explicit), home, creating=True) == explicit
    write(explicit, {})
    assert find_servers_json(str(explicit), home) == explicit
