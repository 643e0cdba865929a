"""The domain's bounds, each an operator setting (``schat serve`` flags)."""

from __future__ import annotations

from dataclasses import dataclass

# Rooms one member may be in at once (IRC servers use CHANLIMIT 20-120).
ROOMS_PER_MEMBER = 50
# Rooms on the server in total: a flood of /join from throwaway accounts ends here.
ROOMS_TOTAL = 1000
# Topic length in UTF-8 bytes (IRC TOPICLEN is commonly 390).
TOPIC_BYTES = 390
# An away message (/away), in characters: a short note, not a second chat channel.
AWAY_CHARS = 200
# Messages kept per room, and their age in days (0: no age bound).
HISTORY_LIMIT = 1000
HISTORY_DAYS = 0
# Messages a member receives on /join and at login from each room it has not seen.
BACKLOG = 50
# Messages one /history request returns at most.
HISTORY_PAGE = 200
# Bans/mutes and invitations kept per room (a hostile op cannot grow memory without bound).
ENTRIES_PER_ROOM = 10_000


@dataclass
class ChatLimits:
    """Bounds of the chat domain; each refusal past one is a clear error, never a disconnect."""

    rooms_per_member: int = ROOMS_PER_MEMBER
    rooms_total: int = ROOMS_TOTAL
    topic_bytes: int = TOPIC_BYTES
    away_chars: int = AWAY_CHARS
    history_limit: int = HISTORY_LIMIT
    history_days: int = HISTORY_DAYS
    backlog: int = BACKLOG
    history_page: int = HISTORY_PAGE
    entries_per_room: int = ENTRIES_PER_ROOM
    # Bytes of backlog sent at a login over every room (the connection layer sets it
    # below its outbound cap, so a member with many busy rooms is never dropped as slow).
    backlog_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        for name in ("rooms_per_member", "rooms_total", "history_limit", "history_page",
                     "entries_per_room", "backlog_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("history_days", "backlog"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 1 <= self.topic_bytes <= 1024:
            raise ValueError("topic_bytes must be between 1 and 1024")
        # An away message travels as short text (1,024 bytes): 4 bytes a character at most.
        if not 1 <= self.away_chars <= 256:
            raise ValueError("away_chars must be between 1 and 256")
        if self.backlog > self.history_limit:
            self.backlog = self.history_limit
