"""A modified server answers key look-ups with lies (issue #11 item 1).

The client asks for bob's key; the server answers with carol's name and key
(so that it, or carol, can read what alice meant for bob), or with bob's name
and carol's key. Nothing may be sealed to anyone but the member asked for, no
pin may change silently, and what is shown names the account sealed to.
"""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from chatkit import WAIT
from hostile_server import HostileServer, now_ms
from schat.client.dm import DmClient
from schat.client.session import ClientSession
from schat.crypto import envelope as ev
from schat.crypto.keys import fingerprint, public_der
from schat.errors import TrustError
from schat.protocol import dm_messages as dmm
from schat.protocol import messages


@pytest.fixture(scope="module")
def ders(user_keys):
    return {name: public_der(key) for name, key in user_keys.items()}


@pytest.fixture
def hostile(host_key):
    made = []

    def start(script=None, **kwargs) -> HostileServer:
        srv = HostileServer(host_key, script, **kwargs)
        made.append(srv)
        return srv

    yield start
    for srv in made:
        srv.close()


class Member:
    """A logged-in client of the hostile server with its DmClient; events in a queue."""

    def __init__(self, srv: HostileServer, user: str, key, root: Path):
        self.session = ClientSession(srv.host, srv.port, "evil", accept_new=True, timeout=WAIT)
        self.session.connect()
        self.session.login_password(user, "any password")
        self.events: "queue.Queue" = queue.Queue()
        self.dm = DmClient(self.session, root, key, self.events.put, key_timeout=WAIT)
        self.session.start(self.dm.wrap(self.events.put))

    def round_trip(self) -> None:
        """A request the server answers: anything sent before it has arrived."""
        cid = self.session.say("ping")
        assert self.session.wait_acked(WAIT), cid


@pytest.fixture
def member(tmp_path, user_keys):
    made = []

    def connect(srv, user="alice"):
        m = Member(srv, user, user_keys[user], tmp_path / user)
        made.append(m)
        return m

    yield connect
    for m in made:
        m.session.close()


def liar(answer):
    """A script: ``answer(get_key) -> key reply``; dm_send and say are acknowledged."""
    def script(link, msg):
        if isinstance(msg, dmm.GetKey):
            link.send(answer(msg))
        elif isinstance(msg, (dmm.DmSend, messages.Say)):
            link.send(messages.Ack(cid=msg.cid, id=7, time=now_ms()))
    return script


def key_reply(msg, name, der):
    return dmm.Key(cid=msg.cid, user=name, status="ok", public_key=der,
                   fingerprint=fingerprint(der))


@pytest.mark.parametrize("pinned", [True, False], ids=["bob-pinned", "first-contact"])
def test_a_key_reply_naming_another_member_is_refused_and_nothing_is_sent(
        hostile, member, ders, pinned):
    srv = hostile(liar(lambda msg: key_reply(msg, "carol", ders["carol"])))
    alice = member(srv)
    if pinned:
        alice.dm.contacts.observe("bob", ders["bob"])
    with pytest.raises(TrustError) as err:
        alice.dm.send("bob", "for bob only")
    text = str(err.value)
    assert "bob" in text and "carol" in text and "nothing was sent" in text.lower()
    alice.round_trip()
    assert srv.sent_of(dmm.DmSend) == []
    # No pin was made for the account the server slipped in, and bob's pin is untouched.
    assert alice.dm.contacts.pinned("carol") is None
    assert alice.dm.contacts.pinned("bob") == (ders["bob"] if pinned else None)


def test_a_changed_key_under_the_right_name_is_the_changed_key_warning(hostile, member, ders):
    srv = hostile(liar(lambda msg: key_reply(msg, "bob", ders["carol"])))
    alice = member(srv)
    alice.dm.contacts.observe("bob", ders["bob"])
    with pytest.raises(TrustError, match="bob's key has CHANGED.*Nothing was sent"):
        alice.dm.send("bob", "for bob only")
    alice.round_trip()
    assert srv.sent_of(dmm.DmSend) == []
    assert alice.dm.contacts.pinned("bob") == ders["bob"]  # never a silent new pin
    assert alice.dm.contacts.pending("bob") == ders["carol"]


@pytest.mark.parametrize("command", ["/whois bob", "/verify bob"])
def test_whois_and_verify_refuse_an_answer_about_someone_else(hostile, member, ders, command):
    srv = hostile(liar(lambda msg: key_reply(msg, "carol", ders["carol"])))
    alice = member(srv)
    alice.dm.contacts.observe("bob", ders["bob"])
    with pytest.raises(TrustError, match="carol"):
        alice.dm.handle_line(command)
    assert alice.dm.contacts.pinned("carol") is None
    assert alice.dm.contacts.pending("bob") is None


def test_the_server_cannot_answer_for_our_own_account_with_another(hostile, member, ders):
    """register_key after login: a reply about carol is not a reply about alice."""
    srv = hostile(liar(lambda msg: dmm.Key(cid=msg.cid, user="carol", status="no_key")))
    alice = member(srv)
    with pytest.raises(TrustError, match="carol"):
        alice.dm.register_key()
    alice.round_trip()
    assert srv.sent_of(dmm.SetKey) == []


def test_what_is_sealed_and_shown_names_the_account_asked_for(hostile, member, ders,
                                                              user_keys):
    """The registered spelling may differ in case: same account, sealed to it, shown as it."""
    srv = hostile(liar(lambda msg: key_reply(msg, "Bob", ders["bob"])))
    alice = member(srv)
    sent = alice.dm.send("bob", "hello Bob")
    dm_send = srv.wait_for(dmm.DmSend)
    assert (sent.cid, sent.to, sent.fingerprint) == (dm_send.cid, "Bob", fingerprint(ders["bob"]))
    assert dm_send.to == "Bob"
    env = ev.parse(dm_send.envelope)
    assert env.recipient == "bob"  # the canonical form (schema.name_key) is what is signed
    assert ev.open_(env, "bob", user_keys["bob"]) == "hello Bob"
