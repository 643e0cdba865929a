"""The chat screen's layout and keys: input line, completion menu, toolbar, paste handling.

Layout, at the bottom of the terminal::

    ann> half-typed li|          the input line (wraps, grows as you type)
         /help   list the ...    the completion menu, in rows kept free for it
     lab · ann · [1:#lobby] 2:#dev(3) · 3 here · connected

The screen is not full-screen: it is only as tall as its parts, so when the
terminal has filled up it sits on the last rows. A float there would have
one row to draw in and would cover the toolbar, so while completions are
shown the layout itself reserves rows for the menu under the input line
(as prompt_toolkit's ``PromptSession`` does with ``reserve_space_for_menu``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import Condition, has_completions
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.key_binding.key_processor import KeyProcessor
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import (ConditionalContainer, Float, FloatContainer, HSplit,
                                   Layout, Window)
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.layout.dimension import Dimension
from prompt_toolkit.layout.menus import CompletionsMenu
from prompt_toolkit.layout.processors import BeforeInput

from schat.client.completion import COMMANDS

# Every command fits in the menu at once; longer lists (names) scroll.
MENU_ROWS = len(COMMANDS)


def build_layout(buffer: Buffer, prompt: Callable[[], list],
                 toolbar: Callable[[], list]) -> Layout:
    """The input line with its completion menu, and the one-row toolbar under them."""
    input_window = Window(
        BufferControl(buffer, input_processors=[BeforeInput(prompt)]),
        wrap_lines=True, height=Dimension(min=1), dont_extend_height=True)

    def menu_rows() -> Dimension:
        state = buffer.complete_state
        count = len(state.completions) if state is not None else 0
        return Dimension.exact(min(count, MENU_ROWS))

    menu_space = ConditionalContainer(Window(height=menu_rows), filter=has_completions)
    input_area = FloatContainer(
        HSplit([input_window, menu_space]),
        floats=[Float(xcursor=True, ycursor=True,
                      content=CompletionsMenu(max_height=MENU_ROWS, scroll_offset=1))])
    status = Window(FormattedTextControl(toolbar), height=1, style="class:toolbar")
    return Layout(HSplit([input_area, status]), focused_element=input_window)


# A read this large with a line break inside is a paste, not type-ahead: a person
# typing while the screen is busy for a moment gets a few characters into one read.
PASTE_MIN_CHARS = 256
# Reads that follow a paste within this many seconds are more of the same paste
# (the terminal sends a long paste in pieces; each read is at most 1,024 bytes).
PASTE_GAP = 0.2


def _is_enter(key) -> bool:
    return key.key in (Keys.ControlM, Keys.ControlJ)


class PasteGuard:
    """Tells an Enter the user pressed from a line break inside pasted text.

    A bracketed paste (every current terminal, and tmux's paste key) arrives as
    one event and never comes here. Without brackets, a paste arrives as plain
    keys, its line breaks as Enter; so does text typed ahead while the screen
    was busy, and there every Enter must send. A read is taken as a paste when
    an LF (which the Enter key never sends) is followed by more text, or when a
    line break is followed by more text in a read of at least
    :data:`PASTE_MIN_CHARS` characters; reads with text that follow within
    :data:`PASTE_GAP` seconds continue it. In a paste every line break is kept
    (also one that ends a read) and the text waits in the input line as one
    message; once the paste is over its final line break is dropped. Every
    other Enter sends.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.pasting = False
        self._clock = clock
        self._last_read_end = float("-inf")
        self._end_timer: Optional[asyncio.TimerHandle] = None
        self._buffer: Optional[Buffer] = None
        self.on_end: Optional[Callable[[], None]] = None

    def attach(self, app: Application, buffer: Buffer) -> None:
        """Watch every read ``app``'s key processor is fed, the end of its keys, and each
        redraw (the pause between two reads of a paste is counted from the last one, so
        a slow redraw of a long input line does not split the paste)."""
        self._buffer = buffer
        processor = app.key_processor
        feed_multiple = processor.feed_multiple

        def fed(keys, first: bool = False) -> None:
            self._read(list(keys))
            feed_multiple(keys, first=first)
        processor.feed_multiple = fed  # type: ignore[method-assign]
        processor.after_key_press += self._after_key
        app.after_render += lambda _app: self._after_key(processor)

    def _read(self, keys) -> None:
        if not any(not isinstance(k.key, Keys) or _is_enter(k) for k in keys):
            return  # a CPR answer, a lone control key: not part of any text
        now = self._clock()
        chars = sum(1 for k in keys if not isinstance(k.key, Keys))
        # More text right after a paste continues it; a lone Enter is the user's.
        if self.pasting and chars and now - self._last_read_end <= PASTE_GAP:
            self._cancel_end()
            return
        self._finish()
        line_break_then_text = lf_then_text = False
        seen_break = seen_lf = False
        for key in keys:
            if _is_enter(key):
                seen_break = True
                seen_lf = seen_lf or key.key == Keys.ControlJ
            elif not isinstance(key.key, Keys):
                line_break_then_text = line_break_then_text or seen_break
                lf_then_text = lf_then_text or seen_lf
        self.pasting = lf_then_text or (line_break_then_text and chars >= PASTE_MIN_CHARS)

    def _after_key(self, processor: KeyProcessor) -> None:
        if processor.input_queue or not self.pasting:
            return
        self._last_read_end = self._clock()
        self._cancel_end()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._finish()
            return
        self._end_timer = loop.call_later(PASTE_GAP, self._finish)

    def _cancel_end(self) -> None:
        if self._end_timer is not None:
            self._end_timer.cancel()
            self._end_timer = None

    def _finish(self) -> None:
        """The paste is over: drop its final line break(s); the text waits to be sent."""
        self._cancel_end()
        if not self.pasting:
            return
        self.pasting = False
        buffer = self._buffer
        if buffer is not None:
            before = buffer.document.text_before_cursor
            trailing = len(before) - len(before.rstrip("\n"))
            if trailing:
                buffer.delete_before_cursor(trailing)
        if self.on_end is not None:
            self.on_end()

    def enter(self, event: KeyPressEvent, submit: Callable[[], None]) -> None:
        """Handle Enter (``\\r``) or ``\\n``: submit, or keep it as part of a paste."""
        if not self.pasting:
            submit()
            return
        previous = event.previous_key_sequence
        crlf = (event.key_sequence[0].key == Keys.ControlJ and previous
                and previous[-1].key == Keys.ControlM)
        if not crlf:
            event.current_buffer.insert_text("\n")


def key_bindings(buffer: Buffer, paste: PasteGuard, submit: Callable[[], None],
                 quit: Callable[[], None], idle_interrupt: Callable[[], None],
                 suspend: Optional[Callable[[], None]] = None) -> KeyBindings:
    """Enter sends, Ctrl-C clears (on an empty line: says how to leave), Ctrl-D leaves on
    an empty line, Ctrl-Z suspends; pastes are one message."""
    kb = KeyBindings()

    @kb.add("enter")
    @kb.add("c-j")
    def _enter(event):
        paste.enter(event, submit)

    @kb.add("c-c")
    def _clear(event):
        if buffer.text:
            buffer.reset()
        else:
            idle_interrupt()

    @kb.add("c-d")
    def _eof(event):
        if buffer.text:
            buffer.delete()
        else:
            quit()

    if suspend is not None:
        @kb.add("c-z")
        def _suspend(event):
            suspend()

    @kb.add(Keys.BracketedPaste)
    def _paste(event):
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        buffer.insert_text(data.rstrip("\n") if "\n" in data else data)

    return kb


def room_bindings(kb: KeyBindings, known: Callable[[], bool],
                  to_number: Callable[[int], None], step: Callable[[int], None]) -> None:
    """Alt-1…9 (Alt-0: the tenth) pick a room by its number in the toolbar; Ctrl-N and
    Ctrl-P the next and previous one (irssi's keys). Only while the server has rooms
    and no completion menu is open: otherwise Ctrl-N/Ctrl-P browse the menu or the
    history as usual."""
    rooms_now = Condition(known)
    for digit in "1234567890":
        number = int(digit) or 10

        @kb.add("escape", digit, filter=rooms_now)
        def _room(event, number=number):
            to_number(number)

    @kb.add("c-n", filter=rooms_now & ~has_completions)
    def _next(event):
        step(1)

    @kb.add("c-p", filter=rooms_now & ~has_completions)
    def _previous(event):
        step(-1)


def build_application(layout: Layout, bindings: KeyBindings, paste: PasteGuard,
                      buffer: Buffer, **kwargs) -> Application:
    """The (not full-screen) application; ``kwargs`` go to prompt_toolkit's Application."""
    app = Application(layout=layout, key_bindings=bindings, full_screen=False,
                      mouse_support=False, erase_when_done=True, **kwargs)
    paste.attach(app, buffer)
    return app
