"""Fixtures for the protocol tests."""

from __future__ import annotations

import pytest

from protocol_pairs import handshake


@pytest.fixture
def pair(host_key):
    """A (client, server) connection pair with the handshake completed."""
    return handshake(host_key)
