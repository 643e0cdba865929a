"""The client's side of protocol errors (docs/PROTOCOL.md §4, "Error codes"), against a
modified server: a server that breaks the protocol is told why with a ``bye`` before the
client closes; a server that closes on a protocol error of this client has its code and
reason reported, cleaned of anything a terminal would act on."""

from __future__ import annotations

import queue

import pytest

from chatkit import WAIT
from hostile_server import HostileServer, now_ms
from schat.client.session import ClientSession, Disconnected
from schat.protocol import messages


def connect(srv: HostileServer) -> "queue.Queue":
    session = ClientSession(srv.host, srv.port, "evil", accept_new=True, timeout=WAIT)
    session.connect()
    session.login_password("alice", "whatever-1")
    events: "queue.Queue" = queue.Queue()
    session.start(events.put)
    return session, events


def gone(events: "queue.Queue") -> Disconnected:
    while True:
        ev = events.get(timeout=WAIT)
        if isinstance(ev, Disconnected):
            return ev


@pytest.fixture
def tamperer(host_key):
    """Answers a ``say`` with a record whose tag is wrong."""
    def script(link, msg):
        if isinstance(msg, messages.Say):
            with link._lock:
                link.conn.send(messages.Ack(cid=msg.cid, id=1, time=now_ms()))
                record = bytearray(link.conn.data_to_send())
                record[-1] ^= 1
                link.sock.sendall(bytes(record))
    srv = HostileServer(host_key, script=script)
    yield srv
    srv.close()


def test_a_server_that_breaks_the_protocol_is_told_why(tamperer):
    session, events = connect(tamperer)
    session.say("hello")
    ended = gone(events)
    assert not ended.clean
    assert ended.reason.startswith("protocol error from evil: record failed authentication")
    bye = tamperer.wait_for(messages.Bye)
    assert bye.reason.startswith("protocol error: record failed authentication")
    session.close()


@pytest.fixture
def accuser(host_key):
    """Closes on a "protocol error" of the client's `say`, with an escape in the reason."""
    def script(link, msg):
        if isinstance(msg, messages.Say):
            text = "field 'text': \x1b[2J\x1b]0;owned\x07 bad"
            with link._lock:   # as a server closes on a protocol error: one record
                link.conn.close(text, before=(messages.Error(code="bad_message", text=text),))
                link._flush()
                link.closed = True
            link._shutdown()
    srv = HostileServer(host_key, script=script)
    yield srv
    srv.close()


def test_a_close_on_a_protocol_error_of_this_client_is_reported_cleaned(accuser):
    session, events = connect(accuser)
    session.say("hello")
    error = None
    while True:
        ev = events.get(timeout=WAIT)
        if isinstance(ev, messages.Error):
            error = ev
        if isinstance(ev, Disconnected):
            break
    assert error is not None and error.code == "bad_message"
    assert ev.clean and ev.code == "bad_message"
    assert ev.reason.startswith("evil closed the connection on a protocol error of this "
                                "client (bad_message): field 'text': ")
    assert "\x1b" not in ev.reason and "\x07" not in ev.reason
    assert "^[[2J" in ev.reason
    session.close()
