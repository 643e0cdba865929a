"""Password hashing: format, round trip, rehash decisions, legacy hashes, the cost setting."""

from __future__ import annotations

import base64
import hashlib

import pytest
from Crypto.Protocol.KDF import scrypt

from schat.crypto import passwords
from schat.crypto.passwords import ScryptParams, current_params, hash_password, verify_password
from schat.errors import ConfigError

LIGHT = ScryptParams(log2_n=10)


def test_known_answer_matches_pycryptodome_scrypt():
    salt = bytes(range(16))
    encoded = hash_password("s3cret-pass", LIGHT, salt=salt)
    expected = scrypt(b"s3cret-pass", salt, 32, N=1024, r=8, p=3)
    assert encoded == ("$scrypt$ln=10,r=8,p=3$" + base64.b64encode(salt).decode()
                       + "$" + base64.b64encode(expected).decode())


def test_round_trip_and_wrong_password():
    encoded = hash_password("correct horse 9", LIGHT)
    assert verify_password("correct horse 9", encoded, LIGHT) == (True, False)
    assert verify_password("correct horse 8", encoded, LIGHT) == (False, False)
    assert verify_password("", encoded, LIGHT) == (False, False)


def test_salt_is_random():
    assert hash_password("same-pass1", LIGHT) != hash_password("same-pass1", LIGHT)


def test_nfkc_equivalent_spellings_verify():
    # U+FF21 FULLWIDTH A and U+2460 CIRCLED ONE normalise to "A" and "1".
    encoded = hash_password("\uff21bcdefg\u2460", LIGHT)
    assert verify_password("Abcdefg1", encoded, LIGHT) == (True, False)


def test_rehash_needed_when_parameters_change():
    encoded = hash_password("rotate-me-1", LIGHT)
    ok, needs = verify_password("rotate-me-1", encoded, ScryptParams(log2_n=11))
    assert (ok, needs) == (True, True)
    # A wrong password never asks for a rehash.
    assert verify_password("nope-nope-1", encoded, ScryptParams(log2_n=11)) == (False, False)


def test_default_parameters_are_owasp():
    assert ScryptParams() == ScryptParams(15, 8, 3)
    assert ScryptParams().n == 32768


def test_wrapped_sha256_known_answer():
    salt = bytes(range(16))
    hexdigest = hashlib.sha256(b"old-secret").hexdigest()
    encoded = passwords.wrap_sha256(hexdigest.upper(), LIGHT, salt=salt)
    expected = scrypt(hexdigest.encode("ascii"), salt, 32, N=1024, r=8, p=3)
    assert encoded == ("$scrypt-sha256$ln=10,r=8,p=3$" + base64.b64encode(salt).decode()
                       + "$" + base64.b64encode(expected).decode())


def test_wrapped_sha256_verifies_and_always_needs_rehash():
    encoded = passwords.wrap_sha256(hashlib.sha256(b"old-secret").hexdigest(), LIGHT)
    assert verify_password("old-secret", encoded, LIGHT) == (True, True)
    assert verify_password("old-secreT", encoded, LIGHT) == (False, False)
    # The original script hashed the password as typed: no NFKC equivalence.
    typed = passwords.wrap_sha256(hashlib.sha256("\uff21bc1".encode()).hexdigest(), LIGHT)
    assert verify_password("\uff21bc1", typed, LIGHT) == (True, True)
    assert verify_password("Abc1", typed, LIGHT) == (False, False)


def test_wrapped_sha256_costs_one_scrypt_like_any_hash(monkeypatch):
    calls = []
    real = passwords.scrypt
    monkeypatch.setattr(passwords, "scrypt", lambda *a, **k: calls.append(k) or real(*a, **k))
    wrapped = passwords.wrap_sha256("ab" * 32, LIGHT)
    plain = hash_password("whatever-9", LIGHT)
    calls.clear()
    verify_password("wrong-pass-1", wrapped, LIGHT)
    verify_password("wrong-pass-1", plain, LIGHT)
    passwords.dummy_verify("wrong-pass-1", LIGHT)
    assert calls == [{"N": 1024, "r": 8, "p": 3}] * 3


@pytest.mark.parametrize("bad", ["", "12" * 31, "zz" * 32, "ab" * 33])
def test_wrap_refuses_a_non_digest(bad):
    with pytest.raises(ValueError):
        passwords.wrap_sha256(bad, LIGHT)


@pytest.mark.parametrize("bad", [
    "", "plain", "$scrypt$ln=10,r=8,p=3$$", "$scrypt$ln=40,r=8,p=3$AAAAAAAAAAAAAAAAAAAAAA==$"
    + "A" * 44, "$sha256$xyz", "$sha256$" + "ab" * 32, "$scrypt$ln=10,r=8,p=3$!!!!$AAAA",
])
def test_malformed_hash_is_value_error(bad):
    with pytest.raises(ValueError):
        verify_password("whatever1", bad, LIGHT)


def test_dummy_verify_fails_and_costs_a_hash(monkeypatch):
    calls = []
    real = passwords.scrypt
    monkeypatch.setattr(passwords, "scrypt", lambda *a, **k: calls.append(k) or real(*a, **k))
    assert passwords.dummy_verify("anything1", LIGHT) == (False, False)
    assert calls == [{"N": 1024, "r": 8, "p": 3}]


def test_env_setting(monkeypatch):
    monkeypatch.setenv("SCHAT_SCRYPT_N", "4096")
    assert current_params() == ScryptParams(12, 8, 3)
    monkeypatch.delenv("SCHAT_SCRYPT_N")
    assert current_params() == ScryptParams()


@pytest.mark.parametrize("value", ["1000", "512", "abc", "-1024", "2097152", "1024.0"])
def test_env_setting_invalid(monkeypatch, value):
    monkeypatch.setenv("SCHAT_SCRYPT_N", value)
    with pytest.raises(ConfigError) as err:
        current_params()
    assert str(err.value) == (f"SCHAT_SCRYPT_N must be a power of two from 1024 to 1048576, "
                              f"not {value!r}")
