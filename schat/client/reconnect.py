"""Logging in again after the connection dropped: the delays, the retry thread, the login.

The chat screen hands a :class:`Reconnector` a ``connect`` callable that returns a
new logged-in session (see :func:`relogin`); the reconnector calls it on its own
thread with a growing, capped delay between attempts and reports back through
callbacks that it schedules on the screen's event loop, so the screen is never
touched from this thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional, Tuple

from schat.errors import AuthenticationFailed, SchatError, TrustError

log = logging.getLogger("schat.client.reconnect")

BACKOFF_START = 1.0
BACKOFF_CAP = 30.0
# Consecutive refused logins after which reconnecting stops (password changed, account locked).
MAX_AUTH_REFUSALS = 3


def backoff_delays(start: float = BACKOFF_START, cap: float = BACKOFF_CAP):
    """1, 2, 4, ... seconds, never more than ``cap``."""
    delay = start
    while True:
        yield min(delay, cap)
        delay = min(delay * 2, cap)


def relogin(reopen: Callable[[], Any], user: str, private_key=None,
            password: Optional[str] = None) -> Callable[[], Any]:
    """A ``connect`` callable: open a pinned connection with ``reopen()`` and log in again.

    The key or password stays in this closure, in memory only.
    """
    def connect():
        fresh = reopen()
        try:
            if private_key is not None:
                fresh.login_key(user, private_key)
            else:
                fresh.login_password(user, password)
        except BaseException:
            fresh.close()
            raise
        return fresh
    return connect


class Reconnector:
    """Retries ``connect()`` until it returns a session, the login is refused for good, or
    ``stop`` is set.

    ``post(func, *args)`` runs ``func`` on the screen's loop; the callbacks are
    ``state(text)`` for the toolbar, ``warn(text)`` for a refused attempt,
    ``attach(session)`` once logged in and ``give_up(reason)`` when retrying
    cannot help (the server's key changed, the login was refused
    :data:`MAX_AUTH_REFUSALS` times in a row). Setting ``wake`` ends the current
    wait at once; ``now`` makes the first attempt without waiting (/reconnect).
    """

    def __init__(self, connect: Callable[[], Any], stop: threading.Event,
                 post: Callable[..., None], *, state: Callable[[str], None],
                 warn: Callable[[str], None], attach: Callable[[Any], None],
                 give_up: Callable[[str], None],
                 backoff: Tuple[float, float] = (BACKOFF_START, BACKOFF_CAP),
                 wake: Optional[threading.Event] = None, now: bool = False):
        self._connect = connect
        # Set to try at once instead of waiting out the delay (/reconnect).
        self._wake = wake or threading.Event()
        self._now = now
        self._stop = stop
        self._post = post
        self._state = state
        self._warn = warn
        self._attach = attach
        self._give_up = give_up
        self._backoff = backoff

    def start(self) -> None:
        """Begin retrying on a daemon thread."""
        threading.Thread(target=self._run, name="schat-reconnect", daemon=True).start()

    def _run(self) -> None:
        refusals = 0
        for attempt, delay in enumerate(backoff_delays(*self._backoff)):
            if not (attempt == 0 and self._now):
                self._post(self._state, f"reconnecting in {delay:g} s")
                self._wake.wait(delay)
                self._wake.clear()
            if self._stop.is_set():
                return
            self._post(self._state, "reconnecting")
            try:
                session = self._connect()
            except TrustError as err:
                self._post(self._give_up, str(err))
                return
            except AuthenticationFailed as err:
                refusals += 1
                if refusals >= MAX_AUTH_REFUSALS:
                    self._post(self._give_up, str(err))
                    return
                self._post(self._warn, f"reconnect failed: {err}")
                continue
            except (SchatError, OSError) as err:
                refusals = 0
                self._post(self._state, "offline")
                log.info("reconnect failed: %s", err)
                continue
            if self._stop.is_set():
                session.close("quit")
                return
            self._post(self._attach, session)
            return
