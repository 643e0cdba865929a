"""No document shows the fingerprint of a key whose private half is in the repository
(issue #11 item 14).

Anyone can read tests/data/keys/*.pem: a reader who copies such a fingerprint
from an example into servers.json pins a server that anyone can impersonate.
Examples use values that belong to no key.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from schat.crypto.keys import fingerprint, import_public_key

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("**/*.md")])
KEY_FILES = sorted(p for p in REPO.glob("**/*.pem") if ".git" not in p.parts)


def forms(der: bytes):
    """How a fingerprint can be written: full, its first characters, hex, padded base64."""
    fp = fingerprint(der)
    body = fp[len("SHA256:"):]
    raw = base64.b64decode(body + "=")
    return {fp, body[:8], raw.hex(), raw.hex(":"), base64.b64encode(raw).decode()}


def test_the_repository_has_keys_and_docs():
    assert len(KEY_FILES) >= 10 and REPO / "README.md" in DOCS and len(DOCS) >= 5


@pytest.mark.parametrize("key_file", KEY_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_doc_contains_the_fingerprint_of_a_repository_key(key_file):
    der = import_public_key(key_file.read_bytes()).export_key(format="DER")
    found = [(doc.relative_to(REPO), form) for doc in DOCS
             for form in forms(der) if form in doc.read_text(encoding="utf-8")]
    assert not found, found
