"""`schat serve`: run a chat server from the data home."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Optional

import click

from schat.commands.common import (
    AppContext, handle_errors, open_app_store, pass_app, setup_logging, store_option,
)
from schat.errors import ConfigError, KeyFileError, UsageError

log = logging.getLogger("schat.server")


def load_or_create_host_key(path: Path):
    """The server's RSA host key; generated (0600, atomically) on first start."""
    from schat.crypto import keys
    from schat.store.files import atomic_write

    if path.exists():
        try:
            data = path.read_bytes()
        except OSError as err:
            raise KeyFileError(f"{path}: cannot read the host key ({err.strerror})") from None
        try:
            return keys.import_private_pem(data, None)
        except KeyFileError as err:
            raise KeyFileError(f"{path}: {err}") from None
    click.echo(f"Generating the server's host key ({keys.RSA_BITS}-bit RSA, a few seconds)...",
               err=True)
    key = keys.generate_rsa_key()
    atomic_write(path, keys.export_private_pem(key, None), mode=0o600)
    return key


def read_motd(motd: Optional[str]) -> str:
    """``--motd TEXT`` or ``--motd @FILE``; at most 4 KiB of UTF-8."""
    from schat.protocol.schema import MAX_TEXT_BYTES

    if not motd:
        return ""
    if motd.startswith("@"):
        path = Path(motd[1:]).expanduser()
        try:
            motd = path.read_text(encoding="utf-8").rstrip("\n")
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"--motd: cannot read {path}: "
                             f"{getattr(err, 'strerror', None) or err}") from None
    if len(motd.encode("utf-8")) > MAX_TEXT_BYTES:
        raise UsageError(f"--motd: the message of the day is longer than {MAX_TEXT_BYTES} bytes")
    return motd


def resolve_address(app: AppContext, server: Optional[str], host: Optional[str],
                    port: Optional[int]):
    """(name, host, port): explicit options, else servers.json, else 127.0.0.1:5555."""
    from schat.server.limits import DEFAULT_HOST, DEFAULT_PORT
    from schat.store.servers import ServerList, find_servers_json

    path = find_servers_json(app.config, app.home)
    if server is not None or (host is None and port is None):
        if path.exists():
            servers = ServerList.load(path)
            if server is not None:
                entry = servers.get(server)
            else:
                entry = servers.entries()[0] if servers.entries() else None
            if entry is not None:
                return entry.name, host or entry.host, entry.port if port is None else port
        elif server is not None:
            raise ConfigError(f"--server {server}: no servers.json found "
                              f"(looked for --config, ./servers.json and {app.home.servers_json})")
    return "schat", host or DEFAULT_HOST, DEFAULT_PORT if port is None else port


@click.command()
@click.option("--server", "server_name", metavar="NAME",
              help="Listen on the address of NAME in servers.json [default: its first entry].")
@click.option("--host", help="Address to listen on (overrides servers.json).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one (overrides servers.json).")
@click.option("--allow-signup/--no-signup", default=True, show_default=True,
              help="Let newcomers create their own accounts.")
