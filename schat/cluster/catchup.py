"""What a node reads from the store when the bus cannot tell it.

The bus carries what happens while a node listens; the store holds everything
that was acknowledged. A node reads from the store (in a thread, never on the
event loop) when:

- a room gets its first member here (:meth:`Catchup.entered`): the node was not
  subscribed to its chat lines, so its recent history here is stale. It
  subscribes, and once Redis confirms, reads the room's recent messages; the
  backlogs of members who entered meanwhile wait for them. Lines that arrive
  live meanwhile are delivered live and left out of those backlogs.
- the bus was away, or a node's sequence on a channel skipped (:meth:`gap`):
  the messages of each room since a little before the loss that are not here
  are delivered to the room's members here as they would have been live, read
  page by page, oldest first, however many there are. "The loss" is when the
  node last heard the bus, not when it noticed: Redis cuts off a subscriber
  that reads too slowly and drops what it held for it, which may be many
  seconds of lines (the node's :meth:`~schat.cluster.node.ClusterNode.heard`).
  The bus can be ahead of the store: a node publishes a line before its writer
  commits it, so a line missed on the bus may be absent from a read made just
  after while newer lines of its sender already arrive live. A node commits
  its lines in the order of their ids, so once the store holds a node's line
  it holds every older one of that node. Hence, from a loss (or a room's first
  member here) until the store is known to hold what was delivered live
  meanwhile, a room has a *window*:

  - what was delivered is kept exactly (not as a mark per sending node);
  - lines that arrive live while the room is read are held back (:meth:`hold`)
    until a read finds each sender's first held line, so every older line of
    that sender is delivered first (re-read at growing intervals, at most
    ``HOLD_MAX``);
  - the room is read again ``AGAIN`` seconds later, and again until a read
    finds the first live line of every sender (at most ``MAX_RECHECKS`` times),
    for lines of senders that said nothing since.

Rooms' state and stored direct messages are read by :mod:`schat.cluster.reads`.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Dict, List, Optional

from schat.cluster.ids import SLOTS, Hybrid
from schat.cluster.reads import StoreReads

SLOT_MASK = SLOTS - 1

if TYPE_CHECKING:  # pragma: no cover
    from schat.cluster.node import ClusterNode

log = logging.getLogger("schat.cluster")

# How far before a loss the catch-up looks (lines stored by other nodes carry their
# clocks' time: a little skew must not hide one), and when it looks a second time.
MARGIN = 5.0
AGAIN = 2.0
# A window closes after a pass made AGAIN seconds after another read finds every line
# delivered live meanwhile stored, or after this many such passes.
MAX_RECHECKS = 4
# Live lines wait while the store lacks older lines of their senders: read again after
# HOLD_STEP, doubling up to HOLD_STEP_MAX, for at most HOLD_MAX (a node that died before
# committing what it published never fills the gap).
HOLD_STEP, HOLD_STEP_MAX, HOLD_MAX = 0.05, 0.5, 5.0
# Seconds a closed window's ids read from the store still stop the same lines arriving
# late over the bus.
CAUGHT_KEEP = 60.0
# A room's recent history is read at most this long after subscribing, confirmed or not.
SUBSCRIBE_WAIT = 1.0
# Lines of one room read from the store at once when catching up (then the next page).
CATCHUP_PAGE = 1000


class _Warm:
    """A room with members here: its subscription, and its history until it is known."""

    __slots__ = ("started", "ready", "loading", "waiting", "live")

    def __init__(self, started: float):
        self.started = started
        self.ready = False
        self.loading = False
        # (member, last read id, backlog budget) of members who entered meanwhile.
        self.waiting: List[tuple] = []
        # Ids delivered live meanwhile (not to be sent again as backlog).
        self.live: set = set()


class _Window:
    """A room's lines since a loss, while the store may still lack some of them."""

    __slots__ = ("since", "base", "seen", "caught", "first", "reading", "held", "held_at",
                 "rereads", "rechecks")

    def __init__(self, since: float, base: Dict[int, int]):
        self.since = since                 # Unix seconds: each pass reads from here
        self.base = base                   # slot -> mark at the loss (all up to it here)
        self.seen: set = set()             # ids delivered here since
        self.caught: set = set()           # ... of them, those read from the store
        self.first: Dict[int, int] = {}    # slot -> its first id delivered live since
        self.reading = 0                   # passes under way
        self.held: list = []               # live lines held back (in order)
        self.held_at = 0.0                 # monotonic time the oldest was held
        self.rereads = 0                   # passes made for the held lines
        self.rechecks = 0                  # passes made AGAIN after another

    def known(self, said_id: int) -> bool:
        # Per node: ids of different nodes are not comparable (their clocks differ).
        return said_id <= self.base.get(said_id & SLOT_MASK, 0) or said_id in self.seen

    def complete(self, reached: Dict[int, int]) -> bool:
        """Whether a pass that read up to ``reached`` (slot -> newest id) saw every
        node's first line delivered live: then it saw all that node's older lines."""
        return _reached(reached, self.first)

    def covers(self, reached: Dict[int, int]) -> bool:
        """Whether the store held, when read, each node's first held line (and so every
        line of that node before it)."""
        firsts: Dict[int, int] = {}
        for said in self.held:
            firsts.setdefault(said.id & SLOT_MASK, said.id)
        return _reached(reached, firsts)


