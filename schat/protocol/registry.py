"""Which message types each side may receive, and when.

Every type is registered in :data:`schat.protocol.messages.REGISTRY` by its
module (:mod:`~schat.protocol.messages`, :mod:`~schat.protocol.dm_messages` or
:mod:`~schat.protocol.room_messages`);
this module imports both, so the registry is complete once the
``schat.protocol`` package is imported, and splits it by direction:

* :data:`SERVER_RECEIVES`: client → server types, plus ``ping``/``pong``/``bye``.
* :data:`CLIENT_RECEIVES`: server → client types, plus ``ping``/``pong``/``bye``.
* :data:`BEFORE_LOGIN`: what a server accepts until a login succeeds.
* :data:`CHECKED`: what a server serves after a login with ``check``.

A type outside the table a connection uses is a protocol error
(docs/PROTOCOL.md §4).

It also holds what a client must accept in each state of its session
(:data:`CLIENT_STATES`: what a server sends then, docs/PROTOCOL.md §2) and
every error code a server sends (:data:`ERROR_CODES`). ``tests/docs`` checks
the document's tables against these, in both directions.
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
# After a login with "check": account-level requests only; every other c->s type is
# decoded but answered by error "invalid" (there is no chat session).
CHECKED = _table(dm_messages.GetKey, dm_messages.SetKey, *_BOTH)

# What a server may send in each state of a client's session after the channel is up
# (docs/PROTOCOL.md §2, "What a client must accept"). A client must accept each of these
# there; the retired ``dm`` is never sent (a client may still decode one, to discard it).
_ANSWERS = (messages.Error, messages.Pong, messages.Ping, messages.Bye)
_LOBBY_SESSION = _ANSWERS + (
    messages.ChatMessage, messages.Ack, messages.Notice, messages.Join, messages.Leave,
    messages.Users, dm_messages.Mailbox, dm_messages.DmEnvelope, dm_messages.Key,
)
CLIENT_STATES: Mapping[str, Mapping[str, Type[Message]]] = {
    # The channel is up, no login has succeeded yet.
    "logging-in": _table(*_ANSWERS, messages.Welcome, room_messages.Checked),
    # Logged in without "features": ["rooms"] (a lobby-only client).
    "lobby-only": _table(*_LOBBY_SESSION),
    # Logged in with "features": ["rooms"].
    "room-aware": _table(*_LOBBY_SESSION, room_messages.RoomState, room_messages.Focus,
                         room_messages.Topic, room_messages.Moderation, room_messages.Rooms),
    # A login with "check" succeeded (answers to get_key and set_key only).
    "checked": _table(*_ANSWERS, dm_messages.Key, messages.Ack),
}

# Every error code a server sends (docs/PROTOCOL.md §4, "Error codes"). A client
# treats a code it does not know like "invalid": the request failed, and the
# connection stays open unless a bye follows.
PROTOCOL_ERROR_CODES = frozenset({"bad_frame", "bad_record", "bad_message",
                                  "unexpected_message"})
ERROR_CODES = PROTOCOL_ERROR_CODES | frozenset({
    # logging in and signing up
    "auth_failed", "locked", "policy", "penalty", "signup_disabled", "too_many_attempts",
    "busy", "throttled", "invalid",
    # chat requests
    "bad_command", "no_such_user", "encryption_required", "muted",
    # direct messages
    "no_key", "key_exists", "key_changed", "mailbox_full",
    # rooms and moderation
    "bad_room", "no_such_room", "not_in_room", "invite_only", "banned", "forbidden", "limit",
    # the end of a session
    "taken_over", "disconnected", "kicked", "removed",
})

if set(SERVER_RECEIVES) | set(CLIENT_RECEIVES) != set(messages.REGISTRY):
    # A new type must be given a direction here, or no peer could ever receive it.
    raise RuntimeError("a registered message type has no direction in schat.protocol.registry")
