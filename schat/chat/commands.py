"""The chat commands as data: name, usage, help, handler, and who may use it.

The table is the domain's; the connection layer only passes command lines in.
``/help`` reads it. A handler is the name of a :class:`schat.chat.chat.Chat`
method taking ``(member, args, cid, room)``; it raises
:class:`~schat.chat.errors.Refusal` to refuse, and returning normally
acknowledges the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

TRANSPORT_NOTE = ("room messages are encrypted between each client and the server, not end "
                  "to end: the server and its operator can read them and keep them as "
                  "history; use /msg for end-to-end encrypted private messages")


@dataclass(frozen=True)
class Command:
    """One ``/command``; ``admin``: server admins only; ``rooms``: needs a client that knows rooms."""
    name: str
    usage: str
    help: str
    handler: str
    admin: bool = False
    rooms: bool = False


COMMANDS: Dict[str, Command] = {c.name: c for c in (
    Command("help", "/help [COMMAND]", "list the commands, or explain one", "cmd_help"),
    Command("who", "/who [#ROOM]", "list who is in the room (default: the current one)",
            "cmd_who"),
    Command("names", "/names [#ROOM]", "the same as /who", "cmd_who"),
    Command("me", "/me ACTION", "say ACTION in the third person", "cmd_me"),
    Command("away", "/away [MESSAGE]", "mark yourself away with MESSAGE, shown in /who and "
            "/names (/away alone: back)", "cmd_away"),
    Command("msg", "/msg NAME TEXT", "send TEXT to NAME alone, end-to-end encrypted by your "
            "client", "cmd_msg"),
    Command("join", "/join #ROOM", "join a room, creating a public one if it does not exist; "
            "plain lines then go there. Note: " + TRANSPORT_NOTE, "cmd_join", rooms=True),
    Command("part", "/part [#ROOM] [REASON]", "leave a room (default: the current one)",
            "cmd_part", rooms=True),
    Command("rooms", "/rooms", "list the rooms you may join, with members online and topics",
            "cmd_rooms"),
    Command("switch", "/switch #ROOM", "send plain lines to this room (one you are in)",
            "cmd_switch", rooms=True),
    Command("topic", "/topic [TEXT]", "show the room's topic, or set it (ops, owner, admins)",
            "cmd_topic"),
    Command("room", "/room private|public", "make the room invite-only, or open again "
            "(owner, ops, admins)", "cmd_mode", rooms=True),
    Command("invite", "/invite NAME", "let NAME join this room even when it is private "
            "(ops, owner, admins)", "cmd_invite", rooms=True),
    Command("op", "/op NAME", "make NAME an op of this room (owner, admins)", "cmd_op"),
    Command("deop", "/deop NAME", "take NAME's op role in this room (owner, admins)",
            "cmd_deop"),
    Command("kick", "/kick NAME [REASON]", "put NAME out of the room; they may come back",
            "cmd_kick"),
    Command("ban", "/ban NAME [DURATION] [REASON]", "put NAME out and keep them out, for "
            "DURATION (30s, 10m, 2h, 1d, 1w) or until /unban", "cmd_ban"),
    Command("unban", "/unban NAME", "lift NAME's ban from the room", "cmd_unban"),
    Command("mute", "/mute NAME [DURATION] [REASON]", "stop NAME from speaking in the room, for "
            "DURATION or until /unmute", "cmd_mute"),
    Command("unmute", "/unmute NAME", "let NAME speak again", "cmd_unmute"),
    Command("bans", "/bans", "list the room's bans and mutes (ops, owner, admins)", "cmd_bans"),
    Command("history", "/history [N]", "show N earlier messages of the room (default 50); "
            "again for the ones before", "cmd_history", rooms=True),
    Command("disconnect", "/disconnect NAME [REASON]", "end NAME's session (admins)",
            "cmd_disconnect", admin=True),
    Command("lock", "/lock NAME [REASON]", "lock NAME's account and end its session (admins)",
            "cmd_lock", admin=True),
    Command("quit", "/quit", "leave the chat", "cmd_quit"),
)}


def find(name: str) -> Optional[Command]:
    return COMMANDS.get(name.lower())


def help_text(admin: bool) -> str:
    """The command list for a member (admins also see theirs)."""
    shown = [c for c in COMMANDS.values() if admin or not c.admin]
    width = max(len(c.usage) for c in shown)
    lines = [f"{c.usage.ljust(width)}  {c.help.split('. Note:')[0]}" for c in shown]
    return "\n".join(lines + ["Moderation (kick, ban, mute, unban, unmute, bans): the room's ops, "
                              "owner and server admins.", "Note: " + TRANSPORT_NOTE + "."])
