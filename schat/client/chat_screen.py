"""``schat connect``'s chat screen put together: DMs, history, reconnecting, log records.

While the screen runs, log records (``--debug``, ``-v``) that would go to the
terminal are printed above the input line like chat lines, instead of being
written over it; they go back to their handlers when the screen closes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, List, Optional

from schat.client.reconnect import relogin
from schat.client.tui import ChatTUI
from schat.errors import ConnectionFailed

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class Ignores:
    """The ``/ignore`` list of one server, kept in the client's per-server memory."""

    def __init__(self, memory, server: str, address: str):
        self.memory = memory
        self.server = server
        self.address = address

    def names(self) -> List[str]:
        return list(self.memory.get(self.server, self.address).ignored)

    def save(self, names: List[str]) -> None:
        self.memory.set_ignored(self.server, self.address, names)


def build_chat_screen(app, flow, session, bell: bool = True, **options) -> ChatTUI:
    """The chat screen for a logged-in ``session`` on the server ``flow.name``.

    ``app`` is the command's :class:`schat.commands.common.AppContext`; ``flow``
    the :class:`schat.commands.login_flow.LoginFlow` that logged in: it opens
    new pinned connections for logging in again after a drop (with the key or
    password it keeps in memory only), registers the key when the user chose
    to, and holds the per-server memory (the ``/ignore`` list). ``options`` go
    to :class:`ChatTUI` (``input``, ``output``, ``colour``, backoff delays).
    """
    from schat.client.dm import DmClient
    from schat.client.history import ChatHistory, history_path

    key = flow.private if flow.method == "key" else None
    connect = relogin(flow.reopen, flow.user, key, None if key is not None else flow.password)
    retired = flow.retired_keys()

    def dm_factory(s):
        return DmClient(s, app.home.root, flow.private, lambda event: None,
                        retired_keys=retired)

    return ChatTUI(session, connect, server=flow.name,
                   history=ChatHistory(history_path(app.home.root, flow.name)), bell=bell,
                   dm_factory=dm_factory,
                   after_login=flow.register_with if flow.register else None,
                   ignores=Ignores(flow.memory, flow.name, flow.entry.address), **options)


def run_chat_screen(app, flow, session, bell: bool = True) -> int:
    """Run the chat screen (see :func:`build_chat_screen`); return 0 when the session ended
    normally.

    Raises ConnectionFailed (exit status 1) when the user left while the server
    was gone and had not come back.
    """
    tui = build_chat_screen(app, flow, session, bell)
    with logs_on_screen(tui):
        code = tui.run()
    if code:
        raise ConnectionFailed(f"disconnected from {flow.name} ({tui.lost}); "
                               "the connection did not come back")
    return code


class ScreenLogHandler(logging.Handler):
    """Prints log records above the chat screen's input line.

    Records from before the screen starts or after it stops go to ``fallback``
    (the handlers the screen displaced).
    """

    def __init__(self, tui: ChatTUI, fallback: List[logging.Handler]):
        super().__init__()
        self.tui = tui
        self.fallback = fallback
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            line = self.tui.renderer.line("class:info", "log", text, int(record.created * 1000))
            if self.tui.post(line):
                return
        except Exception:  # noqa: BLE001 - logging must never break the screen
            self.handleError(record)
            return
        for handler in self.fallback:
            if record.levelno >= handler.level:
                handler.handle(record)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def logs_on_screen(tui: ChatTUI, logger: Optional[logging.Logger] = None) -> Iterator[None]:
    """For the duration, ``logger``'s (the root's) handlers that write to a terminal print
    above ``tui``'s input line instead."""
    logger = logger or logging.getLogger()
    displaced = [h for h in logger.handlers if _writes_to_terminal(h)]
    if not displaced:
        yield
        return
    handler = ScreenLogHandler(tui, displaced)
    for old in displaced:
        logger.removeHandler(old)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        for old in displaced:
            logger.addHandler(old)
