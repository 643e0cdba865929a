"""The client's per-server memory: who you are there, how you log in, the key it has."""

from __future__ import annotations

import json
import os
import stat

import pytest

from schat.errors import ConfigError
from schat.store.server_memory import KEY, PASSWORD, ServerMemory

FP1 = "SHA256:" + "A" * 43
FP2 = "SHA256:" + "B" * 43


def test_logins_are_remembered_per_server_and_account(tmp_path):
    memory = ServerMemory(tmp_path / "m.json")
    assert memory.get("team", "10.0.0.1:5555").user is None
    memory.logged_in("team", "10.0.0.1:5555", "Ann", PASSWORD)
    memory.logged_in("team", "10.0.0.1:5555", "ann", KEY, FP1)   # names compare as one
    memory.logged_in("lab", "10.0.0.2:5555", "bob", KEY, FP2)
    team = memory.get("team", "10.0.0.1:5555")
    assert team.user == "ann" and team.account("ANN").login == KEY
    assert team.account("ann").key == FP1
    # A password login later keeps what the server is known to have.
    memory.logged_in("team", "10.0.0.1:5555", "ann", PASSWORD)
    assert memory.get("team", "10.0.0.1:5555").account("ann").key == FP1
    assert memory.registered_on(FP1) == [("team", "10.0.0.1:5555", "ann")]
    assert stat.S_IMODE(os.stat(tmp_path / "m.json").st_mode) == 0o600


def test_another_address_is_another_server(tmp_path):
    memory = ServerMemory(tmp_path / "m.json")
    memory.logged_in("team", "10.0.0.1:5555", "ann", KEY, FP1)
    assert memory.get("team", "10.9.9.9:5555").user is None
    memory.decline_key_offer("team", "10.9.9.9:5555")  # replaces the old server's entry
    assert memory.get("team", "10.0.0.1:5555").user is None
    assert memory.registered_on(FP1) == []


def test_ignore_list_is_bounded(tmp_path):
    memory = ServerMemory(tmp_path / "m.json")
    memory.set_ignored("team", "h:1", ["bob", "carol"])
    assert memory.get("team", "h:1").ignored == ["bob", "carol"]
    with pytest.raises(ConfigError):
        memory.set_ignored("team", "h:1", [f"u{i}" for i in range(1001)])


@pytest.mark.parametrize("content", [
    "not json",
    "[]",
    json.dumps({"version": 2, "servers": {}}),
    json.dumps({"version": 1, "servers": {"t": {"address": "h:1", "user": "bad name"}}}),
    json.dumps({"version": 1, "servers": {"t": {"address": "h:1", "accounts": {
        "ann": {"name": "ann", "login": "telepathy"}}}}}),
    json.dumps({"version": 1, "servers": {"t": {"address": "h:1", "accounts": {
        "ann": {"name": "ann", "login": "key", "key": "MD5:xx"}}}}}),
    json.dumps({"version": 1, "servers": {"t": {"address": "h:1", "ignored": "bob"}}}),
])
def test_damaged_file_is_an_error_naming_it_and_is_left_alone(tmp_path, content):
    path = tmp_path / "m.json"
    path.write_text(content)
    memory = ServerMemory(path)
    with pytest.raises(ConfigError) as err:
        memory.get("t", "h:1")
    assert str(path) in str(err.value) and "fix or remove" in str(err.value)
    with pytest.raises(ConfigError):
        memory.logged_in("t", "h:1", "ann", KEY, FP1)
    assert path.read_text() == content
