"""What docs/PROTOCOL.md promises a client, checked on the wire with raw connections:
keep-alive (§4), the login sequence and what a client must accept in each state (§2).

The client-state sets of :mod:`schat.protocol.registry` are what the document's table
says (tests/docs); here every message a real server sends in a scripted session of each
kind of client must belong to its state's set."""

from __future__ import annotations

import select
import time

from chatkit import PASSWORDS, WAIT
from hostile import RawPeer
from schat.protocol import dm_messages as dmm
from schat.protocol import events, messages, registry
from schat.protocol import room_messages as rm


def login(srv, user: str, features=(), check: bool = False, password=None) -> RawPeer:
    peer = RawPeer(srv)
    peer.handshake()
    peer.send(peer.record(messages.Login(user=user, password=password or PASSWORDS[user],
                                         features=features, check=check)))
    return peer


def until(peer: RawPeer, kind, pred=lambda m: True):
    """Messages up to and including the first ``kind`` for which ``pred`` holds."""
    got = []
    while True:
        msg = peer.next_of(events.MessageReceived).message
        got.append(msg)
        if isinstance(msg, kind) and pred(msg):
            return got


def sync(peer: RawPeer, n: int):
    """Everything the server sent before its answer to a ping of ours (which is included)."""
    peer.send(peer.record(messages.Ping(n=n)))
    return until(peer, messages.Pong, lambda m: m.n == n)


def answer_pings(peer: RawPeer) -> None:
    """Read what the server sent ``peer`` (one read) and answer each ping in it."""
    data = peer.sock.recv(65536)
    assert data, "the answering bot was dropped"
    peer.conn.receive_data(data)
    while (ev := peer.conn.next_event()) is not None:
        if isinstance(ev, events.MessageReceived) and isinstance(ev.message, messages.Ping):
            peer.send(peer.record(messages.Pong(n=ev.message.n)))


# -- keep-alive -------------------------------------------------------------------------
def test_a_bot_that_ignores_pings_is_dropped_and_one_that_answers_stays(server_factory):
    interval, timeout = 0.3, 1.0
    srv = server_factory(ping_interval=interval, ping_timeout=timeout)
    answers, ignores = login(srv, "alice"), login(srv, "bob")
    for peer in (answers, ignores):
        assert isinstance(peer.reply(), messages.Welcome)
    last_sent = time.monotonic()          # the ignoring bot's last bytes: its login
    ping = answers.next_of(messages.Ping)
    # A pong with another n still counts: any bytes are a sign of life.
    answers.send(answers.record(messages.Pong(n=ping.n + 1000)))
    ping_b = ignores.next_of(messages.Ping)
    # One counter for every connection of the server: no two pings share a number.
    assert ping_b.n != ping.n and min(ping.n, ping_b.n) >= 1
    # The answering bot goes on answering every ping while the other is dropped: had it
    # answered only the first, it too would be dropped a few tenths of a second after the
    # other, and a test thread that late would find it gone. (A timeout of 1 s, not 0.6,
    # for the same reason: each of its answers may come that late.)
    rest = []
    while True:
        ev = ignores.conn.next_event()
        if ev is None:
            ready = select.select([answers.sock, ignores.sock], [], [], WAIT)[0]
            assert ready, "the server neither pinged nor dropped anyone"
            if answers.sock in ready:
                answer_pings(answers)
            if ignores.sock in ready:
                ignores.conn.receive_data(ignores.sock.recv(65536))
            continue
        if isinstance(ev, events.MessageReceived):
            rest.append(ev.message)
        elif isinstance(ev, events.ConnectionClosed):
            break
    dropped_after = time.monotonic() - last_sent
    # bye alone, no error, and never before ping_interval + ping_timeout of silence.
    assert rest[-1] == messages.Bye(reason="ping timeout") and ev.clean
    assert not any(isinstance(m, messages.Error) for m in rest)
    assert dropped_after >= interval + timeout - 0.05
    # The other one answered, and is still served.
    assert isinstance(sync(answers, 77)[-1], messages.Pong)
    assert srv.server.hub.is_online("alice") and not srv.server.hub.is_online("bob")


def test_any_bytes_count_as_life_even_part_of_a_record(server_factory):
    # A piece every 0.1 s, and a ping only after 0.5 s without a byte: a test thread
    # running late on a loaded machine is still far from the interval, while the record
    # as a whole takes longer than interval and timeout together.
    interval, timeout = 0.5, 0.5
    srv = server_factory(ping_interval=interval, ping_timeout=timeout)
    peer = login(srv, "alice")
    assert isinstance(peer.reply(), messages.Welcome)
    record = peer.record(messages.Ping(n=7))
    assert len(record) // 3 * 0.1 > interval + timeout
    for i in range(0, len(record), 3):
        peer.send(record[i:i + 3])
        time.sleep(0.1)
    got = until(peer, messages.Pong)
    assert got[-1] == messages.Pong(n=7)
    assert not any(isinstance(m, (messages.Ping, messages.Bye)) for m in got)


