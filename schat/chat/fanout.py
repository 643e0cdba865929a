"""The one place every delivery goes through: (channel, event) -> members to deliver to.

A channel is a room (``#dev``), one user (``@ann``) or everyone (``*``). The
domain publishes each event once; :class:`InProcessFanout` finds the sessions
of this process that should get it and hands them, with the event, to the
connection layer's :class:`Sink`, which encodes it once for all of them. A
message bus between server processes replaces :class:`InProcessFanout` with
one that publishes to the bus, and calls :meth:`InProcessFanout.publish` for
what arrives from it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Iterable, List, Optional

from schat.chat import events as ev
from schat.chat.members import Member

if TYPE_CHECKING:  # pragma: no cover
    from schat.chat.chat import Chat

EVERYONE = "*"


def user_channel(key: str) -> str:
    return "@" + key


class Sink(ABC):
    """The connection layer: puts events into members' outboxes."""

    @abstractmethod
    def deliver(self, event, members: Iterable[Member], exclude: Optional[Member] = None) -> None:
        """Deliver ``event`` to every one of ``members`` but ``exclude`` (encode it once)."""

    def deliver_run(self, events: List, members: Iterable[Member],
                    exclude: Optional[Member] = None) -> None:
        """Deliver chat lines of one room, in order, to every one of ``members`` but
        ``exclude``: as :meth:`deliver` for each (a connection layer may share the
        work among them: they go to the same members)."""
        members = list(members)
        for event in events:
            self.deliver(event, members, exclude)

    @abstractmethod
    def reply(self, member: Member, event, cid: Optional[str] = None) -> None:
        """Deliver an answer to ``member``'s own request; ``cid`` is that request's id
        (opaque to the domain, None for what answers no request), for the connection
        layer to put on the answer."""

    @abstractmethod
    def close(self, member: Member, code: str, reason: str) -> None:
        """Tell ``member`` why (``code``, ``reason``) and end its session."""


class Fanout(ABC):
    """Where the domain sends every event meant for more than the requesting session."""

    @abstractmethod
    def publish(self, channel: str, event) -> None:
        """Deliver ``event`` to the members of ``channel``."""


class InProcessFanout(Fanout):
    """Delivery to the sessions of this process."""

    def __init__(self, chat: "Chat", sink: Sink):
        self.chat = chat
        self.sink = sink

    def recipients(self, channel: str, event) -> Iterable[Member]:
        """The local sessions ``event`` on ``channel`` goes to.

        A room event goes to the room's members; one that takes a member out of
        the room (a part, a kick, a ban) also to that member, who is no longer
        in the room's list by then.
        """
        chat = self.chat
        kind = channel[0]
        if kind == "#":
            room = chat.rooms.get(channel)
            members: Iterable[Member] = room.members.values() if room is not None else ()
            subject = None
            if type(event) is ev.Parted:
                subject = event.user
            elif type(event) is ev.Moderated and event.action in ev.REMOVING:
                subject = event.target
            if subject is not None:
                gone = chat.members.get(subject.lower())
                if gone is not None and (room is None or gone.key not in room.members):
                    return [*members, gone]
            return members
        if kind == "@":
            member = chat.members.get(channel[1:])
            return (member,) if member is not None else ()
        return chat.members.values()

    @staticmethod
    def excluded(chat: "Chat", event) -> Optional[Member]:
        """The session that must not get its own event: the sender of a chat line
        (it gets an acknowledgement) or the member who joined (it gets the room's state)."""
        kind = type(event)
        if kind is ev.Said:
            return chat.members.get(event.sender.lower())
        if kind is ev.Joined:
            return chat.members.get(event.user.lower())
        return None

    def publish(self, channel: str, event) -> None:
        self.sink.deliver(event, self.recipients(channel, event), self.excluded(self.chat, event))

    def publish_run(self, room: str, lines: List[ev.Said]) -> None:
        """Deliver chat lines of ``room`` in order, as :meth:`publish` for each: a run of
        lines with the same local sender to exclude (usually none: they were said on
        another node) goes to the sink at once."""
        chat = self.chat
        start = 0
        while start < len(lines):
            exclude = self.excluded(chat, lines[start])
            end = start + 1
            while end < len(lines) and self.excluded(chat, lines[end]) is exclude:
                end += 1
            self.sink.deliver_run(lines[start:end], self.recipients(room, lines[start]),
                                  exclude)
            start = end
