"""`schat store`: the account store as a whole."""

from __future__ import annotations

import click

from schat.commands.common import (
    AppContext, handle_errors, json_option, pass_app, render, store_option,
)


@click.group()
def store():
    """Work on the account store as a whole."""


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
