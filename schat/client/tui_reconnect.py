"""The chat screen's side of reconnecting: what a dropped connection shows, when it is
retried, and ``/reconnect`` (a mixin of :class:`schat.client.tui.ChatTUI`; the retry
thread itself is :class:`schat.client.reconnect.Reconnector`)."""

from __future__ import annotations

from schat.client.reconnect import Reconnector
from schat.protocol.registry import PROTOCOL_ERROR_CODES

# The server ended the session on purpose (a login elsewhere took it over, an admin),
# or because this client broke the protocol: logging in again at once would undo the
# first or repeat the second, so the screen stays offline.
FINAL_CODES = frozenset({"taken_over", "disconnected", "locked", "removed", "kicked",
                         "banned"}) | PROTOCOL_ERROR_CODES


class Reconnecting:
    """Reconnecting for the chat screen; uses its ``session``, ``state``, ``lost``,
    ``renderer``, ``show``, ``call_soon``, ``background`` and ``_attach``."""

    def _lost(self, event) -> None:
        if self._quitting:
            return
        reason = getattr(event, "reason", "") or "connection closed"
        if self._reconnecting:
            reason = "you asked to reconnect"
        self.lost = reason
        if self._reconnect is None or getattr(event, "code", "") in FINAL_CODES:
            self.state = "offline"
            self.show(self.renderer.warning(f"disconnected: {reason}; /quit to leave"))
            self.app.invalidate()
            return
        self.state = "reconnecting"
        self.show(self.renderer.warning(f"disconnected: {reason}; reconnecting"))
        self.app.invalidate()
        self._start_reconnector(now=self._reconnecting)

    def _start_reconnector(self, now: bool = False) -> None:
        self._reconnecting = True
        self._wake.clear()
        Reconnector(self._reconnect, self._stop, self.call_soon, state=self._set_state,
                    warn=lambda text: self.show(self.renderer.warning(text)),
                    attach=self._attach, give_up=self._give_up,
                    backoff=self._backoff, wake=self._wake, now=now).start()

    def reconnect_now(self) -> None:
        """/reconnect: drop the connection (if any) and log in again at once."""
        if self._reconnect is None:
            self.warn("reconnecting is not available in this session")
            return
        if self.online:
            self._reconnecting = True
            session = self.session
            self.background(lambda: session.close("reconnecting"))
        elif self._reconnecting:
            self._wake.set()  # the waiting attempt goes now
        else:
            self.state = "reconnecting"
            self._start_reconnector(now=True)
            self.app.invalidate()

    def _set_state(self, state: str) -> None:
        self.state = state
        self.app.invalidate()

    def _give_up(self, reason: str) -> None:
        self._reconnecting = False
        self.state = "offline"
        self.show(self.renderer.warning(f"cannot reconnect: {reason}\n"
                                        "/reconnect tries again, /quit leaves"))
        self.app.invalidate()
