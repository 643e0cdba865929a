"""The chat commands as data: one table for the chat screen, the line client and /help.

Each command says where it runs: ``server`` (sent as a command line), ``dm``
(answered by the client's :class:`~schat.client.dm.DmClient`, end-to-end),
``client`` (the client itself: leaving) or ``screen`` (the chat screen only).
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Tuple


class ChatCommand(NamedTuple):
    """One ``/command``: its usage line, a one-line help, where it runs, and whether
    its first argument is a member name (for completion)."""

    name: str
    usage: str
    help: str
    runs: str = "server"
    takes_name: bool = False


COMMANDS: Dict[str, ChatCommand] = {c.name: c for c in (
    ChatCommand("help", "/help [COMMAND]", "list the commands, or show how to use one"),
    ChatCommand("who", "/who [#ROOM]", "list who is in the room (default: the current one)"),
    ChatCommand("me", "/me ACTION", "say ACTION in the third person"),
    ChatCommand("join", "/join #ROOM", "join (or create) a room; your plain lines then go "
                "there. Room messages are encrypted between you and the server, not end to "
                "end: the server's operator can read them (/msg is end-to-end)"),
    ChatCommand("part", "/part [#ROOM] [REASON]", "leave a room (default: the current one)"),
    ChatCommand("rooms", "/rooms", "list the rooms you may join"),
    ChatCommand("switch", "/switch #ROOM", "send your plain lines to a room you are in"),
    ChatCommand("topic", "/topic [TEXT]", "show or set the room's topic"),
    ChatCommand("history", "/history [N]", "show N earlier messages of the room"),
    ChatCommand("msg", "/msg NAME TEXT", "send TEXT to NAME alone, end-to-end encrypted",
                runs="dm", takes_name=True),
    ChatCommand("whois", "/whois NAME", "show NAME's key fingerprint and your pin",
                runs="dm", takes_name=True),
    ChatCommand("verify", "/verify NAME", "show the safety code to compare with NAME",
                runs="dm", takes_name=True),
    ChatCommand("trust", "/trust NAME [FINGERPRINT]",
                "accept NAME's changed key, the one /verify showed", runs="dm", takes_name=True),
    ChatCommand("clear", "/clear", "clear the screen", runs="screen"),
    ChatCommand("quit", "/quit", "leave the chat (also Ctrl-D on an empty line)", runs="client"),
)}

# The commands a DmClient answers, without their "/".
DM_COMMANDS: Tuple[str, ...] = tuple(c.name for c in COMMANDS.values() if c.runs == "dm")

# Room roles and moderation: sent to the server like the room commands above, listed by
# `/help COMMAND` and the server's /help, but kept out of the completion menu so that
# every command a member needs day to day fits in it on a 24-row terminal.
MODERATION: Dict[str, ChatCommand] = {c.name: c for c in (
    ChatCommand("names", "/names [#ROOM]", "the same as /who"),
    ChatCommand("room", "/room private|public", "make the room invite-only, or open"),
    ChatCommand("invite", "/invite NAME", "let NAME join this room", takes_name=True),
    ChatCommand("op", "/op NAME", "make NAME an op of the room", takes_name=True),
    ChatCommand("deop", "/deop NAME", "take NAME's op role", takes_name=True),
    ChatCommand("kick", "/kick NAME [REASON]", "put NAME out of the room", takes_name=True),
    ChatCommand("ban", "/ban NAME [DURATION] [REASON]", "keep NAME out of the room",
                takes_name=True),
    ChatCommand("unban", "/unban NAME", "lift NAME's ban", takes_name=True),
    ChatCommand("mute", "/mute NAME [DURATION] [REASON]", "stop NAME speaking in the room",
                takes_name=True),
    ChatCommand("unmute", "/unmute NAME", "let NAME speak again", takes_name=True),
    ChatCommand("bans", "/bans", "list the room's bans and mutes"),
    ChatCommand("disconnect", "/disconnect NAME [REASON]", "end NAME's session (admins)",
                takes_name=True),
    ChatCommand("lock", "/lock NAME [REASON]", "lock NAME's account (admins)", takes_name=True),
)}
