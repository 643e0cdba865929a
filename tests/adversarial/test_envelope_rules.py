"""What a sender or a modified server can do with envelopes, and what the reader does.

* Issue #11 item 5: the signed data commits to the content key; each reader
  checks it after unwrapping, so no two readers can open one envelope to two
  texts. Envelopes of format 1 (no commitment) are refused by the server for
  new messages; those still in a mailbox are shown, marked.
* Issue #12 item 6: names are signed in their canonical form (schema.name_key).
* Issue #12 item 7: envelope time against the clocks (MAX_CLOCK_SKEW_MS) and
  the replay window.

Envelopes are built here byte by byte from docs/PROTOCOL.md, as a modified
client would, and delivered by a modified server that speaks the real protocol.
"""

from __future__ import annotations

import os
import queue
import struct
import time
from pathlib import Path

import pytest
from Crypto.Hash import SHA256

from chatkit import PASSWORDS, WAIT
from hostile_server import HostileServer, now_ms
from schat.client.dm import DmClient
from schat.client.local_events import LocalWarning, PrivateMessage
from schat.client.render import Renderer
from schat.client.session import ClientSession
from schat.client.ui import format_json, format_text
from schat.crypto import aead, pubkey
from schat.crypto import envelope as ev
from schat.crypto.keys import public_der
from schat.protocol import dm_messages as dmm
from schat.protocol import messages

T0 = 1_700_000_000_000


def name(n: str) -> bytes:
    return bytes([len(n)]) + n.encode("ascii")


def blob(data: bytes, width: int) -> bytes:
    return len(data).to_bytes(width, "big") + data


def fp(key) -> bytes:
    return SHA256.new(public_der(key)).digest()


def commitment(content_key: bytes) -> bytes:
    """The documented key commitment: SHA-256(context ‖ content key)."""
    return SHA256.new(b"schat/1 dm-envelope key commitment\x00" + content_key).digest()


def craft(sender_key, sender, recipient_key, recipient, text="hello", time_ms=T0,
          version=None, recipient_content_key=None, sender_content_key=None, committed=None,
          msg_id=None):
    """An envelope as docs/PROTOCOL.md lays it out, with every choice open to a liar.

    ``version=1`` is the old layout (no commitment in the header); the default is
    the format in force.
    """
    version = version or ev.VERSION
    k_r = recipient_content_key or os.urandom(32)
    k_s = sender_content_key or k_r
    header = (b"SCDM" + bytes([version]) + name(sender) + name(recipient)
              + struct.pack(">Q", time_ms) + (msg_id or os.urandom(16)) + fp(sender_key))
    if version >= 2:
        header += commitment(committed or k_r)
    wraps = (name(recipient) + fp(recipient_key)
             + blob(pubkey.oaep_wrap(recipient_key.public_key(), k_r), 2)
             + name(sender) + fp(sender_key)
             + blob(pubkey.oaep_wrap(sender_key.public_key(), k_s), 2))
    nonce = os.urandom(12)
    ciphertext = aead.seal(k_r, nonce, text.encode(), b"schat/1 dm-envelope content\x00" + header)
    signed = header + b"\x02" + wraps + nonce + blob(ciphertext, 4)
    return signed + blob(pubkey.pss_sign(sender_key, b"schat/1 dm-envelope signature\x00"
                                         + signed), 2)


# -- issue #11 item 5: one envelope, one text ---------------------------------------

def test_the_signed_header_commits_to_the_content_key(user_keys):
    data = ev.seal("committed", "alice", user_keys["alice"], "bob",
                   user_keys["bob"].public_key(), T0)
    env = ev.parse(data)
    assert env.version == 2
    content_key = pubkey.oaep_unwrap(user_keys["bob"], env.wraps[0].wrapped)
    assert env.key_commitment == commitment(content_key)
    assert env.header.endswith(env.key_commitment)  # in the AEAD's associated data and signed


