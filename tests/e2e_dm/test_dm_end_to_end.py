"""Encrypted direct messages between real clients through a real server."""

from __future__ import annotations

import logging
import queue
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chatkit import PASSWORDS, WAIT, chat_home, server_factory  # noqa: E402,F401

from schat.client.dm import DmClient  # noqa: E402
from schat.client.local_events import LocalWarning, PrivateMessage  # noqa: E402
from schat.crypto import envelope as ev  # noqa: E402
from schat.crypto.keys import fingerprint, public_der  # noqa: E402
from schat.errors import SchatError, TrustError  # noqa: E402
from schat.paths import Home  # noqa: E402
from schat.protocol import dm_messages as dmm  # noqa: E402
from schat.protocol import messages  # noqa: E402

SECRET = "launch code: OCTOPUS-7731"


class DmPeer:
    """A logged-in session with its DmClient; displayed events go to a queue."""

    def __init__(self, srv, user, key, root: Path):
        self.session = srv.session()
        self.session.login_password(user, PASSWORDS[user])
        self.events: "queue.Queue" = queue.Queue()
        self.dm = DmClient(self.session, root, key, self.events.put, key_timeout=WAIT)
        self.session.start(self.dm.wrap(self.events.put))

    def next(self, kind):
        while True:
            item = self.events.get(timeout=WAIT)
            if isinstance(item, kind):
                return item

    def close(self):
        self.session.close()


@pytest.fixture
def keyed(server_factory, user_keys):
    def start(**settings):
        srv = server_factory(**settings)
        for name in ("alice", "bob"):
            if not srv.store.get(name).public_key_der:
                srv.store.set_public_key(name, public_der(user_keys[name]))
        return srv
    return start


@pytest.fixture
def peers(tmp_path, user_keys):
    made = []

    def connect(srv, user, key="same"):
        peer = DmPeer(srv, user, user_keys[user] if key == "same" else key, tmp_path / user)
        made.append(peer)
        return peer

    yield connect
    for peer in made:
        peer.close()


def _db_bytes(home: Path) -> bytes:
    db = Home(home).users_db
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_exchange_server_never_sees_plaintext(keyed, peers, caplog, chat_home):
    caplog.set_level(logging.DEBUG, logger="schat")
    srv = keyed()
    alice, bob = peers(srv, "alice"), peers(srv, "bob")
    alice.dm.send("bob", SECRET)
    got = bob.next(PrivateMessage)
    assert (got.sender, got.to, got.text, got.verified) == ("alice", "bob", SECRET, True)
    bob.dm.send("alice", "reply " + SECRET)
    assert alice.next(PrivateMessage).text == "reply " + SECRET
    # Hold one in the mailbox (bob offline) so the dump has something to show.
    bob.close()
    alice.dm.send("bob", SECRET + " (stored)")
    assert "offline" in alice.next(messages.Notice).text
    assert alice.session.wait_acked(WAIT)
    stored = srv.server.dm.mailbox.dump()
    assert len(stored) == 1 and stored[0].recipient == "bob"
    for item in stored:
        assert b"OCTOPUS" not in item.envelope and b"OCTOPUS" not in item.sender_key
    assert b"OCTOPUS" not in _db_bytes(chat_home)
    assert "OCTOPUS" not in caplog.text
    assert "dm" in caplog.text  # the debug log did record the DM traffic


def test_tampered_envelope_rejected(keyed, peers, user_keys):
    srv = keyed()
    alice, bob = peers(srv, "alice"), peers(srv, "bob")
    data = bytearray(ev.seal("hello", "alice", user_keys["alice"], "bob",
                             user_keys["bob"].public_key(), int(time.time() * 1000)))
    data[-500] ^= 1  # inside the ciphertext/wraps region: breaks the signature
    # The server refuses it ...
    alice.session.send(dmm.DmSend(to="bob", envelope=bytes(data), cid="t1"))
    assert alice.next(messages.Error).code == "invalid"
    # ... and a client never shows one as genuine even if it is delivered.
    bob.dm.handle(dmm.DmEnvelope(id=999, time=1, sender="alice", envelope=bytes(data),
                                 sender_key=public_der(user_keys["alice"])))
    warning = bob.next(LocalWarning)
    assert "failed verification" in warning.text and "alice" in warning.text
    alice.dm.send("bob", "genuine")
    assert bob.next(PrivateMessage).text == "genuine"
    assert bob.events.empty()


