"""The replay memory of received direct messages (issue #11 item 13, issue #12 item 7).

Bounded in total whatever the number of senders, stored in SQLite (one row
per message, no rewrite of the whole file), with a horizon: an envelope dated
at or before the newest one forgotten is refused, so forgetting an id never
lets it be replayed.
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from schat.client import seen as seen_mod
from schat.client.seen import SeenIds
from schat.errors import SchatError


def ids(n):
    return [os.urandom(16).hex() for _ in range(n)]


def test_bounded_in_total_whatever_the_number_of_senders(tmp_path):
    store = SeenIds(tmp_path / "dm_seen.db", "lab 127.0.0.1:5555", limit=50)
    t = 1_000_000
    for sender in range(300):  # throwaway accounts, two messages each
        for msg_id in ids(2):
            t += 1
            assert store.status(f"user{sender}", msg_id, t) is None
            store.remember(f"user{sender}", msg_id, t)
            assert len(store) <= 50
    store.close()
    with sqlite3.connect(tmp_path / "dm_seen.db") as db:
        assert db.execute("SELECT count(*) FROM seen").fetchone()[0] <= 50
    assert os.stat(tmp_path / "dm_seen.db").st_mode & 0o777 == 0o600


def test_a_forgotten_id_is_still_refused_and_newer_ones_pass(tmp_path):
    store = SeenIds(tmp_path / "dm_seen.db", "s", limit=10)
    first = ids(30)
    for i, msg_id in enumerate(first):
        store.remember("alice", msg_id, 1000 + i)
    assert store.horizon >= 1000  # the oldest were forgotten ...
    # ... and cannot come back: at or before the horizon is "too old".
    assert store.status("alice", first[0], 1000) == seen_mod.TOO_OLD
    assert store.status("mallory", ids(1)[0], store.horizon) == seen_mod.TOO_OLD
    # Remembered ids are replays; a new id after the horizon is new.
    assert store.status("alice", first[-1], 1029) == seen_mod.SEEN
    assert store.status("alice", ids(1)[0], store.horizon + 1) is None
    # The same id from another sender is another message (no suppression by copying ids).
    assert store.status("bob", first[-1], 1029) is None


def test_persisted_per_server_and_names_compare_canonically(tmp_path):
    path = tmp_path / "dm_seen.db"
    one = SeenIds(path, "lab 127.0.0.1:5555")
    msg_id = ids(1)[0]
    one.remember("Alice", msg_id, 5000)
    one.close()
    again = SeenIds(path, "lab 127.0.0.1:5555")
    assert again.status("alice", msg_id, 5000) == seen_mod.SEEN
    assert SeenIds(path, "other 127.0.0.1:6666").status("alice", msg_id, 5000) is None
    again.close()


def test_the_previous_json_file_is_imported(tmp_path):
    """dm_seen of the previous release (keyed by the server's key fingerprint)."""
    legacy = tmp_path / "dm_seen"
    full = [[f"{i:032x}", 2000 + i] for i in range(1000)]  # a full window of 1,000
    legacy.write_text(json.dumps({"version": 1, "servers": {
        "SHA256:abc": {"alice": [["aa" * 16, 1500]], "bob": full},
        "SHA256:other": {"carol": [["cc" * 16, 1600]]}}}))
    store = SeenIds(tmp_path / "dm_seen.db", "lab 127.0.0.1:5555", host_key="SHA256:abc",
                    legacy=legacy)
    assert store.status("alice", "aa" * 16, 1500) == seen_mod.SEEN
    assert store.status("bob", f"{999:032x}", 2999) == seen_mod.SEEN
    # The old rule refused anything older than a full window: kept as the horizon.
    assert store.status("bob", ids(1)[0], 1999) == seen_mod.TOO_OLD
    assert store.status("carol", "cc" * 16, 1600) == seen_mod.TOO_OLD  # another server's
    store.close()
    assert legacy.exists()  # left as it was (an older schat still reads it)
    # Imported once: a second open does not import again (nor fail).
    assert len(SeenIds(tmp_path / "dm_seen.db", "lab 127.0.0.1:5555", host_key="SHA256:abc",
                       legacy=legacy)) == 1001


@pytest.mark.parametrize("content", [b"garbage, not a database", b"SQLite format 3\x00junk"])
def test_a_damaged_file_is_named(tmp_path, content):
    path = tmp_path / "dm_seen.db"
    path.write_bytes(content)
    with pytest.raises(SchatError, match="dm_seen.db"):
        SeenIds(path, "s").status("a", ids(1)[0], 1)
    assert path.read_bytes() == content
