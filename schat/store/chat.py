"""The chat's store in SQLite: rooms, memberships, roles, bans and mutes, history.

The tables live in the account store's file (``server/users.db``), created by
its fourth schema migration (:data:`MIGRATION`); an older store is upgraded in
place when opened, its accounts and mailboxes untouched. Reads use the
calling thread's connection; writes go through a :class:`GroupWriter`, so the
event loop never waits for a commit and many chat lines share one. Removing an
account removes its memberships, roles, bans and mutes (a trigger).
"""

from __future__ import annotations

import functools
import logging
import threading
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional

from schat.chat.events import Said
from schat.chat.moderation import Restriction
from schat.chat.rooms import RoomRecord
from schat.chat.store import ChatStore, Profile, UserInfo
from schat.errors import AccountError
from schat.store.database import PerEngine
from schat.store.writer import QUEUE_LIMIT, GroupWriter, Row

log = logging.getLogger("schat.store")

ROLES = ("admin", "member")
# Accounts with queued writes remembered for settle(); beyond this the committed ones go.
PENDING_USERS = 256

MIGRATION = (
    """CREATE TABLE rooms (
        name TEXT PRIMARY KEY,
        topic TEXT NOT NULL DEFAULT '',
        topic_by TEXT NOT NULL DEFAULT '',
        topic_time INTEGER NOT NULL DEFAULT 0,
        private INTEGER NOT NULL DEFAULT 0,
        owner TEXT NOT NULL DEFAULT '',
        created INTEGER NOT NULL
    )""",
    """CREATE TABLE room_members (
        room TEXT NOT NULL,
        member {NOCASE} NOT NULL,
        joined INTEGER NOT NULL,
        last_read INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (room, member)
    )""",
    "CREATE INDEX room_members_by_member ON room_members (member)",
    """CREATE TABLE room_roles (
        room TEXT NOT NULL,
        member {NOCASE} NOT NULL,
        role TEXT NOT NULL,
        spelling TEXT NOT NULL,
        PRIMARY KEY (room, member, role)
    )""",
    """CREATE TABLE restrictions (
        room TEXT NOT NULL,
        kind TEXT NOT NULL,
        member {NOCASE} NOT NULL,
        actor TEXT,
        reason TEXT NOT NULL DEFAULT '',
        until INTEGER,
        created INTEGER NOT NULL,
        PRIMARY KEY (room, kind, member)
    )""",
    """CREATE TABLE server_roles (
        member {NOCASE} PRIMARY KEY,
        role TEXT NOT NULL
    )""",
    """CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        room TEXT NOT NULL,
        time INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        action INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX history_by_room ON history (room, id)",
    PerEngine(
        sqlite="""CREATE TRIGGER chat_drop_account AFTER DELETE ON accounts BEGIN
            DELETE FROM room_members WHERE member = OLD.name;
            DELETE FROM room_roles WHERE member = OLD.name;
            DELETE FROM restrictions WHERE member = OLD.name;
            DELETE FROM server_roles WHERE member = OLD.name;
        END""",
        postgresql="""CREATE FUNCTION chat_drop_account() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM room_members WHERE member = OLD.name;
                DELETE FROM room_roles WHERE member = OLD.name;
                DELETE FROM restrictions WHERE member = OLD.name;
                DELETE FROM server_roles WHERE member = OLD.name;
                RETURN OLD;
            END $$;
            CREATE TRIGGER chat_drop_account AFTER DELETE ON accounts
            FOR EACH ROW EXECUTE FUNCTION chat_drop_account()""",
    ),
)

# Longest /history waits for queued writes before reading (it runs on the event loop).
HISTORY_WAIT = 0.5

_SAID = "SELECT room, id, time, sender, text, action FROM history"
_HISTORY = "INSERT INTO history (id, room, time, sender, text, action) VALUES "
_HISTORY_COLUMNS = ("id", "room", "time", "sender", "text", "action")


class _Copy:
    """Chat lines that reach PostgreSQL in one COPY: lines are added until the writer
    thread runs it (``taken``); a retried group writes the same lines again."""

    __slots__ = ("rows", "taken", "lock")

    def __init__(self, lock: threading.Lock):
        self.rows: List[tuple] = []
        self.taken = False
        self.lock = lock

    def __call__(self, conn) -> None:
        with self.lock:  # append() adds to this batch only while it is not taken
            self.taken = True
            rows = list(self.rows)
        conn.copy_rows("history", _HISTORY_COLUMNS, rows)


def _said(row) -> Said:
    return Said(row[0], row[1], row[2], row[3], row[4], bool(row[5]))


# -- server roles, for `schat user` (no writer thread needed) ---------------------------

def set_role(accounts, name: str, role: str) -> str:
    """Make account ``name`` an ``admin`` or a ``member``; returns its spelling."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: use admin or member")
    spelling = accounts.require(name).name
    with accounts.transaction() as conn:
        if role == "admin":
            conn.execute("INSERT INTO server_roles (member, role) VALUES (?, 'admin') "
                         "ON CONFLICT (member) DO UPDATE SET role = excluded.role", (spelling,))
        else:
            conn.execute("DELETE FROM server_roles WHERE member = ?", (spelling,))
    return spelling


