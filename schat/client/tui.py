"""The interactive terminal interface of ``schat connect`` (prompt_toolkit).

Incoming events arrive on the session's receiver thread and are handed to the
UI's event loop with ``call_soon_threadsafe``; only that loop touches the
screen. Lines are printed above the input area (erased, printed over, drawn
again from the buffer, which output never modifies: a half-typed line
survives any number of incoming messages), in raw mode, so keys typed
meanwhile are neither echoed nor merged (:mod:`schat.client.tui_terminal`).
Several events that arrive together are printed in one pass.

The prompt and the toolbar are built from the screen's state (who you are,
the current room and the others' unread counts, whom a ``/query`` talks to,
away, the connection) as lists of parts (:mod:`schat.client.tui_status`).
The rooms are followed in :mod:`schat.client.tui_rooms`: lines of a room
other than the current one carry its name, lines from a room's history are
dimmed. When the connection drops, a
:class:`~schat.client.reconnect.Reconnector` logs in again in the background;
the input line stays usable meanwhile. The layout and keys are in
:mod:`schat.client.tui_layout`, the entered lines in :mod:`schat.client.tui_commands`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from prompt_toolkit.buffer import Buffer
from prompt_toolkit.history import History
from prompt_toolkit.output import ColorDepth

from schat.client.completion import ChatCompleter
from schat.client.history import ChatHistory
from schat.client.reconnect import BACKOFF_CAP, BACKOFF_START
from schat.client import tui_status as status
from schat.client.render import (Fragments, Renderer, chat_style, clean, event_type, field,
                                 should_bell)
from schat.client.session import Disconnected
from schat.client.tui_commands import LineCommands
from schat.client.tui_reconnect import Reconnecting
from schat.client.tui_layout import (PasteGuard, build_application, build_layout, key_bindings,
                                     room_bindings)
from schat.client.room_text import describe, one_line_fields
from schat.client.tui_rooms import Rooms
from schat.client.tui_terminal import Terminal
from schat.errors import SchatError
from schat.names import name_key

log = logging.getLogger("schat.client.tui")

# Names listed in the line for a room you are in ("you are in #dev; 3 here: ..."): a
# room of hundreds would fill the screen; /who lists them all.
ROOM_NAMES_SHOWN = 12
# Events whose topics, reasons and away messages are one line (a break shown as ⏎).
ONE_LINE_KINDS = ("room", "topic", "moderation", "users", "rooms")



def colour_wanted(env: Optional[Dict[str, str]] = None) -> bool:
    """False when ``NO_COLOR`` is set to anything non-empty (https://no-color.org)."""
    env = os.environ if env is None else env
    return not env.get("NO_COLOR")


class ChatTUI(Reconnecting):
    """One interactive chat screen bound to a logged-in session.

    ``session`` is a logged-in :class:`schat.client.session.ClientSession` whose
    receiver thread is not started yet; ``reconnect()`` returns a new one, logged
    in the same way, or raises a :class:`SchatError`. ``dm_factory(session)``
    returns the :class:`schat.client.dm.DmClient` that answers ``/msg``,
    ``/whois``, ``/verify`` and ``/trust``; ``after_login(dm)`` runs once, off the
    screen's loop, after the first login (registering a key the user chose to).
    ``server`` is the member's own name for the server; the name the server
    announces is shown beside it when it differs. ``ignores`` (a list-like
    store with ``names()`` and ``save(names)``) keeps ``/ignore`` across sessions.
    """

    def __init__(self, session, reconnect: Optional[Callable[[], Any]] = None, *,
                 server: str = "", history: Optional[History] = None, bell: bool = True,
                 colour: Optional[bool] = None, input=None, output=None,
                 backoff_start: float = BACKOFF_START, backoff_cap: float = BACKOFF_CAP,
                 dm_factory: Optional[Callable[[Any], Any]] = None,
                 after_login: Optional[Callable[[Any], Any]] = None, ignores=None):
        self.session = session
        self._reconnect = reconnect
        self._dm_factory = dm_factory
        self._after_login = after_login
        self.dm = None
        welcome = getattr(session, "welcome", None)
        self.me: str = field(welcome, "user", None) or getattr(session, "user", "") or ""
        self.server = clean(server or getattr(session, "server_name", "") or "")
        # The name the server gives itself in its welcome (it may differ from yours).
        self.announced: str = clean(str(field(welcome, "server", "") or ""))
        self.bell = bell
        self.colour = colour_wanted() if colour is None else colour
        self.state = "connected"
        # Why the connection is down (None while connected); the exit code depends on it.
        self.lost: Optional[str] = None
        self.members: Dict[str, str] = {}
        # Whom plain lines go to, as private messages (/query NAME); None: everyone.
        self.query: Optional[str] = None
        # Your away message as the server confirmed it (None: not away).
        self.away: Optional[str] = None
        self._ignores = ignores
        self.ignored: Dict[str, str] = {name_key(n): n for n in
                                        (ignores.names() if ignores is not None else [])}
        self._backoff = (backoff_start, backoff_cap)
        self._generation = 0
        self._outgoing: Dict[str, Tuple[str, str, Any, Optional[str]]] = {}
        # Acks that came in before the worker thread that sent the request registered its cid.
        self._early_acks: Dict[str, Optional[int]] = {}
        self._quitting = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reconnecting = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._set_members(field(welcome, "users", None) or [])
        self.rooms = Rooms(self.me)
        # The room lines without a room tag belong to, as the screen last said it: when the
        # current room changes, the next line printed is preceded by "switched to #room".
        self._marked: Optional[str] = None

        self.history = history if history is not None else ChatHistory(None)
        self.buffer = Buffer(
            name="input", multiline=False, history=self.history,
            completer=ChatCompleter(self._names, lambda: self.me, self.rooms.names_for_completion),
            complete_while_typing=False)
        self.paste = PasteGuard()
        self.commands = LineCommands(self)
        self.app = self._build_app(input, output)
        self.paste.on_end = self.app.invalidate
        self.terminal = Terminal(self.app)
        # Wrap at the terminal's width as it is when each line is made, so a resize counts.
        self.renderer = Renderer(self.me, width=self._columns)
        # Every line printed (text only), and an observer called on the UI loop after
        # each printed batch (tests and tools).
        self.printed = self.terminal.printed
        if welcome is not None:
            self.terminal.queue.append(self.welcome_line(welcome))

    def _build_app(self, input, output):
        layout = build_layout(self.buffer, self.prompt, self.toolbar)
        bindings = key_bindings(self.buffer, self.paste, self._enter, self.quit,
                                self._idle_interrupt, self._suspend)
        room_bindings(bindings, lambda: self.rooms.known, self.switch_number, self.switch_step)
        kwargs = {} if self.colour else {"color_depth": ColorDepth.DEPTH_1_BIT}
        return build_application(layout, bindings, self.paste, self.buffer,
                                 style=chat_style(self.colour), input=input, output=output,
                                 **kwargs)

    def _columns(self) -> Optional[int]:
        try:
            return self.app.output.get_size().columns
        except Exception:  # noqa: BLE001 - a size is a nicety, not a requirement
            return None

    # -- what the screen shows about its state (schat.client.tui_status) ---------
    def server_label(self) -> str:
        return status.server_label(self.server, self.announced)

    def prompt(self):
        return status.prompt_parts(self) + [("class:prompt", "> ")]

    def toolbar(self):
        """The toolbar: server, you, how many are online (while connected), the state."""
        return status.render_toolbar(status.toolbar_parts(self), self._columns())

    def welcome_line(self, welcome) -> Fragments:
        return self.renderer.info(status.welcome_text(self.server_label(), welcome),
                                  field(welcome, "time"))

    def _enter(self) -> None:
        text = self.buffer.text
        private = self.commands.private(text)
        self.commands.submit(text)
        self.remember(text, private)
        self.buffer.reset()
        # prompt_toolkit refills the buffer's history at its next repaint; a Ctrl-P
        # typed before that repaint would find none. Refill it now.
        self.buffer.load_history_if_not_yet_loaded()

    def remember(self, text: str, private: bool = False) -> None:
        """Put an entered line in the history (kept in memory only when ``private``)."""
        if not text.strip():
            return
        strings = self.history.get_strings()
        if strings and strings[-1] == text:
            return
        if isinstance(self.history, ChatHistory):
            self.history.append_string(text, persist=not private)
        else:
            self.history.append_string(text)

    def _idle_interrupt(self) -> None:
        self.notice("Ctrl-D or /quit to leave")

    def _suspend(self) -> None:
        self.terminal.suspend()

    # -- running ----------------------------------------------------------
    def run(self) -> int:
        """Run until the user leaves; return the exit code (1 when the connection was lost
        and had not come back, with the reason in :attr:`lost`)."""
        try:
            self.app.run(pre_run=self._started, handle_sigint=False)
        finally:
            self.terminal.uninstall()
        return self._ended()

    async def run_async(self) -> int:
        """:meth:`run` for callers that already have an event loop."""
        try:
            await self.app.run_async(pre_run=self._started, handle_sigint=False)
        finally:
            self.terminal.uninstall()
        return self._ended()

    def _ended(self) -> int:
        lost = self.lost
        self.shutdown()
        return 0 if lost is None else 1

    def _started(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.terminal.install(self._loop)
        self._attach(self.session, first=True)
        self.terminal.started()

    def quit(self) -> None:
        """Leave: stop reconnecting and end the interface (the session closes after)."""
        self._quitting = self.terminal.quitting = True
        self._stop.set()
        self._wake.set()
        if self.app.is_running and not self.app.future.done():
            self.app.exit()

    def shutdown(self) -> None:
        """Close the session and stop reconnecting (idempotent)."""
        self._quitting = True
        self._stop.set()
        self._wake.set()
        session, self.session = self.session, None
        if session is not None:
            try:
                session.close("quit")
            except Exception:  # noqa: BLE001 - leaving must not fail on a dead socket
                log.debug("close failed", exc_info=True)

    # -- events from the receiver thread ------------------------------------
    def _attach(self, session, first: bool = False) -> None:
        # Runs on the UI loop: adopt a logged-in session and start its receiver.
        if self._quitting:
            session.close("quit")
            return
        self._generation += 1
        generation = self._generation
        self.session = session
        self.lost = None
        self._reconnecting = False
        self._outgoing.clear()
        self._early_acks.clear()
        if not first:
            self.rooms.reset()
            self._set_members(field(session.welcome, "users", None) or [])
            self.announced = clean(str(field(session.welcome, "server", "") or ""))
            self.state = "connected"
            self.away = None  # a new session starts present
            self.show(self.renderer.info(f"back online on {self.server_label()}"
                                         f" ({len(self.members)} online)"))
        callback = lambda ev: self._from_thread(generation, ev)  # noqa: E731
        self.dm = None
        if self._dm_factory is not None:
            self.dm = self._dm_factory(session)
            self.dm.emit = callback
            callback = self.dm.wrap(callback)
        session.start(callback)
        if self.dm is not None:
            dm, register = self.dm, self._after_login if first else None

            def after_login():
                dm.announce_rotation()  # a rotated server key, said once
                if register is not None:
                    register(dm)
            self.background(after_login)
        self.app.invalidate()

    def background(self, work: Callable[[], Any], done: Optional[Callable[[Any], None]] = None,
                   failed: Optional[Callable[[str], Optional[str]]] = None) -> None:
        """Run ``work()`` on a thread, then ``done(result)`` on the UI loop; a SchatError is
        printed as a warning (the text ``failed(text)`` returns, when given). Requests that
        wait for a server reply (key look-ups) must not freeze the screen."""
        def report(text: str) -> None:
            if failed is not None:
                text = failed(text) or text
            self.show(self.renderer.warning(text))

        def run():
            try:
                result = work()
            except SchatError as err:
                self.call_soon(report, str(err))
                return
            except Exception:  # noqa: BLE001 - reported, never a traceback on screen
                log.exception("background request failed")
                self.call_soon(report, "the request failed")
                return
            if done is not None:
                self.call_soon(done, result)
        threading.Thread(target=run, name="schat-request", daemon=True).start()

    def _from_thread(self, generation: int, event: Any) -> None:
        self.call_soon(self._handle, generation, event)

    def _handle(self, generation: int, event: Any) -> None:
        if generation != self._generation:
            return  # a late event from a session we already replaced
        if isinstance(event, Disconnected):
            self._lost(event)
            return
        kind = event_type(event)
        # The member list (completion, the toolbar's count) follows #lobby, where everyone
        # meets; events of other rooms carry their room.
        if field(event, "room", None) not in (None, "#lobby"):
            pass
        elif kind in ("welcome", "users"):
            self._set_members(field(event, "users", None) or [])
        elif kind == "join":
            name = field(event, "user", "")
            self.members[name_key(name)] = name
        elif kind == "leave":
            self.members.pop(name_key(str(field(event, "user", ""))), None)
        if kind in ("message", "dm") and self.is_ignored(field(event, "sender", "") or ""):
            return
        self.rooms.apply(event)
        if kind == "ack":
            line = self._acked(field(event, "cid"), field(event, "time"))
        else:
            if kind == "error":
                self._outgoing.pop(field(event, "cid", None), None)
            line = self._line(kind, event)
        if line is not None:
            self.show(line, bell=self.bell and should_bell(event, self.me))
        self.app.invalidate()

    def _line(self, kind: str, event):
        if kind == "welcome":
            return self.welcome_line(event)
        if kind == "focus":
            # The prompt shows where plain lines go; only "nowhere" needs words.
            if field(event, "room", None) is None and self.rooms.current is None:
                return self.renderer.info("you are in no room; /join one (/rooms lists them)")
            return None
        if kind in ONE_LINE_KINDS:
            event = one_line_fields(event)
        if kind == "room":
            if field(event, "room") == self.rooms.current:
                self._marked = self.rooms.current  # the line says so itself
            return self.renderer.info(describe(event, most=ROOM_NAMES_SHOWN), field(event, "time"))
        room = self.rooms.room_of(event)
        tag = room if room is not None and room != self.rooms.current else ""
        return self.renderer.event(event, tag)

    def _acked(self, cid: Optional[str], ms: Optional[int]):
        entry = self._outgoing.pop(cid, None) if cid else None
        if entry is None:
            if cid and len(self._early_acks) < 1000:
                self._early_acks[cid] = ms
            return None
        kind, a, b, room = entry
        if kind == "say":
            # Your own line, tagged with its room when you have switched away meanwhile.
            tag = room if room is not None and room != self.rooms.current else ""
            return self.renderer.chat(self.me, a, ms, action=b, tag=tag)
        if kind == "msg":
            if name_key(a) == name_key(self.me):
                return None  # a note to yourself comes back, and is shown, as it arrives
            return self.renderer.private(a, b, ms, outgoing=True)
        if kind == "away":
            self.away = a or None
            return self.renderer.info(f"you are away: {a}" if a else "you are back")
        return None

    def _set_members(self, names) -> None:
        self.members = {name_key(str(n)): str(n) for n in names}

    def _names(self):
        """Member names to complete: everyone in your rooms (#lobby's list without rooms)."""
        if not self.rooms.known:
            return self.members.values()
        names = dict(self.members)
        names.update((name_key(n), n) for n in self.rooms.members())
        return names.values()

    # -- rooms --------------------------------------------------------------
    def current_room(self) -> Optional[str]:
        """The room plain lines and commands are sent to (None: the server knows no rooms,
        or you are in none)."""
        return self.rooms.current if self.rooms.known else None

    def switch(self, room: str) -> bool:
        """Make ``room`` (one you are in) the current room; nothing is sent."""
        if not self.rooms.switch(room):
            return False
        self.app.invalidate()
        return True

    def switch_number(self, n: int) -> None:
        """Alt-N: the N-th room in the toolbar."""
        room = self.rooms.by_number(n)
        if room is not None:
            self.switch(room)

    def switch_step(self, delta: int) -> None:
        """Ctrl-N / Ctrl-P: the next or previous room, wrapping around."""
        room = self.rooms.step(delta)
        if room is not None:
            self.switch(room)

    # -- ignoring -----------------------------------------------------------
    def is_ignored(self, name: str) -> bool:
        return bool(name) and name_key(name) in self.ignored

    def set_ignored(self, name: str, ignore: bool) -> None:
        """Ignore ``name`` (or stop), and keep the list for the next sessions."""
        if ignore:
            self.ignored[name_key(name)] = name
        else:
            self.ignored.pop(name_key(name), None)
        if self._ignores is not None:
            self._ignores.save(sorted(self.ignored.values(), key=str.lower))

    # -- printing -----------------------------------------------------------
    def show(self, fragments: Fragments, bell: bool = False) -> None:
        """Print one line above the input (on the UI loop); batched with others.

        Lines of the current room carry no room tag, so a change of the current room is
        said before the next line (once, however many switches came in between)."""
        room = self.rooms.current if self.rooms.known else None
        if room is not None and room != self._marked:
            self._marked = room
            self.terminal.show(self.renderer.info(f"switched to {room}"), False)
        self.terminal.show(fragments, bell)

    @property
    def on_printed(self) -> Optional[Callable[[List[Fragments]], None]]:
        return self.terminal.on_printed

    @on_printed.setter
    def on_printed(self, observer) -> None:
        self.terminal.on_printed = observer

    def post(self, fragments: Fragments) -> bool:
        """:meth:`show` from any thread; False when the screen is not running."""
        return self.call_soon(self.show, fragments)

    # -- input ----------------------------------------------------------------
    def submit(self, text: str) -> None:
        """Act on one entered line (sent, or refused with a warning)."""
        self.commands.submit(text)

    def warn(self, text: str) -> None:
        """Print a warning line (``! text``)."""
        self.show(self.renderer.warning(text))

    def notice(self, text: str) -> None:
        """Print a notice line (``-!- text``): help, answers to local commands."""
        self.show(self.renderer.line("class:notice", "-!-", text))

    @property
    def online(self) -> bool:
        """Logged in and connected now."""
        return self.session is not None and self.state == "connected"

    def expect_ack(self, cid: str, kind: str, a: str, b: Any, room: Optional[str] = None) -> None:
        """Remember a request sent as ``cid`` (to ``room``); its line is printed when the
        server acks it (``say``: text, action; ``msg``: peer, text; ``away``: reason;
        ``command``: line)."""
        self._outgoing[cid] = (kind, a, b, room)
        if cid in self._early_acks:
            line = self._acked(cid, self._early_acks.pop(cid))
            if line is not None:
                self.show(line)

    def call_soon(self, func, *args) -> bool:
        """Run ``func(*args)`` on the UI loop, from any thread; False when the loop is gone."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(func, *args)
        except RuntimeError:
            return False  # the loop closed while we were leaving
        return True
