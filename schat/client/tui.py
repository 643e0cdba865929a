"""The interactive terminal interface of ``schat connect`` (prompt_toolkit).

Incoming events arrive on the session's receiver thread and are handed to the
UI's event loop with ``call_soon_threadsafe``; only that loop touches the
screen. Lines are printed with ``run_in_terminal``, which erases the input
area, prints above it and draws it again from the buffer, which output never
modifies: a half-typed line survives any number of incoming messages.
Several events that arrive together are printed in one such pass.

When the connection drops, a :class:`~schat.client.reconnect.Reconnector`
logs in again in the background; the input line stays usable meanwhile.
The layout and keys are in :mod:`schat.client.tui_layout`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from prompt_toolkit.application.run_in_terminal import run_in_terminal
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.output import ColorDepth

from schat.client.completion import ChatCompleter
from schat.client.reconnect import BACKOFF_CAP, BACKOFF_START, Reconnector
from schat.client.render import Fragments, Renderer, chat_style, event_type, field, should_bell
from schat.client.session import Disconnected
from schat.client.tui_commands import LineCommands
from schat.client.tui_layout import PasteGuard, build_application, build_layout, key_bindings
from schat.errors import SchatError

log = logging.getLogger("schat.client.tui")

# The server ended the session on purpose (a login elsewhere took it over, an admin):
# logging in again at once would undo it, so the screen stays offline.
FINAL_CODES = ("taken_over", "disconnected", "locked", "removed", "kicked", "banned")

def colour_wanted(env: Optional[Dict[str, str]] = None) -> bool:
    """False when ``NO_COLOR`` is set to anything non-empty (https://no-color.org)."""
    env = os.environ if env is None else env
    return not env.get("NO_COLOR")


class ChatTUI:
    """One interactive chat screen bound to a logged-in session.

    ``session`` is a logged-in :class:`schat.client.session.ClientSession` whose
    receiver thread is not started yet; ``reconnect()`` returns a new one, logged
    in the same way, or raises a :class:`SchatError`. ``dm_factory(session)``
    returns the :class:`schat.client.dm.DmClient` that answers ``/msg``,
    ``/whois``, ``/verify`` and ``/trust``.
    """

    def __init__(self, session, reconnect: Optional[Callable[[], Any]] = None, *,
                 server: str = "", history: Optional[History] = None, bell: bool = True,
                 colour: Optional[bool] = None, input=None, output=None,
                 backoff_start: float = BACKOFF_START, backoff_cap: float = BACKOFF_CAP,
                 dm_factory: Optional[Callable[[Any], Any]] = None):
        self.session = session
        self._reconnect = reconnect
        self._dm_factory = dm_factory
        self.dm = None
        welcome = getattr(session, "welcome", None)
        self.me: str = field(welcome, "user", None) or getattr(session, "user", "") or ""
        self.server = server or field(welcome, "server", "") or getattr(session, "server_name", "")
        self.bell = bell
        self.colour = colour_wanted() if colour is None else colour
        self.state = "connected"
        # Why the connection is down (None while connected); the exit code depends on it.
        self.lost: Optional[str] = None
        self.members: Dict[str, str] = {}
        self._backoff = (backoff_start, backoff_cap)
        self._generation = 0
        self._outgoing: Dict[str, Tuple[str, str, Any]] = {}
        # Acks that came in before the worker thread that sent the request registered its cid.
        self._early_acks: Dict[str, Optional[int]] = {}
        self._queue: List[Fragments] = []
        self._ring = False
        self._flush_scheduled = False
        self._quitting = False
        self._stop = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # Observers for tests and tools: called on the UI loop after each printed batch.
        self.on_printed: Optional[Callable[[List[Fragments]], None]] = None
        self.printed: List[str] = []
        self._set_members(field(welcome, "users", None) or [])

        self.buffer = Buffer(
            name="input", multiline=False, history=history or InMemoryHistory(),
            completer=ChatCompleter(lambda: self.members.values(), lambda: self.me),
            complete_while_typing=False)
        self.paste = PasteGuard()
        self.commands = LineCommands(self)
        self.app = self._build_app(input, output)
        # Wrap at the terminal's width as it is when each line is made, so a resize counts.
        self.renderer = Renderer(self.me, width=self._columns)
        if welcome is not None:
            self._queue.append(self.renderer.event(welcome))

    def _build_app(self, input, output):
        prompt = lambda: [("class:prompt", f"{self.me or '?'}> ")]  # noqa: E731
        layout = build_layout(self.buffer, prompt, self.toolbar)
        bindings = key_bindings(self.buffer, self.paste, self._enter, self.quit)
        kwargs = {} if self.colour else {"color_depth": ColorDepth.DEPTH_1_BIT}
        return build_application(layout, bindings, self.paste, style=chat_style(self.colour),
                                 input=input, output=output, **kwargs)

    def _columns(self) -> Optional[int]:
        try:
            return self.app.output.get_size().columns
        except Exception:  # noqa: BLE001 - a size is a nicety, not a requirement
            return None

    def toolbar(self):
        """The toolbar: server, you, how many are online (while connected), the state."""
        if self.state == "connected":
            return [("class:toolbar", f" {self.server} · {self.me} · "
                                      f"{len(self.members)} online · "),
                    ("class:toolbar.online", "connected"), ("class:toolbar", " ")]
        # No member count while offline: it would be stale.
        return [("class:toolbar", f" {self.server} · {self.me} · "),
                ("class:toolbar.offline", self.state), ("class:toolbar", " ")]

    def _enter(self) -> None:
        if self.submit(self.buffer.text):
            return
        self.buffer.append_to_history()
        self.buffer.reset()

    # -- running ----------------------------------------------------------
    def run(self) -> int:
        """Run until the user leaves; return the exit code (1 when the connection was lost
        and had not come back, with the reason in :attr:`lost`)."""
        self.app.run(pre_run=self._started, handle_sigint=False)
        return self._ended()

    async def run_async(self) -> int:
        """:meth:`run` for callers that already have an event loop."""
        await self.app.run_async(pre_run=self._started, handle_sigint=False)
        return self._ended()

    def _ended(self) -> int:
        lost = self.lost
        self.shutdown()
        return 0 if lost is None else 1

    def _started(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._attach(self.session, first=True)
        if self._queue and not self._flush_scheduled:
            self._flush_scheduled = True
            run_in_terminal(self._flush)

    def quit(self) -> None:
        """Leave: stop reconnecting and end the interface (the session closes after)."""
        self._quitting = True
        self._stop.set()
        if self.app.is_running and not self.app.future.done():
            self.app.exit()

    def shutdown(self) -> None:
        """Close the session and stop reconnecting (idempotent)."""
        self._quitting = True
        self._stop.set()
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
        self._outgoing.clear()
        self._early_acks.clear()
        if not first:
            self._set_members(field(session.welcome, "users", None) or [])
            self.state = "connected"
            self.show(self.renderer.info(f"back online on {self.server}"
                                         f" ({len(self.members)} online)"))
        callback = lambda ev: self._from_thread(generation, ev)  # noqa: E731
        self.dm = None
        if self._dm_factory is not None:
            self.dm = self._dm_factory(session)
            self.dm.emit = callback
            callback = self.dm.wrap(callback)
        session.start(callback)
        if self.dm is not None:
            self.background(self.dm.register_key)
        self.app.invalidate()

    def background(self, work: Callable[[], Any], done: Optional[Callable[[Any], None]] = None,
                   failed: Optional[Callable[[str], None]] = None) -> None:
        """Run ``work()`` on a thread, then ``done(result)`` on the UI loop; a SchatError is
        printed as a warning after ``failed(text)``. Requests that wait for a server reply
        (key look-ups) must not freeze the screen."""
        def report(text: str) -> None:
            if failed is not None:
                failed(text)
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
            self.members[name.lower()] = name
        elif kind == "leave":
            self.members.pop(str(field(event, "user", "")).lower(), None)
        if kind == "ack":
            line = self._acked(field(event, "cid"), field(event, "time"))
        else:
            if kind == "error":
                self._outgoing.pop(field(event, "cid", None), None)
            line = self.renderer.event(event)
        if line is not None:
            self.show(line, bell=self.bell and should_bell(event, self.me))
        self.app.invalidate()

    def _acked(self, cid: Optional[str], ms: Optional[int]):
        entry = self._outgoing.pop(cid, None) if cid else None
        if entry is None:
            if cid and len(self._early_acks) < 1000:
                self._early_acks[cid] = ms
            return None
        kind, a, b = entry
        if kind == "say":
            return self.renderer.chat(self.me, a, ms, action=b)
        if kind == "msg":
            return self.renderer.private(a, b, ms, outgoing=True)
        return None

    def _set_members(self, names) -> None:
        self.members = {str(n).lower(): str(n) for n in names}

    # -- printing -----------------------------------------------------------
    def show(self, fragments: Fragments, bell: bool = False) -> None:
        """Print one line above the input (on the UI loop); batched with others."""
        self._queue.append(fragments)
        self._ring = self._ring or bell
        if self._loop is None or self._flush_scheduled:
            return
        self._flush_scheduled = True
        run_in_terminal(self._flush)

    def post(self, fragments: Fragments) -> bool:
        """:meth:`show` from any thread; False when the screen is not running."""
        return self.call_soon(self.show, fragments)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._queue = self._queue, []
        for fragments in batch:
            self.app.print_text(list(fragments) + [("", "\n")])
            self.printed.append("".join(text for _, text in fragments))
        if self._ring:
            self._ring = False
            self.app.output.bell()
        if self.on_printed is not None:
            self.on_printed(batch)

    # -- input ----------------------------------------------------------------
    def submit(self, text: str) -> bool:
        """Act on one entered line; return True to keep it in the input (not sent)."""
        return self.commands.submit(text)

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

    def expect_ack(self, cid: str, kind: str, a: str, b: Any) -> None:
        """Remember a request sent as ``cid``; its line is printed when the server acks it
        (``say``: text, action; ``msg``: peer, text; ``command``: line)."""
        self._outgoing[cid] = (kind, a, b)
        if cid in self._early_acks:
            line = self._acked(cid, self._early_acks.pop(cid))
            if line is not None:
                self.show(line)

    # -- reconnecting -------------------------------------------------------
    def _lost(self, event) -> None:
        if self._quitting:
            return
        reason = getattr(event, "reason", "") or "connection closed"
        self.lost = reason
        if self._reconnect is None or getattr(event, "code", "") in FINAL_CODES:
            self.state = "offline"
            self.show(self.renderer.warning(f"disconnected: {reason}; /quit to leave"))
            self.app.invalidate()
            return
        self.state = "reconnecting"
        self.show(self.renderer.warning(f"disconnected: {reason}; reconnecting"))
        self.app.invalidate()
        Reconnector(self._reconnect, self._stop, self.call_soon, state=self._set_state,
                    warn=lambda text: self.show(self.renderer.warning(text)),
                    attach=self._attach, give_up=self._give_up,
                    backoff=self._backoff).start()

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

    def _set_state(self, state: str) -> None:
        self.state = state
        self.app.invalidate()

    def _give_up(self, reason: str) -> None:
        self.state = "offline"
        self.show(self.renderer.warning(f"cannot reconnect: {reason}\n/quit to leave"))
        self.app.invalidate()
