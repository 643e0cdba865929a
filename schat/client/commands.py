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
    ChatCommand("who", "/who", "list who is online"),
    ChatCommand("me", "/me ACTION", "say ACTION in the third person"),
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
