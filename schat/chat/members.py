"""A member: one logged-in session as the domain sees it."""

from __future__ import annotations

from typing import Dict, List, Optional

from schat.chat.names import user_key


class Member:
    """One logged-in session of an account.

    The connection layer subclasses it to add its outbox; the domain only reads
    and writes the fields below. ``aware`` is False for a client that knows no
    rooms: it stays in #lobby and receives today's message shapes.
    """

    __slots__ = ("name", "key", "admin", "aware", "rooms", "focus", "since", "peer", "cursors",
                 "away", "__weakref__")

    def __init__(self, name: str, admin: bool = False, aware: bool = True, since: int = 0,
                 peer: str = ""):
        self.name = name
        self.key = user_key(name)
        self.admin = admin
        self.aware = aware
        # Room keys in the order the member joined them.
        self.rooms: List[str] = []
        self.focus: Optional[str] = None
        self.since = since
        self.peer = peer
        # Room key -> id of the oldest message this session was sent there (/history pages on).
        self.cursors: Dict[str, int] = {}
        # The away message (/away), shown in /who and /names; None while present. It
        # belongs to this session: a new login starts present.
        self.away: Optional[str] = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Remote:
    """A session of an account on another server process of the same cluster.

    The domain knows it by name only: it counts in rooms' member lists and
    ``/who``, and moderation reaches it through :class:`schat.chat.peers.Peers`.
    ``token`` orders logins of one account across the cluster (the newest
    session wins); ``rooms`` are the rooms it is in, in join order.
    """

    __slots__ = ("name", "key", "admin", "aware", "since", "peer", "node", "token", "rooms",
                 "away")

    def __init__(self, name: str, node: str, token: int, admin: bool = False,
                 aware: bool = True, since: int = 0, peer: str = ""):
        self.name = name
        self.key = user_key(name)
        self.node = node
        self.token = token
        self.admin = admin
        self.aware = aware
        self.since = since
        self.peer = peer
        self.rooms: List[str] = []
        self.away: Optional[str] = None

    def __repr__(self) -> str:
        return f"Remote({self.name!r}@{self.node})"
