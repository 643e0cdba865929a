"""`schat serve`: run a chat server from the data home."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, Optional

import click

from schat import logs
from schat.commands.common import AppContext, handle_errors, pass_app, store_option
from schat.commands.settings_file import (COMMAND_LINE, DEFAULT, SettingsFile, Sources,
                                          render, settings_options)
from schat.errors import ConfigError, SchatError, UsageError
from schat.paths import Home

# The longest name a server may announce (it is shown in every member's toolbar).
MAX_NAME = 64


def read_motd(motd: Optional[str], label: str = "--motd") -> str:
    """``--motd TEXT`` or ``--motd @FILE``; at most 4 KiB of UTF-8."""
    from schat.protocol.schema import MAX_TEXT_BYTES

    if not motd:
        return ""
    if motd.startswith("@"):
        path = Path(motd[1:]).expanduser()
        try:
            motd = path.read_text(encoding="utf-8").rstrip("\n")
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"{label}: cannot read {path}: "
                             f"{getattr(err, 'strerror', None) or err}") from None
    if len(motd.encode("utf-8")) > MAX_TEXT_BYTES:
        raise UsageError(f"{label}: the message of the day is longer than {MAX_TEXT_BYTES} bytes")
    return motd


def resolve_address(app: AppContext, server: Optional[str], host: Optional[str],
                    port: Optional[int]):
    """(entry name or None, host, port): ``--server NAME``'s entry in servers.json, else
    127.0.0.1:5555; ``--host``/``--port`` override either. Without ``--server`` the
    client's servers.json is never read: its entries are places to connect to."""
    from schat.server.limits import DEFAULT_HOST, DEFAULT_PORT
    from schat.store.servers import resolve_server

    if server is None:
        return None, host or DEFAULT_HOST, DEFAULT_PORT if port is None else port
    entry = resolve_server(app.config, app.home, server)
    return entry.name, host or entry.host, entry.port if port is None else port


def check_name(name: str) -> str:
    """The name the server announces: 1 to 64 printable characters."""
    if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"{name[:MAX_NAME]!r} is not a server name (1 to {MAX_NAME} "
                         "printable characters)")
    return name


