"""Passwords padded with invisible characters and names that only look new are refused
at sign-up and by `schat user add`; accounts that already have such names keep working."""

from __future__ import annotations

import sqlite3

import pytest
from dm_attack import login, signup

from schat.cli import cli
from schat.crypto import passwords
from schat.paths import Home
from schat.protocol import messages
from schat.store.accounts import AccountStore

ZWSP, SOFT_HYPHEN, RLO, ACUTE = "\u200b", "\u00ad", "\u202e", "\u0301"

PADDED = {
    "zero-width spaces": ZWSP * 7 + "a1",
    "combining marks": "a1" + ACUTE * 7,
    "soft hyphens": "k1" + SOFT_HYPHEN * 6 + "x9",
    "right-to-left override": RLO + "9zyxwvut",
    "spaces": "a1" + " " * 7,
    "word joiner": "plum7\u2060tree",
}


@pytest.mark.parametrize("password", PADDED.values(), ids=PADDED.keys())
def test_signup_refuses_passwords_padded_with_invisible_characters(server_factory, password):
    srv = server_factory(signups_per_hour=0, penalty_base=0)
    peer, reply = signup(srv, "padded", password)
    assert isinstance(reply, messages.Error) and reply.code == "policy", reply
    assert password not in reply.text
    assert srv.store.get("padded") is None
    peer.close()


NOT_NEW = {".": "at least one letter or digit", "..": "at least one letter or digit",
           "-": "at least one letter or digit", "_.-": "at least one letter or digit",
           "alice.": "too like the existing 'alice'", "alice_": "too like the existing 'alice'",
           "_Alice": "too like the existing 'alice'", "ALICE--": "too like the existing 'alice'",
           "bob.": "too like the existing 'bob'"}


@pytest.mark.parametrize("name,why", NOT_NEW.items(), ids=NOT_NEW.keys())
def test_signup_refuses_punctuation_and_lookalike_names(server_factory, name, why):
    srv = server_factory(signups_per_hour=0, penalty_base=0)
    peer, reply = signup(srv, name, "fresh-pass-123")
    assert isinstance(reply, messages.Error) and reply.code == "policy", reply
    assert why in reply.text
    peer.close()


def test_names_that_differ_in_letters_or_inside_are_new(server_factory):
    srv = server_factory(signups_per_hour=0, penalty_base=0)
    for name in ("a1ice", "al.ice", "alice2", "a"):
        peer, reply = signup(srv, name, "fresh-pass-123")
        assert isinstance(reply, messages.Welcome) and reply.user == name, reply
        peer.close()


def test_user_add_refuses_a_lookalike_before_asking_for_a_password(runner, home):
    store = AccountStore(Home(home).users_db)
    store.add("alice", "alice-pass-1")
    store.close()
    result = runner.invoke(cli, ["user", "add", "Alice."], input="")
    assert result.exit_code == 1
    assert "too like the existing 'alice'" in result.output
    assert "Password" not in result.output
    result = runner.invoke(cli, ["user", "add", ".."], input="")
    assert result.exit_code == 1 and "at least one letter or digit" in result.output


def test_existing_accounts_with_such_names_keep_working(server_factory, chat_home):
    # A store written before these rules: "alice." and "." exist beside alice.
    srv = server_factory()
    srv.thread.stop()
    db = Home(chat_home).users_db
    with sqlite3.connect(db) as conn:
        for name in ("alice.", "."):
            conn.execute("INSERT INTO accounts (name, password_hash, created) VALUES (?, ?, ?)",
                         (name, passwords.hash_password(f"pass-of-{name}-1"),
                          "2024-01-01T00:00:00Z"))
    srv = server_factory()
    for name in ("alice.", ".", "alice"):
        password = "alice-pass-1" if name == "alice" else f"pass-of-{name}-1"
        peer, reply = login(srv, name, password)
        assert isinstance(reply, messages.Welcome) and reply.user == name, (name, reply)
        peer.close()
    assert {"alice.", "."} <= {a.name for a in srv.store.list()}
