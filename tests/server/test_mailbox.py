"""The stored direct messages on both engines: order, limits, acknowledgement, races."""

from __future__ import annotations

import threading

import pytest

from schat.crypto.passwords import ScryptParams
from schat.server.mailbox import Mailbox, MailboxFull
from schat.store.accounts import AccountStore

LIGHT = ScryptParams(log2_n=10)
WAIT = 20.0


@pytest.fixture
def store(engines):
    s = AccountStore(engines.new(), hash_params=LIGHT, owns_engine=True)
    for name in ("Alice", "bob", "carol"):
        s.add(name, "tangerine42")
    yield s
    s.close()


def put(box, to, sender="bob", n=0):
    return box.put(to, sender, 1_700_000_000_000 + n, f"sealed-{n}".encode(), b"\x30key")


def test_put_pending_ack_in_order(store):
    box = Mailbox(store)
    ids = [put(box, "alice", n=i) for i in range(3)]
    assert ids == sorted(ids)
    waiting = box.pending("ALICE")  # recipients compare regardless of case
    assert [(d.id, d.recipient, d.sender, d.envelope) for d in waiting] == \
        [(ids[i], "alice", "bob", f"sealed-{i}".encode()) for i in range(3)]
    assert isinstance(waiting[0].envelope, bytes) and waiting[0].sender_key == b"\x30key"
    assert [d.id for d in box.pending("alice", after_id=ids[0])] == ids[1:]
    assert box.count("Alice") == 3
    assert not box.ack("carol", ids[0])  # only the recipient's own
    assert box.ack("alice", ids[0]) and not box.ack("alice", ids[0])
    assert box.count("alice") == 2
    later = put(box, "alice", n=9)
    assert later > ids[-1]
    assert [d.id for d in box.dump()] == [ids[1], ids[2], later]


def test_ids_never_reused(store):
    box = Mailbox(store)
    first = put(box, "alice")
    box.ack("alice", first)
    assert put(box, "alice") > first


def test_limits(store):
    box = Mailbox(store, limit=8)  # two per sender
    put(box, "alice", "bob")
    put(box, "alice", "bob")
    with pytest.raises(MailboxFull) as err:
        put(box, "alice", "bob")
    assert str(err.value) == ("you already have 2 messages waiting for alice (at most 2 "
                              "from one sender); try again after they have logged in")
    put(box, "alice", "BOB")  # senders are stored as the relay spells them
    for sender in ("carol", "carol", "dave", "dave", "erin"):
        put(box, "alice", sender)
    with pytest.raises(MailboxFull) as err:
        put(box, "alice", "frank")
    assert str(err.value).startswith("alice's mailbox is full (8 messages waiting)")
    assert box.count("alice") == 8


def test_removing_the_account_drops_its_mailbox(store):
    box = Mailbox(store)
    put(box, "alice")
    put(box, "carol")
    store.remove("ALICE")
    assert [d.recipient for d in box.dump()] == ["carol"]


def test_racing_senders_never_overfill(engines, store):
    """Many senders on several connections at once: exactly the limit is stored."""
    boxes = [Mailbox(AccountStore(engines.new(), hash_params=LIGHT, owns_engine=True), limit=12)
             for _ in range(3)]
    start = threading.Barrier(6, timeout=WAIT)
    stored, full, errors = [], [], []

    def send(box, sender):
        start.wait()
        for i in range(8):
            try:
                stored.append(put(box, "alice", sender, i))
            except MailboxFull:
                full.append(sender)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    senders = [(boxes[i % 3], f"s{i}") for i in range(6)]
    threads = [threading.Thread(target=send, args=args) for args in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    for box in boxes:
        box.store.close()
    assert errors == []
    assert (len(stored), len(full)) == (12, 36)
    assert Mailbox(store).count("alice") == 12
    per_sender = {}
    for d in Mailbox(store).dump():
        per_sender[d.sender] = per_sender.get(d.sender, 0) + 1
    assert max(per_sender.values()) <= 3
