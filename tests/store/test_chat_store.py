"""The chat tables on both engines (SQLite and PostgreSQL): migration from an older
store, group commits, pruning, and how concurrent writes of several server processes
settle (the earliest creation of a room, the latest topic, ban and mute)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from schat.chat.events import Said
from schat.chat.moderation import Restriction, Restrictions
from schat.chat.rooms import RoomRecord
from schat.chat.store import MemoryChatStore
from schat.crypto.passwords import ScryptParams
from schat.errors import StoreError
from schat.store import accounts as accounts_mod
from schat.store.accounts import AccountStore
from schat.store.chat import SqliteChatStore, roles, set_role
from schat.store.database import SqliteFile

LIGHT = ScryptParams(log2_n=10)


@pytest.fixture
def accounts(engines):
    store = AccountStore(engines.new(), hash_params=LIGHT, owns_engine=True)
    for name in ("ann", "bob", "cat"):
        store.add(name, f"{name}-pass-1234")
    yield store
    store.close()


@pytest.fixture
def chat(accounts):
    store = SqliteChatStore(accounts, history_limit=50)
    yield store
    store.close()


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


def test_writes_are_grouped_and_acknowledged_by_ticket(engines, accounts, chat):
    chat.save_room(RoomRecord("#dev", owner="ann", created=1))
    chat.add_membership("ann", "#dev", 1)
    for i in range(1, 201):
        chat.append(Said("#dev", i, i, "ann", f"m{i}"))
    ticket = chat.ticket()
    assert ticket > 0
    assert chat.writer.wait(10)
    assert chat.ticket() == 0 and chat.durable() >= ticket
    chat.mark_read("ANN", "#dev", 150)
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
    chat.delete_room("#dev")        # ann still belongs to it: kept
    chat.writer.wait(10)
    assert [r.name for r in chat.load_rooms()] == ["#dev"]
    chat.remove_membership("ann", "#dev")
    chat.delete_room("#dev")
    chat.writer.wait(10)
    assert chat.load_rooms() == [] and chat.recent("#dev", 10) == []
    set_role(accounts, "ANN", "admin")
    assert roles(accounts) == {"ann": "admin"}
    assert chat.user("ANN").admin and not chat.user("bob").admin
    accounts.remove("ann")
    assert roles(accounts) == {}


def test_a_second_process_writes_beside_the_first(engines, accounts):
    """Two stores (two server processes) on one database, each with its own writer."""
    other = AccountStore(engines.new(), hash_params=LIGHT, owns_engine=True)
    one = SqliteChatStore(accounts, writer_key="chat:one")
    two = SqliteChatStore(other, writer_key="chat:two")
    try:
        one.save_room(RoomRecord("#dev", owner="ann", created=10))
        two.save_room(RoomRecord("#dev", owner="bob", created=10))   # same time: by name
        two.save_room(RoomRecord("#ops", owner="cat", created=20))
        one.save_room(RoomRecord("#ops", owner="bob", created=30))   # later: loses
        for i in range(1, 51):
            (one if i % 2 else two).append(Said("#dev", i, i, "ann" if i % 2 else "bob",
                                                f"line {i}"))
        assert one.writer.wait(10) and two.writer.wait(10)
        owners = {r.name: r.owner for r in one.load_rooms()}
        assert owners == {"#dev": "ann", "#ops": "cat"}
        assert [s.id for s in two.recent("#dev", 100)] == list(range(1, 51))
    finally:
        one.close()
        two.close()
        other.close()


STAMPED = [
    # (what each of two processes writes, in either order) -> what stays
    (Restriction("#dev", "ban", "bob", "ann", "spam", None, 100),
     Restriction("#dev", "ban", "bob", "cat", "flood", 9_000, 200)),
    (Restriction("#dev", "ban", "bob", "ann", "spam", None, 100),
     Restriction("#dev", "ban", "bob", "cat", "spam", None, 100)),        # same ms: by actor
    (Restriction("#dev", "ban", "bob", "ann", "spam", None, 100),
     Restriction.lifted("#dev", "ban", "bob", "cat", 150)),               # lifted later
    (Restriction.lifted("#dev", "mute", "bob", "cat", 150),
     Restriction("#dev", "mute", "bob", "ann", "", None, 100)),           # an older mute
]


@pytest.mark.parametrize("first_wins", [False, True])
def test_concurrent_bans_settle_on_the_latest_in_any_order(engines, accounts, first_wins):
    """Whatever order two writers' bans, mutes and liftings arrive in, the store and every
    process's memory keep the same one: the latest by stamp."""
    chat = SqliteChatStore(accounts)
    memory = MemoryChatStore()
    try:
        chat.save_room(RoomRecord("#dev", owner="ann", created=1))
        memory.save_room(RoomRecord("#dev", owner="ann", created=1))
        for n, (a, b) in enumerate(STAMPED):
            a, b = replace(a, user=f"user{n}"), replace(b, user=f"USER{n}")  # any case
            first, second = (b, a) if first_wins else (a, b)
            winner = max(a, b, key=lambda r: r.stamp)
            for store in (chat, memory):
                store.put_restriction(first)
                store.put_restriction(second)
            here = Restrictions()
            for item in (second, first):
                here.apply(item)
            chat.writer.wait(10)
            (room,) = [r for r in chat.load_rooms() if r.name == "#dev"]
            stored = [r for r in room.restrictions if r.user.lower() == f"user{n}"]
            assert [r.stamp for r in stored] == [winner.stamp]
            (held,) = [r for r in memory.load_rooms()[0].restrictions
                       if r.user.lower() == f"user{n}"]
            assert held.stamp == winner.stamp
            active = here.get(a.kind, f"user{n}", 150)
            assert (active.stamp if active else None) == \
                (winner.stamp if winner.active(150) else None)
    finally:
        chat.close()


def test_the_latest_topic_stays_whatever_order_it_arrives_in(engines, accounts, chat):
    chat.save_room(RoomRecord("#dev", owner="ann", created=1))
    chat.set_topic("#dev", "newer", "cat", 300)
    chat.set_topic("#dev", "older", "ann", 200)
    chat.set_mode("#dev", True)
    chat.writer.wait(10)
    (room,) = chat.load_rooms()
    assert (room.topic, room.topic_by, room.topic_time, room.private) == \
        ("newer", "cat", 300, True)


def test_reads_fail_with_a_store_error_when_postgresql_is_down(pg_url, pg_service):
    from schat.store.postgres import PostgresEngine

    accounts = AccountStore(PostgresEngine(pg_url), hash_params=LIGHT, owns_engine=True)
    chat = SqliteChatStore(accounts)
    try:
        chat.save_room(RoomRecord("#dev", owner="ann", created=1))
        chat.writer.wait(10)
        pg_service.stop()
        try:
            chat.append(Said("#dev", 1, 1, "ann", "kept for later"))
            with pytest.raises(StoreError, match="store unavailable"):
                chat.history_before("#dev", 10, 5)
            with pytest.raises(StoreError, match="store unavailable"):
                chat.user("ann")
        finally:
            pg_service.start()
        assert chat.writer.wait(15)   # the queued line is retried and committed
        assert [s.text for s in chat.recent("#dev", 5)] == ["kept for later"]
    finally:
        chat.close()
        accounts.close()