@click.option("--motd", metavar="TEXT|@FILE", help="Message of the day shown at login.")
@click.option("--login-deadline", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Seconds allowed for handshake + login [default: 30].")
@click.option("--ping-interval", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Ping a client silent for this long [default: 60].")
@click.option("--ping-timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Drop a pinged client still silent after this long "
                   "[default: 30, or the ping interval when shorter].")
@click.option("--max-auth-attempts", type=click.IntRange(min=1), metavar="N",
              help="Failed logins per connection before it is closed [default: 3].")
@click.option("--max-unauthenticated", type=click.IntRange(min=1), metavar="N",
              help="Connections not yet logged in, in total [default: 1024].")
@click.option("--max-unauthenticated-per-ip", type=click.IntRange(min=1), metavar="N",
              help="Connections not yet logged in, from one address [default: 64].")
@click.option("--outbound-cap", type=click.IntRange(min=1024), metavar="BYTES",
              help="Unsent output a client may pile up before it alone is dropped "
                   "[default: 1048576].")
@click.option("--rate-limit", type=click.FloatRange(min=0), metavar="PER_SECOND",
              help="Chat messages per second per member, 0 for no limit [default: 5].")
@click.option("--rate-burst", type=click.IntRange(min=1), metavar="N",
              help="Messages a member may send at once before the rate applies [default: 20].")
@click.option("--crypto-workers", type=click.IntRange(min=1), metavar="N",
              help="Threads for RSA and password hashing [default: one per core].")
@click.option("--max-pending-logins", type=click.IntRange(min=1), metavar="N",
              help="Hash/RSA jobs that may wait for a thread; more logins are answered "
                   "busy [default: 64].")
@click.option("--penalty-base", type=click.FloatRange(min=0), metavar="SECONDS",
              help="First wait after repeated failed logins from an address or for an "
                   "account; doubles per failure, 0 disables [default: 2].")
@click.option("--penalty-max", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Longest such wait; a record quiet this long is forgotten [default: 300].")
@click.option("--mailbox-limit", type=click.IntRange(min=1), metavar="N",
              help="Direct messages stored per absent recipient; more are refused "
                   "[default: 500].")
@click.option("--gil-switch-interval", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS",
              help="Longest a thread may hold the interpreter lock while the chat loop "
                   "waits for it [default: 0.0005].")
@click.option("--crypto-nice", type=click.IntRange(0, 19), metavar="N",
              help="Niceness added to the RSA and password-hashing threads, so a login "
                   "flood takes CPU from logins, not from chat [default: 10].")
@click.option("--handshake-budget", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS",
              help="Handshake and login work done per event-loop turn before chat is "
                   "served again [default: 0.001].")
@store_option
@pass_app
@handle_errors
def serve(app: AppContext, server_name, host, port, allow_signup, motd, login_deadline,
          ping_interval, ping_timeout, **limits):
    """Run the chat server (Ctrl-C or SIGTERM stops it cleanly).

    The host key is created on first start in HOME/server/host_key.pem; its
    fingerprint is printed at every start: give it to your members so they can
    check it when they first connect.
    """
    from schat.server.limits import PING_TIMEOUT, ServerSettings

    setup_logging(app.log_level if app.log_level is not None else logging.INFO)
    name, host, port = resolve_address(app, server_name, host, port)
    chosen = {key: value for key, value in limits.items() if value is not None}
    if login_deadline is not None:
        chosen["login_deadline"] = login_deadline
    if ping_interval is not None:
        chosen["ping_interval"] = ping_interval
        chosen["ping_timeout"] = min(PING_TIMEOUT, ping_interval)
    if ping_timeout is not None:
        chosen["ping_timeout"] = ping_timeout
    try:
        settings = ServerSettings(host=host, port=port, server_name=name,
                                  motd=read_motd(motd), allow_signup=allow_signup, **chosen)
    except ValueError as err:
        raise UsageError(str(err).replace("_", "-")) from None
    host_key = load_or_create_host_key(app.home.host_key)
    store = open_app_store(app)
    try:
        asyncio.run(_run(settings, host_key, store))
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    finally:
        store.close()


async def _run(settings, host_key, store) -> None:
    from schat.server.app import Server

    server = Server(settings, host_key, store)
    try:
        bound_host, bound_port = await server.start()
    except BaseException:
        server.pool.shutdown(wait=False)
        raise
    click.echo(f"schat server {settings.server_name!r} listening on {bound_host}:{bound_port}")
    click.echo(f"host key fingerprint: {server.fingerprint}")
    click.echo(f"sign-up is {'open' if settings.allow_signup else 'closed'}; "
               "stop with Ctrl-C", nl=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix loops
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    await server.serve_until(stop)
