"""A buggy or hostile client that breaks the protocol once the channel is up is told what
it did wrong: ``error`` with the violation's code and the reason, then ``bye`` with the
same reason, in one record, then the connection closes (docs/PROTOCOL.md §4, "Error
codes"). Before the channel is up nothing can be said: the connection just closes.

The server stays up and serves everyone else throughout; the reason never carries a byte
a terminal would act on; a client that does not read its last words cannot keep its
connection open past a grace period.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

from chatkit import PASSWORDS, WAIT, Client
from hostile import RawPeer
from schat.protocol import events, messages, registry
from schat.server import link as link_mod


def finish(peer: RawPeer, timeout: float = WAIT):
    """Everything the server still sends, until it closes: (messages, clean close?)."""
    got = []
    peer.sock.settimeout(timeout)
    while True:
        ev = peer.conn.next_event()
        if ev is None:
            try:
                data = peer.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            peer.conn.receive_data(data)
            continue
        if isinstance(ev, events.MessageReceived):
            got.append(ev.message)
        elif isinstance(ev, events.ConnectionClosed):
            return got, ev.clean


def logged_in(srv, user="carol") -> RawPeer:
    peer = RawPeer(srv)
    assert isinstance(peer.login(user), messages.Welcome)
    return peer


def told(peer: RawPeer, code: str):
    """The last words after a violation: exactly error(code) and bye, a clean close."""
    got, clean = finish(peer)
    # Whatever was queued before (the login's mailbox, a pong) may come first.
    tail = got[-2:]
    assert clean, got
    assert [type(m) for m in tail] == [messages.Error, messages.Bye], got
    error, bye = tail
    assert (error.code, error.cid) == (code, None)
    assert bye.reason == error.text
    assert error.text and all(" " <= ch <= "~" for ch in error.text), error.text
    assert len(error.text) <= 200
    return error.text


def seal_raw(peer: RawPeer, payload: bytes) -> bytes:
    """A record holding ``payload`` as it is (the API would refuse to encode it)."""
    return peer.conn._channel.seal(payload)


@pytest.mark.parametrize("name, bad, code, reason", [
    ("bad JSON", lambda p: seal_raw(p, b'{"type":"say",'), "bad_message", "not valid JSON"),
    ("a missing field", lambda p: seal_raw(p, b'{"type":"say","text":"hi"}'), "bad_message",
     "say message lacks field 'cid'"),
    ("text over its limit", lambda p: seal_raw(
        p, b'{"type":"say","text":"' + b"x" * 4097 + b'","cid":"1"}'), "bad_message",
     "field 'text': length 4097 bytes outside 1..4096"),
    ("a server-to-client type", lambda p: p.record(messages.Welcome(
        user="carol", server="x", motd="", users=(), time=0)), "unexpected_message",
     "message type 'welcome' is not allowed here"),
    ("an unknown type", lambda p: seal_raw(p, b'{"type":"shout"}'), "unexpected_message",
     "unknown message type 'shout'"),
    ("anything after bye", lambda p: (p.conn.send_encoded(
        [messages.encode(messages.Bye()), messages.encode(messages.Ping(n=1))])
        or p.conn.data_to_send()), "unexpected_message", "data after saying bye"),
    ("a tampered record", lambda p: (lambda r: r[:-1] + bytes([r[-1] ^ 1]))(
        p.record(messages.Ping(n=1))), "bad_record", "record failed authentication"),
    ("a replayed record", lambda p: (lambda r: r + r)(p.record(messages.Ping(n=1))),
     "bad_record", "record failed authentication"),
    ("a frame length of 0", lambda p: b"\x00\x00\x00\x00", "bad_frame", "invalid frame length 0"),
    ("a frame length over the limit", lambda p: struct.pack(">I", 65_536), "bad_frame",
     "invalid frame length 65536"),
])
def test_a_violation_after_login_is_named_then_the_connection_closes(
        server_factory, server_log, name, bad, code, reason):
    srv = server_factory()
    honest = srv.login("alice")
    peer = logged_in(srv)
    peer.send(bad(peer))
    text = told(peer, code)
    assert reason in text, text
    assert code in registry.PROTOCOL_ERROR_CODES
    # The others saw the member go, and the server goes on.
    leave = honest.next(messages.Leave)
    assert leave.user == "carol" and leave.reason.startswith("protocol error: ")
    honest.session.say("still here")
    assert honest.session.wait_acked(WAIT)
    assert "Traceback" not in server_log.text
    honest.close()


def test_a_chat_message_before_the_login_is_named_too(chat_server):
    peer = RawPeer(chat_server)
    peer.handshake()
    peer.send(peer.record(messages.Say(text="sneaky", cid="c1")))
    assert "'say' is not allowed here" in told(peer, "unexpected_message")


def test_a_stream_cut_inside_a_frame_gets_the_reason_on_its_way_out(chat_server):
    peer = logged_in(chat_server)
    record = peer.record(messages.Ping(n=1))
    peer.send(record[:-3])
    peer.sock.shutdown(socket.SHUT_WR)   # a half-close: it can still read
    assert "in the middle of a frame" in told(peer, "bad_frame")


def test_what_the_client_sent_is_never_echoed_raw(chat_server):
    """A type name with a terminal escape and non-ASCII comes back as printable ASCII."""
    peer = logged_in(chat_server)
    peer.send(seal_raw(peer, '{"type":"\\u001b[2J\u00e9\u202e","n":1}'.encode()))
    text = told(peer, "unexpected_message")
    assert "\x1b" not in text and "\u202e" not in text
    assert "unknown message type" in text


def test_a_reason_is_printable_ascii_of_at_most_200_characters():
    from schat.errors import RemoteProtocolError
    from schat.protocol.connection import violation_text

    assert violation_text(RemoteProtocolError("y" * 300)) == "y" * 197 + "..."
    assert violation_text(RemoteProtocolError("a\x1b[2J\u00e9\nb")) == "a?[2J??b"
    assert violation_text(RemoteProtocolError("")) == "protocol error"


def test_before_the_channel_is_up_the_connection_just_closes(chat_server):
    """A broken ClientKeyExchange: no keys exist, so nothing can be said; no bytes follow
    the ServerHello."""
    peer = RawPeer(chat_server)
    peer.hello()
    cke = peer.conn.data_to_send()
    peer.send(cke[:4] + b"\x03" + cke[5:])        # not a ClientKeyExchange
    peer.sock.settimeout(WAIT)
    rest = b""
    while True:
        try:
            data = peer.sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        rest += data
    assert rest == b""


def test_a_client_that_does_not_read_its_last_words_is_cut_off(server_factory, monkeypatch):
    """The server closes after the bye; a client that reads nothing (its socket buffers
    full of answers it never read) cannot hold the connection open: after the grace
    period it is reset, and the server forgets it."""
    monkeypatch.setattr(link_mod, "CLOSE_GRACE", 0.3)
    srv = server_factory(rate_limit=0, address_rate_limit=0, outbound_cap=64 << 20)
    before = len(srv.server.links)
    peer = RawPeer(srv, rcvbuf=4096)
    assert isinstance(peer.login("carol"), messages.Welcome)
    # Ask for far more than the socket buffers hold, read none of it, then break the rules.
    burst = peer.conn
    for i in range(4000):
        burst.send(messages.Command(line="/help", cid=f"h{i}"))
    peer.send(burst.data_to_send())
    peer.send(seal_raw(peer, b"{"))
    deadline = time.monotonic() + WAIT
    while len(srv.server.links) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(srv.server.links) == before
    peer.close()
    # The server is fine.
    alice = srv.login("alice")
    alice.session.say("after")
    assert alice.session.wait_acked(WAIT)
    alice.close()


def test_the_line_client_hears_the_reason(chat_server):
    """schat's own client, made to send a message the server does not accept, reports
    the server's code and reason (cleaned) when the connection ends."""
    client = chat_server.login("carol")
    client.session.send(messages.Welcome(user="x", server="y", motd="", users=(), time=0))
    from schat.client.session import Disconnected
    gone = client.next(Disconnected)
    assert gone.clean and gone.code == "unexpected_message"
    assert gone.reason.startswith("test closed the connection on a protocol error of this "
                                  "client (unexpected_message): message type 'welcome'")


def test_records_sent_while_the_key_exchange_runs_are_answered_in_order(chat_server):
    """Input that arrives while the server's crypto thread completes the key exchange
    waits (reading pauses once it arrives) and is answered, in order, once the keys
    exist; the connection then logs in as usual."""
    peer = RawPeer(chat_server)
    peer.hello()
    peer.send(peer.conn.data_to_send())  # the ClientKeyExchange: the server's job starts
    count = 300
    for n in range(1, count + 1):  # one write each: most land while the job runs
        peer.send(seal_raw(peer, messages.encode(messages.Ping(n=n))))
    peer.next_of(events.HandshakeComplete)
    assert [peer.next_of(messages.Pong).n for _ in range(count)] == list(range(1, count + 1))
    peer.send(peer.record(messages.Login(user="carol", password=PASSWORDS["carol"])))
    assert isinstance(peer.reply(), messages.Welcome)
    peer.close()
