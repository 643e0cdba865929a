"""The chat commands as data: one table for the chat screen, the line client and /help.

Each command says where it runs: ``server`` (sent as a command line), ``dm``
(answered by the client's :class:`~schat.client.dm.DmClient`, end-to-end),
``client`` (the client itself: leaving, reconnecting) or ``screen`` (the chat
screen only). ``aliases`` are other names that run it (IRC habits: the
server is sent the command's own name); ``related`` are words people type
meaning it, for "did you mean".
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple


class ChatCommand(NamedTuple):
    """One ``/command``: its usage line, a one-line help, where it runs, and whether
    its first argument is a member name (for completion)."""

    name: str
    usage: str
    help: str
    runs: str = "server"
    takes_name: bool = False
    # Its first argument is a room: "joined" (one you are in) or "any" (also the ones
    # you heard of: /rooms, invitations); for completion.
    takes_room: str = ""
    aliases: Tuple[str, ...] = ()
    related: Tuple[str, ...] = ()


COMMANDS: Dict[str, ChatCommand] = {c.name: c for c in (
    ChatCommand("help", "/help [COMMAND]", "list the commands, or show how to use one",
                related=("commands", "h", "?")),
    ChatCommand("who", "/who [#ROOM]",
                "list who is in the room, and who is away (default: the current room)",
                aliases=("names",), takes_room="any", related=("users", "online", "members", "nicks")),
    ChatCommand("me", "/me ACTION", "say ACTION in the third person",
                related=("action", "emote", "describe")),
    ChatCommand("join", "/join #ROOM", "join (or create) a room; your plain lines then go "
                "there. Room messages are encrypted between you and the server, not end to "
                "end: the server's operator can read them (/msg is end-to-end)",
                takes_room="any", related=("j", "channel", "enter", "create")),
    ChatCommand("part", "/part [#ROOM] [REASON]", "leave a room (default: the current one)",
                takes_room="joined", related=("leave", "p", "close")),
    ChatCommand("rooms", "/rooms", "list the rooms you may join",
                aliases=("list",), related=("channels", "chanlist", "ls")),
    ChatCommand("switch", "/switch #ROOM|N", "make a room you are in the current one (N: its "
                "number in the toolbar; also Alt-N, Ctrl-N, Ctrl-P)",
                takes_room="joined", related=("window", "win", "buffer", "go", "focus")),
    ChatCommand("topic", "/topic [TEXT]", "show or set the room's topic",
                related=("subject", "title")),
    ChatCommand("history", "/history [N]", "show N earlier messages of the room",
                related=("backlog", "log", "scrollback", "more")),
    ChatCommand("msg", "/msg NAME TEXT", "send TEXT to NAME alone, end-to-end encrypted",
                runs="dm", takes_name=True,
                related=("tell", "whisper", "pm", "dm", "privmsg", "notice", "m", "w")),
    ChatCommand("query", "/query [NAME [TEXT]]",
                "send your lines to NAME alone from now on (/query alone: to the room again)",
                runs="screen", takes_name=True, related=("chat", "talk")),
    ChatCommand("whois", "/whois NAME", "show NAME's key fingerprint and your pin",
                runs="dm", takes_name=True, related=("fingerprint", "key", "finger", "info")),
    ChatCommand("verify", "/verify NAME", "show the safety code to compare with NAME",
                runs="dm", takes_name=True, related=("safety", "code", "check")),
    ChatCommand("trust", "/trust NAME [FINGERPRINT]",
                "accept NAME's changed key, the one /verify showed", runs="dm", takes_name=True,
                related=("accept", "pin")),
    ChatCommand("away", "/away [MESSAGE]",
                "mark yourself away with MESSAGE, shown in /who (/away alone: back)",
                related=("afk", "brb", "back")),
    ChatCommand("ignore", "/ignore [NAME]",
                "hide NAME's messages, on this client, from now on (/ignore alone: the list)",
                runs="screen", takes_name=True, related=("block", "silence", "hide")),
    ChatCommand("unignore", "/unignore NAME", "show NAME's messages again", runs="screen",
                takes_name=True, related=("unblock", "unhide")),
    ChatCommand("reconnect", "/reconnect", "drop the connection and log in again now",
                runs="screen", related=("connect", "reconn", "server", "retry")),
    ChatCommand("clear", "/clear", "clear the screen", runs="screen", related=("cls",)),
    ChatCommand("quit", "/quit", "leave the chat (also Ctrl-D on an empty line)", runs="client",
                aliases=("exit",), related=("bye", "q", "logout", "signoff")),
)}

# The commands a DmClient answers, without their "/".
DM_COMMANDS: Tuple[str, ...] = tuple(c.name for c in COMMANDS.values() if c.runs == "dm")


def lookup(name: str, commands: Dict[str, ChatCommand] = COMMANDS) -> Optional[ChatCommand]:
    """The command called ``name`` (without the ``/``) or one of its aliases, any case."""
    name = name.lower()
    command = commands.get(name)
    if command is not None:
        return command
    return next((c for c in commands.values() if name in c.aliases), None)


# Room roles and moderation: sent to the server like the room commands above, listed by
# `/help COMMAND` and the server's /help, but kept out of the completion menu so that
# every command a member needs day to day fits in it on a 24-row terminal.
MODERATION: Dict[str, ChatCommand] = {c.name: c for c in (
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
