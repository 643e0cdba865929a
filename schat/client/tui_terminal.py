"""The chat screen's terminal: printing above the input line, suspending and resuming.

prompt_toolkit's ``run_in_terminal`` puts the terminal in cooked mode while
it prints. Keys typed in that moment are then echoed by the terminal, Enter
arrives as LF glued to the next line, a cursor-position answer shows up as
``^[[30;1R`` and a Ctrl-Z stops the process with the terminal left in cooked
mode. So the screen prints in raw mode instead: erase the input area, print
the lines, draw the input area again from its buffer. Nothing typed meanwhile
is echoed, merged or lost.

Ctrl-Z (a key in raw mode) and a SIGTSTP from outside leave the screen
cleanly: the input area is erased and the terminal put back as it was before
the screen started, then the process stops. On ``fg`` (SIGCONT, whoever
stopped the process) the terminal is put in raw mode again and the screen
drawn again.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Callable, List, Optional

from prompt_toolkit.application import Application

log = logging.getLogger("schat.client.tui")

_SIGTSTP = getattr(signal, "SIGTSTP", None)
_SIGCONT = getattr(signal, "SIGCONT", None)


class Terminal:
    """Output and job control for one running chat-screen ``app``.

    Lines given to :meth:`show` wait in :attr:`queue` until the screen runs,
    then are printed in batches; :attr:`printed` keeps their text and
    ``on_printed(batch)`` is called after each batch (tests and tools).
    """

    def __init__(self, app: Application):
        self.app = app
        self.stopped = False
        self.quitting = False
        self.queue: List[list] = []
        self.printed: List[str] = []
        self.on_printed: Optional[Callable[[list], None]] = None
        self._ring = False
        self._running = False
        self._scheduled = False
        self._signals: List[int] = []
        self._loop = None

    # -- printing -------------------------------------------------------------
    def show(self, fragments: list, bell: bool = False) -> None:
        """Queue one line (on the UI loop); printed with the others queued meanwhile."""
        self.queue.append(fragments)
        self._ring = self._ring or bell
        if self._running:
            self._schedule()

    def started(self) -> None:
        """The screen runs: print what was queued before."""
        self._running = True
        if self.queue:
            self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        self.app.create_background_task(self._flush())

    async def _flush(self) -> None:
        try:
            await self.print_above()
        finally:
            self._scheduled = False
        if self.queue and not self.quitting:
            self._schedule()

    async def print_above(self) -> None:
        """Print the queued lines above the input area, in raw mode."""
        app = self.app
        if app.output.responds_to_cpr:
            # A cursor-position request sent at the last redraw must be answered
            # first, or its answer would size the input area for the old row.
            await app.renderer.wait_for_cpr_responses()
        batch, self.queue = self.queue, []
        if not batch:
            return
        drawn = app.is_running and not app.is_done
        if drawn:
            app.renderer.erase()
        for fragments in batch:
            app.print_text(list(fragments) + [("", "\n")])
        self.printed.extend("".join(text for _, text in fragments) for fragments in batch)
        if self._ring:
            self._ring = False
            app.output.bell()
            app.output.flush()
        if self.on_printed is not None:
            self.on_printed(batch)
        if drawn:
            self.redraw()

    def redraw(self) -> None:
        """Draw the input area again below what was printed (as ``run_in_terminal`` does)."""
        app = self.app
        if not app.is_running or app.is_done:
            return
        app.renderer.reset()
        if not app.key_processor.input_queue:
            app.renderer.request_absolute_cursor_position()
        app._redraw()  # noqa: SLF001 - the same call run_in_terminal makes after printing

    # -- job control -------------------------------------------------------------
    def install(self, loop) -> None:
        """Handle SIGTSTP and SIGCONT on ``loop`` (main thread only; elsewhere a no-op)."""
        self._loop = loop
        for sig, handler in ((_SIGTSTP, self.suspend), (_SIGCONT, self.resumed)):
            if sig is None:
                continue
            try:
                loop.add_signal_handler(sig, handler)
            except (RuntimeError, ValueError, NotImplementedError):
                continue  # not the main thread (tests), or no signals here
            self._signals.append(sig)

    def uninstall(self) -> None:
        loop, self._loop = self._loop, None
        for sig in self._signals:
            try:
                loop.remove_signal_handler(sig)
            except (RuntimeError, ValueError):
                pass
        self._signals = []

    def suspend(self) -> None:
        """Ctrl-Z: erase the input area, give the terminal back as it was, stop; on
        ``fg``, raw mode and the screen again."""
        if _SIGTSTP is None:
            return
        app = self.app
        if not app.is_running or app.is_done:
            return
        app.renderer.erase()
        app.output.flush()
        handled = _SIGTSTP in self._signals and self._loop is not None
        self.stopped = True
        try:
            with app.input.detach(), app.input.cooked_mode():
                if handled:
                    # Our own SIGTSTP handler would only call this again.
                    self._loop.remove_signal_handler(_SIGTSTP)
                try:
                    os.kill(0, _SIGTSTP)
                finally:
                    if handled:
                        self._loop.add_signal_handler(_SIGTSTP, self.suspend)
        finally:
            self.stopped = False
        self.resumed()

    def resumed(self) -> None:
        """After SIGCONT: the terminal in raw mode again (the shell may have reset it),
        then the screen drawn again."""
        app = self.app
        if not app.is_running or app.is_done or self.stopped:
            return
        try:
            app.input.raw_mode().__enter__()
        except OSError as err:  # the terminal went away
            log.debug("cannot set raw mode after resuming: %s", err)
        self.redraw()

