"""What a cluster node reads from the store besides chat lines, and how it reads.

Every read runs in a thread, never on the event loop, and its answer is applied
on the loop after what was read or said before it (:meth:`StoreReads._read`).
Besides the catch-up of chat lines (:mod:`schat.cluster.catchup`), a node reads
from the store when:

- an event names a room this node does not know, or control messages were
  lost (:meth:`refresh_rooms`): rooms' bans, ops, invitations and topics are
  read again.
- a membership ended and nobody is online in the room (:meth:`emptied`): the
  store removes the room if nobody belongs to it, and the others are told.
- a member logs in, or another node could not hand a direct message over
  (:meth:`mail`): stored direct messages from the last minute that its session
  may have missed while its login was on its way to the other nodes are sent
  (a client ignores one it has already shown).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, List, Optional

from schat.chat.names import user_key
from schat.chat.rooms import RoomRecord

if TYPE_CHECKING:  # pragma: no cover
    from schat.cluster.node import ClusterNode

log = logging.getLogger("schat.cluster")

# Stored direct messages newer than this (seconds before the login) are looked at again.
MAIL_WINDOW = 60.0
MAIL_AFTER_LOGIN = 1.0
# Longest a read waits for this node's own queued writes.
WRITER_WAIT = 5.0


class StoreReads:
    """Reads from the store for one node, run off its loop."""

    def __init__(self, node: "ClusterNode"):
        self.node = node
        self.chat = node.chat
        self._closed = False

    def close(self) -> None:
        self._closed = True

    # -- running reads off the loop -------------------------------------------------
    def _read(self, job, done, failed=lambda: None) -> None:
        loop = self.node.loop

        def finished(fut):
            if self._closed:
                return
            self.node.settle()  # what was read or said before this answer, first
            try:
                result = fut.result()
            except Exception as err:  # noqa: BLE001 - the store is down: say so, go on
                log.warning("cluster catch-up read failed: %s", err)
                failed()
                return
            try:
                done(result)
            except Exception:  # noqa: BLE001
                log.exception("cluster catch-up failed")
        loop.run_in_executor(None, job).add_done_callback(
            lambda fut: loop.call_soon_threadsafe(finished, fut))

    def _later(self, seconds: float, fn, *args) -> None:
        def due():
            if not self._closed:
                self.node.settle()
                fn(*args)
        self.node.loop.call_later(seconds, due)

    def _drained(self, job):
        """``job`` after this node's queued writes are stored."""
        store = self.chat.store

        def run():
            writer = getattr(store, "writer", None)
            if writer is not None and writer.pending():
                writer.wait(WRITER_WAIT)
            return job()
        return run

    # -- rooms' state ---------------------------------------------------------------------
    def refresh_rooms(self, names: Optional[List[str]] = None) -> None:
        """Read rooms' state again (``names``, or all) and settle it with what is here."""
        self._read(self._drained(self.chat.store.load_rooms),
                   functools.partial(self._refreshed, names))

    def _refreshed(self, names: Optional[List[str]], records: List[RoomRecord]) -> None:
        chat, replica = self.chat, self.node.replica
        stored = {r.name: r for r in records}
        for record in records:
            if names is not None and record.name not in names:
                continue
            if record.name not in chat.rooms:
                replica.room(record.name, [record.owner, record.created, int(record.private),
                                           record.topic, record.topic_by, record.topic_time])
            replica.replace_room(record)
        replica.unknown = [n for n in replica.unknown if n not in stored]
        if names is None:
            for name in [n for n, room in chat.rooms.items()
                         if n not in stored and not room.members and not room.remote
                         and not room.lobby]:
                del chat.rooms[name]

    def unknown_rooms(self) -> None:
        names, self.node.replica.unknown = self.node.replica.unknown, []
        self.refresh_rooms(names)

    def emptied(self, room) -> None:
        name = room.name
        store = self.chat.store

        def done(deleted: bool) -> None:
            if deleted:
                log.info("room %s removed: nobody belongs to it any more", name)
                self.node.room_gone(name)
        self._read(self._drained(functools.partial(store.delete_room_now, name)), done)

    # -- stored direct messages -----------------------------------------------------------
    def after_login(self, member) -> None:
        since = time.time() - MAIL_WINDOW
        self._later(MAIL_AFTER_LOGIN, self.mail, member.name, since)

    def mail(self, name: str, since: Optional[float] = None) -> None:
        """Send ``name``'s session here the stored direct messages newer than ``since``."""
        member = self.chat.members.get(user_key(name))
        if member is None:
            return
        since = time.time() - MAIL_WINDOW if since is None else since
        mailbox = self.node.server.dm.mailbox
        self._read(functools.partial(mailbox.pending, member.name),
                   functools.partial(self._mailed, member, int(since * 1000)))

    def _mailed(self, member, since_ms: int, items) -> None:
        from schat.protocol import dm_messages as dmm

        if self.chat.members.get(member.key) is not member:
            return
        hub = self.node.hub
        for item in items:
            if item.time >= since_ms:
                hub.queue(member, dmm.DmEnvelope(id=item.id, time=item.time,
                                                 sender=item.sender, envelope=item.envelope,
                                                 sender_key=item.sender_key))
