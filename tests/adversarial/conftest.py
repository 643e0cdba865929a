import logging
import os

import pytest

from chatkit import chat_home, chat_server, server_factory  # noqa: F401  (fixtures)


@pytest.fixture
def server_log(caplog):
    """The server's log records (INFO and up) for the test."""
    caplog.set_level(logging.INFO, logger="schat")
    return caplog


@pytest.fixture
def server_cpu():
    """Run this test's in-process server (its loop and worker threads) on one core."""
    from latency import split_cpus

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, split_cpus()[0])
    yield
    os.sched_setaffinity(0, before)
