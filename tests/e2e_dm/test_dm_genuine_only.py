"""Only checked, end-to-end encrypted private messages are ever shown as such; a stored
message stays on the server until it was really shown."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chatkit import PASSWORDS, WAIT, chat_home, server_factory  # noqa: E402,F401
from test_dm_end_to_end import keyed, peers  # noqa: E402,F401

from schat.cli import cli  # noqa: E402
from schat.client.dm import DmClient  # noqa: E402
from schat.client.local_events import LocalWarning, PrivateMessage  # noqa: E402
from schat.client.ui import LineUI, format_json, format_text  # noqa: E402
from schat.crypto import envelope as ev  # noqa: E402
from schat.crypto.keys import fingerprint, public_der  # noqa: E402
from schat.protocol import dm_messages as dmm  # noqa: E402
from schat.protocol import messages  # noqa: E402


def test_plaintext_dm_from_the_server_is_discarded_with_a_warning(keyed, peers):
    srv = keyed()
    bob = peers(srv, "bob")
    # What a malicious server (or the old plaintext relay) would send: any sender name.
    assert bob.dm.handle(messages.Dm(id=1, time=1, sender="alice", to="bob", text="pay mallory"))
    warning = bob.next(LocalWarning)
    assert "plaintext" in warning.text and "alice" in warning.text
    assert "pay mallory" not in warning.text
    assert bob.events.empty()
    # Rendered, it is a warning line, never a "<- alice:" private-message line.
    assert "<- alice" not in format_text(warning)
    assert json.loads(format_json(warning))["type"] == "warning"


def test_plaintext_msg_is_refused_by_the_server(keyed, peers):
    srv = keyed()
    alice, bob = peers(srv, "alice"), peers(srv, "bob")
    alice.session.send_request(messages.Msg(to="bob", text="in the clear", cid="p1"))
    cid = alice.session.command("/msg bob also in the clear")
    errors = [alice.next(messages.Error), alice.next(messages.Error)]
    assert [(e.code, e.cid) for e in errors] == [("encryption_required", "p1"),
                                                  ("encryption_required", cid)]
    assert "update your schat client" in errors[0].text
    alice.dm.send("bob", "sealed")  # a round trip through bob: nothing plaintext came first
    assert bob.next(PrivateMessage).text == "sealed"
    assert not any(isinstance(e, messages.Dm) for e in list(bob.events.queue))


def test_forged_sender_in_a_genuine_envelope_is_not_shown(keyed, peers, user_keys):
    srv = keyed()
    bob = peers(srv, "bob")
    # Signed by carol's key but delivered as if from alice, with carol's key as "alice's".
    data = ev.seal("trust me", "carol", user_keys["carol"], "bob",
                   user_keys["bob"].public_key(), 1_700_000_000_000)
    bob.dm.handle(dmm.DmEnvelope(id=7, time=1, sender="alice", envelope=data,
                                 sender_key=public_der(user_keys["carol"])))
    assert "failed verification" in bob.next(LocalWarning).text
    assert not any(isinstance(e, PrivateMessage) for e in list(bob.events.queue))


def test_login_without_key_leaves_the_queue_intact(keyed, peers, user_keys, tmp_path):
    srv = keyed()
    alice = peers(srv, "alice")
    alice.dm.send("bob", "for your eyes")
    assert alice.session.wait_acked(WAIT)
    bob = peers(srv, "bob", key=None)
    assert bob.dm.wait_mailbox(WAIT)
    assert "no key is loaded" in bob.next(LocalWarning).text
    bob.dm.fetch_key_status("bob")  # a round trip: any ack would have arrived before it
    assert len(srv.server.dm.mailbox.pending("bob")) == 1
    bob.close()
    bob2 = peers(srv, "bob")
    assert bob2.next(PrivateMessage).text == "for your eyes"
    bob2.dm.fetch_key_status("bob")
    assert srv.server.dm.mailbox.pending("bob") == []


def test_local_failure_keeps_the_message_and_the_session(keyed, peers, tmp_path):
    srv = keyed()
    alice = peers(srv, "alice")
    bob = peers(srv, "bob")
    # bob's replay file cannot be written: the message cannot be recorded as seen.
    seen = tmp_path / "bob" / "dm_seen.db"
    seen.mkdir(parents=True)
    alice.dm.send("bob", "try later")
    warning = bob.next(LocalWarning)
    assert "could not be processed" in warning.text and "stays stored" in warning.text
    assert "try later" not in warning.text
    bob.dm.fetch_key_status("bob")  # the session survived, and no ack went out
    assert len(srv.server.dm.mailbox.pending("bob")) == 1
    seen.rmdir()
    bob.close()
    bob2 = peers(srv, "bob")
    assert bob2.next(PrivateMessage).text == "try later"


def test_key_change_through_the_admin_command(keyed, peers, user_keys, runner, chat_home,
                                              tmp_path):
    srv = keyed()
    alice, bob = peers(srv, "alice"), peers(srv, "bob")
    alice.dm.send("bob", "before")
    assert bob.next(PrivateMessage).verified
    alice.close()
    pub = tmp_path / "alice-new.pub.pem"
    from schat.crypto.keys import export_public_pem

    pub.write_bytes(export_public_pem(user_keys["carol"]))
    result = runner.invoke(cli, ["--home", str(chat_home), "user", "set-key", "alice",
                                  str(pub)])
    assert result.exit_code == 0, result.output
    alice2 = peers(srv, "alice", key=user_keys["carol"])
    alice2.dm.send("bob", "after")
    warning = bob.next(LocalWarning)
    assert "alice's key has CHANGED" in warning.text
    assert fingerprint(user_keys["carol"]) in warning.text
    shown = bob.next(PrivateMessage)
    assert (shown.text, shown.verified) == ("after", False)


def test_pipe_ui_exit_code_and_errors_in_the_stream(keyed, peers, tmp_path, user_keys):
    srv = keyed()
    session = srv.session()
    session.login_password("bob", PASSWORDS["bob"])
    out, err = io.StringIO(), io.StringIO()
    dm = DmClient(session, tmp_path / "bob-ui", user_keys["bob"], lambda m: None)
    long_line = "x" * 5000
    stdin = io.StringIO(f"first\n{long_line}\n/msg nobody hi\n/help\nlast\n")
    ui = LineUI(session, dm, stdin=stdin, stdout=out, stderr=err, as_json=True, ack_wait=WAIT)
    assert ui.run() == 1
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    errors = [r for r in records if r["type"] == "error"]
    assert "line 2 not sent: 5000 bytes is over the 4096-byte limit" in errors[0]["text"]
    assert "no such user: nobody" in errors[1]["text"]
    assert len(errors) == 2
    helps = "\n".join(r["text"] or "" for r in records if r["type"] in ("info", "notice"))
    for word in ("/msg", "/whois", "/verify", "/trust", "/quit", "/who", "/me"):
        assert word in helps
    assert "2 line(s) or request(s) were refused" in err.getvalue()


@pytest.mark.parametrize("verified", [True, False])
def test_private_message_rendering(verified):
    msg = PrivateMessage(id=3, time=1_700_000_000_000, sender="alice", to="bob", text="hi",
                         verified=verified, warning="" if verified else "key changed")
    line = format_text(msg)
    # The same rendering and the same words as the chat screen.
    assert line.endswith("<- alice: hi" if verified else "<- alice [UNVERIFIED: key changed]: hi")
    rec = json.loads(format_json(msg))
    assert (rec["type"], rec["verified"], rec["sender"], rec["to"]) == \
        ("dm", verified, "alice", "bob")
    assert rec["warning"] == (None if verified else "key changed")
