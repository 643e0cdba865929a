"""`schat admin`: act on the running server through its control socket."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import click

from schat.commands.common import AppContext, handle_errors, json_option, pass_app, render


def call(app: AppContext, op: str, **fields) -> dict:
    """One request to the server running on this data home."""
    from schat.server.control import control_path, request

    return request(control_path(app.home.server_dir), op, **fields)


@click.group()
def admin():
    """Act on the running server.

    Who is online, kick, disconnect, broadcast, the message of the day. The commands talk to the server of this data home through its control
    socket (HOME/server/control.sock, usable only by the system user the
    server runs as).
    """


@admin.command("who")
@json_option
@pass_app
@handle_errors
def who_cmd(app: AppContext, as_json: bool):
    """List the sessions online: name, address, since, rooms, client.

    On a node of a cluster: every node's sessions, with the node holding each.
    """
    sessions = call(app, "who")["sessions"]
    if as_json:
        render(sessions, [], True)
        return
    rows = [{"name": s["name"], "address": s["address"],
             "since": datetime.fromtimestamp(s["since"] / 1000).strftime("%Y-%m-%d %H:%M"),
             "admin": s["admin"], "rooms": " ".join(s["rooms"]) or "-",
             "client": s["client"], "node": s.get("node") or "-"} for s in sessions]
    headers = ["name", "address", "since", "admin", "rooms", "client"]
    if any(s.get("node") for s in sessions):  # a cluster: every node's sessions
        headers.append("node")
    render(rows, headers, False, empty="Nobody is online.")


@admin.command("kick")
@click.argument("name")
@click.option("--room", metavar="#ROOM", help="Only from this room [default: every room].")
@click.option("--reason", default="", help="Shown to the room and written to the log.")
@pass_app
@handle_errors
def kick_cmd(app: AppContext, name: str, room: Optional[str], reason: str):
    """Put NAME out of a room, or of every room; it may come back."""
    rooms = call(app, "kick", name=name, room=room, reason=reason)["rooms"]
    click.echo(f"Kicked {name} from {', '.join(rooms) if rooms else 'no room'}.")


@admin.command("disconnect")
@click.argument("name")
@click.option("--reason", default="", help="Shown to NAME and its rooms, and logged.")
@pass_app
@handle_errors
def disconnect_cmd(app: AppContext, name: str, reason: str):
    """End NAME's session; it may log in again.

    `schat user lock NAME` keeps it out as well.
    """
    if call(app, "disconnect", name=name, reason=reason)["ended"]:
        click.echo(f"Disconnected {name}.")
    else:
        click.echo(f"{name} is not online.")


@admin.command("broadcast")
@click.argument("text")
@pass_app
@handle_errors
def broadcast_cmd(app: AppContext, text: str):
    """Show TEXT to everyone online, as a notice from the server."""
    reached = call(app, "broadcast", text=text)["reached"]
    click.echo(f"Sent to {reached} session(s).")


@admin.command("motd")
@click.argument("text", required=False, metavar="[TEXT|@FILE]")
@click.option("--clear", is_flag=True, help="Remove the message of the day.")
@pass_app
@handle_errors
def motd_cmd(app: AppContext, text: Optional[str], clear: bool):
    """Show or change the message of the day, without a restart.

    Members online are shown the new one; it lasts until the server stops
    (make it permanent with `schat serve --motd`).
    """
    from schat.commands.serve import read_motd
    from schat.errors import UsageError

    if clear and text:
        raise UsageError("give a new message of the day or --clear, not both")
    if text is None and not clear:
        motd = call(app, "motd")["motd"]
        click.echo(motd if motd else "(no message of the day)")
        return
    call(app, "motd", text="" if clear else read_motd(text))
    click.echo("Cleared the message of the day." if clear else "Changed the message of the day.")
