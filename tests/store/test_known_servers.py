"""known_servers: trust-on-first-use pins."""

from __future__ import annotations

import os
import stat

import pytest

from schat.crypto import keys
from schat.errors import ConfigError
from schat.store.known_servers import KnownServers


@pytest.fixture
def fps(host_key, other_host_key):
    return keys.fingerprint(host_key), keys.fingerprint(other_host_key)


def test_pin_check_forget(tmp_path, fps):
    good, evil = fps
    known = KnownServers(tmp_path / "known_servers")
    assert known.check("T", "127.0.0.1", 5555, good) == "unknown"
    known.pin("T", "127.0.0.1", 5555, good)
    assert stat.S_IMODE(os.stat(known.path).st_mode) == 0o600
    assert known.path.read_text() == f"T 127.0.0.1:5555 {good}\n"
    assert known.check("T", "127.0.0.1", 5555, good) == "pinned"
    assert known.check("T", "127.0.0.1", 5555, evil) == "changed"
    # Same name elsewhere, or same address under a new name: still the pin.
    assert known.check("T", "10.0.0.9", 1, evil) == "changed"
    assert known.check("Renamed", "127.0.0.1", 5555, good) == "pinned"
    assert known.check("Renamed", "127.0.0.1", 5555, evil) == "changed"
    assert known.check("Other", "127.0.0.1", 5556, evil) == "unknown"
    assert known.forget("T") is True
    assert known.forget("T") is False
    assert known.check("T", "127.0.0.1", 5555, evil) == "unknown"


def test_pin_replaces_and_keeps_others(tmp_path, fps):
    good, evil = fps
    known = KnownServers(tmp_path / "known_servers")
    known.pin("A", "::1", 7000, good)
    known.pin("B", "example.org", 7001, good)
    known.pin("A", "::1", 7000, evil)
    assert [(p.name, p.address, p.fingerprint) for p in known.entries()] == [
        ("B", "example.org:7001", good), ("A", "[::1]:7000", evil)]
    assert known.forget("X", "example.org", 7001) is True
    assert [p.name for p in known.entries()] == ["A"]


@pytest.mark.parametrize("line", [
    "T 127.0.0.1:5555",
    "T 127.0.0.1:5555 SHA256:AAAA",
    "T 127.0.0.1 SHA256:" + "A" * 43,
    "T 127.0.0.1:99999 SHA256:" + "A" * 43,
    "T 127.0.0.1:5555 SHA256:" + "A" * 43 + " extra",
    "b@d 127.0.0.1:5555 SHA256:" + "A" * 43,
])
def test_corrupt_file_names_file_and_line(tmp_path, fps, line):
    path = tmp_path / "known_servers"
    original = f"# pins\nGood 1.2.3.4:5 {fps[0]}\n{line}\n"
    path.write_text(original)
    known = KnownServers(path)
    for call in (known.entries, lambda: known.check("Good", "1.2.3.4", 5, fps[0]),
                 lambda: known.pin("New", "1.2.3.4", 6, fps[0]), lambda: known.forget("Good")):
        with pytest.raises(ConfigError) as err:
            call()
        assert str(err.value) == (f"{path}, line 3: malformed entry (expected NAME HOST:PORT "
                                  "SHA256:...); fix or remove that line")
    assert path.read_text() == original  # never silently overwritten


def test_truncated_file(tmp_path, fps):
    path = tmp_path / "known_servers"
    full = f"A 1.2.3.4:5 {fps[0]}\n"
    path.write_text(full[:-10])
    with pytest.raises(ConfigError) as err:
        KnownServers(path).entries()
    assert f"{path}, line 1: malformed entry" in str(err.value)


def test_binary_file(tmp_path):
    path = tmp_path / "known_servers"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as err:
        KnownServers(path).entries()
    assert str(err.value) == f"{path}: not UTF-8 text; fix or remove the file"
