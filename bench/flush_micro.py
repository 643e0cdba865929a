"""The fan-out hot path in one process, without the network: CPU per delivery.

    python -m bench.flush_micro [--members 200] [--messages 2000] [--batch 1] [--store sqlite]

Builds a real server (:class:`schat.server.app.Server`, not started) with N
logged-in sessions whose connections finished a real handshake, each link's
transport replaced by a sink that accepts every write at once (so no kernel
time: what remains is the Python and the record layer around ``send()``), or
with ``--sockets`` by a real asyncio transport over an AF_UNIX socket whose
other end a child process reads.
Then one member says ``--messages`` lines, ``--batch`` per loop turn, each
followed by the server's flush, and the CPU time of this thread per delivery
is printed (best of ``--repeat`` runs). With ``--store sqlite`` the chat's
history goes to a real SQLite file through the group-commit writer, as in
``schat serve``; ``memory`` leaves the store out.

This is for comparing changes to the hot path on a noisy machine (the
figures that count come from ``bash bench/peer.sh``, side by side with the
peer): run it before and after, in the same minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from schat.chat import MemoryChatStore
from schat.crypto import keys
from schat.protocol import messages
from schat.protocol.connection import ClientConnection, ServerConnection
from schat.server.app import Server
from schat.server.hub import Session
from schat.server.limits import ServerSettings
from schat.server.link import CHAT, ClientLink
from schat.store.accounts import AccountStore
from schat.store.chat import SqliteChatStore

HOST_KEY_BITS = 3072


class SinkTransport:
    """Accepts every write whole (a socket with room to spare), counts the bytes."""

    def __init__(self):
        self.bytes = 0
        self.closed = False

    def write(self, data):
        self.bytes += len(data)

    def get_write_buffer_size(self):
        return 0

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def get_extra_info(self, name, default=None):
        return default

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True


def open_pair(host_key):
    """A ServerConnection whose handshake with a real ClientConnection completed."""
    server = ServerConnection(host_key)
    client = ClientConnection()
    client.receive_data(server.data_to_send())
    client.next_event()
    client.accept_server_key()
    server.receive_data(client.data_to_send())
    server.next_event()
    server.complete_key_exchange()
    client.receive_data(server.data_to_send())
    while client.next_event() is not None:
        pass
    while server.next_event() is not None:
        pass
    server.logged_in()
    return server


class _Quiet(asyncio.Protocol):
    """The protocol of the real sockets' transports (nothing is read from them)."""


def _drain_forever(fds) -> None:
    """In a child process: read every socket until all of them end."""
    import selectors
    sel = selectors.DefaultSelector()
    for fd in fds:
        sel.register(fd, selectors.EVENT_READ)
    open_fds = set(fds)
    while open_fds:
        for key, _ in sel.select():
            try:
                data = os.read(key.fd, 1 << 20)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fd)
                open_fds.discard(key.fd)
    os._exit(0)


def real_transports(loop, count: int):
    """``count`` asyncio transports over AF_UNIX stream sockets whose other ends a child
    process reads (so the kernel's part of a send is in the figure, the reader's is not)."""
    pairs = [socket.socketpair() for _ in range(count)]
    pid = os.fork()
    if pid == 0:
        for ours, _ in pairs:
            ours.close()
        _drain_forever([theirs.fileno() for _, theirs in pairs])
    for _, theirs in pairs:
        theirs.close()
    transports = []
    for ours, _ in pairs:
        transport, _ = loop.run_until_complete(loop.connect_accepted_socket(_Quiet, ours))
        transports.append(transport)
    return pid, transports


def build(members: int, store: str, home: Path, host_key, transports=None, loop=None):
    accounts = AccountStore(home / "users.db")
    chat_store = (SqliteChatStore(accounts, 1000, 0) if store == "sqlite"
                  else MemoryChatStore())
    server = Server(ServerSettings(rate_limit=0), host_key, accounts, chat_store=chat_store)
    loop = loop or asyncio.new_event_loop()
    server.loop = loop
    sessions = []
    pairs = [open_pair(host_key) for _ in range(min(members, 8))]
    for i in range(members):
        link = ClientLink(server)
        link.transport = transports[i] if transports else SinkTransport()
        sock = link.transport.get_extra_info("socket")
        if sock is not None and hasattr(link, "fd"):
            link.fd = sock.fileno()
        # Handshakes are slow: reuse a few finished connections' keys (sequence
        # numbers stay per connection object, which is what the flush touches).
        link.conn = open_pair(host_key) if i < len(pairs) else _clone(pairs[i % len(pairs)])
        link.state = CHAT
        session = Session(f"m{i:05d}", aware=False, peer=f"127.0.0.1:{i}")
        session.link = link
        link.member = session
        server.hub.login(session)
        server.hub.rejoin(session)
        sessions.append(session)
    server._flush()
    return server, loop, sessions


def _clone(conn):
    import copy
    return copy.copy(conn)


def run(server, sessions, messages_count: int, batch: int) -> float:
    hub = server.hub
    sender = sessions[0]
    cpu = time.thread_time
    start = cpu()
    sent = 0
    while sent < messages_count:
        for _ in range(batch):
            hub.handle(sender, messages.Say(text="x" * 100, cid=f"c{sent}"))
            sent += 1
        server._flush()
    return cpu() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1, help="messages per flush")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--sockets", action="store_true",
                        help="real sockets (AF_UNIX, read by a child process) instead of sinks")
    args = parser.parse_args(argv)
    host_key = keys.generate_rsa_key(HOST_KEY_BITS)
    with tempfile.TemporaryDirectory() as tmp:
        loop = asyncio.new_event_loop()
        child, transports = (real_transports(loop, args.members) if args.sockets
                             else (None, None))
        server, loop, sessions = build(args.members, args.store, Path(tmp), host_key,
                                       transports, loop)
        deliveries = args.messages * (args.members - 1)
        runs = []
        for _ in range(args.repeat):
            runs.append(run(server, sessions, args.messages, args.batch) / deliveries * 1e6)
        server.chat_store.close()
        for transport in transports or ():
            transport.abort()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        if child:
            os.waitpid(child, 0)
    print(f"members {args.members}, {args.batch} message(s) per flush, store {args.store}: "
          f"CPU per delivery best {min(runs):.3f} µs, median {statistics.median(runs):.3f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
