"""Events the client makes itself, as opposed to messages the server sent.

A user interface receives these through the same callback as server messages.
They never come off the wire, so a server or another member cannot forge one:
only the client's own checks (an envelope's signature, the contact pins)
produce them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateMessage:
    """An end-to-end encrypted direct message, opened and checked by this client.

    ``verified`` is True when the signature verifies under the key pinned for
    ``sender``; False when it verifies under a key that differs from the pin
    (``warning`` then says why it is not trusted). A message whose signature
    fails is never shown as a PrivateMessage at all. ``version`` is the
    envelope format: 1 for one sealed before key commitments (shown marked).
    """

    TYPE = "dm"

    id: int
    time: int
    sender: str
    to: str
    text: str
    verified: bool
    warning: str = ""
    version: int = 2


@dataclass(frozen=True)
class LocalWarning:
    """Something the user must notice (a key changed, a message was discarded).

    Shown loudly, with the terminal bell in the interactive screen; never
    something the server can send.
    """

    TYPE = "warning"

    text: str
    time: int


@dataclass(frozen=True)
class LocalNotice:
    """Ordinary information from the client itself (e.g. the answer to /whois)."""

    TYPE = "info"

    text: str
    time: int
