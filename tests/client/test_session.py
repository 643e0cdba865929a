"""ClientSession against a real server: pins, logins, sign-up, account states."""

from __future__ import annotations

import hashlib

import pytest

from chatkit import PASSWORDS, Client
from schat.client.pacing import Pacer
from schat.client.session import ClientSession, Disconnected
from schat.client.trust import ServerKeyChanged
from schat.crypto.keys import fingerprint, public_der
from schat.errors import AuthenticationFailed, ConnectionFailed, TrustError
from schat.protocol import messages
from schat.store.known_servers import KnownServers


@pytest.fixture
def known(tmp_path):
    return KnownServers(tmp_path / "known_servers")


def test_first_contact_pins_then_matches(chat_server, known):
    asked = []

    def decline(fp):
        asked.append(fp)
        return False

    with pytest.raises(TrustError, match="not accepted"):
        chat_server.session(known=known, accept_new=False, confirm_new=decline)
    assert asked == [chat_server.fingerprint]
    assert known.entries() == []

    s = chat_server.session(known=known, accept_new=False, confirm_new=lambda fp: True)
    assert s.pin_status == "unknown"
    s.close()
    (pin,) = known.entries()
    assert pin.fingerprint == chat_server.fingerprint and pin.port == chat_server.port

    s = chat_server.session(known=known, accept_new=False)  # no question needed now
    assert s.pin_status == "pinned"
    s.login_password("alice", PASSWORDS["alice"])
    s.close()


def test_changed_key_refused_even_with_accept_new(chat_server, known, other_host_key):
    old = fingerprint(other_host_key)
    known.pin("test", chat_server.host, chat_server.port, old)
    asked = []
    with pytest.raises(ServerKeyChanged) as err:
        chat_server.session(known=known, accept_new=True, confirm_new=asked.append)
    assert isinstance(err.value, TrustError) and "\n" not in str(err.value)
    text = err.value.banner
    assert "WARNING: SERVER KEY HAS CHANGED" in text
    assert old in text and chat_server.fingerprint in text
    assert "schat servers forget test" in text
    assert asked == []  # no way to continue from a prompt
    assert known.entries()[0].fingerprint == old


def test_servers_json_fingerprint_must_match(chat_server, known, other_host_key):
    with pytest.raises(ServerKeyChanged) as err:
        chat_server.session(known=known, accept_new=True,
                            expected_fingerprint=fingerprint(other_host_key))
    assert "SERVER KEY HAS CHANGED" in err.value.banner
    s = chat_server.session(known=known, accept_new=False,
                            expected_fingerprint=chat_server.fingerprint)
    assert s.pin_status == "unknown"  # pinned from the configured fingerprint
    s.close()
    assert known.entries()[0].fingerprint == chat_server.fingerprint


def test_key_login(chat_server, user_keys):
    chat_server.store.set_public_key("alice", public_der(user_keys["alice"]))
    s = chat_server.session()
    with pytest.raises(AuthenticationFailed, match="key login refused"):
        s.login_key("alice", user_keys["bob"])
    with pytest.raises(AuthenticationFailed, match="key login refused"):
        s.login_key("bob", user_keys["bob"])  # bob has no key registered
    welcome = s.login_key("alice", user_keys["alice"])
    assert welcome.user == "alice"
    s.close()


def test_signup_then_login(chat_server, user_keys):
    s = chat_server.session()
    with pytest.raises(AuthenticationFailed, match="password"):
        s.signup("dave", "short1")  # the same policy as `schat user add`
    assert s.signup("dave", "dave-pass-4444", public_der(user_keys["carol"])).user == "dave"
    s.close()
    account = chat_server.store.get("dave")
    assert account.key_fingerprint == fingerprint(user_keys["carol"])
    dave = chat_server.login("dave", "dave-pass-4444")
    dave.close()
    s = chat_server.session()
    with pytest.raises(AuthenticationFailed, match="already exists"):
        s.signup("DAVE", "other-pass-55")
    s.close()


def test_signup_disabled(server_factory):
    srv = server_factory(allow_signup=False)
    s = srv.session()
    with pytest.raises(AuthenticationFailed, match="does not allow sign-up"):
        s.signup("dave", "dave-pass-4444")
    s.close()
    assert srv.store.get("dave") is None


