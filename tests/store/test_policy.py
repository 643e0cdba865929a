"""User name and password rules."""

from __future__ import annotations

import pytest

from schat.errors import PolicyError
from schat.store.policy import check_password_policy, common_passwords, validate_username


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
