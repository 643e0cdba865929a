"""Running the server as a long-lived process: checks, the data home, signals, reloads.

``schat serve`` first checks everything that can fail (the settings, the
listening addresses, an existing host key and account store, the log file,
the metrics extra) and only then creates what a first start needs (the host
key, the account store). While it runs, SIGINT/SIGTERM stop it cleanly and
SIGHUP re-reads the settings: what can change without a restart is applied
and logged, what cannot is named in the log.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import click

from schat import logs
from schat.errors import ConfigError, KeyFileError, SchatError
from schat.paths import Home
from schat.server.limits import ServerSettings

log = logging.getLogger("schat.server")

# Settings keys that a reload applies to the running server, and the
# ServerSettings field each one is (log-level is the process's own).
RELOADABLE = {"motd": "motd", "allow-signup": "allow_signup", "log-level": None,
              **{key: key.replace("-", "_") for key in (
                  "rate-limit", "rate-burst", "address-rate-limit", "address-rate-burst",
                  "max-unauthenticated", "max-unauthenticated-per-ip", "penalty-base",
                  "penalty-max", "signups-per-hour")}}


@dataclass
class Plan:
    """Everything one `schat serve` run will do, resolved and checked."""

    settings: ServerSettings
    home: Home
    log_level: int = logging.INFO
    log_file: Optional[Path] = None
    log_format: str = "text"
    log_rotate: logs.Rotation = logs.Rotation("size", 10 << 20)
    log_keep: int = logs.DEFAULT_KEEP
    metrics: Optional[Tuple[str, int]] = None
    # --store URL (a PostgreSQL store); None is the home's SQLite file.
    store_url: Optional[str] = None
    # --bus URL: a node of a cluster (schat.cluster); None: a single server.
    bus: Optional[str] = None
    presence_lease: float = 10.0
    # --host-key FILE; None: the data home's.
    host_key: Optional[Path] = None
    workers: int = 1
    # Settings key -> effective value, for --print-settings and reload diffs.
    effective: Dict[str, Any] = field(default_factory=dict)
    # Settings key -> where its value came from.
    origin: Dict[str, str] = field(default_factory=dict)


# -- checks before anything is created ----------------------------------------------

def check_listen(host: str, port: int, what: str = "") -> None:
    """ConfigError now when ``host:port`` cannot be bound (in use, not an address of
    this machine, a privileged port, an unknown name); binds and closes, creates nothing."""
    label = f"{what}cannot listen on {host}:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ConfigError(f"{label}: {err.strerror}") from None
    seen = set()
    for family, kind, proto, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        try:
            with socket.socket(family, kind, proto) as sock:
                # As asyncio's create_server does: a port in TIME_WAIT is free,
                # one with a listener is not.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
        except OSError as err:
            raise ConfigError(f"{label}: {err.strerror or err}") from None


def load_host_key(path: Path):
    """The existing host key, or None when there is none yet (nothing is created)."""
    from schat.crypto import keys

    if not path.exists():
        return None
    try:
        data = path.read_bytes()
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read the host key ({err.strerror})") from None
    try:
        return keys.import_private_pem(data, None)
    except KeyFileError as err:
        raise KeyFileError(f"{path}: {err}") from None


def create_host_key(path: Path):
    """Generate the server's RSA host key and write it (0600, atomically)."""
    from schat.crypto import keys
    from schat.store.files import atomic_write

    click.echo(f"Generating the server's host key ({keys.RSA_BITS}-bit RSA, a few seconds)...",
               err=True)
    key = keys.generate_rsa_key()
    atomic_write(path, keys.export_private_pem(key, None), mode=0o600)
    return key


