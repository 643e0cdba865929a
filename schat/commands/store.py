"""`schat store`: the server's stored data as a whole (backups)."""

from __future__ import annotations

import click

from schat.commands.common import AppContext, handle_errors, pass_app


@click.group()
def store():
    """The server's stored data: accounts, stored messages, host key."""


@store.command("backup")
@click.argument("path", type=click.Path(file_okay=False))
@pass_app
@handle_errors
def backup_cmd(app: AppContext, path: str):
    """Back up the server's files into PATH, a new data home.

    Safe while the server runs: the account store is copied with SQLite's online backup API (one consistent
    snapshot, checked), the host key as it is. Restore by copying PATH/server
    into the data home while the server is stopped; `schat --home PATH user
    list` reads the backup as it is.
    """
    from schat.store.backup import backup_home

    report = backup_home(app.home, path)
    click.echo(f"Backed up {report.source} to {report.destination / report.source.name}:")
    for item in report.files:
        if item.database:
            detail = f"{item.accounts} account(s)" if item.accounts is not None else "database"
            if item.stored_messages is not None:
                detail += f", {item.stored_messages} stored message(s)"
            detail += ", integrity ok"
        else:
            detail = f"{item.size} bytes"
        click.echo(f"  {item.name}: {detail}")
