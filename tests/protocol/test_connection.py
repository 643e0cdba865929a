"""Client/server connection pairs wired in memory: the happy path and every failure."""

from __future__ import annotations

import copy

import pytest

from schat.errors import LocalProtocolError, RemoteProtocolError
from schat.protocol import channel, events, messages as m
from schat.protocol.connection import ClientConnection, ServerConnection
from schat.protocol.framing import MAX_FRAME

from protocol_pairs import drain, handshake


def received(conn):
    return [e.message for e in drain(conn)]


def test_both_ends_agree_on_the_transcript_hash_until_the_server_logs_in(host_key):
    client, server = handshake(host_key, logged_in=False)
    assert client.transcript_hash == server.transcript_hash and len(client.transcript_hash) == 32
    server.logged_in()
    # Only a login signs it: a server of many idle members keeps none per member.
    assert server.transcript_hash == b"" and len(client.transcript_hash) == 32


def test_messages_both_ways(pair):
    client, server = pair
    client.send(m.Login(user="ann", password="pw1"), m.Say(text="héllo\nworld", cid="c1"))
    wire = client.data_to_send()
    assert b"pw1" not in wire and "héllo".encode() not in wire
    server.receive_data(wire)
    assert received(server) == [m.Login(user="ann", password="pw1"),
                                m.Say(text="héllo\nworld", cid="c1")]
    server.send(m.Welcome(user="ann", server="s", motd="", users=("ann",), time=1))
    client.receive_data(server.data_to_send())
    assert received(client) == [m.Welcome(user="ann", server="s", motd="", users=("ann",), time=1)]
    assert server.stats.messages_received == 2 and server.stats.records_received == 1


def test_byte_at_a_time_gives_same_events(host_key):
    whole_c, whole_s = handshake(host_key, _rng(1), _rng(2))
    server = ServerConnection(host_key, _rng(2))
    client = ClientConnection(_rng(1))
    seen = []
    for b in server.data_to_send():
        client.receive_data(bytes([b]))
        seen += drain(client)
    assert [type(e) for e in seen] == [events.ServerKeyReceived]
    client.accept_server_key()
    for b in client.data_to_send():
        server.receive_data(bytes([b]))
    assert isinstance(server.next_event(), events.KeyExchangeReceived)
    server.complete_key_exchange()
    drain(server)
    seen = []
    for b in server.data_to_send():
        client.receive_data(bytes([b]))
        seen += drain(client)
    assert seen == [events.HandshakeComplete(whole_c.transcript_hash)]
    server.logged_in()
    msgs = [m.Say(text="x" * 300, cid=str(i)) for i in range(5)]
    client.send(*msgs)
    client.send(m.Ping(n=7))
    got = []
    for b in client.data_to_send():
        server.receive_data(bytes([b]))
        got += received(server)
    assert got == msgs + [m.Ping(n=7)]


def _rng(seed):
    import random
    r = random.Random(seed)
    return lambda n: bytes(r.getrandbits(8) for _ in range(n))


def _feed_expect_failure(server, data):
    """Feed ``data`` then EOF; the connection must raise RemoteProtocolError, never yield a message."""
    with pytest.raises(RemoteProtocolError):
        server.receive_data(data)
        while (ev := server.next_event()) is not None:
            assert not isinstance(ev, events.MessageReceived), "tampered record accepted"
        server.receive_data(b"")
        server.next_event()
    assert server.closed


