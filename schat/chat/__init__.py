"""The chat domain: rooms, members, roles, moderation, history, commands as data.

Socket-free and wire-free: nothing here imports asyncio, sockets or
``schat.protocol``. The domain speaks its own small event types
(:mod:`schat.chat.events`); every delivery goes through one fan-out
(:mod:`schat.chat.fanout`), and everything it keeps goes through one store
interface (:mod:`schat.chat.store`). docs/INTERNALS.md describes the seams.
"""

from schat.chat.chat import Chat
from schat.chat.fanout import Fanout, InProcessFanout, Sink
from schat.chat.limits import ChatLimits
from schat.chat.members import Member
from schat.chat.names import LOBBY, room_key, user_key
from schat.chat.store import ChatStore, MemoryChatStore

__all__ = ["Chat", "ChatLimits", "ChatStore", "Fanout", "InProcessFanout", "LOBBY", "Member",
           "MemoryChatStore", "Sink", "room_key", "user_key"]
