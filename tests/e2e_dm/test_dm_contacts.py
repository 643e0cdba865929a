"""Contact key pins: TOFU, change, trust, per server name and address, the previous file format, corrupt files."""

from __future__ import annotations

import base64
import json

import pytest

from schat.client import contacts as ct
from schat.crypto.keys import public_der
from schat.errors import ConfigError, TrustError


@pytest.fixture(scope="module")
def ders(user_keys):
    return {n: public_der(k) for n, k in user_keys.items()}


def test_tofu_change_and_trust(tmp_path, ders):
    path = tmp_path / "contacts"
    c = ct.Contacts(path, "lab 127.0.0.1:5555")
    assert c.observe("Bob", ders["bob"]) == ct.NEW
    assert path.stat().st_mode & 0o777 == 0o600
    assert c.observe("bob", ders["bob"]) == ct.PINNED  # names are case-insensitive
    assert c.observe("bob", ders["carol"]) == ct.CHANGED
    # Reloaded from disk: the pin is kept, the new key only pending.
    c2 = ct.Contacts(path, "lab 127.0.0.1:5555")
    assert c2.pinned("bob") == ders["bob"] and c2.pending("bob") == ders["carol"]
    with pytest.raises(TrustError, match="key has CHANGED.*Nothing was sent"):
        ct.require_pin_match(c2, "bob", ders["carol"])
    c2.trust("bob", ders["carol"])
    assert ct.Contacts(path, "lab 127.0.0.1:5555").check("bob", ders["carol"]) == ct.PINNED
    assert ct.Contacts(path, "lab 127.0.0.1:5555").pending("bob") is None
    # Another server's bob is another person.
    assert ct.Contacts(path, "other 127.0.0.1:5555").check("bob", ders["carol"]) == ct.NEW


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b'{"version": 1, "servers": []}',
    b'{"version": 1, "servers": {"s": {"bob": {"key": "%%"}}}}',
    b'{"version": 2, "servers": {"s": {"contacts": []}}}',
    b'{"version": 2, "servers": {"s": {"host_key": 5, "contacts": {}}}}',
    b'{"version": 2, "servers": {}, "legacy": {"fp": {"bob": {"key": 1}}}}',
    b'{"version": 3, "servers": {}}'])
def test_corrupt_file_names_it(tmp_path, content):
    path = tmp_path / "contacts"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="contacts file .*contacts is corrupt"):
        ct.Contacts(path, "s")


def test_pins_belong_to_the_server_name_and_address_not_its_key(tmp_path, ders):
    path = tmp_path / "contacts"
    lab = ct.server_identity("lab", "Chat.Example.org.", 5555)
    assert lab == "lab chat.example.org:5555"
    c = ct.Contacts(path, lab, "SHA256:first")
    assert c.observe("bob", ders["bob"]) == ct.NEW
    c.accept_host_key()
    rotated = ct.Contacts(path, lab, "SHA256:second")
    assert rotated.rotated_from == "SHA256:first"
    assert rotated.pinned("bob") == ders["bob"]
    rotated.accept_host_key()
    assert ct.Contacts(path, lab, "SHA256:second").rotated_from is None  # announced once
    assert ct.Contacts(path, "lab other.example.org:5555", "SHA256:second").pinned("bob") is None


def test_a_file_of_the_previous_format_is_taken_over_by_its_server(tmp_path, ders):
    path = tmp_path / "contacts"
    path.write_text(json.dumps({"version": 1, "servers": {
        "SHA256:lab": {"bob": {"name": "Bob", "key": base64.b64encode(ders["bob"]).decode()}},
        "SHA256:elsewhere": {"carol": {"key": base64.b64encode(ders["carol"]).decode()}}}}))
    c = ct.Contacts(path, "lab 127.0.0.1:5555", "SHA256:lab")
    assert c.pinned("BOB") == ders["bob"] and c.display_name("bob") == "Bob"
    assert c.rotated_from is None
    c.accept_host_key()
    data = json.loads(path.read_text())
    assert data["version"] == 2
    assert data["servers"]["lab 127.0.0.1:5555"]["host_key"] == "SHA256:lab"
    assert list(data["legacy"]) == ["SHA256:elsewhere"]  # kept for that server's next visit
    assert ct.Contacts(path, "x 127.0.0.1:1", "SHA256:elsewhere").pinned("carol") == ders["carol"]
