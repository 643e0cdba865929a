"""The real CLI as processes with keys: key login, the key registered at first login,
end-to-end encrypted DMs between two piped clients, refusals and a killed server."""

from __future__ import annotations

import json
import signal
import subprocess

from chatkit import KEY_DIR
from schat.crypto import keys
from schat.crypto.keys import public_der
from schat.paths import Home
from schat.store.accounts import AccountStore
from schat.store.keyfiles import KeyFiles
from chatkit import PASSWORDS
from test_cli_processes import chat, served  # noqa: F401  (fixture)

PASSPHRASE = "a long passphrase 9"


def load_test_key(name: str) -> keys.RsaKey:
    return keys.import_private_pem((KEY_DIR / f"{name}.pem").read_bytes(), None)


def install_key(home, name, passphrase=None):
    """Put the pre-generated key of ``name`` in ``home``/keys (encrypted with ``passphrase``)."""
    KeyFiles(Home(home)).save(name, load_test_key(name), passphrase)


def test_dms_between_two_piped_clients_after_registering_keys(served, tmp_path):
    srv, client, port, fp = served
    home = tmp_path / "client_home"
    install_key(home, "alice")
    install_key(home, "bob")
    # No key is registered yet: the key login is refused, and that is the end of it:
    # no password follows, even with $SCHAT_PASSWORD at hand.
    refused = chat(client, "bob", "--key", "bob", "--json")
    assert refused.finish() == 1
    assert "refused key login for bob" in refused.stderr
    assert "`schat login local --register-key` (this sends your password to local)" in \
        refused.stderr
    assert "key login for bob" in srv.stderr and "password login for bob" not in srv.stderr

    # Registering is the explicit step: the password once, then the key is uploaded.
    for user in ("bob", "alice"):
        reg = client("login", "local", "--user", user, "--register-key",
                     env={"SCHAT_PASSWORD": PASSWORDS[user]}, stdin=subprocess.DEVNULL)
        assert reg.finish() == 0, reg.stderr
        assert reg.line("Logged in").startswith(f"Logged in to local as {user} with your password")
        assert reg.line("Registered").startswith("Registered your key SHA256:")
    assert "password login for bob" in srv.stderr

    bob = chat(client, "bob", "--key", "bob", "--json")
    bob.line('"welcome"')
    alice = chat(client, "alice")  # HOME/keys/alice.pem is found without --key
    alice.line("connected to")
    alice.send("/msg bob the vault code is 0451")
    got = json.loads(bob.line('"dm"'))
    assert (got["sender"], got["text"], got["verified"]) == ("alice", "the vault code is 0451",
                                                              True)
    assert alice.finish() == 0, alice.stderr
    bob.send("/quit")
    assert bob.finish() == 0, bob.stderr
    assert "0451" not in srv.stderr

    store = AccountStore(Home(tmp_path / "server_home").users_db)
    assert bytes(store.get("alice").public_key_der) == public_der(load_test_key("alice"))
    store.close()
    # Now the key logs in by itself, without a password, and without --user: the
    # client remembers who alice is on this server and how she logs in.
    again = client("login", "local", stdin=subprocess.DEVNULL)
    assert again.finish() == 0, again.stderr
    assert again.line("Logged in").startswith("Logged in to local as alice with your key")


def test_cli_key_login_passphrase_and_refusals(served, tmp_path):
    srv, client, port, fp = served
    home = tmp_path / "client_home"
    install_key(home, "carol", PASSPHRASE)
    store = AccountStore(Home(tmp_path / "server_home").users_db)
    store.set_public_key("carol", public_der(load_test_key("carol")))

    def login(*extra, env=None):
        return client("login", "local", "--user", "carol", "--accept-new", *extra,
                      env=env, stdin=subprocess.DEVNULL)

    ok = login("--key", "carol", env={"SCHAT_KEY_PASSPHRASE": PASSPHRASE})
    assert ok.finish() == 0, ok.stderr
    assert "with your key" in ok.line("Logged in")
    wrong = login("--key", "carol", env={"SCHAT_KEY_PASSPHRASE": "not the passphrase 1"})
    assert wrong.finish() == 1
    assert "passphrase" in wrong.stderr and "Traceback" not in wrong.stderr
    no_pass = login("--key", "carol")
    assert no_pass.finish() == 1 and "SCHAT_KEY_PASSPHRASE" in no_pass.stderr
    missing = login("--key", "nobody", env={"SCHAT_KEY_PASSPHRASE": PASSPHRASE})
    assert missing.finish() == 1
    assert "nobody.pem" in missing.stderr and "Traceback" not in missing.stderr

    # A locked account: key login is refused as locked, and no password is tried instead.
    store.lock("carol")
    locked = login(env={"SCHAT_KEY_PASSPHRASE": PASSPHRASE})
    assert locked.finish() == 1
    assert "locked" in locked.stderr and "password" not in locked.stderr.lower()
    store.unlock("carol")
    store.close()

    # `schat login` while the member chats elsewhere: a check only, the session goes on.
    first = client("connect", "local", "--user", "carol",
                   env={"SCHAT_KEY_PASSPHRASE": PASSPHRASE})
    first.line("connected to")
    twice = login(env={"SCHAT_KEY_PASSPHRASE": PASSPHRASE})
    assert twice.finish() == 0, twice.stderr
    first.send("still chatting")
    first.send("/quit")
    assert first.finish() == 0, first.stderr


def test_server_killed_mid_session_is_a_clear_error(served):
    srv, client, port, fp = served
    bob = chat(client, "bob")
    bob.line("connected to")
    srv.p.send_signal(signal.SIGKILL)
    srv.p.wait(10)
    assert bob.finish() == 1
    assert "disconnected:" in bob.stderr and "Traceback" not in bob.stderr
