"""The chat screen against a modified server (issue #11 items 1 and 4)."""

from __future__ import annotations

import pytest

from chatkit import PASSWORDS, WAIT
from hostile_server import HostileServer, now_ms
from schat.client.dm import DmClient
from schat.client.session import ClientSession
from schat.crypto.keys import fingerprint, public_der
from schat.protocol import dm_messages as dmm
from schat.protocol import messages
from tuikit import screens  # noqa: F401  (fixture)


@pytest.fixture
def hostile(host_key):
    made = []

    def start(script=None, **kwargs):
        srv = HostileServer(host_key, script, **kwargs)
        made.append(srv)
        return srv

    yield start
    for srv in made:
        srv.close()


def login(srv, user="alice"):
    session = ClientSession(srv.host, srv.port, "evil", accept_new=True, timeout=WAIT)
    session.connect()
    session.login_password(user, PASSWORDS[user])
    return session


def test_a_sent_private_message_shows_the_account_it_was_sealed_to(hostile, screens,
                                                                 user_keys, tmp_path):
    """The registered spelling is "Bob": the line says whom the envelope is for."""
    bob_der = public_der(user_keys["bob"])

    def script(link, msg):
        if isinstance(msg, dmm.GetKey):
            link.send(dmm.Key(cid=msg.cid, user="Bob", status="ok", public_key=bob_der,
                              fingerprint=fingerprint(bob_der)))
        elif isinstance(msg, dmm.DmSend):
            link.send(messages.Ack(cid=msg.cid, id=3, time=now_ms()))

    srv = hostile(script)
    screen = screens(login(srv), None, server="evil", colour=False,
                     dm_factory=lambda s: DmClient(s, tmp_path, user_keys["alice"],
                                                   lambda e: None, key_timeout=WAIT))
    screen.type("/msg bob see you at 6\r")
    screen.wait_printed("see you at 6")
    line = "".join(t for _, t in screen.line_with("see you at 6"))
    assert "-> Bob: see you at 6" in line


def test_a_member_cannot_reorder_the_chat_screen(hostile, screens):
    def greet(link, msg):
        link.welcome(msg.user, users=("alice", "mallory"))
        link.send(messages.ChatMessage(id=1, time=now_ms(), sender="mallory",
                                       text="\u202e!enilno era uoy \u2066ok\u2069 end"))

    srv = hostile(on_login=greet)
    screen = screens(login(srv), None, server="evil", colour=False)
    screen.wait_printed("end")
    terminal = screen.out.getvalue()
    assert "\u202e" not in terminal and "\u2066" not in terminal and "\u2069" not in terminal
    assert "<U+202E>!enilno" in terminal