def open_existing_store(url: Optional[str], home: Home):
    """(store, engine): the account store when it exists (checked by a read), else
    None and, for a PostgreSQL URL, its engine, connected but with nothing created."""
    from schat.store.accounts import AccountStore
    from schat.store.location import open_engine

    if not url and not home.users_db.exists():
        return None, None
    engine = open_engine(url, home)
    try:
        if url and engine.version(AccountStore.component) == 0:
            return None, engine
        store = AccountStore(engine, owns_engine=True)
        store.count()
    except BaseException:
        engine.close()
        raise
    return store, None


def prepare(plan: Plan, init: bool = False):
    """Check, then create what a first start needs; return (host key, store, created).

    Nothing is created unless every check passed: the listening address and the
    metrics address can be bound, the log file can be written, an existing host
    key and account store open.
    """
    from schat.store.accounts import AccountStore

    home = plan.home
    key_path = plan.host_key or home.host_key
    host_key = load_host_key(key_path)
    if host_key is None and plan.host_key is not None and not init:
        raise KeyFileError(f"{key_path}: no host key there; copy the cluster's host key to this "
                           f"node (every node uses the same one), or create one with "
                           f"`schat serve --init --host-key {key_path}`")
    if not init:
        check_cluster(plan)
    store, engine = open_existing_store(plan.store_url, home)
    try:
        if not init:
            if plan.metrics is not None:
                from schat.server import metrics_http

                metrics_http.import_client()
            check_listen(plan.settings.host, plan.settings.port)
            if plan.metrics is not None:
                host, port = plan.metrics
                for i in range(plan.workers if port else 1):
                    check_listen(host, port + i, what="--metrics: ")
            if plan.log_file is not None:
                logs.check_writable(plan.log_file)
        created: List[Path] = []
        if host_key is None:
            host_key = create_host_key(key_path)
            created.append(key_path)
        if store is None:
            store = AccountStore(engine or home.users_db, owns_engine=True)
            created.append(store.where)
    except BaseException:
        if store is not None:
            store.close()
        elif engine is not None:
            engine.close()
        raise
    return host_key, store, created


def check_cluster(plan: Plan) -> None:
    """ConfigError (or BusError) now for a cluster that cannot work: --workers without a
    bus, a bus without a shared PostgreSQL store, a bus that cannot be reached."""
    if plan.workers > 1 and not plan.bus:
        raise ConfigError("--workers: the workers are nodes of one cluster, so they need "
                          "--bus redis://... and a PostgreSQL --store (docs/CLUSTER.md)")
    if not plan.bus:
        return
    from schat.cluster.bus import check_bus_url, check_reachable
    from schat.cluster.node import NEEDS_POSTGRES

    check_bus_url(plan.bus)
    if not plan.store_url:
        raise ConfigError(NEEDS_POSTGRES)
    if plan.workers > 1 and plan.log_file is not None and plan.log_rotate.kind != "never":
        raise ConfigError("--workers with --log-file: every worker writes the same file, so "
                          "only an outside rotation works: give --log-rotate never (and "
                          "logrotate; each worker reopens the moved file)")
    check_reachable(plan.bus)


# -- reloading -----------------------------------------------------------------

def describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"{value[:37]!r}..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def apply_reload(server, old: Plan, new: Plan) -> Tuple[List[str], List[str]]:
    """Apply what changed between two plans to the running server and the log level.

    Returns (what changed, what changed but needs a restart), each as
    ``key: old -> new`` texts (the MOTD only as "changed": it may be long).
    """
    changed: List[str] = []
    restart: List[str] = []
    updates: Dict[str, Any] = {}
    for key in sorted(set(old.effective) | set(new.effective)):
        before, after = old.effective.get(key), new.effective.get(key)
        if before == after:
            continue
        text = "motd changed" if key == "motd" else \
            f"{key} {describe(before)} -> {describe(after)}"
        if key in RELOADABLE:
            changed.append(text)
            if RELOADABLE[key] is not None:
                updates[RELOADABLE[key]] = getattr(new.settings, RELOADABLE[key])
        else:
            restart.append(text)
    if updates:
        server.reconfigure(**updates)
    if new.log_level != old.log_level:
        logs.set_level(new.log_level)
    return changed, restart