def test_key_change_warns_and_trust_clears(keyed, peers, user_keys):
    srv = keyed()
    alice, bob = peers(srv, "alice"), peers(srv, "bob")
    alice.dm.send("bob", "first")
    assert bob.next(PrivateMessage).text == "first"  # bob pins alice's key (TOFU)
    alice.close()
    # alice's key is replaced (say, a new laptop): carol's pre-generated key stands in.
    srv.store.set_public_key("alice", public_der(user_keys["carol"]))
    alice2 = peers(srv, "alice", key=user_keys["carol"])
    alice2.dm.send("bob", "from my new key")
    warning = bob.next(LocalWarning)
    assert "CHANGED" in warning.text and "/trust alice" in warning.text
    shown = bob.next(PrivateMessage)
    assert (shown.text, shown.verified) == ("from my new key", False)
    assert "CHANGED" in shown.warning
    with pytest.raises(TrustError, match="key has CHANGED"):
        bob.dm.send("alice", "are you really alice?")
    assert "CHANGED" in bob.dm.whois("alice")
    new_fp = fingerprint(user_keys["carol"])
    assert new_fp in bob.dm.handle_line("/verify alice")[0]
    # The server now offers yet another key: /trust still pins only the one checked.
    srv.store.set_public_key("alice", public_der(user_keys["bob"]))
    with pytest.raises(TrustError, match="not SHA256:"):
        bob.dm.handle_line(f"/trust alice {fingerprint(user_keys['bob'])}")
    assert bob.dm.handle_line(f"/trust alice {new_fp}") == \
        [f"now trusting alice's key {new_fp}"]
    assert bob.dm.contacts.pinned("alice") == public_der(user_keys["carol"])
    srv.store.set_public_key("alice", public_der(user_keys["carol"]))
    assert "matches your pin" in bob.dm.whois("alice")
    alice2.dm.send("bob", "verified again")
    assert bob.next(PrivateMessage).text == "verified again"
    bob.dm.send("alice", "welcome back")
    assert alice2.next(PrivateMessage).text == "welcome back"


def test_verify_codes_match(keyed, peers):
    srv = keyed()
    alice, bob = peers(srv, "alice"), peers(srv, "bob")
    a = alice.dm.handle_line("/verify bob")[0]
    b = bob.dm.handle_line("/verify alice")[0]
    code_a, code_b = a.split(": ", 1)[1], b.split(": ", 1)[1]
    assert code_a == code_b and len(code_a.split()) == 6
    assert alice.dm.whois("bob").startswith("bob: SHA256:")


def test_offline_delivery_across_restart(keyed, peers):
    srv = keyed()
    alice = peers(srv, "alice")
    for i in range(3):
        alice.dm.send("bob", f"queued {i}")
        assert "offline" in alice.next(messages.Notice).text
    assert alice.session.wait_acked(WAIT)
    alice.close()
    srv.thread.stop()
    srv2 = keyed()  # a new server process on the same users.db
    assert len(srv2.server.dm.mailbox.pending("bob")) == 3
    bob = peers(srv2, "bob")
    assert bob.dm.wait_mailbox(WAIT)
    # All three were shown before wait_mailbox returned, in order.
    texts = [bob.events.get_nowait().text for _ in range(3)]
    assert texts == ["queued 0", "queued 1", "queued 2"]
    bob.dm.fetch_key("bob")  # a round trip: the server has processed the acks before it
    assert srv2.server.dm.mailbox.pending("bob") == []


def test_mailbox_larger_than_the_outbound_cap_is_delivered_in_batches(keyed, peers):
    # 30 stored envelopes of ~4 KiB text hold far more than this server lets one
    # member's output buffer hold at once: they arrive in batches, each after
    # the previous one is acknowledged, and the owner is never dropped as slow.
    srv = keyed(outbound_cap=32 * 1024, rate_limit=0)
    alice = peers(srv, "alice")
    texts = [f"{i:02d} " + "x" * 4000 for i in range(30)]
    for text in texts:
        alice.dm.send("bob", text)
    assert alice.session.wait_acked(WAIT)
    assert srv.server.dm.mailbox.count("bob") == 30
    bob = peers(srv, "bob")
    assert bob.dm.wait_mailbox(WAIT)
    shown = [bob.next(PrivateMessage).text for _ in range(30)]
    assert shown == texts
    bob.dm.fetch_key("bob")  # a round trip: the server has processed the acks before it
    assert srv.server.dm.mailbox.count("bob") == 0
    assert srv.server.hub.is_online("bob")