def test_the_server_answers_a_ping_with_its_n_before_and_after_login(chat_server):
    peer = RawPeer(chat_server)
    peer.handshake()
    peer.send(peer.record(messages.Ping(n=42)))
    assert peer.next_of(messages.Pong) == messages.Pong(n=42)
    peer.send(peer.record(messages.Login(user="alice", password=PASSWORDS["alice"])))
    assert isinstance(peer.reply(), messages.Welcome)
    assert sync(peer, 2 ** 53 - 1)[-1] == messages.Pong(n=2 ** 53 - 1)


# -- the login sequence ------------------------------------------------------------------
def test_the_login_sequence_of_each_kind_of_client(server_factory):
    srv = server_factory()
    lobby = login(srv, "alice")
    got = sync(lobby, 1)
    # welcome, then mailbox even with nothing stored, and nothing else (no room types).
    assert [type(m) for m in got] == [messages.Welcome, dmm.Mailbox, messages.Pong]
    assert got[1].count == 0
    aware = login(srv, "bob", features=("rooms",))
    got = sync(aware, 2)
    assert [type(m) for m in got] == [messages.Welcome, dmm.Mailbox, rm.RoomState, rm.Focus,
                                      messages.Pong]
    assert got[1].count == 0 and got[2].room == "#lobby" and got[3].room == "#lobby"
    assert got[2].cid is None and got[3].cid is None      # answers to no request
    checked = login(srv, "carol", check=True)
    got = sync(checked, 3)
    assert [type(m) for m in got] == [rm.Checked, messages.Pong]


def test_a_refused_login_leaves_the_connection_logging_in(chat_server):
    peer = login(chat_server, "alice", password="wrong-password-1")
    got = until(peer, messages.Error)
    assert got[-1].code == "auth_failed" and got[-1].cid is None
    peer.send(peer.record(messages.Login(user="alice", password=PASSWORDS["alice"])))
    assert isinstance(peer.reply(), messages.Welcome)


# -- what a client must accept -----------------------------------------------------------
def test_every_message_of_a_session_belongs_to_its_state(server_factory):
    """A scripted session of a room-aware, a lobby-only and a checked client: each
    receives only the types its state's row allows (docs/PROTOCOL.md §2)."""
    srv = server_factory()
    seen = {"logging-in": [], "room-aware": [], "lobby-only": [], "checked": []}

    ann = login(srv, "alice", features=("rooms",), password="wrong-password-1")
    seen["logging-in"] += until(ann, messages.Error)
    ann.send(ann.record(messages.Login(user="alice", password=PASSWORDS["alice"],
                                       features=("rooms",))))
    got = until(ann, messages.Welcome)
    seen["logging-in"] += got
    bob = login(srv, "bob")
    seen["logging-in"] += until(bob, messages.Welcome)
    carol = login(srv, "carol", check=True)
    seen["logging-in"] += until(carol, rm.Checked)

    def ann_says(*msgs):
        for msg in msgs:
            ann.send(ann.record(msg))

    ann_says(messages.Command(line="/join #dev", cid="1"),
             messages.Say(text="in dev", cid="2", room="#dev"),
             messages.Command(line="/topic about dev", cid="3", room="#dev"),
             messages.Command(line="/invite bob", cid="4", room="#dev"),
             messages.Command(line="/who", cid="5", room="#dev"),
             messages.Command(line="/rooms", cid="6"),
             messages.Command(line="/room private", cid="7", room="#dev"),
             messages.Command(line="/switch #lobby", cid="8"),
             messages.Say(text="hi all", cid="9"),
             messages.Command(line="/nonsense", cid="10"),
             dmm.GetKey(user="bob", cid="11"),
             messages.Who(),
             messages.Command(line="/part #dev", cid="12"))
    for msg in (messages.Say(text="hello", cid="b1"), messages.Command(line="/rooms", cid="b2"),
                messages.Command(line="/who #dev", cid="b3"), messages.Who(),
                messages.Command(line="/join #dev", cid="b4"), dmm.GetKey(user="alice", cid="b5")):
        bob.send(bob.record(msg))
    for msg in (dmm.GetKey(user="alice", cid="c1"), messages.Say(text="no", cid="c2")):
        carol.send(carol.record(msg))
    # Make sure everything caused above has arrived: the last answers, then a ping.
    seen["room-aware"] += until(ann, messages.Ack, lambda m: m.cid == "12") + sync(ann, 100)
    seen["lobby-only"] += until(bob, dmm.Key, lambda m: m.cid == "b5") + sync(bob, 101)
    seen["checked"] += until(carol, messages.Error, lambda m: m.cid == "c2") + sync(carol, 102)

    for state, got in seen.items():
        allowed = registry.CLIENT_STATES[state]
        stray = sorted({m.TYPE for m in got} - set(allowed))
        assert stray == [], f"{state}: the server sent {stray}"
    kinds = {state: {m.TYPE for m in got} for state, got in seen.items()}
    # The script reached what it meant to (so the check above is not empty).
    assert {"room", "focus", "topic", "moderation", "rooms", "users", "message", "key",
            "ack", "error", "join", "mailbox"} <= kinds["room-aware"]
    assert {"message", "notice", "users", "key", "ack", "error", "mailbox"} <= kinds["lobby-only"]
    assert {"key", "error", "pong"} <= kinds["checked"]
    assert {"error", "welcome", "checked"} <= kinds["logging-in"]
    for peer in (ann, bob, carol):
        peer.close()
