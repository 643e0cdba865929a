"""Contact pins and replay memory belong to the server as the member named it
(name + address), not to its host key (issue #11 item 3).

The operator rotates the host key (or an impostor's key is accepted through
the documented `servers forget` flow): the members' pins must still hold, an
envelope already shown must not be shown again when the operator re-inserts
it, and the rotation is announced once. Files written by the previous
release (keyed by the host-key fingerprint) are still read.
"""

from __future__ import annotations

import base64
import json
import queue
from pathlib import Path

import pytest

from chatkit import PASSWORDS, WAIT, make_store
from services import PortHold
from schat.client.dm import DmClient
from schat.client.local_events import LocalWarning, PrivateMessage
from schat.client.session import ClientSession
from schat.client.trust import ServerKeyChanged
from schat.crypto import envelope as ev
from schat.crypto.keys import fingerprint, public_der
from schat.paths import Home
from schat.server.app import ServerThread
from schat.server.limits import ServerSettings
from schat.store.accounts import AccountStore
from schat.store.known_servers import KnownServers


class Lab:
    """The server "lab" at one fixed address, whose host key can be replaced. Its port
    is held for the lab's whole life (PortHold), so that no other process takes it
    before the first start or between a stop and the next start."""

    def __init__(self, home: Path, user_keys):
        self.home = home
        self.held = PortHold()
        self.port = self.held.port
        store = make_store(home)
        for user in ("alice", "bob"):
            store.set_public_key(user, public_der(user_keys[user]))
        store.close()
        self.thread = None

    def start(self, host_key) -> None:
        self.store = AccountStore(Home(self.home).users_db)
        self.thread = ServerThread(ServerSettings(port=self.port, server_name="lab"), host_key,
                                   self.store)
        self.thread.start()

    def stop(self) -> None:
        self.thread.stop()
        self.store.close()

    @property
    def mailbox(self):
        return self.thread.server.dm.mailbox


class Member:
    def __init__(self, lab: Lab, user: str, key, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        known = KnownServers(root / "known_servers")
        self.session = ClientSession("127.0.0.1", lab.port, "lab", known_servers=known,
                                     accept_new=True, timeout=WAIT)
        try:
            self.session.connect()
        except ServerKeyChanged:
            # The documented flow after checking the new key with the operator.
            known.forget("lab")
            self.session = ClientSession("127.0.0.1", lab.port, "lab", known_servers=known,
                                         accept_new=True, timeout=WAIT)
            self.session.connect()
        self.session.login_password(user, PASSWORDS[user])
        self.events: "queue.Queue" = queue.Queue()
        self.dm = DmClient(self.session, root, key, self.events.put, key_timeout=WAIT)
        self.session.start(self.dm.wrap(self.events.put))
        assert self.dm.wait_mailbox(WAIT)
        self.dm.register_key()  # what every interface calls after a login

    def drain(self):
        self.dm.fetch_key_status(self.session.user)  # a round trip: all before it has arrived
        items = []
        while not self.events.empty():
            items.append(self.events.get_nowait())
        return items

    def close(self):
        self.session.close()


@pytest.fixture
def lab(chat_home, user_keys):
    lab = Lab(chat_home, user_keys)
    yield lab
    if lab.thread is not None:
        try:
            lab.stop()
        except RuntimeError:
            pass
    lab.held.close()


def test_pins_and_replay_memory_survive_a_host_key_rotation(lab, tmp_path, host_key,
                                                           other_host_key, user_keys):
    lab.start(host_key)
    alice = Member(lab, "alice", user_keys["alice"], tmp_path / "alice")
    alice.dm.send("bob", "before the rotation")  # bob is offline: stored
    assert alice.session.wait_acked(WAIT)
    stored = lab.mailbox.pending("bob")[0]
    bob = Member(lab, "bob", user_keys["bob"], tmp_path / "bob")
    assert [e.text for e in bob.drain() if isinstance(e, PrivateMessage)] == \
        ["before the rotation"]
    assert "matches your pin" in alice.dm.whois("bob")
    alice.close()
    bob.close()
    lab.stop()

    lab.start(other_host_key)  # the operator rotated the key
    # ... and re-inserts the envelope bob has already read.
    lab.mailbox.put("bob", "alice", stored.time, stored.envelope, stored.sender_key)
    bob = Member(lab, "bob", user_keys["bob"], tmp_path / "bob")
    events = bob.drain()
    assert not [e for e in events if isinstance(e, PrivateMessage)], events
    rotated = [e for e in events if isinstance(e, LocalWarning) and "key" in e.text]
    assert len(rotated) == 1, events
    assert fingerprint(host_key) in rotated[0].text
    assert fingerprint(other_host_key) in rotated[0].text
    assert lab.mailbox.pending("bob") == []  # acknowledged: never shown, never kept
    bob.close()

    alice = Member(lab, "alice", user_keys["alice"], tmp_path / "alice")
    assert "matches your pin" in alice.dm.whois("bob")
    alice.close()
    bob = Member(lab, "bob", user_keys["bob"], tmp_path / "bob")  # announced once only
    assert not [e for e in bob.drain() if isinstance(e, LocalWarning)]
    bob.close()


def test_files_keyed_by_the_host_key_are_still_read(lab, tmp_path, host_key, user_keys):
    """A data home from the previous release: contacts and dm_seen keyed by fingerprint."""
    lab.start(host_key)
    server_fp = fingerprint(host_key)
    carol_der = public_der(user_keys["carol"])
    alice_home = tmp_path / "alice"
    alice_home.mkdir()
    (alice_home / "contacts").write_text(json.dumps({"version": 1, "servers": {server_fp: {
        "bob": {"name": "bob", "key": base64.b64encode(carol_der).decode(),
                "fingerprint": fingerprint(carol_der)}}}}))
    # bob's key on the server is bob's own, not the pinned (carol's): the old pin is in force.
    alice = Member(lab, "alice", user_keys["alice"], alice_home)
    assert "CHANGED" in alice.dm.whois("bob")
    alice.close()

    data = ev.seal("seen under the old file", "alice", user_keys["alice"], "bob",
                   user_keys["bob"].public_key(), 1_700_000_000_000)
    env = ev.parse(data)
    bob_home = tmp_path / "bob"
    bob_home.mkdir()
    (bob_home / "dm_seen").write_text(json.dumps({"version": 1, "servers": {server_fp: {
        "alice": [[env.id_hex, env.time_ms]]}}}))
    lab.mailbox.put("bob", "alice", env.time_ms, data, public_der(user_keys["alice"]))
    bob = Member(lab, "bob", user_keys["bob"], bob_home)
    assert not [e for e in bob.drain() if isinstance(e, PrivateMessage)]
    assert lab.mailbox.pending("bob") == []
    bob.close()
