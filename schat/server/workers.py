"""`schat serve --workers N`: N server processes on one machine, one port, one cluster.

The parent checks everything first (as a single `serve` does), then forks N
workers. Each is a whole server and a node of the cluster (its own event loop,
crypto threads and store connections, opened after the fork); they listen on
the same port with SO_REUSEPORT, so the kernel spreads new connections over
them, and they are one chat over the bus. Worker 0 serves the data home's
control socket (`schat admin` reaches every worker's sessions through it: the
actions travel over the bus).

The parent stays small: it forwards SIGTERM/SIGINT (stop) and SIGHUP (reload)
to the workers, restarts a worker that dies (its members reconnect to the
others meanwhile), and gives up when one fails again at once, three times in a
row (a configuration that cannot work: the workers' own errors say why).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Dict, Optional

import click

log = logging.getLogger("schat.server")

# prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1

# A worker that exits within this many seconds of its start failed to start.
QUICK_EXIT = 5.0
QUICK_EXITS_ALLOWED = 3
RESTART_PAUSE = 1.0


def _reserve_port(host: str) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket on a free port: the workers of
    ``--port 0`` all listen on its port, which it holds for as long as they run."""
    infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class _Prefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_worker_prefixed", False):
            record.msg = self.prefix + str(record.msg)
            record._worker_prefixed = True
        return True


def _stop_with(parent: int) -> None:
    """Have this worker sent SIGTERM (a clean stop) when ``parent`` dies, even by SIGKILL,
    which forwards nothing: else an orphaned worker would serve on with nobody to stop
    it (Linux's PR_SET_PDEATHSIG; elsewhere the parent's signals are all there is)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(plan, host_key, replan, settings_path: Optional[str], index: int,
            parent: int) -> int:
    """The body of one worker (in the forked child): a whole `serve`."""
    import asyncio

    from schat.server import service
    from schat.store.accounts import AccountStore
    from schat.store.location import open_engine

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    _stop_with(parent)
    # Every worker logs to the same place: say which one speaks.
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Prefix(f"worker {index}: "))
    store = AccountStore(open_engine(plan.store_url, plan.home), owns_engine=True)
    reloader = service.Reloader(plan, replan, settings_path or "(no settings file)")
    try:
        asyncio.run(service.run(plan, host_key, store, reloader, worker=index))
    except OSError as err:
        s = plan.settings
        click.echo(f"Error: worker {index}: cannot listen on {s.host}:{s.port}: "
                   f"{err.strerror or err}", err=True)
        return 1
    except Exception as err:  # noqa: BLE001 - the worker's last word, in one line
        click.echo(f"Error: worker {index}: {err}", err=True)
        return 1
    finally:
        store.close()
    return 0


def run_workers(plan, host_key, replan, settings_path: Optional[str]) -> int:
    """Run ``plan.workers`` workers until SIGTERM/SIGINT; the exit status."""
    holder = None
    if plan.settings.port == 0:
        holder = _reserve_port(plan.settings.host)
        plan.settings.port = holder.getsockname()[1]
    children: Dict[int, int] = {}        # pid -> worker index
    started: Dict[int, float] = {}       # worker index -> monotonic start
    quick: Dict[int, int] = {}           # worker index -> quick exits in a row
    state = {"stopping": False, "code": 0}

    def spawn(index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = _worker(plan, host_key, replan, settings_path, index, parent)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
        started[index] = time.monotonic()

    def forward(sig: int) -> None:
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(signum, frame) -> None:
        state["stopping"] = True
        forward(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: forward(signal.SIGHUP))
    try:
        for index in range(plan.workers):
            spawn(index)
        click.echo(f"schat serve: {plan.workers} workers on {plan.settings.host}:"
                   f"{plan.settings.port} (pids {' '.join(str(p) for p in children)}); "
                   "stop with Ctrl-C")
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if state["stopping"]:
                continue
            lived = time.monotonic() - started[index]
            quick[index] = quick.get(index, 0) + 1 if lived < QUICK_EXIT else 0
            if quick[index] >= QUICK_EXITS_ALLOWED:
                click.echo(f"Error: worker {index} failed {quick[index]} times in a row "
                           f"(last exit status {code}); stopping every worker", err=True)
                state["stopping"], state["code"] = True, 1
                forward(signal.SIGTERM)
                continue
            log.warning("worker %d (pid %d) exited with status %d; starting it again",
                        index, pid, code)
            click.echo(f"worker {index} (pid {pid}) exited with status {code}; starting it "
                       "again", err=True)
            time.sleep(RESTART_PAUSE * quick[index])
            if not state["stopping"]:
                spawn(index)
    finally:
        if children:
            forward(signal.SIGKILL)
        if holder is not None:
            holder.close()
    return state["code"]