def test_replay_ignored(keyed, peers, user_keys):
    srv = keyed()
    alice, bob = peers(srv, "alice"), peers(srv, "bob")
    now = int(time.time() * 1000)  # the envelope time: the sender's clock, now
    data = ev.seal("only once", "alice", user_keys["alice"], "bob",
                   user_keys["bob"].public_key(), now)
    alice.session.send(dmm.DmSend(to="bob", envelope=data, cid="r1"))
    assert bob.next(PrivateMessage).text == "only once"
    alice.session.send(dmm.DmSend(to="bob", envelope=data, cid="r2"))  # the same id again
    alice.dm.send("bob", "fresh")
    assert bob.next(PrivateMessage).text == "fresh"  # the replay was not shown
    # The seen ids survive a new client on the same home.
    bob.close()
    bob2 = peers(srv, "bob")
    bob2.dm.handle(dmm.DmEnvelope(id=5, time=now, sender="alice", envelope=data,
                                  sender_key=public_der(user_keys["alice"])))
    alice.dm.send("bob", "fresh 2")
    assert bob2.next(PrivateMessage).text == "fresh 2"


def test_member_without_key_gets_clear_message(keyed, peers):
    srv = keyed()
    carol = peers(srv, "carol", key=None)
    with pytest.raises(SchatError, match=r"schat keys gen carol.*--register-key"):
        carol.dm.handle_line("/msg bob hi")
    alice = peers(srv, "alice")
    with pytest.raises(SchatError, match=r"carol has no key yet.*schat keys gen carol"):
        alice.dm.handle_line("/msg carol hi")


def test_key_uploaded_at_first_login(keyed, peers, user_keys):
    srv = keyed()
    assert not srv.store.get("carol").public_key_der
    carol = peers(srv, "carol", key=user_keys["carol"])
    carol.dm.register_key()
    assert carol.session.wait_acked(WAIT)
    assert bytes(srv.store.get("carol").public_key_der) == public_der(user_keys["carol"])


def test_mailbox_full(keyed, peers, user_keys):
    srv = keyed(mailbox_limit=8)
    srv.store.set_public_key("carol", public_der(user_keys["carol"]))
    alice, carol = peers(srv, "alice"), peers(srv, "carol")
    # One sender fills at most a quarter of the mailbox; the others still get through.
    for i in range(2):
        alice.dm.send("bob", f"m{i}")
    cid = alice.dm.send("bob", "one too many").cid
    err = alice.next(messages.Error)
    assert (err.code, err.cid) == ("mailbox_full", cid)
    assert "at most 2 from one sender" in err.text
    for i in range(6):
        carol.dm.send("bob", f"c{i}")
    assert carol.session.wait_acked(WAIT)
    errors = [e for e in list(carol.events.queue) if isinstance(e, messages.Error)]
    assert [e.code for e in errors] == ["mailbox_full"] * 4
    assert srv.server.dm.mailbox.count("bob") == 4
    srv.server.dm.mailbox.per_sender = 8
    for i in range(5):
        carol.dm.send("bob", f"d{i}")
    assert carol.session.wait_acked(WAIT)
    last = [e for e in list(carol.events.queue) if isinstance(e, messages.Error)][-1]
    assert last.code == "mailbox_full" and "bob's mailbox is full (8 messages" in last.text


def test_line_ui_shows_stored_dms_before_input(keyed, peers, tmp_path, user_keys):
    import io

    from schat.client.ui import LineUI

    srv = keyed()
    alice = peers(srv, "alice")
    alice.dm.send("bob", "waiting for you")
    assert alice.session.wait_acked(WAIT)
    session = srv.session()
    session.login_password("bob", PASSWORDS["bob"])
    out, err = io.StringIO(), io.StringIO()
    dm = DmClient(session, tmp_path / "bob-ui", user_keys["bob"], lambda m: None)
    ui = LineUI(session, dm, stdin=io.StringIO("/verify alice\n/msg alice got it\n"),
                stdout=out, stderr=err, ack_wait=WAIT)
    assert ui.run() == 0, err.getvalue()
    text = out.getvalue()
    assert "<- alice: waiting for you" in text
    assert text.index("waiting for you") < text.index("safety code with alice")
    assert alice.next(PrivateMessage).text == "got it"
