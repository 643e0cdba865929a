import logging

import pytest

from chatkit import chat_home, chat_server, server_factory  # noqa: F401  (fixtures)


@pytest.fixture
def server_log(caplog):
    """The server's log records (INFO and up) for the test."""
    caplog.set_level(logging.INFO, logger="schat")
    return caplog