def roles(accounts) -> Dict[str, str]:
    """Lower-cased account name -> role, for every admin."""
    with accounts.reading() as conn:
        return {row[0].lower(): row[1] for row in
                conn.execute("SELECT member, role FROM server_roles").fetchall()}


class SqliteChatStore(ChatStore):
    """:class:`~schat.chat.store.ChatStore` on the account store's engine: its SQLite
    file, or the cluster's PostgreSQL database.

    ``writer_key`` keys the writer's transactions (:meth:`Engine.transaction`): on
    PostgreSQL the writers of several server processes then commit side by side
    instead of one after another (their writes never read-modify-write across
    processes: the conditional upserts below settle concurrent changes)."""

    def __init__(self, accounts, history_limit: int = 1000, history_days: int = 0,
                 clock: Callable[[], float] = None, queue_limit: int = QUEUE_LIMIT,
                 writer_key: Optional[str] = None):
        import time
        self.accounts = accounts
        self.history_limit = history_limit
        self.history_days = history_days
        self._clock = clock or time.time
        # Text compared by code point on both engines (PostgreSQL's default collation
        # follows the database's locale), as Python compares the same stamps.
        self._c = ' COLLATE "C"' if accounts.db.name == "postgresql" else ""
        transaction = accounts.transaction if writer_key is None else \
            functools.partial(accounts.transaction, writer_key)
        self.writer = GroupWriter(transaction, limit=queue_limit,
                                  prepare=self._open_connection)
        # Account (lower case) -> sequence number of its last queued write (settle()).
        self._pending: Dict[str, int] = {}
        self._prune_at = PENDING_USERS
        # On PostgreSQL, chat lines go in with COPY, a batch per writer turn (_Copy).
        self._copying = accounts.db.name == "postgresql"
        self._batch_lock = threading.Lock()
        self._batch: Optional[_Copy] = None
        self._since_prune: Dict[str, int] = {}
        self._prune_every = max(20, history_limit // 10)
        self._prune_all_at_start()

    def _open_connection(self) -> None:
        with self.accounts.reading():
            pass

    # -- reads -------------------------------------------------------------------------
    def load_rooms(self) -> List[RoomRecord]:
        with self.accounts.reading() as conn:
            rooms = {row[0]: RoomRecord(row[0], row[1], row[2], row[3], bool(row[4]), row[5],
                                        row[6])
                     for row in conn.execute(
                         "SELECT name, topic, topic_by, topic_time, private, owner, created "
                         "FROM rooms").fetchall()}
            for room, user, role, spelling in conn.execute(
                    "SELECT room, member, role, spelling FROM room_roles").fetchall():
                if room in rooms:
                    target = rooms[room].ops if role == "op" else rooms[room].invited
                    target[user.lower()] = spelling
            for row in conn.execute("SELECT room, kind, member, actor, reason, until, created "
                                    "FROM restrictions").fetchall():
                if row[0] in rooms:
                    rooms[row[0]].restrictions.append(Restriction(*row))
            for room, count in conn.execute(
                    "SELECT room, count(*) FROM room_members GROUP BY room").fetchall():
                if room in rooms:
                    rooms[room].members = count
        return list(rooms.values())

    def recent(self, room: str, limit: int) -> List[Said]:
        with self.accounts.reading() as conn:
            rows = conn.execute(f"{_SAID} WHERE room = ? ORDER BY id DESC LIMIT ?",
                                (room, limit)).fetchall()
        return [_said(r) for r in reversed(rows)]

    def history_before(self, room: str, before_id: int, limit: int) -> List[Said]:
        # Everything queued before this request is committed first: a page never misses
        # a line the member was already sent. Bounded: this runs on the event loop, and
        # a store that is down fails the read below at once.
        if self.writer.pending():
            self.writer.wait(HISTORY_WAIT)
        with self.accounts.reading() as conn:
            rows = conn.execute(f"{_SAID} WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
                                (room, before_id, limit)).fetchall()
        return [_said(r) for r in reversed(rows)]

    def history_after(self, room: str, after_id: int, limit: int) -> List[Said]:
        with self.accounts.reading() as conn:
            rows = conn.execute(f"{_SAID} WHERE room = ? AND id > ? ORDER BY id LIMIT ?",
                                (room, after_id, limit)).fetchall()
        return [_said(r) for r in rows]

    def last_message_id(self) -> int:
        with self.accounts.reading() as conn:
            return conn.execute("SELECT coalesce(max(id), 0) FROM history").fetchone()[0]

    def profile(self, name: str) -> Optional[Profile]:
        # The memberships of a session that just ended here are committed first (the
        # login path calls settle(name) before this), so logging in again at once finds
        # every room; other accounts' queued writes are not waited for.
        info = self.user(name)
        if info is None:
            return None
        with self.accounts.reading() as conn:
            rows = conn.execute("SELECT room, last_read FROM room_members WHERE member = ? "
                                "ORDER BY joined, room", (info.name,)).fetchall()
        return Profile(info.name, info.admin, tuple((r[0], r[1]) for r in rows))

    def user(self, name: str) -> Optional[UserInfo]:
        with self.accounts.reading() as conn:
            row = conn.execute(
                "SELECT a.name, a.locked, r.role FROM accounts a LEFT JOIN server_roles r "
                "ON r.member = a.name WHERE a.name = ?", (name,)).fetchone()
        return UserInfo(row[0], row[2] == "admin", bool(row[1])) if row else None

    def settle(self, name: str, timeout: float = 5.0) -> None:
        """Wait until the writes queued about account ``name`` (its memberships, read
        markers, a lock) are committed: a login reads them next. Most logins find none
        queued and do not wait."""
        key = name.lower()
        seq = self._pending.get(key)
        if seq is None:
            return
        if seq > self.writer.committed:
            self.writer.wait_for(seq, timeout)
        if seq <= self.writer.committed and self._pending.get(key) == seq:
            del self._pending[key]

    # -- writes --------------------------------------------------------------------------
    def _submit(self, sql: str, params: tuple, user: Optional[str] = None,
                urgent: bool = False) -> None:
        seq = self.writer.submit((sql, params), urgent)
        if user is not None:
            pending = self._pending
            pending[user.lower()] = seq
            if len(pending) > self._prune_at:
                committed = self.writer.committed
                for key in [k for k, v in pending.items() if v <= committed]:
                    del pending[key]
                # Still many queued (a mass disconnect): look again only once it doubles.
                self._prune_at = max(PENDING_USERS, 2 * len(pending))

    def save_room(self, record: RoomRecord) -> None:
        c = self._c
        self._submit(
            "INSERT INTO rooms (name, topic, topic_by, topic_time, private, owner, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "owner = excluded.owner, created = excluded.created "
            f"WHERE (excluded.created, excluded.owner{c}) < (rooms.created, rooms.owner{c})",
            (record.name, record.topic, record.topic_by, record.topic_time, int(record.private),
             record.owner, record.created))

    def set_topic(self, room: str, topic: str, by: str, time: int) -> None:
        c = self._c
        self._submit("UPDATE rooms SET topic = ?, topic_by = ?, topic_time = ? WHERE name = ? "
                     f"AND (topic_time, topic_by{c}, topic{c}) < (?, ?{c}, ?{c})",
                     (topic, by, time, room, time, by, topic))

    def set_mode(self, room: str, private: bool) -> None:
        self._submit("UPDATE rooms SET private = ? WHERE name = ?", (int(private), room))

    def delete_room(self, name: str) -> None:
        def write(conn):
            # Only a room nobody belongs to any more (another server process may
            # have let someone join it meanwhile).
            if conn.execute("SELECT 1 FROM room_members WHERE room = ? LIMIT 1",
                            (name,)).fetchone():
                return
            for table in ("rooms WHERE name", "room_roles WHERE room",
                          "restrictions WHERE room", "history WHERE room"):
                conn.execute(f"DELETE FROM {table} = ?", (name,))
        self.writer.submit(write)

    def delete_room_now(self, name: str) -> bool:
        """Remove the room now if nobody belongs to it; True when it was removed (a
        cluster's node tells the others then). Blocks: not on the event loop."""
        with self.accounts.transaction(f"room:{name}") as conn:
            if conn.execute("SELECT 1 FROM room_members WHERE room = ? LIMIT 1",
                            (name,)).fetchone():
                return False
            deleted = conn.execute("DELETE FROM rooms WHERE name = ?", (name,)).rowcount
            for table in ("room_roles WHERE room", "restrictions WHERE room",
                          "history WHERE room"):
                conn.execute(f"DELETE FROM {table} = ?", (name,))
        return deleted > 0

    def _role(self, room: str, user: str, role: str, on: bool) -> None:
        if on:
            self._submit("INSERT INTO room_roles (room, member, role, spelling) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT (room, member, role) "
                         "DO UPDATE SET spelling = excluded.spelling", (room, user, role, user))
        else:
            self._submit("DELETE FROM room_roles WHERE room = ? AND member = ? AND role = ?",
                         (room, user, role))

    def set_op(self, room: str, user: str, on: bool) -> None:
        self._role(room, user, "op", on)

    def set_invite(self, room: str, user: str, on: bool) -> None:
        self._role(room, user, "invited", on)

    def put_restriction(self, item: Restriction) -> None:
        c = self._c
        self._submit("INSERT INTO restrictions (room, kind, member, actor, reason, until, "
                     "created) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room, kind, member) "
                     "DO UPDATE SET actor = excluded.actor, reason = excluded.reason, "
                     "until = excluded.until, created = excluded.created WHERE "
                     f"(excluded.created, coalesce(excluded.actor, ''){c}, excluded.reason{c}, "
                     "coalesce(excluded.until, -1)) > "
                     f"(restrictions.created, coalesce(restrictions.actor, ''){c}, "
                     f"restrictions.reason{c}, coalesce(restrictions.until, -1))",
                     (item.room, item.kind, item.user, item.actor, item.reason, item.until,
                      item.created))


    def add_membership(self, user: str, room: str, time: int) -> None:
        self._submit("INSERT INTO room_members (room, member, joined) VALUES (?, ?, ?) "
                     "ON CONFLICT (room, member) DO NOTHING", (room, user, time), user)

    def remove_membership(self, user: str, room: str) -> None:
        self._submit("DELETE FROM room_members WHERE room = ? AND member = ?", (room, user),
                     user)

    def mark_read(self, user: str, room: str, last_id: int) -> None:
        self._submit("UPDATE room_members SET last_read = ? "
                     "WHERE room = ? AND member = ? AND last_read < ?",
                     (last_id, room, user, last_id), user)

    def append(self, said: Said) -> None:
        # Urgent: a chat line is committed within the writer's LINGER even when nobody
        # waits for it (fast acks), so a crash loses milliseconds of history, not LAZY_LINGER.
        values = (said.id, said.room, said.time, said.sender, said.text, int(said.action))
        if self._copying:
            with self._batch_lock:
                batch = self._batch
                if batch is None or batch.taken:
                    batch = self._batch = _Copy(self._batch_lock)
                    batch.rows.append(values)
                    self.writer.submit(batch, urgent=True)
                else:
                    batch.rows.append(values)
        else:
            self.writer.submit(Row(_HISTORY, values), urgent=True)
        count = self._since_prune.get(said.room, 0) + 1
        if count >= self._prune_every:
            count = 0
            self.writer.submit(lambda conn, room=said.room: self._prune(conn, room))
        self._since_prune[said.room] = count

    def lock_account(self, name: str) -> None:
        self._submit("UPDATE accounts SET locked = 1 WHERE name = ?", (name,), name,
                     urgent=True)

    def record_login(self, name: str) -> None:
        """Stamp the account's last login (UTC now) with the next group of writes: a
        login costs no transaction of its own (the server's login path)."""
        from schat.store.accounts import _utc_text  # accounts imports this module
        self._submit("UPDATE accounts SET last_login = ? WHERE name = ?",
                     (_utc_text(datetime.fromtimestamp(self._clock(), timezone.utc)), name))

    # -- bounds ---------------------------------------------------------------------------
    def _prune(self, conn, room: str) -> None:
        """Keep the newest ``history_limit`` messages of ``room`` (and none older than
        ``history_days``)."""
        conn.execute("DELETE FROM history WHERE room = ? AND id <= (SELECT id FROM history "
                     "WHERE room = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                     (room, room, self.history_limit))
        if self.history_days:
            cutoff = int(self._clock() * 1000) - self.history_days * 86_400_000
            conn.execute("DELETE FROM history WHERE room = ? AND time < ?", (room, cutoff))

    def _prune_all_at_start(self) -> None:
        with self.accounts.reading() as conn:
            names = [r[0] for r in conn.execute("SELECT DISTINCT room FROM history").fetchall()]
        # Bans and mutes that ended (lifted ones included) a day ago settle nothing any more.
        ended = int(self._clock() * 1000) - 86_400_000

        def write(conn):
            for room in names:
                self._prune(conn, room)
            conn.execute("DELETE FROM restrictions WHERE until IS NOT NULL AND until < ?",
                         (ended,))
        self.writer.submit(write)
        self.writer.wait(30.0)

    # -- durability -------------------------------------------------------------------------
    def ticket(self) -> int:
        return self.writer.ticket()

    def durable(self) -> int:
        return self.writer.committed

    def backlog_full(self) -> bool:
        return self.writer.full()

    def close(self) -> None:
        self.writer.close()