def test_every_bit_flip_of_a_record_is_fatal(pair):
    client, server = pair
    client.send(m.Say(text="hi", cid="1"))
    record = client.data_to_send()
    good = copy.deepcopy(server)
    good.receive_data(record)
    assert received(good) == [m.Say(text="hi", cid="1")]
    for i in range(len(record) * 8):
        bad = bytearray(record)
        bad[i // 8] ^= 1 << (i % 8)
        _feed_expect_failure(copy.deepcopy(server), bytes(bad))


def test_replayed_record_is_fatal(pair):
    client, server = pair
    client.send(m.Say(text="one", cid="1"))
    rec = client.data_to_send()
    server.receive_data(rec)
    assert len(received(server)) == 1
    _feed_expect_failure(server, rec)


def test_reordered_records_are_fatal(pair):
    client, server = pair
    client.send(m.Say(text="one", cid="1"))
    r1 = client.data_to_send()
    client.send(m.Say(text="two", cid="2"))
    r2 = client.data_to_send()
    _feed_expect_failure(server, r2 + r1)


def test_dropped_record_is_fatal(pair):
    client, server = pair
    for i in range(3):
        client.send(m.Say(text=str(i), cid=str(i)))
    r0 = client.data_to_send()
    client.send(m.Say(text="lost", cid="x"))
    client.data_to_send()
    client.send(m.Say(text="after", cid="y"))
    r2 = client.data_to_send()
    server.receive_data(r0)
    assert len(received(server)) == 3
    _feed_expect_failure(server, r2)


def test_truncated_record_is_fatal(pair):
    client, server = pair
    client.send(m.Say(text="hello", cid="1"))
    rec = client.data_to_send()
    server.receive_data(rec[:-1])
    assert server.next_event() is None  # waits for the rest
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        server.next_event()


def test_record_cut_short_inside_frame_fails_tag(pair):
    """A shorter body with a matching header (an attacker re-framing) fails authentication."""
    client, server = pair
    client.send(m.Say(text="hello there", cid="1"))
    rec = client.data_to_send()
    body = rec[4:-3]
    _feed_expect_failure(server, len(body).to_bytes(4, "big") + body)


def test_clean_close_and_unclean_close(pair):
    client, server = pair
    server.close("maintenance")
    assert server.closed
    with pytest.raises(LocalProtocolError):
        server.send(m.Ping(n=1))
    client.receive_data(server.data_to_send())
    client.receive_data(b"")
    assert drain(client) == [events.MessageReceived(m.Bye(reason="maintenance")),
                             events.ConnectionClosed(clean=True, reason="maintenance")]
    assert client.closed
    server2 = copy.deepcopy(server)
    server2.receive_data(b"")
    assert drain(server2) == [events.ConnectionClosed(clean=False, reason="connection closed")]


def test_data_after_bye_is_fatal(pair):
    client, server = pair
    client.send(m.Bye(reason=""), m.Ping(n=1))
    server.receive_data(client.data_to_send())
    with pytest.raises(RemoteProtocolError, match="after saying bye"):
        drain(server)


def test_errors_are_sticky(pair):
    client, server = pair
    server.receive_data(b"\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError) as first:
        server.next_event()
    with pytest.raises(RemoteProtocolError) as again:
        server.next_event()
    assert again.value is first.value
    with pytest.raises(LocalProtocolError):
        server.send(m.Ping(n=1))


def test_send_before_handshake_is_local_error(host_key):
    server = ServerConnection(host_key)
    client = ClientConnection()
    with pytest.raises(LocalProtocolError):
        server.send(m.Ping(n=1))
    client.receive_data(server.data_to_send())
    drain(client)
    client.accept_server_key()
    with pytest.raises(LocalProtocolError):  # nothing before ServerFinished is verified
        client.send(m.Login(user="ann", password="pw"))
    with pytest.raises(LocalProtocolError):
        client.accept_server_key()


def test_send_encoded_packs_into_few_records(pair):
    client, server = pair
    one = m.encode(m.ChatMessage(id=1, time=2, sender="bob", text="y" * 4000))
    server.send_encoded([one] * 100)
    data = server.data_to_send()
    per_record = channel.MAX_PAYLOAD // (len(one) + 1)
    assert server.stats.records_sent - 1 == -(-100 // per_record)  # minus ServerFinished
    client.receive_data(data)
    got = received(client)
    assert len(got) == 100 and got[0].text == "y" * 4000
    with pytest.raises(LocalProtocolError):
        server.send_encoded([b"x" * (channel.MAX_PAYLOAD + 1)])
    with pytest.raises(LocalProtocolError):
        server.send_encoded([b""])


def test_send_rejects_fields_beyond_limits(pair):
    client, _ = pair
    with pytest.raises(LocalProtocolError):
        client.send(m.Say(text="x" * 4097, cid="1"))
    with pytest.raises(LocalProtocolError):
        client.send(m.Say(text="ok", cid=""))


def test_record_limit(pair):
    client, server = pair
    start = channel.MAX_RECORDS - 2
    client._channel.send_seq = start
    server._channel.recv_seq = start
    client.send(m.Ping(n=1))
    client.send(m.Ping(n=2))
    server.receive_data(client.data_to_send())
    assert [x.n for x in received(server)] == [1, 2]
    with pytest.raises(LocalProtocolError, match="record limit"):
        client.send(m.Ping(n=3))
    # A peer that ignores the limit is refused on receipt.
    rogue = channel.SecureChannel(b"k" * 32, b"i" * 12, b"k" * 32, b"i" * 12, recv_seq=channel.MAX_RECORDS)
    with pytest.raises(RemoteProtocolError, match="record limit"):
        rogue.open(b"\x00\x00\x00\x20", bytes(32))


def test_oversized_frame_rejected_before_body(pair):
    _, server = pair
    server.receive_data((MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="invalid frame length"):
        server.next_event()


def test_messages_in_wrong_state_are_errors(host_key, pair):
    client, server = pair
    # A second ServerHello after the channel is open is just an unauthenticated record.
    fresh = ServerConnection(host_key)
    _feed_expect_failure(client, fresh.data_to_send())
    # The server expects a ClientKeyExchange first, not a ServerHello.
    s2 = ServerConnection(host_key)
    with pytest.raises(RemoteProtocolError, match="expected ClientKeyExchange"):
        s2.receive_data(ServerConnection(host_key).data_to_send())
        s2.next_event()
    # The client expects a ServerHello first.
    c2 = ClientConnection()
    with pytest.raises(RemoteProtocolError, match="expected ServerHello"):
        c2.receive_data(b"\x00\x00\x00\x03\x02ab")
        c2.next_event()


@pytest.mark.parametrize("tail", [b'{"type":"bogus"}', b'{"type":"ping"}', b"not json"])
def test_a_rejected_record_yields_none_of_its_messages(pair, tail):
    client, server = pair
    client.send_encoded([m.encode(m.Say(text="hi", cid="1")), tail])
    server.receive_data(client.data_to_send())
    with pytest.raises(RemoteProtocolError) as first:
        server.next_event()
    with pytest.raises(RemoteProtocolError) as again:
        server.next_event()
    assert again.value is first.value and server.closed
    assert server.stats.messages_received == 0


def test_messages_after_bye_in_one_record_reject_the_whole_record(pair):
    client, server = pair
    client.send_encoded([m.encode(m.Bye(reason="")), m.encode(m.Ping(n=1))])
    server.receive_data(client.data_to_send())
    for _ in range(2):
        with pytest.raises(RemoteProtocolError, match="after saying bye"):
            server.next_event()


def test_events_queued_before_an_error_are_dropped(pair):
    client, server = pair
    client.send(m.Ping(n=1), m.Ping(n=2))
    server.receive_data(client.data_to_send())
    assert server.next_event() == events.MessageReceived(m.Ping(n=1))
    server.receive_data(b"\x00\x00\xff\xff" + bytes(0xFFFF))
    with pytest.raises(RemoteProtocolError, match="in flight"):
        for _ in range(40):  # the buffer passes its limit within 1 MiB
            server.receive_data(bytes(0xFFFF))
    with pytest.raises(RemoteProtocolError, match="in flight"):
        server.next_event()


def test_sealing_an_empty_payload_is_refused(pair):
    client, _ = pair
    with pytest.raises(LocalProtocolError, match="outside 1"):
        client._channel.seal(b"")


@pytest.mark.parametrize("msg", [m.Welcome(user="a", server="s", motd="", users=(), time=1),
                                 m.Error(code="invalid", text="x"), m.Dm(id=1, time=1, sender="a",
                                                                         to="b", text="t")])
def test_server_refuses_a_server_to_client_type(pair, msg):
    client, server = pair
    client.send(msg)
    _feed_expect_failure(server, client.data_to_send())
    with pytest.raises(RemoteProtocolError, match="not allowed"):
        server.next_event()


@pytest.mark.parametrize("msg", [m.Say(text="x", cid="1"), m.Login(user="a", password="p"),
                                 m.Who()])
def test_client_refuses_a_client_to_server_type(pair, msg):
    client, server = pair
    server.send(msg)
    _feed_expect_failure(client, server.data_to_send())
    with pytest.raises(RemoteProtocolError, match="not allowed"):
        client.next_event()


def test_before_login_the_server_accepts_only_logins_ping_pong_bye(host_key):
    client, server = handshake(host_key, logged_in=False)
    allowed = [m.Login(user="a", password="p"), m.LoginKey(user="a", signature=b"s"),
               m.Signup(user="a", password="p"), m.Ping(n=1), m.Pong(n=1)]
    client.send(*allowed)
    server.receive_data(client.data_to_send())
    assert received(server) == allowed
    client.send(m.Who())
    _feed_expect_failure(server, client.data_to_send())
    with pytest.raises(RemoteProtocolError, match="'who' is not allowed"):
        server.next_event()


def test_after_logged_in_every_client_type_is_accepted(host_key):
    client, server = handshake(host_key, logged_in=False)
    client.send(m.Login(user="a", password="p"))
    server.receive_data(client.data_to_send())
    assert received(server) == [m.Login(user="a", password="p")]
    server.logged_in()
    client.send(m.Say(text="x", cid="1"), m.Who())
    server.receive_data(client.data_to_send())
    assert received(server) == [m.Say(text="x", cid="1"), m.Who()]


def test_logged_in_before_the_handshake_is_a_local_error(host_key):
    with pytest.raises(LocalProtocolError):
        ServerConnection(host_key).logged_in()


def test_records_pipelined_behind_the_key_exchange_are_processed(host_key):
    """The server takes records that follow the ClientKeyExchange once its keys are ready."""
    server = ServerConnection(host_key)
    client = ClientConnection()
    client.receive_data(server.data_to_send())
    drain(client)
    client.accept_server_key()
    early = client._channel.seal(m.encode(m.Ping(n=5)))  # this client API never sends it
    server.receive_data(client.data_to_send() + early)
    assert isinstance(server.next_event(), events.KeyExchangeReceived)
    assert server.next_event() is None  # nothing is opened before the keys exist
    server.complete_key_exchange()
    assert [type(e) for e in drain(server)] == [events.HandshakeComplete, events.MessageReceived]
    client.receive_data(server.data_to_send())
    assert [type(e) for e in drain(client)] == [events.HandshakeComplete]


def test_any_json_whitespace_is_accepted(pair):
    client, server = pair
    client.send_encoded([b'{ "type" :\t"ping",\r "n": 3 }'])
    server.receive_data(client.data_to_send())
    assert received(server) == [m.Ping(n=3)]
