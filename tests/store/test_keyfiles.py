"""Key files on disk: permissions, passphrases, corrupt files, fingerprints."""

from __future__ import annotations

import os
import stat

import pytest

from schat.crypto import keys
from schat.errors import ConfigError, KeyFileError
from schat.paths import Home
from schat.store.keyfiles import KeyFiles


@pytest.fixture
def files(tmp_path):
    return KeyFiles(Home(tmp_path))


def test_save_permissions_and_fingerprint_stable(files, user_keys):
    info = files.save("alice", user_keys["alice"], "pass phrase 1")
    assert stat.S_IMODE(os.stat(files.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(info.path).st_mode) == 0o600
    assert info.fingerprint == keys.fingerprint(user_keys["alice"])
    loaded = files.load_private("alice", "pass phrase 1")
    assert keys.fingerprint(loaded) == info.fingerprint
    assert keys.fingerprint(files.load_public("alice")) == info.fingerprint
    assert files.is_encrypted("alice")
    assert b"ENCRYPTED" in info.path.read_bytes()


def _key_file_scrypt_n(pem: bytes) -> int:
    """scrypt's N in a PKCS#8 EncryptedPrivateKeyInfo (PBES2 with scrypt, RFC 7914)."""
    from Crypto.IO import PEM
    from Crypto.Util.asn1 import DerSequence

    der, _, _ = PEM.decode(pem.decode("ascii"))
    algorithm = DerSequence().decode(DerSequence().decode(der)[0])
    pbes2 = DerSequence().decode(algorithm[1])
    kdf = DerSequence().decode(pbes2[0])
    return DerSequence().decode(kdf[1])[1]  # scrypt-params: salt, N, r, p


def test_key_files_take_the_scrypt_cost_of_the_setting(files, user_keys, monkeypatch):
    # The suite sets a low cost (tests/conftest.py); unset, a file gets pycryptodome's own.
    monkeypatch.setenv("SCHAT_KEY_SCRYPT_N", "2048")
    info = files.save("alice", user_keys["alice"], "pass phrase 1")
    assert _key_file_scrypt_n(info.path.read_bytes()) == 2048
    monkeypatch.delenv("SCHAT_KEY_SCRYPT_N")
    pem = keys.export_private_pem(user_keys["alice"], "pass phrase 1")
    assert _key_file_scrypt_n(pem) >= 2 ** 14  # pycryptodome's default: 2^17 in 4.5
    # Either file opens whatever the setting says now: its parameters are in it.
    assert keys.fingerprint(keys.import_private_pem(pem, "pass phrase 1")) == info.fingerprint
    monkeypatch.setenv("SCHAT_KEY_SCRYPT_N", "3000")
    with pytest.raises(ConfigError, match="^SCHAT_KEY_SCRYPT_N must be a power of two from "
                                          "1024 to 1048576, not '3000'$"):
        files.save("bob", user_keys["bob"], "pass phrase 2")
    assert not files.private_path("bob").exists()
    assert keys.fingerprint(files.load_private("alice", "pass phrase 1")) == info.fingerprint


def test_generate_is_3072_bits(files):
    info = files.generate("gen", None)
    key = files.load_private("gen", None)
    assert key.size_in_bits() == 3072
    assert info.encrypted is False and keys.fingerprint(key) == info.fingerprint


def test_refuses_overwrite_without_force(files, user_keys):
    files.save("bob", user_keys["bob"], None)
    with pytest.raises(KeyFileError) as err:
        files.save("bob", user_keys["alice"], None)
    assert str(err.value) == f"{files.private_path('bob')} already exists; use --force to replace it"
    files.save("bob", user_keys["alice"], None, force=True)
    assert keys.fingerprint(files.load_public("bob")) == keys.fingerprint(user_keys["alice"])


def test_wrong_passphrase_names_the_file(files, user_keys):
    files.save("carol", user_keys["carol"], "right-one")
    with pytest.raises(KeyFileError) as err:
        files.load_private("carol", "wrong-one")
    path = files.private_path("carol")
    assert str(err.value) == f"{path}: wrong passphrase, or the private key file is corrupt"
    with pytest.raises(KeyFileError) as err:
        files.load_private("carol", None)
    assert str(err.value) == f"{path}: the private key is protected by a passphrase; none was given"


@pytest.mark.parametrize("content", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_corrupt_private_key(files, tmp_path, content):
    path = tmp_path / "broken.pem"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as err:
        files.load_private(str(path), None)
    assert str(err.value) == f"{path}: not a valid RSA private key (corrupt or truncated PEM)"


def test_truncated_public_key(files, user_keys):
    files.save("alice", user_keys["alice"], None)
    pub = files.public_path("alice")
    pub.write_bytes(pub.read_bytes()[:200])
    with pytest.raises(KeyFileError) as err:
        files.load_public("alice")
    assert str(err.value) == f"{pub}: not a valid RSA public key (corrupt or truncated)"


def test_missing_and_bad_names(files):
    with pytest.raises(KeyFileError) as err:
        files.load_public("nobody")
    assert str(err.value) == f"{files.public_path('nobody')}: no such key file"
    with pytest.raises(KeyFileError) as err:
        files.private_path("../etc")
    assert "invalid key name" in str(err.value)


def test_public_from_encrypted_private_path_refused(files, user_keys):
    info = files.save("alice", user_keys["alice"], "pp-123")
    with pytest.raises(KeyFileError) as err:
        files.load_public(str(info.path))
    assert "holds an encrypted private key" in str(err.value)


def test_empty_passphrase_refused(files, user_keys):
    with pytest.raises(KeyFileError):
        files.save("alice", user_keys["alice"], "")


def test_list(files, user_keys):
    assert files.list() == []
    files.save("alice", user_keys["alice"], "pp-123")
    files.save("bob", user_keys["bob"], None)
    (files.directory / "junk.pem").write_bytes(b"nonsense")
    infos = {i.name: i for i in files.list()}
    assert sorted(infos) == ["alice", "bob", "junk"]
    assert infos["alice"].encrypted and infos["alice"].fingerprint == keys.fingerprint(user_keys["alice"])
    assert infos["bob"].encrypted is False
    assert infos["junk"].fingerprint is None and "not a valid RSA private key" in infos["junk"].problem
