"""``schat connect``'s chat screen put together: DMs, history, reconnecting, log records.

While the screen runs, log records (``--debug``, ``-v``) that would go to the
terminal are printed above the input line like chat lines, instead of being
written over it; they go back to their handlers when the screen closes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterator, List, Optional

from schat.client.reconnect import relogin
from schat.client.tui import ChatTUI
from schat.errors import ConnectionFailed

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def build_chat_screen(app, name: str, session, user: str, private_key,
                      password: Optional[str], bell: bool = True,
                      reopen: Optional[Callable[..., Any]] = None, **options) -> ChatTUI:
    """The chat screen for a logged-in ``session`` on the server ``name``.

    ``app`` is the command's :class:`schat.commands.common.AppContext`;
    ``reopen(app, name, accept_new, ask=False)`` opens a new pinned connection
    (``schat.commands.connect.open_session``) for logging in again after a drop,
    with the key or password kept in memory only. ``options`` go to
    :class:`ChatTUI` (``input``, ``output``, ``colour``, backoff delays).
    """
    from schat.client.dm import DmClient
    from schat.client.history import ChatHistory, history_path

    connect = None
    if reopen is not None:
        connect = relogin(lambda: reopen(app, name, False, ask=False), user,
                          private_key, password)

    def dm_factory(s):
        return DmClient(s, app.home.root, private_key, lambda event: None)

    return ChatTUI(session, connect, server=name,
                   history=ChatHistory(history_path(app.home.root, name)), bell=bell,
                   dm_factory=dm_factory, **options)


def run_chat_screen(app, name: str, session, user: str, private_key, password: Optional[str],
                    bell: bool = True, reopen: Optional[Callable[..., Any]] = None) -> int:
    """Run the chat screen (see :func:`build_chat_screen`); return 0 when the session ended
    normally.

    Raises ConnectionFailed (exit status 1) when the user left while the server
    was gone and had not come back.
    """
    tui = build_chat_screen(app, name, session, user, private_key, password, bell, reopen)
    with logs_on_screen(tui):
        code = tui.run()
    if code:
        raise ConnectionFailed(f"disconnected from {name} ({tui.lost}); "
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
