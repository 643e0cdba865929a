"""Helpers for the sans-I/O protocol tests: connection pairs wired in memory."""

from __future__ import annotations

from schat.protocol import events
from schat.protocol.connection import ClientConnection, ServerConnection


def drain(conn) -> list:
    """Every event ``conn`` has now."""
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def handshake(host_key, client_rand=None, server_rand=None, logged_in=True):
    """A completed (client, server) pair; with ``logged_in`` the server has
    accepted a login, so the client may send every client-to-server type."""
    server = ServerConnection(host_key, server_rand)
    client = ClientConnection(client_rand)
    client.receive_data(server.data_to_send())
    (ev,) = drain(client)
    assert isinstance(ev, events.ServerKeyReceived)
    client.accept_server_key()
    server.receive_data(client.data_to_send())
    assert isinstance(server.next_event(), events.KeyExchangeReceived)
    assert server.next_event() is None  # waits for complete_key_exchange()
    server.complete_key_exchange()
    assert isinstance(server.next_event(), events.HandshakeComplete)
    client.receive_data(server.data_to_send())
    assert [type(e) for e in drain(client)] == [events.HandshakeComplete]
    if logged_in:
        server.logged_in()
    return client, server

