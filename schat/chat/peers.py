"""The other server processes of a cluster, as the chat domain sees them.

A single server has none (``Chat.peers`` is None) and every rule of the domain
applies to its own sessions. In a cluster, :class:`Peers` (implemented by
:mod:`schat.cluster.node`) is told when this process's sessions start and end
and when a room gets its first member here, and carries what must reach a
session held elsewhere; :class:`schat.chat.replica.Replica` applies what the
others did. Sessions of other processes appear in the domain as
:class:`~schat.chat.members.Remote` (``Chat.remote``, ``Room.remote``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from schat.chat.members import Member, Remote
    from schat.chat.rooms import Room


class Peers(ABC):
    """What the domain asks of the rest of the cluster (every call returns at once)."""

    @abstractmethod
    def login(self, member: "Member", replaced: Optional["Remote"]) -> None:
        """``member`` logged in here (``replaced``: the session elsewhere it takes over):
        tell every process, which ends any older session of the account."""

    @abstractmethod
    def logout(self, member: "Member") -> None:
        """``member``'s session here ended."""

    @abstractmethod
    def away(self, member: "Member") -> None:
        """``member`` set or cleared its away message (``member.away``)."""

    @abstractmethod
    def end(self, remote: "Remote", action: str, actor: Optional[str], reason: str) -> None:
        """Ask the process holding ``remote`` to end it (disconnect, lock, remove), shown to
        its rooms as ``action`` by ``actor`` (None: the operator)."""

    @abstractmethod
    def entered(self, room: "Room") -> None:
        """``room`` has its first member on this process (it was left to the others)."""

    @abstractmethod
    def backlog_later(self, member: "Member", room: "Room", last_read: int,
                      budget: List[int]) -> bool:
        """True when ``room``'s recent history on this process is not known yet (its
        first member here just entered): the process then sends ``member`` the messages
        after ``last_read`` itself once it has them from the store."""

    @abstractmethod
    def emptied(self, room: "Room") -> None:
        """A membership of ``room`` ended and nobody is online in it anywhere: remove
        the room (and tell the others) once the store confirms nobody belongs to it."""

    @abstractmethod
    def motd(self, text: str) -> None:
        """The message of the day changed here (the operator): every process takes it."""
