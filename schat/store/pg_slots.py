"""A cluster node's id slot: one of a few numbers held by each running server process,
as a session-level advisory lock in the shared PostgreSQL database
(:mod:`schat.cluster.ids` puts the slot in every id the process makes).
"""

from __future__ import annotations

import threading
from typing import Optional

from schat.errors import StoreError
from schat.store.postgres import PostgresEngine, psycopg


# Advisory lock space of the cluster's process slots (schat.cluster.ids).
SLOT_SPACE = 0x5C4A9


class SlotLease:
    """One of ``count`` slots, held by this process for as long as it runs.

    The slot is a session-level advisory lock on a connection of its own: the
    database releases it when the connection ends, so a process that dies (even
    by SIGKILL) frees its slot at once, and no two live processes hold the same
    one. :meth:`check` (run now and then, off the event loop) notices a lost
    connection (the database restarted), takes the same slot again, or another
    one when a new process took it meanwhile; ``on_change(slot)`` then tells the
    owner.
    """

    def __init__(self, engine: PostgresEngine, count: int, on_change=None):
        self.engine = engine
        self.count = count
        self.on_change = on_change
        self._conn = None
        self._lock = threading.Lock()
        self.slot = -1
        self._take(None)

    def _take(self, preferred: Optional[int]) -> None:
        conn = self.engine._connect()
        order = list(range(self.count))
        if preferred is not None:
            order.remove(preferred)
            order.insert(0, preferred)
        try:
            for slot in order:
                if conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                (SLOT_SPACE, slot)).fetchone()[0]:
                    self._conn, self.slot = conn, slot
                    return
        except psycopg.Error as err:
            conn.close()
            raise self.engine.error(err) from None
        conn.close()
        raise StoreError(f"{self.engine.where}: {self.count} server processes already share "
                         "this database, the most a cluster may have")

    def check(self) -> bool:
        """Keep the slot; True while it is held (possibly a new one: ``on_change``)."""
        with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                try:
                    conn.execute("SELECT 1")
                    return True
                except psycopg.Error:
                    pass
                conn.close()
            self._conn = None
            old = self.slot
            try:
                self._take(old)
            except StoreError:
                return False
            if self.slot != old and self.on_change is not None:
                self.on_change(self.slot)
            return True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def claim_slot(engine: PostgresEngine, count: int, on_change=None) -> SlotLease:
    """Hold one of ``count`` process slots of ``engine``'s database (see :class:`SlotLease`)."""
    return SlotLease(engine, count, on_change)
