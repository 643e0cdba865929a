"""The chat screen's layout and keys: input line, completion menu, toolbar, paste handling.

Layout, at the bottom of the terminal::

    ann> half-typed li|          the input line (wraps, grows as you type)
         /help   list the ...    the completion menu, in rows kept free for it
     lab · ann · 3 online · connected

The screen is not full-screen: it is only as tall as its parts, so when the
terminal has filled up it sits on the last rows. A float there would have
one row to draw in and would cover the toolbar, so while completions are
shown the layout itself reserves rows for the menu under the input line
(as prompt_toolkit's ``PromptSession`` does with ``reserve_space_for_menu``).
"""

from __future__ import annotations

from typing import Callable

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import has_completions
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


class PasteGuard:
    """Tells an Enter the user pressed from a newline inside text that arrived all at once.

    Terminals without bracketed paste deliver a pasted text as plain keys, its
    newlines as Enter. Keys a person types arrive a few at a time; a paste
    arrives in one read (or a few large ones). So an Enter with more text
    behind it from the same read is part of a paste: it becomes a newline in
    the input line, and the paste's final newline is dropped, so the whole
    text waits in the input line to be sent as one message. (An Enter followed
    only by control keys, such as a quick Ctrl-D, is still an Enter.)
    """

    def __init__(self) -> None:
        self.pasting = False

    def attach(self, processor: KeyProcessor) -> None:
        """Watch ``processor`` for the end of each read's keys."""
        processor.after_key_press += self._after_key

    def _after_key(self, processor: KeyProcessor) -> None:
        if not processor.input_queue:
            self.pasting = False

    def enter(self, event: KeyPressEvent, submit: Callable[[], None]) -> None:
        """Handle Enter (``\\r``) or ``\\n``: submit, or keep it as part of a paste."""
        buffer = event.current_buffer
        if any(not isinstance(key.key, Keys) for key in event.key_processor.input_queue):
            previous = event.previous_key_sequence
            crlf = (self.pasting and event.key_sequence[0].key == Keys.ControlJ
                    and previous and previous[-1].key == Keys.ControlM)
            self.pasting = True
            if not crlf:
                buffer.insert_text("\n")
            return
        if self.pasting:
            before = buffer.document.text_before_cursor
            trailing = len(before) - len(before.rstrip("\n"))
            if trailing:
                buffer.delete_before_cursor(trailing)
            return
        submit()


def key_bindings(buffer: Buffer, paste: PasteGuard, submit: Callable[[], None],
                 quit: Callable[[], None]) -> KeyBindings:
    """Enter sends, Ctrl-C clears, Ctrl-D leaves on an empty line; pastes are one message."""
    kb = KeyBindings()

    @kb.add("enter")
    @kb.add("c-j")
    def _enter(event):
        paste.enter(event, submit)

    @kb.add("c-c")
    def _clear(event):
        buffer.reset()

    @kb.add("c-d")
    def _eof(event):
        if buffer.text:
            buffer.delete()
        else:
            quit()

    @kb.add(Keys.BracketedPaste)
    def _paste(event):
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        buffer.insert_text(data.rstrip("\n") if "\n" in data else data)

    return kb


def build_application(layout: Layout, bindings: KeyBindings, paste: PasteGuard,
                      **kwargs) -> Application:
    """The (not full-screen) application; ``kwargs`` go to prompt_toolkit's Application."""
    app = Application(layout=layout, key_bindings=bindings, full_screen=False,
                      mouse_support=False, erase_when_done=True, **kwargs)
    paste.attach(app.key_processor)
    return app
