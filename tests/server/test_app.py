"""The asyncio server with real sockets and real clients (in-process)."""

from __future__ import annotations

import socket

import pytest

from chatkit import PASSWORDS, Client
from schat.client.session import Disconnected, LoginRefused
from schat.errors import AuthenticationFailed, ConnectionFailed
from schat.protocol import messages


def test_three_members_chat_both_ways(chat_server):
    alice = chat_server.login("alice")
    welcome = alice.session.welcome
    assert welcome.motd == "welcome to the test server" and welcome.users == ("alice",)
    bob = chat_server.login("bob")
    assert alice.next(messages.Join).user == "bob"
    carol = chat_server.login("carol")
    assert alice.next(messages.Join).user == "carol"
    assert bob.next(messages.Join).user == "carol"

    cid = alice.session.say("hello all")
    for other in (bob, carol):
        got = other.next(messages.ChatMessage)
        assert (got.sender, got.text, got.action) == ("alice", "hello all", False)
    ack = alice.next(messages.Ack)
    assert ack.cid == cid and ack.id == got.id
    bob.session.say("hi alice")
    assert alice.next(messages.ChatMessage).text == "hi alice"
    assert carol.next(messages.ChatMessage).text == "hi alice"
    assert alice.session.wait_acked(5) and bob.session.wait_acked(5)

    cid = carol.session.command("/msg alice secret plan")
    err = carol.next(messages.Error)
    assert (err.code, err.cid) == ("encryption_required", cid) and "end-to-end" in err.text
    carol.session.command("/who")
    assert carol.next(messages.Users).users == ("alice", "bob", "carol")
    carol.session.command("/nope")
    err = carol.next(messages.Error)
    assert err.code == "bad_command" and "/help" in err.text

    bob.session.command("/quit")
    assert bob.next(Disconnected).clean
    leave = alice.next(messages.Leave)
    assert leave.user == "bob" and leave.reason == "quit"
    for c in (alice, carol):
        c.close()


def test_wrong_password_and_unknown_user_get_the_same_reply(chat_server):
    s = chat_server.session()
    with pytest.raises(AuthenticationFailed) as wrong:
        s.login_password("alice", "not-her-pass-1")
    with pytest.raises(AuthenticationFailed) as unknown:
        s.login_password("mallory", "not-her-pass-1")
    assert str(wrong.value) == str(unknown.value)
    assert "not-her-pass-1" not in str(wrong.value)
    # The third failure closes the connection.
    with pytest.raises(AuthenticationFailed):
        s.login_password("alice", "nope-nope-3")
    with pytest.raises(Exception):
        s.login_password("alice", PASSWORDS["alice"])
    s.close()


def test_a_new_login_takes_over_the_old_session(chat_server):
    alice = chat_server.login("alice")
    bob = chat_server.login("bob")
    assert alice.next(messages.Join).user == "bob"
    again = chat_server.login("ALICE", PASSWORDS["alice"])
    err = alice.next(messages.Error)
    assert err.code == "taken_over" and "logged in again from 127.0.0.1:" in err.text
    assert alice.next(Disconnected).clean
    bob.session.say("still there?")
    assert again.next(messages.ChatMessage).text == "still there?"
    bob.session.command("/who")
    assert bob.next(messages.Users).users == ("alice", "bob")
    seen = []
    while not bob.events.empty():
        seen.append(bob.events.get_nowait())
    assert not [e for e in seen if isinstance(e, (messages.Join, messages.Leave))]
    for c in (again, bob):
        c.close()


def test_server_stop_tells_members(server_factory):
    srv = server_factory()
    alice = srv.login("alice")
    srv.thread.stop()
    bye = alice.next(messages.Bye)
    assert bye.reason == "server shutting down"
    assert alice.next(Disconnected).clean


def test_garbage_before_handshake_closes_only_that_connection(chat_server):
    alice = chat_server.login("alice")
    with socket.create_connection((chat_server.host, chat_server.port), timeout=5) as raw:
        raw.recv(4096)
        raw.sendall(b"\x00\x00\x00\x00garbage")
        raw.settimeout(5)
        assert raw.recv(4096) == b""
    alice.session.say("still here")
    assert alice.next(messages.Ack)
    alice.close()