def test_legacy_account_upgraded_at_login(chat_server):
    digest = hashlib.sha256(b"old-secret-9").hexdigest()
    chat_server.store.import_legacy([f"erin,{digest}"])
    assert chat_server.store.get("erin").legacy
    erin = chat_server.login("erin", "old-secret-9")
    erin.close()
    assert not chat_server.store.get("erin").legacy
    assert chat_server.store.check_password("erin", "old-secret-9").ok


def test_locked_and_removed_accounts_refused(chat_server):
    chat_server.store.lock("bob")
    s = chat_server.session()
    with pytest.raises(AuthenticationFailed, match="locked"):
        s.login_password("bob", PASSWORDS["bob"])
    chat_server.store.remove("carol")
    with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
        s.login_password("carol", PASSWORDS["carol"])
    s.close()


def test_server_stopped_mid_session(server_factory):
    srv = server_factory()
    alice = srv.login("alice")
    srv.thread.stop()
    assert alice.next(messages.Bye).reason == "server shutting down"
    gone = alice.next(Disconnected)
    assert gone.clean and not alice.session.connected
    with pytest.raises(ConnectionFailed):
        alice.session.say("anyone?")


def test_unreachable_server(chat_server, known):
    srv_port = chat_server.port
    chat_server.thread.stop()
    s = ClientSession("127.0.0.1", srv_port, "gone", known_servers=known, accept_new=True,
                      timeout=5)
    with pytest.raises(ConnectionFailed, match="cannot reach server 'gone'"):
        s.connect()


def test_wait_acked_counts_errors_as_answers(chat_server):
    alice = chat_server.login("alice")
    alice.session.say("one")
    cid = alice.session.command("/nosuch")
    assert alice.next(messages.Error).cid == cid
    assert alice.session.wait_acked(5)
    assert alice.session.pending == 0
    alice.close()


def test_an_error_settles_only_the_request_it_names(chat_server):
    alice = chat_server.login("alice")
    # An error for an untracked request (no cid the session knows) settles nothing.
    alice.session.send(messages.Msg(to="bob", text="plain", cid="untracked"))
    cid = alice.session.say("tracked")
    assert alice.next(messages.Error).cid == "untracked"
    assert alice.session.wait_acked(5)
    assert alice.next(messages.Ack).cid == cid
    alice.close()


def test_throttled_requests_are_sent_again(server_factory):
    # A server stricter than the client's pacing: every line still gets through.
    srv = server_factory(rate_limit=20.0, rate_burst=5)
    alice, bob = srv.login("alice"), srv.login("bob")
    alice.session.pacer = Pacer(rate=10.0, burst=10)
    for n in range(10):
        alice.session.say(f"line {n}")
    assert alice.session.wait_acked(10)
    got = {bob.next(messages.ChatMessage).text for _ in range(10)}
    assert got == {f"line {n}" for n in range(10)}
    assert all(not isinstance(e, messages.Error) for e in list(alice.events.queue))
    alice.close(), bob.close()


def test_idle_client_is_pinged_and_silent_one_dropped(server_factory):
    # The timeout is alice's time to answer a ping: a receiver thread on a loaded
    # machine may take longer than a few tenths of a second.
    srv = server_factory(ping_interval=0.2, ping_timeout=1.5)
    alice = srv.login("alice")  # the session answers pings by itself
    bob_session = srv.session()
    bob_session.login_password("bob", PASSWORDS["bob"])
    # bob never starts his receiver: he cannot answer the ping and is dropped.
    leave = alice.next(messages.Leave, timeout=10)
    assert (leave.user, leave.reason) == ("bob", "ping timeout")
    assert srv.server.hub.is_online("alice")
    bob_session.close()
    alice.close()


def test_login_deadline(server_factory):
    # The deadline covers the handshake too: the session's own must be done within it on
    # a loaded machine (at 0.3 s, one that slow was cut off before it could wait).
    srv = server_factory(login_deadline=1.0)
    s = srv.session()
    events = []
    s.start(events.append)  # not logged in; wait for the server to give up
    s._thread.join(10)
    assert isinstance(events[-1], Disconnected)
    assert any(isinstance(e, messages.Error) and "deadline" in e.text for e in events)
