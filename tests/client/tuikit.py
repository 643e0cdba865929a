"""A chat screen driven through prompt_toolkit's pipe input, for the terminal tests.

The screen goes to a VT100 output writing into a StringIO, so the bytes a
terminal would receive (bells included) can be checked; its size can change
while it runs. Every wait is on a condition the interface signals after each
render or printed batch.
"""

from __future__ import annotations

import io
import threading

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

from chatkit import PASSWORDS, WAIT
from schat.client.tui import ChatTUI

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


class Screen:
    """A ChatTUI running in a thread, with its keyboard and its terminal bytes.

    ``build(input, output)`` makes the ChatTUI; by default ``ChatTUI(session,
    reconnect, **kwargs)``.
    """

    def __init__(self, session=None, reconnect=None, build=None, rows=24, columns=80,
                 **kwargs):
        self.out = io.StringIO()
        self.size = Size(rows=rows, columns=columns)
        output = Vt100_Output(self.out, lambda: self.size, term="xterm")
        self._pipe_cm = create_pipe_input()
        self._pipe = self._pipe_cm.__enter__()
        if build is None:
            self.tui = ChatTUI(session, reconnect, input=self._pipe, output=output, **kwargs)
        else:
            self.tui = build(self._pipe, output)
        self._changed = threading.Condition()
        self.batches = []
        self.tui.on_printed = self._printed
        self.tui.app.after_render += lambda app: self._notify()
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.wait(lambda: self.tui.printed or self.error, "the welcome line")

    def _run(self):
        try:
            self.result = self.tui.run()
        except BaseException as err:  # noqa: BLE001 - reported to the test thread
            self.error = err
        self._notify()

    def _printed(self, batch):
        self.batches.extend(batch)
        self._notify()

    def _notify(self):
        with self._changed:
            self._changed.notify_all()

    def wait(self, predicate, what, timeout=WAIT):
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"timed out waiting for {what}")

    def wait_printed(self, needle, what=None):
        self.wait(lambda: any(needle in line for line in self.tui.printed), what or needle)

    def line_with(self, needle):
        """The printed fragments of the first line containing ``needle``."""
        for fragments in self.batches:
            if needle in "".join(text for _, text in fragments):
                return fragments
        raise AssertionError(f"no printed line contains {needle!r}")

    def type(self, text):
        self._pipe.send_text(text)

    def type_and_wait(self, text, expected_buffer):
        self.type(text)
        self.wait(lambda: self.tui.buffer.text == expected_buffer,
                  f"input line {expected_buffer!r}")

    def bells(self) -> int:
        return self.out.getvalue().count("\a")

    def toolbar(self) -> str:
        """The toolbar's text as it is drawn now."""
        return "".join(text for _, text in self.tui.toolbar())

    def rows(self):
        """The last rendered screen as text rows, and where each visible window was drawn."""
        screen = self.tui.app.renderer.last_rendered_screen
        height = max(pos.ypos + pos.height
                     for pos in screen.visible_windows_to_write_positions.values())
        rows = ["".join(screen.data_buffer[y][x].char for x in range(self.size.columns))
                for y in range(height)]
        return rows, screen.visible_windows_to_write_positions

    def leave(self):
        """Ctrl-D on an empty line; wait for the screen to end and return its exit code."""
        self.type("\x03\x04")
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        return self.result

    def close(self):
        if self.thread.is_alive():
            self.tui.call_soon(self.tui.quit)
            self.thread.join(WAIT)
        self.tui.shutdown()
        self._pipe_cm.__exit__(None, None, None)


@pytest.fixture
def screens():
    opened = []

    def open_screen(session=None, reconnect=None, **kwargs):
        screen = Screen(session, reconnect, **kwargs)
        opened.append(screen)
        return screen

    yield open_screen
    for screen in opened:
        screen.close()


def logged_in(server, user):
    session = server.session()
    session.login_password(user, PASSWORDS[user])
    return session