def test_a_reader_whose_key_is_not_the_committed_one_refuses(user_keys):
    """alice wraps one key for bob and another for herself, and commits to hers."""
    alice, bob = user_keys["alice"], user_keys["bob"]
    k_bob, k_alice = os.urandom(32), os.urandom(32)
    data = craft(alice, "alice", bob, "bob", "pay 100", recipient_content_key=k_bob,
                 sender_content_key=k_alice, committed=k_alice, version=2)
    env = ev.parse(data)
    ev.verify(env, alice.public_key())  # genuinely signed by alice
    with pytest.raises(ev.EnvelopeError, match="commit"):
        ev.open_(env, "bob", bob)
    with pytest.raises(ev.EnvelopeError):
        ev.open_(env, "alice", alice)


def test_honest_envelopes_open_to_the_same_text_for_both_readers(user_keys):
    data = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "same for both",
                 version=2)
    env = ev.parse(data)
    assert ev.open_(env, "bob", user_keys["bob"]) == ev.open_(env, "alice", user_keys["alice"]) \
        == "same for both"


def test_the_server_refuses_a_new_format_1_envelope(server_factory, user_keys):
    """Format 1 commits to no key: an honest server stores none any more."""
    srv = server_factory()
    for user in ("alice", "bob"):
        srv.store.set_public_key(user, public_der(user_keys[user]))
    alice = srv.login("alice")
    old = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "old client",
                time_ms=now_ms(), version=1)
    alice.session.send_request(dmm.DmSend(to="bob", envelope=old, cid="v1"))
    reply = alice.next(messages.Error)
    assert (reply.code, reply.cid) == ("invalid", "v1")
    assert "format 1" in reply.text and "update" in reply.text
    assert srv.server.dm.mailbox.pending("bob") == []
    alice.close()


# -- issue #12 item 6: canonical names -------------------------------------------------

def test_names_are_sealed_in_canonical_form(user_keys):
    env = ev.parse(ev.seal("hi", "Alice", user_keys["alice"], "BOB",
                           user_keys["bob"].public_key(), T0))
    assert (env.sender, env.recipient) == ("alice", "bob")
    assert [w.name for w in env.wraps] == ["bob", "alice"]


@pytest.mark.parametrize("names", [("Alice", "bob"), ("alice", "BOB")])
def test_an_envelope_with_a_non_canonical_name_is_refused(user_keys, names):
    data = craft(user_keys["alice"], names[0], user_keys["bob"], names[1])
    with pytest.raises(ev.EnvelopeError, match="canonical"):
        ev.parse(data)


# -- a modified server delivers; the client decides ------------------------------------

class Receiver:
    """bob logged in to a hostile server that delivers ``mailbox`` right after welcome."""

    def __init__(self, host_key, user_keys, root: Path, mailbox, clock=time.time, port=0):
        self.srv = HostileServer(host_key, on_login=lambda link, msg: link.welcome(
            msg.user, mailbox=mailbox), port=port)
        self.session = ClientSession(self.srv.host, self.srv.port, "evil", accept_new=True,
                                     timeout=WAIT)
        self.session.connect()
        self.session.login_password("bob", PASSWORDS["bob"])
        self.events: "queue.Queue" = queue.Queue()
        self.dm = DmClient(self.session, root, user_keys["bob"], self.events.put,
                           key_timeout=WAIT, clock=clock)
        self.session.start(self.dm.wrap(self.events.put))
        assert self.dm.wait_mailbox(WAIT)

    def shown(self):
        items = []
        while not self.events.empty():
            items.append(self.events.get_nowait())
        return ([e for e in items if isinstance(e, PrivateMessage)],
                [e for e in items if isinstance(e, LocalWarning)])

    def acked(self):
        self.session.send_request(dmm.GetKey(user="bob", cid="sync"))  # a round trip
        self.srv.wait_for(dmm.GetKey)
        return [m.id for m in self.srv.sent_of(dmm.DmAck)]

    def close(self):
        self.session.close()
        self.srv.close()


@pytest.fixture
def receive(host_key, user_keys, tmp_path):
    made = []

    def start(*deliveries, clock=time.time, root=None, port=0):
        mailbox = [dmm.DmEnvelope(id=i + 1, time=server_time, sender="alice", envelope=data,
                                  sender_key=public_der(user_keys["alice"]))
                   for i, (data, server_time) in enumerate(deliveries)]
        r = Receiver(host_key, user_keys, root or tmp_path / "bob", mailbox, clock, port)
        made.append(r)
        return r

    yield start
    for r in made:
        r.close()


