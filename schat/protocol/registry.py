"""Which message types each side may receive, and when.

Every type is registered in :data:`schat.protocol.messages.REGISTRY` by its
module (:mod:`~schat.protocol.messages`, :mod:`~schat.protocol.dm_messages` or
:mod:`~schat.protocol.room_messages`);
this module imports both, so the registry is complete once the
``schat.protocol`` package is imported, and splits it by direction:

* :data:`SERVER_RECEIVES`: client → server types, plus ``ping``/``pong``/``bye``.
* :data:`CLIENT_RECEIVES`: server → client types, plus ``ping``/``pong``/``bye``.
* :data:`BEFORE_LOGIN`: what a server accepts until a login succeeds.

A type outside the table a connection uses is a protocol error
(docs/PROTOCOL.md §4).
"""

from __future__ import annotations

from typing import Mapping, Type

from schat.protocol import dm_messages, messages, room_messages
from schat.protocol.messages import Message

_BOTH = (messages.Ping, messages.Pong, messages.Bye)
_LOGIN = (messages.Login, messages.LoginKey, messages.Signup)
_CLIENT_TO_SERVER = _LOGIN + (
    messages.Say, messages.Command, messages.Who, messages.Msg,
    dm_messages.GetKey, dm_messages.SetKey, dm_messages.DmSend, dm_messages.DmAck,
)
_SERVER_TO_CLIENT = (
    messages.Welcome, messages.Error, messages.ChatMessage, messages.Ack, messages.Notice,
    messages.Join, messages.Leave, messages.Users, messages.Dm,
    dm_messages.Key, dm_messages.DmEnvelope, dm_messages.Mailbox,
    room_messages.Checked, room_messages.RoomState, room_messages.Focus, room_messages.Topic,
    room_messages.Moderation, room_messages.Rooms,
)


def _table(*classes: Type[Message]) -> Mapping[str, Type[Message]]:
    return {cls.TYPE: cls for cls in classes}


SERVER_RECEIVES = _table(*_CLIENT_TO_SERVER, *_BOTH)
CLIENT_RECEIVES = _table(*_SERVER_TO_CLIENT, *_BOTH)
BEFORE_LOGIN = _table(*_LOGIN, *_BOTH)

if set(SERVER_RECEIVES) | set(CLIENT_RECEIVES) != set(messages.REGISTRY):
    # A new type must be given a direction here, or no peer could ever receive it.
    raise RuntimeError("a registered message type has no direction in schat.protocol.registry")