class Reloader:
    """SIGHUP: re-plan from the settings file and the original command line, apply."""

    def __init__(self, plan: Plan, replan: Callable[[], Plan], source: str):
        self.plan = plan
        self.replan = replan
        self.source = source

    def __call__(self, server) -> None:
        try:
            new = self.replan()
        except SchatError as err:
            log.error("reload: %s; the running settings are kept", err)
            return
        except Exception:  # noqa: BLE001 - a reload must never stop the server
            log.exception("reload: internal error; the running settings are kept")
            return
        changed, restart = apply_reload(server, self.plan, new)
        # The settings that need a restart keep their running values until then.
        kept = {k: v for k, v in self.plan.effective.items() if k not in RELOADABLE}
        new.effective.update(kept)
        self.plan = new
        log.info("reloaded %s: %s", self.source, "; ".join(changed) if changed else "no change")
        if restart:
            log.warning("reload: cannot change without a restart (running values kept): %s",
                        "; ".join(restart))


# -- running -------------------------------------------------------------------

def cluster_settings(plan: Plan, worker: Optional[int] = None):
    """The ClusterSettings of this process (None: a single server)."""
    if not plan.bus:
        return None
    from schat.cluster.settings import ClusterSettings

    return ClusterSettings(plan.bus, plan.presence_lease, control=worker in (None, 0),
                           reuse_port=plan.workers > 1)


async def run(plan: Plan, host_key, store, reloader: Optional[Reloader] = None,
              worker: Optional[int] = None) -> None:
    """Serve until SIGINT or SIGTERM; SIGHUP calls ``reloader``. ``worker``: this
    process's number among ``--workers`` (worker 0 serves the control socket)."""
    from schat.server.app import Server
    from schat.server.control import control_path

    cluster = cluster_settings(plan, worker)
    control = control_path(plan.home.server_dir) if cluster is None or cluster.control \
        else None
    server = Server(plan.settings, host_key, store, control_socket=control, cluster=cluster)
    try:
        bound_host, bound_port = await server.start()
    except BaseException:
        server.pool.shutdown(wait=False)
        server.chat_store.close()
        raise
    endpoint = None
    if plan.metrics is not None:
        from schat.server.metrics_http import MetricsEndpoint

        host, port = plan.metrics
        if worker and port:
            port += worker  # one endpoint per worker: PORT, PORT+1, ...
        try:
            endpoint = MetricsEndpoint(server, host, port)
        except BaseException:
            await server.stop()
            raise
    # Signals are handled before the banner: a supervisor that sees "listening"
    # and sends SIGTERM at once must get a clean stop.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handlers = [(signal.SIGINT, stop.set), (signal.SIGTERM, stop.set)]
    if reloader is not None and hasattr(signal, "SIGHUP"):
        handlers.append((signal.SIGHUP, lambda: reloader(server)))
    for sig, handler in handlers:
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix loops
            signal.signal(sig, lambda *_, h=handler: loop.call_soon_threadsafe(h))
    settings = plan.settings
    who = f"worker {worker}: " if worker is not None else ""
    click.echo(f"{who}schat server {settings.server_name!r} listening on "
               f"{bound_host}:{bound_port}")
    click.echo(f"{who}host key fingerprint: {server.fingerprint}")
    if server.cluster is not None:
        click.echo(f"{who}cluster node {server.cluster.id} (id slot {server.cluster.lease.slot}) "
                   f"on bus {server.cluster.bus.where}, presence lease "
                   f"{plan.presence_lease:g} s")
    if endpoint is not None:
        click.echo("metrics on http://{}:{}/metrics".format(*endpoint.address))
    click.echo(f"{who}sign-up is {'open' if settings.allow_signup else 'closed'}; "
               "stop with Ctrl-C", nl=True)
    try:
        await server.serve_until(stop)
    finally:
        if endpoint is not None:
            endpoint.close()
