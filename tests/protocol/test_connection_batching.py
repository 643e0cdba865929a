"""seal_encoded: the server's direct flush path keeps record order and limits."""

from __future__ import annotations

import pytest

from schat.errors import LocalProtocolError
from schat.protocol import events, messages
from schat.protocol.channel import MAX_PAYLOAD
from schat.protocol.connection import ClientConnection, ServerConnection


def _pair(host_key):
    server, client = ServerConnection(host_key), ClientConnection()
    client.receive_data(server.data_to_send())
    assert isinstance(client.next_event(), events.ServerKeyReceived)
    client.accept_server_key()
    server.receive_data(client.data_to_send())
    assert isinstance(server.next_event(), events.KeyExchangeReceived)
    server.complete_key_exchange()
    assert isinstance(server.next_event(), events.HandshakeComplete)
    client.receive_data(server.data_to_send())
    assert isinstance(client.next_event(), events.HandshakeComplete)
    return server, client


def _texts(client):
    out = []
    while (ev := client.next_event()) is not None:
        out.append(ev.message.text)
    return out


def test_single_and_batched_messages_arrive_in_order(host_key):
    server, client = _pair(host_key)
    one = [messages.encode(messages.Notice(text="one", time=1))]
    many = [messages.encode(messages.Notice(text=f"m{i}", time=1)) for i in range(5)]
    client.receive_data(server.seal_encoded(one) + server.seal_encoded(many))
    assert _texts(client) == ["one"] + [f"m{i}" for i in range(5)]
    assert server.stats.records_sent == 1 + 2  # ServerFinished, then one record each


def test_records_queued_earlier_are_written_first(host_key):
    server, client = _pair(host_key)
    server.send(messages.Notice(text="queued first", time=1))
    data = server.seal_encoded([messages.encode(messages.Notice(text="sealed second", time=1))])
    assert server.data_to_send() == b""
    client.receive_data(data)
    assert _texts(client) == ["queued first", "sealed second"]


def test_large_batches_split_under_the_frame_cap(host_key):
    server, client = _pair(host_key)
    item = messages.encode(messages.Notice(text="x" * 4000, time=1))
    data = server.seal_encoded([item] * 40)
    client.receive_data(data)
    assert len(_texts(client)) == 40
    assert server.stats.records_sent > 2


def test_oversized_or_empty_items_are_refused(host_key):
    server, _ = _pair(host_key)
    with pytest.raises(LocalProtocolError):
        server.seal_encoded([b"x" * (MAX_PAYLOAD + 1)])
    with pytest.raises(LocalProtocolError):
        server.seal_encoded([b""])
    # An empty one among others (the path that joins a whole flush at once).
    sent = server.stats.records_sent
    for batch in ([b'{"a":1}', b"", b'{"b":2}'], [b'{"a":1}', b""], [b"x" * 100, b"x" * (MAX_PAYLOAD + 1)]):
        with pytest.raises(LocalProtocolError):
            server.seal_encoded(batch)
    assert server.stats.records_sent == sent
