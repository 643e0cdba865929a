"""The chat tables in users.db: migration from an older store, group commits, pruning."""

from __future__ import annotations

import sqlite3

from schat.chat.events import Said
from schat.chat.moderation import Restriction
from schat.chat.rooms import RoomRecord
from schat.store import accounts as accounts_mod
from schat.store.accounts import AccountStore
from schat.store.chat import SqliteChatStore, roles, set_role
from schat.store.database import SqliteFile


def test_an_older_store_is_upgraded_with_its_accounts_and_mailbox(tmp_path):
    path = tmp_path / "users.db"
    old = SqliteFile(path)
    old._migrate(accounts_mod.MIGRATIONS[:2])   # a store made before rooms (schema 2)
    with old.transaction() as conn:
        conn.execute("INSERT INTO accounts (name, password_hash, created) VALUES "
                     "('ann', '$scrypt$x', '2024-01-01T00:00:00Z')")
        conn.execute("INSERT INTO mailbox (recipient, sender, time, envelope, sender_key) "
                     "VALUES ('ann', 'bob', 1, x'00', x'00')")
    old.close()
    store = AccountStore(path)
    assert store.schema_version == len(accounts_mod.MIGRATIONS) >= 4
    assert store.get("ann").name == "ann"
    chat = SqliteChatStore(store)
    assert chat.profile("ANN").name == "ann" and chat.load_rooms() == []
    chat.close()
    db = sqlite3.connect(str(path))
    assert db.execute("SELECT count(*) FROM mailbox").fetchone()[0] == 1
    db.close()
    store.close()


def test_writes_are_grouped_and_acknowledged_by_ticket(tmp_path):
    store = AccountStore(tmp_path / "users.db")
    store.add("ann", "ann-pass-1234")
    chat = SqliteChatStore(store, history_limit=50)
    chat.save_room(RoomRecord("#dev", owner="ann", created=1))
    chat.add_membership("ann", "#dev", 1)
    for i in range(1, 201):
        chat.append(Said("#dev", i, i, "ann", f"m{i}"))
    ticket = chat.ticket()
    assert ticket > 0
    assert chat.writer.wait(10)
    assert chat.ticket() == 0 and chat.durable() >= ticket
    chat.mark_read("ann", "#dev", 150)
    chat.put_restriction(Restriction("#dev", "ban", "bob", "ann", "spam", None, 5))
    chat.set_op("#dev", "ann", True)
    chat.writer.wait(10)
    (room,) = chat.load_rooms()
    assert room.owner == "ann" and room.ops == {"ann": "ann"} and room.members == 1
    assert room.restrictions[0].reason == "spam"
    assert chat.profile("ann").rooms == (("#dev", 150),)
    assert chat.last_message_id() == 200
    kept = chat.recent("#dev", 1000)
    assert 50 <= len(kept) < 200 and kept[-1].text == "m200"   # pruned to the limit
    assert [s.text for s in chat.history_before("#dev", 200, 2)] == ["m198", "m199"]
    chat.delete_room("#dev")
    chat.writer.wait(10)
    assert chat.load_rooms() == [] and chat.recent("#dev", 10) == []
    chat.close()
    set_role(store, "ANN", "admin")
    assert roles(store) == {"ann": "admin"}
    store.remove("ann")
    assert roles(store) == {}
    store.close()