class NameType(click.ParamType):
    name = "TEXT"

    def convert(self, value, param, ctx):
        try:
            return check_name(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


class MetricsAddress(click.ParamType):
    name = "HOST:PORT"

    def convert(self, value, param, ctx):
        from schat.server.metrics_http import parse_address

        if isinstance(value, tuple):
            return value
        try:
            return parse_address(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


@click.command()
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Read settings from a TOML file: every option below is a key of the same "
                   "name (rate-limit = 5, allow-signup = false). Options given here override "
                   "it; SIGHUP re-reads it.")
@click.option("--print-settings", is_flag=True,
              help="Print the effective settings as TOML (secrets masked) and exit.")
@click.option("--init", is_flag=True,
              help="Create the host key and the account store in the data home, print the "
                   "fingerprint and exit.")
@click.option("--server", "server_name", metavar="NAME",
              help="Listen on the address of NAME in servers.json, and announce NAME "
                   "[default: 127.0.0.1:5555].")
@click.option("--host", help="Address to listen on [default: 127.0.0.1; 0.0.0.0 for every "
                             "IPv4 address].")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one [default: 5555].")
@click.option("--name", type=NameType(),
              help="The server's name, shown to members at login [default: NAME of --server, "
                   "else schat].")
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
@click.option("--account-ceiling", type=click.IntRange(min=1), metavar="N",
              help="Password failures for one account, from all addresses, before only "
                   "addresses with no failures may try its password [default: 100].")
@click.option("--signups-per-hour", type=click.IntRange(min=0), metavar="N",
              help="Accounts one address may create by sign-up in any hour, 0 for no "
                   "limit [default: 5].")
@click.option("--new-account-age", type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long a signed-up account counts as new (its direct messages to "
                   "an absent member share a small part of the mailbox) [default: 86400].")
@click.option("--address-rate-limit", type=click.FloatRange(min=0), metavar="PER_SECOND",
              help="Chat messages per second from one address, all its members together, "
                   "0 for no limit [default: 100].")
@click.option("--address-rate-burst", type=click.IntRange(min=1), metavar="N",
              help="Messages one address may send at once before its rate applies "
                   "[default: 400].")
@click.option("--dm-check-share", type=click.FloatRange(min=0, max=1, min_open=True),
              metavar="FRACTION",
              help="Share of a crypto thread's time the direct-message signature checks of "
                   "one address may use [default: 0.05].")
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
@click.option("--log-level", type=click.Choice(list(logs.LEVELS), case_sensitive=False),
              help="Least important log records written [default: info; -v and --debug "
                   "before the command set it too].")
@click.option("--log-file", type=click.Path(dir_okay=False), metavar="PATH",
              help="Write the log to PATH (created 0600) instead of stderr.")
@click.option("--log-format", type=click.Choice(logs.FORMATS), default="text",
              show_default=True, help="Log lines as text, or one JSON object per line.")
@click.option("--log-rotate", type=logs.RotationType(), default=logs.DEFAULT_ROTATE,
              show_default=True,
              help="Rotate the --log-file at this size (500KiB, 10MiB, 1GiB), daily at "
                   "midnight, or never (for logrotate: the file is reopened when moved).")
@click.option("--log-keep", type=click.IntRange(0, 1000), default=logs.DEFAULT_KEEP,
              show_default=True, metavar="N", help="Rotated log files kept.")
@click.option("--metrics", type=MetricsAddress(), metavar="HOST:PORT",
              help="Serve Prometheus metrics on http://HOST:PORT/metrics (a PORT alone "
                   "listens on 127.0.0.1). Counts only; needs the schat[metrics] extra.")
@click.option("--rooms-per-member", type=click.IntRange(min=1), metavar="N",
              help="Rooms one member may be in at once [default: 50].")
@click.option("--rooms-total", type=click.IntRange(min=1), metavar="N",
              help="Rooms on the server in total; /join of a new one is refused past it "
                   "[default: 1000].")
@click.option("--topic-bytes", type=click.IntRange(1, 1024), metavar="BYTES",
              help="Longest room topic [default: 390].")
@click.option("--history-limit", type=click.IntRange(min=1), metavar="N",
              help="Messages kept per room [default: 1000].")
@click.option("--history-days", type=click.IntRange(min=0), metavar="DAYS",
              help="Days a room message is kept, 0 for no age bound [default: 0].")
@click.option("--backlog", type=click.IntRange(min=0), metavar="N",
              help="Unseen messages per room sent on /join and at login [default: 50].")
@click.option("--durable-acks/--fast-acks", default=None,
              help="Acknowledge a chat line only once it is stored, so a crash loses no "
                   "acknowledged line (costs more server CPU per message in rooms of a "
                   "few hundred; see bench/README.md) [default: False].")
@click.option("--host-key", type=click.Path(dir_okay=False), metavar="FILE",
              help="The server's host key [default: HOME/server/host_key.pem]. Every node of "
                   "a cluster uses the same one (copy the file), so the fingerprint members "
                   "pinned holds on all of them; with --init it is created there.")
@click.option("--bus", metavar="URL", envvar="SCHAT_BUS", show_envvar=True,
              help="Join a cluster: the Redis bus its nodes share, redis://[:PASSWORD@]HOST:"
                   "PORT/N or rediss://... (TLS). Needs a PostgreSQL --store shared by every "
                   "node and the schat[cluster] extra; implies --durable-acks "
                   "(docs/CLUSTER.md).")
@click.option("--presence-lease", type=click.FloatRange(1, 600), metavar="SECONDS",
              help="A node silent on the bus this long counts as gone: its members leave "
                   "presence and may log in elsewhere [default: 10].")
@click.option("--workers", type=click.IntRange(1, 64), metavar="N",
              help="Run N server processes sharing the port (SO_REUSEPORT), one per core, "
                   "as nodes of one cluster: needs --bus and a PostgreSQL --store "
                   "[default: 1].")
@store_option
@pass_app
@handle_errors
def serve(app: AppContext, settings_path, print_settings, init, **values):
    """Run the chat server (Ctrl-C or SIGTERM stops it, SIGHUP reloads).

    Listens on 127.0.0.1:5555 unless told otherwise. The host key is created on
    first start in HOME/server/host_key.pem; its fingerprint is printed at
    every start: give it to your members so they can check it when they first
    connect. Everything that can fail is checked before anything is created.
    """
    from schat.server import service

    ctx = click.get_current_context()
    sources = Sources(ctx, values)
    command = ctx.command

    def replan() -> service.Plan:
        file = SettingsFile.load(settings_path, command, ctx) if settings_path else None
        return build_plan(app, sources, file, command)

    plan = replan()
    if print_settings:
        click.echo(print_plan(plan, command, settings_path), nl=False)
        return
    host_key, store, created = service.prepare(plan, init=init)
    try:
        if init:
            report_init(plan.home, host_key, created)
            return
        start_logging(plan)
        reloader = service.Reloader(plan, replan, settings_path or "(no settings file)")
        if plan.workers > 1:
            from schat.server.workers import run_workers

            store.close()
            code = run_workers(plan, host_key, replan, settings_path)
            if code:
                raise SystemExit(code)
            return
        try:
            asyncio.run(service.run(plan, host_key, store, reloader))
        except OSError as err:
            s = plan.settings
            raise ConfigError(f"cannot listen on {s.host}:{s.port}: {err.strerror or err}") \
                from None
    finally:
        store.close()
        if plan.log_file is not None:
            logs.use_stderr()


def report_init(home: Home, host_key, created) -> None:
    from schat.crypto.keys import fingerprint

    for path in created:
        click.echo(f"Created {path}")
    if not created:
        click.echo(f"Already set up: {home.server_dir}")
    click.echo(f"host key fingerprint: {fingerprint(host_key)}")


def start_logging(plan) -> None:
    logs.lean_records()
    logs.set_level(plan.log_level)
    if plan.log_file is not None:
        logs.install(logs.file_handler(plan.log_file, plan.log_rotate, plan.log_keep,
                                       plan.log_format))
    else:
        logs.use_stderr(plan.log_format)


# -- the plan: flags, the settings file and defaults, resolved -------------------

# Options whose name is not the ServerSettings field of the same name.
_NOT_FIELDS = {"server_name", "name", "host", "port", "motd", "ping_timeout", "bus",
               "presence_lease", "host_key", "workers"}


def build_plan(app: AppContext, sources: Sources, file: Optional[SettingsFile],
               command: click.Command):
    """Resolve one run of `serve`; errors name the flag, or the file and line."""
    from schat.cluster.settings import PRESENCE_LEASE
    from schat.server.limits import PING_TIMEOUT, ServerSettings
    from schat.server.service import Plan

    values, origin = sources.merge(file)
    sources.apply_hidden(file, origin)

    def where(name: str, key: str) -> str:
        if origin.get(name, DEFAULT) in (COMMAND_LINE, DEFAULT):
            return f"--{key}"
        return f"{origin[name]}: {key}"

    fields = {f.name for f in dataclasses.fields(ServerSettings)}
    chosen: Dict[str, Any] = {name: value for name, value in values.items()
                              if name in fields and name not in _NOT_FIELDS
                              and value is not None}
    if values.get("ping_interval") is not None:
        chosen["ping_timeout"] = min(PING_TIMEOUT, values["ping_interval"])
    if values.get("ping_timeout") is not None:
        chosen["ping_timeout"] = values["ping_timeout"]
    try:
        entry, host, port = resolve_address(app, values.get("server_name"), values.get("host"),
                                            values.get("port"))
    except SchatError as err:
        if origin.get("server_name", DEFAULT) in (COMMAND_LINE, DEFAULT):
            raise
        raise type(err)(f"{where('server_name', 'server')}: {err}") from None
    try:
        motd = read_motd(values.get("motd"), where("motd", "motd"))
    except UsageError as err:
        if origin.get("motd", DEFAULT) in (COMMAND_LINE, DEFAULT):
            raise
        raise ConfigError(str(err)) from None
    chosen.update(host=host, port=port, server_name=values.get("name") or entry or "schat",
                  motd=motd)
    if values.get("bus") and values.get("durable_acks") is None:
        # A node may die at any moment; members catch up from the store, so what was
        # acknowledged must be in it.
        chosen["durable_acks"] = True
    try:
        settings = ServerSettings(**chosen)
    except ValueError as err:
        # The message names the fields it is about; point at one the file set.
        text = str(err).replace("_", "-")
        for name in re.findall(r"[a-z_]+", str(err)):
            if origin.get(name, DEFAULT) not in (COMMAND_LINE, DEFAULT):
                prefix = "" if str(err).startswith(name) else f"{name.replace('_', '-')}: "
                raise ConfigError(f"{origin[name]}: {prefix}{text}") from None
        raise UsageError(text) from None

    plan = Plan(settings=settings, home=app.home, store_url=app.store_url,
                log_format=values.get("log_format") or "text",
                log_file=Path(values["log_file"]) if values.get("log_file") else None,
                log_rotate=values.get("log_rotate") or logs.parse_rotation(logs.DEFAULT_ROTATE),
                log_keep=values.get("log_keep", logs.DEFAULT_KEEP),
                metrics=values.get("metrics"), bus=values.get("bus") or None,
                presence_lease=values.get("presence_lease") or PRESENCE_LEASE,
                host_key=Path(values["host_key"]).expanduser() if values.get("host_key")
                else None,
                workers=values.get("workers") or 1)
    # --log-level, else -v/--debug before the command (flags both), else the file.
    level = values.get("log_level")
    if origin.get("log_level") != COMMAND_LINE and app.log_level is not None:
        level, origin["log_level"] = logs.level_name(app.log_level), COMMAND_LINE
    plan.log_level = logs.LEVELS[(level or "info").lower()]

    for key, option in settings_options(command).items():
        name = option.name
        plan.origin[key] = origin.get(name, DEFAULT)
        plan.effective[key] = _effective(name, values, settings, plan, app, file)
    return plan


def _effective(name: str, values: Dict[str, Any], settings, plan, app: AppContext,
               file: Optional[SettingsFile]) -> Any:
    """The value a setting has in effect (a default filled in, a path resolved)."""
    if name == "name":
        return settings.server_name
    if name == "home":
        return str(app.home.root)
    if name == "config":
        return str(app.config) if app.config else None
    if name == "store":
        return app.store_url
    if name == "log_level":
        return logs.level_name(plan.log_level)
    if name == "log_rotate":
        return str(plan.log_rotate)
    if name == "metrics":
        return "{}:{}".format(*plan.metrics) if plan.metrics else None
    if name == "host_key":
        return str(plan.host_key or app.home.host_key)
    if name in ("bus", "presence_lease", "workers"):
        return getattr(plan, name)
    if name not in ("server_name",) and hasattr(settings, name):
        return getattr(settings, name)
    if name not in values:  # a hidden option this module does not know: the file's value
        return file.values.get(name) if file is not None else None
    value = values.get(name)
    return str(value) if isinstance(value, Path) else value


def print_plan(plan, command: click.Command, settings_path: Optional[str]) -> str:
    """The effective settings as a TOML settings file."""
    items = []
    for key in settings_options(command):
        origin = plan.origin.get(key, DEFAULT)
        note = "" if origin == DEFAULT else ("from " + origin)
        items.append((key, plan.effective.get(key), note))
    header = ["schat serve: effective settings (built-in defaults, then "
              + (f"{settings_path}, then " if settings_path else "") + "the command line).",
              "Every key is a flag of `schat serve`; secrets are masked."]
    return render(items, header)
