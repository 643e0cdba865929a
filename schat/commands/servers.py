"""`schat servers`: the servers you connect to (servers.json) and their pinned keys.

Your list is HOME/servers.json (or the --config file); a ./servers.json in the
current directory is read as well and shown as such, but never written.
"""

from __future__ import annotations

from typing import Optional, Tuple

import click

from schat.commands.common import AppContext, handle_errors, json_option, pass_app, render
from schat.store.servers import format_address


def _server_list(app: AppContext, missing_ok: bool = True, creating: bool = False):
    """Your own list (HOME/servers.json, or --config): the one add and remove change."""
    from schat.store.servers import ServerList, find_servers_json

    path = find_servers_json(app.config, app.home, creating=creating)
    return ServerList.load(path, missing_ok=missing_ok or not app.config)


def _all_lists(app: AppContext):
    from schat.store.servers import ServerLists

    return ServerLists.load(app.config, app.home)


@click.group()
def servers():
    """List and edit your servers; forget pinned keys.

    Your list is HOME/servers.json (or the --config file). A servers.json in
    the current directory is read as well (its entries are marked
    ./servers.json) but never changed.
    """


@servers.command("list")
@json_option
@pass_app
@handle_errors
def list_cmd(app: AppContext, as_json: bool):
    """List servers, the list each comes from and their pinned keys.

    "listed in" is `home` for your own list, `./servers.json` for the file in
    the current directory (an entry of yours with the same name hides it).
    """
    from schat.store.known_servers import KnownServers

    lists = _all_lists(app)
    pins = KnownServers(app.home.known_servers).entries()
    rows, covered = [], set()
    for entry in lists.entries() + lists.hidden():
        match = [p for p in pins if p.name == entry.name
                 or (p.host == entry.host and p.port == entry.port)]
        covered.update(id(p) for p in match)
        if entry.fingerprint:
            fp, source = entry.fingerprint, "servers.json"
        elif match:
            fp, source = match[-1].fingerprint, "known_servers"
        else:
            fp, source = None, None
        listed = lists.label(entry.source)
        if lists.find(entry.name) != entry:
            listed += " (hidden by yours)"
        rows.append({"name": entry.name, "address": entry.address_list, "fingerprint": fp,
                     "pinned in": source, "listed in": listed,
                     "addresses": [format_address(h, p) for h, p in entry.all_addresses]})
    # Pins for servers no longer (or never) in a list are shown too.
    rows.extend({"name": p.name, "address": p.address, "fingerprint": p.fingerprint,
                 "pinned in": "known_servers", "listed in": None, "addresses": [p.address]}
                for p in pins if id(p) not in covered)
    if as_json:
        render([{"name": r["name"], "address": r["addresses"][0],
                 "addresses": r["addresses"], "fingerprint": r["fingerprint"],
                 "pinned_in": r["pinned in"], "listed_in": r["listed in"]} for r in rows],
               [], True)
        return
    render(rows, ["name", "address", "fingerprint", "pinned in", "listed in"], False,
           empty="No servers. Add one with `schat servers add NAME --ip IP --port PORT`.")


@servers.command("add")
@click.argument("name")
@click.option("--ip", help="The server's IP address or host name.")
@click.option("--port", type=click.IntRange(1, 65535), help="The server's TCP port.")
@click.option("--address", "addresses", multiple=True, metavar="HOST:PORT",
              help="An address of the server; repeat it for a server run as several nodes "
                   "(tried in order, after --ip/--port when given).")
@click.option("--fingerprint", help="The server key's fingerprint (SHA256:...), if the "
                                    "operator gave it to you: it is then checked, not asked.")
@click.option("--force", is_flag=True, help="Replace an existing entry of that name.")
@pass_app
@handle_errors
def add_cmd(app: AppContext, name: str, ip: Optional[str], port: Optional[int],
            addresses: Tuple[str, ...], fingerprint: Optional[str], force: bool):
    """Add a server to your list, HOME/servers.json (created when missing).

    Give --ip and --port, or one --address per node of a server run as several
    (connecting and reconnecting try them in order). With --config FILE, the
    server goes to that file instead. A ./servers.json in the current directory
    is never changed: an entry you add with the same name hides its.
    """
    from schat.errors import ConfigError, UsageError
    from schat.store.servers import parse_address

    if (ip is None) != (port is None):
        raise UsageError("give both --ip and --port (or --address HOST:PORT)")
    if ip is None:
        if not addresses:
            raise UsageError("give the server's --ip and --port, or --address HOST:PORT")
        try:
            ip, port = parse_address(addresses[0])
        except ValueError as err:
            raise ConfigError(f"--address: {err}") from None
        addresses = addresses[1:]
    servers_ = _server_list(app, creating=True)
    replaced = servers_.find(name) is not None
    entry = servers_.add(name, ip, port, fingerprint, replace=force, more=addresses)
    servers_.save()
    verb, where = ("Replaced", "in") if replaced else ("Added", "to")
    click.echo(f"{verb} {entry.name} ({entry.address_list}) {where} {servers_.path}.")
    lists = _all_lists(app)
    if any(e.name == name for e in lists.hidden()):
        click.echo(f"It hides the {name} of ./servers.json ({lists.local.find(name).address}).")


@servers.command("remove")
@click.argument("name")
@pass_app
@handle_errors
def remove_cmd(app: AppContext, name: str):
    """Remove a server from your list (or the --config file).

    Its pinned key stays in known_servers; see `forget`.
    """
    from schat.errors import ConfigError

    servers_ = _server_list(app, missing_ok=False)
    if servers_.find(name) is None and not app.config:
        local = _all_lists(app).local
        if local is not None and local.find(name) is not None:
            raise ConfigError(f"{name} comes from ./servers.json in the current directory, "
                              "which `schat servers remove` does not change; edit that file, "
                              "or give it with --config ./servers.json")
    entry = servers_.remove(name)
    servers_.save()
    click.echo(f"Removed {entry.name} from {servers_.path}.")


@servers.command("forget")
@click.argument("name")
@pass_app
@handle_errors
def forget_cmd(app: AppContext, name: str):
    """Drop the pinned key of NAME from known_servers.

    Do this only after checking the server's new fingerprint with its operator;
    the next connection then asks to trust the key again.
    """
    from schat.errors import ConfigError
    from schat.store.known_servers import KnownServers

    entry = _all_lists(app).find(name)
    known = KnownServers(app.home.known_servers)
    if entry is not None:
        dropped = False
        for host, port in entry.all_addresses:
            dropped = known.forget(name, host, port) or dropped
    else:
        dropped = known.forget(name)
    if not dropped:
        raise ConfigError(f"no pinned key for {name!r} in {known.path}")
    click.echo(f"Forgot the pinned key of {name}.")
