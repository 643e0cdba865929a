"""User name and password rules."""

from __future__ import annotations

import pytest

from schat.errors import PolicyError
from schat.store.policy import (check_password_policy, common_passwords, name_skeleton,
                                validate_new_username, validate_username, visible_length)


@pytest.mark.parametrize("name", ["a", "Alice", "bob_2", "c.d-e", "x" * 32, "0"])
def test_valid_usernames(name):
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["", "x" * 33, "a b", "émile", "a/b", "a\nb", "a:b", "ａ"])
def test_invalid_usernames(name):
    with pytest.raises(PolicyError) as err:
        validate_username(name)
    assert str(err.value).startswith("invalid user name ")
    assert "1-32 letters, digits, '_', '-' or '.'" in str(err.value)


def test_control_characters_in_a_name_are_escaped():
    with pytest.raises(PolicyError) as err:
        validate_username("evil\x1b[2J")
    assert "\x1b" not in str(err.value)


@pytest.mark.parametrize("password,message", [
    ("abc1234", "password too short: use at least 8 characters"),
    ("a1" * 513, "password too long: use at most 1024 characters"),
    ("abcdefghij", "password must contain both letters and digits"),
    ("1234567890", "password must contain both letters and digits"),
    ("abcd\x001234", "password must not contain control characters"),
    ("password1", "password is one of the most common passwords: choose another"),
    ("PassWord1", "password is one of the most common passwords: choose another"),
    ("alice1234", "password must not be the user name"),
])
def test_password_rejections(password, message):
    with pytest.raises(PolicyError) as err:
        check_password_policy(password, username="Alice1234")
    assert str(err.value) == message
    assert password not in str(err.value)


def test_password_accepted_and_normalised():
    assert check_password_policy("tangerine-kite-42") == "tangerine-kite-42"
    # NFKC: fullwidth letters/digits count as letters/digits and are normalised.
    assert check_password_policy("\uff54angerine\uff14\uff12") == "tangerine42"
    assert check_password_policy("b" * 1023 + "1") == "b" * 1023 + "1"


def test_blocklist_is_substantial_and_checked_in_package_data():
    words = common_passwords()
    assert len(words) > 4000
    assert {"1qaz2wsx", "trustno1", "password1"} <= words
    assert not any(w.startswith("#") for w in words)


@pytest.mark.parametrize("password,message", [
    ("\u200b" * 7 + "a1", "password must not contain invisible formatting characters"),
    ("k1" + "\u00ad" * 6 + "x9", "password must not contain invisible formatting characters"),
    ("\u202e9zyxwvut", "password must not contain invisible formatting characters"),
    ("plum7\u2028tree", "password must not contain invisible formatting characters"),
    ("a1" + "\u0301" * 7, "password too short: use at least 8 characters (spaces and "
                          "combining marks do not count)"),
    ("a1" + " " * 7, "password too short: use at least 8 characters (spaces and "
                     "combining marks do not count)"),
])
def test_invisible_characters_do_not_make_a_password(password, message):
    with pytest.raises(PolicyError) as err:
        check_password_policy(password)
    assert str(err.value).startswith(message)
    assert password not in str(err.value)


def test_visible_characters_count_after_nfkc():
    assert visible_length("e\u0301te\u0301 42") == 5      # not the marks, not the space
    assert check_password_policy("cre\u0300me brulee 7") == "crème brulee 7"
    assert check_password_policy("correct horse 9") == "correct horse 9"


@pytest.mark.parametrize("name", [".", "..", "-", "_", "._-"])
def test_new_names_need_a_letter_or_digit(name):
    assert validate_username(name) == name          # still a name on the wire ...
    with pytest.raises(PolicyError, match="at least one letter or digit"):
        validate_new_username(name)                 # ... but no new account gets it


def test_name_skeleton():
    assert {name_skeleton(n) for n in ("alice", "Alice.", "_ALICE", "alice-_.", "-alice-")} \
        == {"alice"}
    assert name_skeleton("a1ice") != name_skeleton("alice")
    assert name_skeleton("al.ice") == "al.ice"
    assert validate_new_username("a1ice") == "a1ice"
