"""Contact key pins (TOFU, change, trust, corrupt file) and the replay window."""

from __future__ import annotations

import pytest

from schat.client import contacts as ct
from schat.crypto.keys import public_der
from schat.errors import ConfigError, TrustError


@pytest.fixture(scope="module")
def ders(user_keys):
    return {n: public_der(k) for n, k in user_keys.items()}


def test_tofu_change_and_trust(tmp_path, ders):
    path = tmp_path / "contacts"
    c = ct.Contacts(path, "SHA256:server1")
    assert c.observe("Bob", ders["bob"]) == ct.NEW
    assert path.stat().st_mode & 0o777 == 0o600
    assert c.observe("bob", ders["bob"]) == ct.PINNED  # names are case-insensitive
    assert c.observe("bob", ders["carol"]) == ct.CHANGED
    # Reloaded from disk: the pin is kept, the new key only pending.
    c2 = ct.Contacts(path, "SHA256:server1")
    assert c2.pinned("bob") == ders["bob"] and c2.pending("bob") == ders["carol"]
    with pytest.raises(TrustError, match="key has CHANGED.*Nothing was sent"):
        ct.require_pin_match(c2, "bob", ders["carol"])
    c2.trust("bob", ders["carol"])
    assert ct.Contacts(path, "SHA256:server1").check("bob", ders["carol"]) == ct.PINNED
    assert ct.Contacts(path, "SHA256:server1").pending("bob") is None
    # Another server's bob is another person.
    assert ct.Contacts(path, "SHA256:server2").check("bob", ders["carol"]) == ct.NEW


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"version": 1, "servers": []}',
                                     b'{"version": 1, "servers": {"s": {"bob": {"key": "%%"}}}}'])
def test_corrupt_file_names_it(tmp_path, content):
    path = tmp_path / "contacts"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="contacts file .*contacts is corrupt"):
        ct.Contacts(path, "s")


def test_seen_ids_bounded_and_persisted(tmp_path):
    path = tmp_path / "dm_seen"
    seen = ct.SeenIds(path, "s", limit=3)
    for i in range(5):
        assert not seen.is_replay("alice", f"id{i}", 1000 + i)
        seen.remember("alice", f"id{i}", 1000 + i)
    again = ct.SeenIds(path, "s", limit=3)
    assert again.is_replay("alice", "id4", 1004)
    # id0 was forgotten, but it is older than the full window: still refused.
    assert again.is_replay("alice", "id0", 1000)
    assert not again.is_replay("alice", "id9", 2000)
    assert not again.is_replay("bob", "id4", 1004)
    path.write_text("garbage")
    with pytest.raises(ConfigError, match="seen messages file"):
        ct.SeenIds(path, "s")
