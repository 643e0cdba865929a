"""Stored direct-message envelopes: the server's offline queue.

Every direct message is stored here before it is forwarded, and deleted when
the recipient's client acknowledges it, so a message survives the recipient
being offline, a dropped connection and a server restart. The rows hold only
what the server saw on the wire: the sealed envelope (which the server cannot
open), the sender's public key at sending time, names and times.

The table lives in the account store (``server/users.db``, or the cluster's
PostgreSQL database), created by the store's second schema migration
(:data:`schat.store.accounts.MIGRATIONS`); a trigger drops a removed account's
queue with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from schat.errors import AccountError
from schat.protocol.schema import name_key

# Per-recipient bound on stored envelopes: a full mailbox refuses new messages
# (the sender is told) rather than letting one absent member fill the disk.
DEFAULT_MAILBOX_LIMIT = 500
# One sender may fill at most this share of a recipient's mailbox, so a single
# member cannot block everyone else's messages to an absent member.
SENDER_SHARE = 4
# New accounts (made by sign-up, young, never written to by an established
# member) share this part of a recipient's mailbox among them all: sign-ups
# cost an attacker little, so a hundred fresh accounts get one small share,
# not a hundred quarters.
NEW_SENDER_SHARE = 10


class MailboxFull(AccountError):
    """The recipient's stored messages reached the server's bound."""


@dataclass(frozen=True)
class StoredDm:
    """One stored envelope, in delivery order (``id`` grows with every message)."""

    id: int
    recipient: str
    sender: str
    time: int
    envelope: bytes
    sender_key: bytes


class Mailbox:
    """The offline queue, on top of an :class:`~schat.store.accounts.AccountStore`."""

    def __init__(self, store, limit: int = DEFAULT_MAILBOX_LIMIT):
        if limit < 1:
            raise ValueError("the mailbox limit must be at least 1")
        self.store = store
        self.limit = limit
        self.per_sender = max(1, limit // SENDER_SHARE)
        self.new_senders = max(1, limit // NEW_SENDER_SHARE)

    def _refusal(self, conn, recipient: str, sender: str, new_sender: bool) -> None:
        waiting, mine, new = conn.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN sender = ? THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(new_sender), 0) FROM mailbox WHERE recipient = ?",
            (sender, recipient)).fetchone()
        if waiting >= self.limit:
            raise MailboxFull(f"{recipient}'s mailbox is full ({self.limit} messages "
                              f"waiting); try again after they have logged in")
        if mine >= self.per_sender:
            raise MailboxFull(f"you already have {mine} messages waiting for {recipient} "
                              f"(at most {self.per_sender} from one sender); try again "
                              f"after they have logged in")
        if new_sender and new >= self.new_senders:
            raise MailboxFull(f"{recipient} already has {new} messages waiting from new "
                              f"accounts (at most {self.new_senders}); yours can be stored "
                              f"once your account is older or an established member has "
                              f"written to you")

    def check(self, recipient: str, sender: str, new_sender: bool = False) -> None:
        """Raise MailboxFull when :meth:`put` would refuse now (a cheap early answer)."""
        with self.store.reading() as conn:
            self._refusal(conn, recipient, sender, new_sender)

    def put(self, recipient: str, sender: str, time_ms: int, envelope: bytes,
            sender_key: bytes, new_sender: bool = False) -> int:
        """Store an envelope for ``recipient``; return its delivery id.

        Raises MailboxFull when the recipient already has ``limit`` messages
        waiting, or ``per_sender`` of them from ``sender``, or (``new_sender``:
        the sender is a new account) ``new_senders`` from new accounts.
        """
        # The transaction makes count-then-insert atomic: serialised with every other
        # put for this recipient (and, on SQLite, with every writer).
        with self.store.transaction(f"mailbox:{name_key(recipient)}") as conn:
            self._refusal(conn, recipient, sender, new_sender)
            cur = conn.execute(
                "INSERT INTO mailbox (recipient, sender, time, envelope, sender_key, "
                "new_sender) VALUES (?, ?, ?, ?, ?, ?)",
                (recipient, sender, int(time_ms), bytes(envelope), bytes(sender_key),
                 int(new_sender)))
            return int(cur.lastrowid)

    def pending(self, recipient: str, after_id: int = 0) -> List[StoredDm]:
        """The envelopes waiting for ``recipient`` (newer than ``after_id``), oldest first."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT id, recipient, sender, time, envelope, sender_key FROM mailbox "
                "WHERE recipient = ? AND id > ? ORDER BY id", (recipient, int(after_id))).fetchall()
        return [StoredDm(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

    def count(self, recipient: str) -> int:
        """How many envelopes wait for ``recipient``."""
        with self.store.reading() as conn:
            return conn.execute("SELECT count(*) FROM mailbox WHERE recipient = ?",
                                (recipient,)).fetchone()[0]

    def ack(self, recipient: str, dm_id: int) -> bool:
        """Delete delivery ``dm_id`` of ``recipient`` (only theirs); True when it existed."""
        with self.store.transaction() as conn:
            cur = conn.execute("DELETE FROM mailbox WHERE id = ? AND recipient = ?",
                               (int(dm_id), recipient))
            return cur.rowcount > 0

    def dump(self) -> List[StoredDm]:
        """Every stored envelope (for the operator's inspection and for tests)."""
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT id, recipient, sender, time, envelope, sender_key FROM mailbox "
                "ORDER BY id").fetchall()
        return [StoredDm(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]
