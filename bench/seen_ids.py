"""The client's replay memory: cost of one received direct message, old store vs new.

    python -m bench.seen_ids [--dms 300] [--repeats 3]

For each scenario the memory is first filled with SENDERS × IDS remembered
messages, then DMS new messages from random senders are checked and
remembered (what the client does for every direct message it shows). Reported:
the median cost per message for

* the previous store (one JSON file, 1,000 ids per contact, the whole file
  rewritten atomically with fsync per message) — its code is kept below,
  unchanged, as the reference;
* :class:`schat.client.seen.SeenIds` (SQLite, WAL, one indexed look-up and one
  small transaction per message, bounded in total), as the client runs it
  (``synchronous=NORMAL``: no fsync per commit; an application crash loses
  nothing, a power cut may lose the last ids) and with ``synchronous=FULL``
  (an fsync per message, as durable as the old store),

all measured in the same run on the same disk, with the ratios. File sizes
after the fill are shown too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from schat.client.seen import SeenIds
from schat.store.files import atomic_write_text

SCENARIOS = [(1, 1000), (100, 1000), (1000, 50)]


class OldSeenIds:
    """The store before: schat/client/contacts.py SeenIds at commit 2e688bf (reference)."""

    def __init__(self, path, server, limit=1000):
        self.path = Path(path)
        self.limit = limit
        try:
            self._data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self._data = {"version": 1, "servers": {}}
        self._entries = self._data["servers"].setdefault(server, {})

    def is_replay(self, sender, msg_id, time_ms):
        ids = self._entries.get(sender.lower(), [])
        if any(i == msg_id for i, _ in ids):
            return True
        return len(ids) >= self.limit and time_ms < min(t for _, t in ids)

    def remember(self, sender, msg_id, time_ms):
        ids = self._entries.setdefault(sender.lower(), [])
        ids.append([msg_id, int(time_ms)])
        if len(ids) > self.limit:
            ids.sort(key=lambda item: item[1])
            del ids[: len(ids) - self.limit]
        atomic_write_text(self.path, json.dumps(self._data, separators=(",", ":")) + "\n")


def fill_old(path: Path, senders: int, ids: int) -> None:
    data = {"version": 1, "servers": {"srv": {
        f"user{s}": [[os.urandom(16).hex(), 1_000_000 + i] for i in range(ids)]
        for s in range(senders)}}}
    atomic_write_text(path, json.dumps(data, separators=(",", ":")) + "\n")


def fill_new(path: Path, senders: int, ids: int, synchronous: str = "NORMAL") -> SeenIds:
    store = SeenIds(path, "srv")
    store.horizon  # opens and creates the file
    with store._db.reading() as conn:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    with store._db.transaction() as conn:
        conn.executemany("INSERT INTO seen (server, sender, msg_id, time) VALUES (1, ?, ?, ?)",
                         ((f"user{s}", os.urandom(16), 1_000_000 + i)
                          for s in range(senders) for i in range(ids)))
        conn.execute("UPDATE servers SET rows = ? WHERE id = 1", (senders * ids,))
    return store


def per_dm(store, senders: int, dms: int) -> float:
    """Median seconds to check and remember one new message."""
    times = []
    t = 2_000_000
    for _ in range(dms):
        sender = f"user{random.randrange(senders)}"
        msg_id = os.urandom(16).hex()
        t += 1
        start = time.perf_counter()
        if not store.is_replay(sender, msg_id, t):
            store.remember(sender, msg_id, t)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dms", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| senders × ids | old ms/DM | new ms/DM | old ÷ new | new, FULL ms/DM | "
          "old ÷ new FULL | old file | new file |")
    print("|---|---|---|---|---|---|---|---|")
    for senders, ids in SCENARIOS:
        runs = {"old": [], "new": [], "full": []}
        sizes = None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="seen-bench-") as tmp:
                old_path = Path(tmp) / "dm_seen"
                fill_old(old_path, senders, ids)
                runs["old"].append(per_dm(OldSeenIds(old_path, "srv"), senders, args.dms))
                for kind, sync in (("new", "NORMAL"), ("full", "FULL")):
                    new_path = Path(tmp) / f"{kind}.db"
                    new = fill_new(new_path, senders, ids, sync)
                    runs[kind].append(per_dm(new, senders, args.dms))
                    new.close()
                db_size = sum(p.stat().st_size for p in Path(tmp).glob("new.db*"))
                sizes = (old_path.stat().st_size, db_size)
        old, new, full = (statistics.median(runs[k]) for k in ("old", "new", "full"))
        print(f"| {senders} × {ids:,} | {old * 1e3:.2f} | {new * 1e3:.3f} | {old / new:.0f} | "
              f"{full * 1e3:.2f} | {old / full:.1f} | {sizes[0] / 1e6:.1f} MB | "
              f"{sizes[1] / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