def test_slow_consumer_dropped_alone(server_factory):
    srv = server_factory(outbound_cap=64 * 1024, rate_limit=0, address_rate_limit=0)
    alice = srv.login("alice")
    carol = srv.login("carol")
    slow = srv.session()
    slow.login_password("bob", PASSWORDS["bob"])
    slow._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # bob never reads: the kernel buffers fill, then the server's buffer passes the cap.
    text = "x" * 4000
    for i in range(3000):  # kernel buffers absorb a few MiB before the server sees it
        alice.session.say(text)
        if i % 5 == 4:  # small bursts: the readers never hold 64 KiB at once
            assert alice.session.wait_acked(10)
            if not srv.server.hub.is_online("bob"):
                break
    leave = carol.next(messages.Leave)
    while leave.user != "bob":
        leave = carol.next(messages.Leave)
    assert leave.reason.startswith("too slow")
    assert srv.server.hub.is_online("alice") and srv.server.hub.is_online("carol")
    alice.session.say("after the drop")
    got = carol.next(messages.ChatMessage)
    while got.text != "after the drop":
        got = carol.next(messages.ChatMessage)
    slow.close()
    alice.close()
    carol.close()


def test_lines_the_kernel_cannot_take_at_once_arrive_whole_and_in_order(server_factory):
    # The flush writes straight to the socket while the transport holds nothing; what the
    # kernel does not take goes through the transport, and so does everything after it
    # until the transport has drained. A member that does not read for a while must
    # still get every line, once, in order, across both paths and back.
    srv = server_factory(outbound_cap=16 * 1024 * 1024, rate_limit=0, address_rate_limit=0)
    alice = srv.login("alice")
    late = srv.session()
    late.login_password("bob", PASSWORDS["bob"])
    late._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert alice.next(messages.Join).user == "bob"
    link = next(link for link in list(srv.server.links)
                if link.member is not None and link.member.name == "bob")
    # Small buffers on both ends (a slow network): the kernel refuses part of a record
    # after a few lines.
    srv.thread.call(lambda: link.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096))
    text = "y" * 3000
    held = 0
    sent = 0
    for burst in range(100):  # bounded: stops as soon as the transport holds bytes
        for _ in range(5):
            alice.session.say(f"{sent:05d} {text}")
            sent += 1
        assert alice.session.wait_acked(10)
        held = srv.thread.call(lambda: link.transport.get_write_buffer_size())
        if held:
            break
    assert held, "the kernel took everything: the transport's path was not reached"
    # A window of 4 KiB filled the buffers quickly; a larger one drains them quickly.
    late._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    bob = Client(late)  # reads from now on, while more lines come
    for _ in range(30):
        alice.session.say(f"{sent:05d} {text}")
        sent += 1
    assert alice.session.wait_acked(10)
    for i in range(sent):
        got = bob.next(messages.ChatMessage)
        assert got.text == f"{i:05d} {text}"
    alice.session.say("after the backlog")
    assert bob.next(messages.ChatMessage).text == "after the backlog"
    assert srv.thread.call(lambda: link.transport.get_write_buffer_size()) == 0
    assert srv.server.hub.is_online("bob")
    bob.close()
    alice.close()


def test_messages_before_login_close_the_connection(chat_server):
    s = chat_server.session()
    # The channel is up, so the server says what was wrong before it closes.
    with pytest.raises(LoginRefused, match="'say' is not allowed here") as refused:
        s._authenticate("alice", messages.Say(text="sneaky", cid="c1"))
    assert refused.value.code == "unexpected_message"
    assert s._next_message() == messages.Bye(reason=str(refused.value).split(": ", 1)[1])
    with pytest.raises(ConnectionFailed, match="closed the connection"):
        s._next_message()
    s.close()
    s = chat_server.session()
    assert s.login_password("alice", PASSWORDS["alice"]).user == "alice"
    s.close()
