"""`schat store`: the account store as a whole (backups, migration to PostgreSQL)."""

from __future__ import annotations

import click

from schat.commands.common import (
    AppContext, handle_errors, json_option, pass_app, render, store_option,
)
from schat.errors import UsageError


@click.group()
def store():
    """Work on the account store as a whole: back it up, migrate it."""


@store.command("backup")
@click.argument("path", type=click.Path(file_okay=False))
@store_option
@pass_app
@handle_errors
def backup_cmd(app: AppContext, path: str):
    """Back up the server's files into PATH, a new data home.

    Safe while the server runs: the account store is copied with SQLite's
    online backup API (one consistent snapshot, checked), the host key as it
    is. Restore by copying PATH/server into the data home while the server is
    stopped; `schat --home PATH user list` reads the backup as it is.
    """
    from schat.store.backup import backup_home

    if app.store_url:
        raise UsageError("--store: `schat store backup` copies a data home's SQLite store and "
                         "host key; back up a PostgreSQL store with pg_dump (docs/CLUSTER.md) "
                         "and copy HOME/server/host_key.pem")
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


@store.command("migrate")
@click.option("--to", "target", required=True, metavar="URL",
              help="The store to copy into: postgresql://USER:PASSWORD@HOST:PORT/DATABASE.")
@click.option("--replace", is_flag=True,
              help="Empty the target's schat tables first (else a non-empty target is refused).")
@json_option
@store_option
@pass_app
@handle_errors
def migrate_cmd(app: AppContext, target: str, replace: bool, as_json: bool):
    """Copy the store (accounts, keys, stored messages) to PostgreSQL.

    The source is --store, else the data home's SQLite file. It is read in one
    snapshot and copied in one transaction, which commits only when every
    table's rows and count match the source. Stop the servers first: what they
    write after the copy is not carried over.
    """
    from schat.store.migrate import migrate

    report = migrate(app.store_url, target, app.home, replace)
    if as_json:
        render([report.to_json()], [], True)
        return
    rows = [{"table": name, "rows": n} for name, n in report.tables.items()]
    click.echo(f"Copied to {report.target}:")
    render(rows, ["table", "rows"], False)
    click.echo("Verified: every table's rows and count match the source.")