def _reached(reached: Dict[int, int], firsts: Dict[int, int]) -> bool:
    """Whether a read that got up to ``reached`` (slot -> its newest id) got each slot's
    id in ``firsts``: a node stores its lines in id order, so all before it too."""
    return all(reached.get(slot, 0) >= first for slot, first in firsts.items())


class Catchup(StoreReads):
    """What one node reads from the store to deliver chat lines (the module docstring)."""

    def __init__(self, node: "ClusterNode"):
        super().__init__(node)
        self.rooms: Dict[str, _Warm] = {}
        # Room -> id slot -> the last line of that slot (node) delivered here. Every node
        # makes its ids in order and the bus keeps each node's order, so a line from the
        # store with an id at or below its slot's mark was delivered already.
        self.marks: Dict[str, Dict[int, int]] = {}
        # Room -> its window while the store may lack lines delivered live.
        self.windows: Dict[str, _Window] = {}
        # Room -> (until when, ids read from the store by its last window).
        self.caught: Dict[str, tuple] = {}

    # -- rooms with members here ------------------------------------------------------
    def subscribed_rooms(self) -> List[str]:
        return list(self.rooms)

    def entered(self, room) -> None:
        warm = self.rooms.get(room.name)
        if warm is not None:
            return  # still subscribed: its history here is current
        warm = self.rooms[room.name] = _Warm(time.time())
        self.windows[room.name] = _Window(warm.started - MARGIN, {})
        bus = self.node.bus
        bus.subscribe(self.node.room_channel(room.name))
        if bus.up:
            self._later(SUBSCRIBE_WAIT, self.subscribed, room.name)
        else:
            self._load(room.name, warm)

    def subscribed(self, name: str) -> None:
        warm = self.rooms.get(name)
        if warm is not None and not warm.ready and not warm.loading:
            self._load(name, warm)

    def left(self, name: str) -> None:
        """Nobody here is in the room any more: stop listening to its lines."""
        self.rooms.pop(name, None)
        self.marks.pop(name, None)
        self.windows.pop(name, None)
        self.caught.pop(name, None)
        self.node.bus.unsubscribe(self.node.room_channel(name))

    def _load(self, name: str, warm: _Warm) -> None:
        warm.loading = True
        window = self.chat._window
        self._read(self._drained(functools.partial(self.chat.store.recent, name, window)),
                   functools.partial(self._loaded, name, warm),
                   functools.partial(self._load_failed, name, warm))

    def _load_failed(self, name: str, warm: _Warm) -> None:
        warm.loading = False
        self._later(AGAIN, self.subscribed, name)

    def _loaded(self, name: str, warm: _Warm, items) -> None:
        chat = self.chat
        room = chat.rooms.get(name)
        if self.rooms.get(name) is not warm or room is None:
            return
        window = self.windows.get(name)
        base = {} if window is None else window.base
        for said in items:
            room.history.insert(said)
            slot = said.id & SLOT_MASK
            if said.id > base.get(slot, 0):   # known here now: sent as backlog, not live
                base[slot] = said.id
        warm.ready = True
        waiting, warm.waiting = warm.waiting, []
        for member, last_read, budget in waiting:
            if chat.members.get(member.key) is member and name in member.rooms:
                backlog = [s for s in room.history.unseen(last_read, chat.limits.backlog)
                           if s.id not in warm.live]
                chat.send_backlog(member, room, backlog, budget)
        warm.live = set()
        if window is not None:
            # Lines stored by other nodes just before we subscribed, committed just after.
            self._later(AGAIN, self._reread, name, window, True)

    def backlog_later(self, member, room, last_read: int, budget: List[int]) -> bool:
        warm = self.rooms.get(room.name)
        if warm is None or warm.ready:
            return False
        warm.waiting.append((member, last_read, budget))
        return True

    def seen_live(self, said) -> None:
        """A line delivered here as it was said (here, or on another node)."""
        name = said.room
        window = self.windows.get(name)
        if window is not None:
            window.seen.add(said.id)
            window.first.setdefault(said.id & SLOT_MASK, said.id)
        else:
            marks = self.marks.get(name)
            if marks is None:
                marks = self.marks[name] = {}
            slot = said.id & SLOT_MASK
            if said.id > marks.get(slot, 0):
                marks[slot] = said.id
        warm = self.rooms.get(name)
        if warm is not None and not warm.ready:
            warm.live.add(said.id)

    def unseen(self, lines) -> list:
        """``lines`` (live from the bus, one room's) less those delivered here already,
        read from the store first (it can be ahead of the bus as well as behind it).
        Only ids known exactly count: a mark per node would also drop the lines of a
        new process that took a dead one's slot with a clock behind it."""
        name = lines[0].room
        window = self.windows.get(name)
        if window is not None:
            delivered = window.seen
        else:
            kept = self.caught.get(name)
            if kept is None:
                return lines
            if time.monotonic() > kept[0]:
                del self.caught[name]
                return lines
            delivered = kept[1]
        for said in lines:
            if said.id in delivered:
                return [s for s in lines if s.id not in delivered]
        return lines

    def forget_slot(self, slot: int) -> None:
        """Another process now makes the ids of ``slot``: the marks of the one before
        (its clock may have been ahead) say nothing about the new one's lines."""
        for marks in self.marks.values():
            marks.pop(slot, None)

    # -- after losses ---------------------------------------------------------------------
    def gap(self, name: str, since: float) -> None:
        """Deliver the lines of ``name`` since ``since`` (Unix seconds) that are not here."""
        warm = self.rooms.get(name)
        if warm is None:
            return
        window = self.windows.get(name)
        if window is None:
            window = self.windows[name] = _Window(since, dict(self.marks.get(name, {})))
        window.since = min(window.since, since)
        if warm.ready:  # else the pass after the room's load reads from window.since
            self._pass(name, window)

    def _reread(self, name: str, window: _Window, recheck: bool = False) -> None:
        """A later pass (``recheck``: the one AGAIN seconds on), unless the window is
        gone or a pass is under way (its end decides what comes next)."""
        if self.windows.get(name) is window and not window.reading:
            if recheck:
                window.rechecks += 1
            self._pass(name, window)

    def _pass(self, name: str, window: _Window) -> None:
        """Read the room from the window's start, page by page."""
        window.reading += 1
        self._page(name, window, {}, Hybrid.floor(int(window.since * 1000)))

    def _page(self, name: str, window: _Window, reached: Dict[int, int], after: int) -> None:
        self._read(self._drained(functools.partial(self.chat.store.history_after, name, after,
                                                   CATCHUP_PAGE)),
                   functools.partial(self._filled, name, window, reached),
                   functools.partial(self._pass_done, name, window, None))

    def hold(self, lines) -> bool:
        """Keep back ``lines`` (a run of one room's, live from the bus) while the room is
        being read from the store, or lines held already wait for it: True when held."""
        window = self.windows.get(lines[0].room)
        if window is None or not (window.reading or window.held):
            return False
        if not window.held:
            window.held_at = time.monotonic()
        window.held.extend(lines)
        return True

    def _filled(self, name: str, window: _Window, reached: Dict[int, int], items) -> None:
        chat = self.chat
        room = chat.rooms.get(name)
        if self.windows.get(name) is not window:
            return  # nobody here is in the room any more
        if room is None:
            del self.windows[name]  # the room is gone
            return
        seen = window.seen
        count = 0
        for said in items:
            chat.ids.observe(said.id)
            slot = said.id & SLOT_MASK
            if said.id > reached.get(slot, 0):
                reached[slot] = said.id
            if window.known(said.id):
                continue  # delivered already
            seen.add(said.id)
            window.caught.add(said.id)
            room.history.insert(said)
            chat.local.publish(name, said)
            count += 1
        if count:
            log.warning("caught up %d message(s) of %s from the store", count, name)
        if len(items) >= CATCHUP_PAGE:
            self._page(name, window, reached, items[-1].id)
        else:
            self._pass_done(name, window, reached)

    def _pass_done(self, name: str, window: _Window, reached: Optional[Dict[int, int]]) -> None:
        """A pass ended (``reached`` is None when its read failed). After the last under
        way: the held lines, once the store has every older line of their senders; then
        another pass later, or the window closes."""
        if self.windows.get(name) is not window:
            return
        window.reading -= 1
        if window.reading:
            return  # the last pass under way decides
        if window.held:
            waited = time.monotonic() - window.held_at
            covered = reached is not None and window.covers(reached)
            if not covered and waited < HOLD_MAX:
                # Their senders have not committed older lines yet: read again soon.
                delay = min(HOLD_STEP_MAX, HOLD_STEP * (2 ** window.rereads))
                window.rereads += 1
                self._later(delay, self._reread, name, window)
                return
            if not covered:
                log.warning("lines of %s held back for %.0f s while the store lacked older "
                            "lines of their senders are delivered: those may be missing "
                            "here", name, waited)
            held, window.held, window.rereads = window.held, [], 0
            seen = window.seen
            fresh = [s for s in held if s.id not in seen]
            if fresh:
                self.node.replica.said_run(fresh)
                for said in fresh:
                    self.seen_live(said)
        done = reached is not None and window.rechecks > 0 and window.complete(reached)
        if not done and window.rechecks < MAX_RECHECKS:
            self._later(AGAIN, self._reread, name, window, True)
            return
        if not done:
            log.warning("the store does not hold every line of %s delivered live here since "
                        "a loss on the bus; lines said just before it may be missing here",
                        name)
        del self.windows[name]
        if window.caught:
            # The bus may still bring some of them (a node reading it slowly).
            self.caught[name] = (time.monotonic() + CAUGHT_KEEP, window.caught)
        marks = self.marks.setdefault(name, {})
        for slot, mark in window.base.items():
            if mark > marks.get(slot, 0):
                marks[slot] = mark
        for said_id in window.seen:
            slot = said_id & SLOT_MASK
            if said_id > marks.get(slot, 0):
                marks[slot] = said_id

    def after_outage(self, since: float) -> None:
        """The bus is back after being away since ``since`` (Unix seconds)."""
        for name in list(self.rooms):
            self.gap(name, since - MARGIN)
        self.refresh_rooms()