def test_format_1_envelope_still_in_the_mailbox_is_shown_marked(receive, user_keys):
    now = now_ms()
    old = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "from before the upgrade",
                time_ms=now - 60_000, version=1)
    bob = receive((old, now - 60_000))
    shown, warnings = bob.shown()
    assert [m.text for m in shown] == ["from before the upgrade"] and not warnings
    assert shown[0].version == 1
    assert "[format 1]" in format_text(shown[0])
    assert "[format 1]" in "".join(t for _, t in Renderer(me="bob").event(shown[0]))
    assert '"format": 1' in format_json(shown[0])
    assert bob.acked() == [1]


def test_a_modified_server_cannot_deliver_an_uncommitted_envelope_as_current(receive,
                                                                           user_keys):
    now = now_ms()
    k_bob, k_alice = os.urandom(32), os.urandom(32)
    bad = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "two faces",
                time_ms=now, recipient_content_key=k_bob, sender_content_key=k_alice,
                committed=k_alice, version=2)
    bob = receive((bad, now))
    shown, warnings = bob.shown()
    assert shown == []
    assert len(warnings) == 1 and "discarded" in warnings[0].text
    assert "two faces" not in warnings[0].text


# -- issue #12 item 7: envelope time ---------------------------------------------------

def test_the_skew_constants_are_shared():
    assert dmm.MAX_CLOCK_SKEW_MS == 5 * 60 * 1000
    assert dmm.MAX_FUTURE_MS == 2 * dmm.MAX_CLOCK_SKEW_MS
    assert dmm.envelope_time_ok(T0 + dmm.MAX_CLOCK_SKEW_MS, T0)
    assert not dmm.envelope_time_ok(T0 + dmm.MAX_CLOCK_SKEW_MS + 1, T0)
    assert not dmm.envelope_time_ok(T0 - dmm.MAX_CLOCK_SKEW_MS - 1, T0)


def test_an_envelope_dated_in_the_future_is_not_shown_and_stays_stored(receive, user_keys):
    now = now_ms()
    future = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "from the future",
                   time_ms=now + 24 * 3600 * 1000)
    bob = receive((future, now))
    shown, warnings = bob.shown()
    assert shown == []
    assert len(warnings) == 1 and "future" in warnings[0].text and "clock" in warnings[0].text
    assert bob.acked() == []  # it may be this clock that is wrong: kept on the server


def test_an_envelope_dated_far_from_its_storage_time_is_not_shown(receive, user_keys):
    """The 1970 envelope: a server that checked the sender's clock never stores it."""
    now = now_ms()
    ancient = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "it is 1970",
                    time_ms=0)
    skewed = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "six minutes off",
                   time_ms=now - 6 * 60_000)
    fine = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "four minutes off",
                 time_ms=now - 4 * 60_000)
    bob = receive((ancient, now), (skewed, now), (fine, now))
    shown, warnings = bob.shown()
    assert [m.text for m in shown] == ["four minutes off"]
    assert len(warnings) == 2 and all("clock" in w.text for w in warnings)
    assert "1970" in warnings[0].text
    assert bob.acked() == [1, 2, 3]  # they can never become valid: the server deletes them


def test_a_replay_of_an_envelope_already_shown_is_ignored(receive, user_keys, tmp_path):
    now = now_ms()
    data = craft(user_keys["alice"], "alice", user_keys["bob"], "bob", "only once",
                 time_ms=now)
    bob = receive((data, now))
    assert [m.text for m in bob.shown()[0]] == ["only once"]
    bob.close()
    # The same server (name and address) delivers it twice more.
    again = receive((data, now + 1000), (data, now + 2000), port=bob.srv.port)
    shown, warnings = again.shown()
    assert shown == [] and warnings == []  # a redelivery after a lost ack is not news
    assert again.acked() == [1, 2]
