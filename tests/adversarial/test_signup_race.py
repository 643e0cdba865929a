"""Twenty clients sign up the same name at once: exactly one account, the store intact."""

from __future__ import annotations

import sqlite3
import threading

from chatkit import WAIT
from hostile import RawPeer
from schat.paths import Home
from schat.protocol import messages

CLIENTS = 20


def test_concurrent_signups_of_one_name_make_one_account(server_factory):
    srv = server_factory(crypto_workers=4, rate_limit=0, penalty_base=0, signups_per_hour=0)
    peers = [RawPeer(srv) for _ in range(CLIENTS)]
    for peer in peers:
        peer.handshake()
    records = [peer.record(messages.Signup(user="newcomer", password=f"newcomer-pass-{i}"))
               for i, peer in enumerate(peers)]
    start = threading.Barrier(CLIENTS)
    replies = [None] * CLIENTS

    def sign_up(i: int) -> None:
        start.wait(WAIT)
        peers[i].send(records[i])
        replies[i] = peers[i].reply()
    threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    for peer in peers:
        peer.close()
    welcomed = [r for r in replies if isinstance(r, messages.Welcome)]
    refused = [r for r in replies if isinstance(r, messages.Error)]
    assert len(welcomed) == 1 and len(refused) == CLIENTS - 1, replies
    assert all(r.code in ("policy", "name_in_use") for r in refused), refused
    names = [a.name for a in srv.store.list()]
    assert names.count("newcomer") == 1
    with sqlite3.connect(Home(srv.home).users_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM accounts WHERE lower(name) = 'newcomer'"
                          ).fetchone()[0] == 1
