"""The interactive terminal interface of ``schat connect`` (prompt_toolkit).

Layout, bottom of the terminal::

    12:04 <ann> hello              <- printed above; the terminal's scrollback keeps it
    ann> half-typed li|            <- the input line (wraps, never touched by output)
     lab · ann · 3 online · connected

Incoming events arrive on the session's receiver thread and are handed to the
UI's event loop with ``call_soon_threadsafe``; only that loop touches the
screen. Lines are printed with ``run_in_terminal``, which erases the input
area, prints above it and draws it again from the buffer, which output never
modifies: a half-typed line survives any number of incoming messages.
Several events that arrive together are printed in one such pass.

When the connection drops, a reconnect thread tries again with a growing,
capped delay, using the ``reconnect`` callable it was given (which holds the
credentials in memory only); the input line stays usable meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from prompt_toolkit.application import Application
from prompt_toolkit.application.run_in_terminal import run_in_terminal
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import (ConditionalContainer, Float, FloatContainer, HSplit,
                                   Layout, Window)
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.layout.dimension import Dimension
from prompt_toolkit.layout.menus import CompletionsMenu
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.output import ColorDepth
from prompt_toolkit.filters import has_completions

from schat.client.completion import COMMANDS, ChatCompleter, help_text, split_command, suggest
from schat.client.session import Disconnected
from schat.client.render import Renderer, chat_style, event_type, field, should_bell
from schat.errors import AuthenticationFailed, SchatError, TrustError

log = logging.getLogger("schat.client.tui")

MAX_TEXT_BYTES = 4096
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


def colour_wanted(env: Optional[Dict[str, str]] = None) -> bool:
    """False when ``NO_COLOR`` is set to anything non-empty (https://no-color.org)."""
    env = os.environ if env is None else env
    return not env.get("NO_COLOR")


class ChatTUI:
    """One interactive chat screen bound to a logged-in session.

    ``session`` is a logged-in :class:`schat.client.session.ClientSession` whose
    receiver thread is not started yet; ``reconnect()`` returns a new one, logged
    in the same way, or raises a :class:`SchatError`.
    """

    def __init__(self, session, reconnect: Optional[Callable[[], Any]] = None, *,
                 server: str = "", history: Optional[History] = None, bell: bool = True,
                 colour: Optional[bool] = None, input=None, output=None,
                 backoff_start: float = BACKOFF_START, backoff_cap: float = BACKOFF_CAP,
                 dm_factory: Optional[Callable[[Any], Any]] = None):
        self.session = session
        self._reconnect = reconnect
        # dm_factory(session) -> schat.client.dm.DmClient: encrypted /msg, /whois, /verify, /trust.
        self._dm_factory = dm_factory
        self.dm = None
        welcome = getattr(session, "welcome", None)
        self.me: str = field(welcome, "user", None) or getattr(session, "user", "") or ""
        self.server = server or field(welcome, "server", "") or getattr(session, "server_name", "")
        self.bell = bell
        self.colour = colour_wanted() if colour is None else colour
        self.state = "connected"
        self.members: Dict[str, str] = {}
        self.renderer = Renderer(self.me)
        self._backoff = (backoff_start, backoff_cap)
        self._generation = 0
        self._outgoing: Dict[str, Tuple[str, str, Any]] = {}
        # Acks that came in before the worker thread that sent the request registered its cid.
        self._early_acks: Dict[str, Optional[int]] = {}
        self._queue: List[Any] = []
        self._ring = False
        self._flush_scheduled = False
        self._quitting = False
        self._stop = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # Observers for tests and tools: called on the UI loop after each printed batch.
        self.on_printed: Optional[Callable[[List[Any]], None]] = None
        self.printed: List[str] = []
        self._set_members(field(welcome, "users", None) or [])

        self.buffer = Buffer(
            name="input", multiline=False, history=history or InMemoryHistory(),
            completer=ChatCompleter(lambda: self.members.values(), lambda: self.me),
            complete_while_typing=False)
        self.app = self._build_app(input, output)
        if welcome is not None:
            self._queue.append(self.renderer.event(welcome))

    # -- layout -------------------------------------------------------------
    def _build_app(self, input, output) -> Application:
        prompt = lambda: [("class:prompt", f"{self.me or '?'}> ")]  # noqa: E731
        input_window = Window(
            BufferControl(self.buffer, input_processors=[BeforeInput(prompt)]),
            wrap_lines=True, height=Dimension(min=1), dont_extend_height=True)
        toolbar = Window(FormattedTextControl(self._toolbar), height=1, style="class:toolbar")
        body = FloatContainer(
            HSplit([input_window, toolbar]),
            floats=[Float(xcursor=True, ycursor=True,
                          content=ConditionalContainer(CompletionsMenu(max_height=8),
                                                       filter=has_completions))])
        kwargs = {}
        if not self.colour:
            kwargs["color_depth"] = ColorDepth.DEPTH_1_BIT
        return Application(
            layout=Layout(body, focused_element=input_window),
            key_bindings=self._key_bindings(), style=chat_style(self.colour),
            full_screen=False, mouse_support=False, erase_when_done=True,
            input=input, output=output, **kwargs)

    def _toolbar(self):
        online = "toolbar.online" if self.state == "connected" else "toolbar.offline"
        return [("class:toolbar", f" {self.server} · {self.me} · "
                                  f"{len(self.members)} online · "),
                (f"class:{online}", self.state), ("class:toolbar", " ")]

    def _key_bindings(self) -> KeyBindings:
        kb = KeyBindings()

        @kb.add("enter")
        def _enter(event):
            text = self.buffer.text
            if self.submit(text):
                return
            self.buffer.append_to_history()
            self.buffer.reset()

        @kb.add("c-c")
        def _clear(event):
            self.buffer.reset()

        @kb.add("c-d")
        def _eof(event):
            if self.buffer.text:
                self.buffer.delete()
            else:
                self.quit()

        @kb.add(Keys.BracketedPaste)
        def _paste(event):
            # A paste is text to send as one message, never a series of Enters.
            data = event.data.replace("\r\n", "\n").replace("\r", "\n")
            self.buffer.insert_text(data.rstrip("\n") if "\n" in data else data)

        return kb

    # -- running ----------------------------------------------------------
    def run(self) -> int:
        """Run until the user leaves; return the exit code (0)."""
        self.app.run(pre_run=self._started, handle_sigint=False)
        self.shutdown()
        return 0

    async def run_async(self) -> int:
        """:meth:`run` for callers that already have an event loop."""
        await self.app.run_async(pre_run=self._started, handle_sigint=False)
        self.shutdown()
        return 0

    def _started(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._resize()
        self._attach(self.session, first=True)
        if self._queue and not self._flush_scheduled:
            self._flush_scheduled = True
            run_in_terminal(self._flush)

    def _resize(self) -> None:
        try:
            self.renderer.width = self.app.output.get_size().columns
        except Exception:  # noqa: BLE001 - a size is a nicety, not a requirement
            self.renderer.width = None

    def quit(self) -> None:
        """Leave: stop reconnecting and end the interface (the session closes after)."""
        self._quitting = True
        self._stop.set()
        if self.app.is_running and not self.app.future.done():
            self.app.exit()

    def shutdown(self) -> None:
        """Close the session and stop the reconnect thread (idempotent)."""
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
        self._outgoing.clear()
        self._early_acks.clear()
        welcome = getattr(session, "welcome", None)
        if not first:
            self._set_members(field(welcome, "users", None) or [])
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
            self._background(self.dm.register_key, None)
        self.app.invalidate()

    def _background(self, work: Callable[[], Any], done: Optional[Callable[[Any], None]]) -> None:
        # Requests that wait for a server reply (key look-ups) must not freeze the screen.
        def run():
            try:
                result = work()
            except SchatError as err:
                self._call(self.show, self.renderer.warning(str(err)))
                return
            except Exception:  # noqa: BLE001 - reported, never a traceback on screen
                log.exception("background request failed")
                self._call(self.show, self.renderer.warning("the request failed"))
                return
            if done is not None:
                self._call(done, result)
        threading.Thread(target=run, name="schat-request", daemon=True).start()

    def _from_thread(self, generation: int, event: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._handle, generation, event)
        except RuntimeError:
            pass  # the loop closed while we were leaving

    def _handle(self, generation: int, event: Any) -> None:
        if generation != self._generation:
            return  # a late event from a session we already replaced
        if isinstance(event, Disconnected):
            self._lost(event)
            return
        kind = event_type(event)
        if kind == "welcome":
            self._set_members(field(event, "users", None) or [])
        elif kind == "join":
            name = field(event, "user", "")
            self.members[name.lower()] = name
        elif kind == "leave":
            self.members.pop(str(field(event, "user", "")).lower(), None)
        elif kind == "users":
            self._set_members(field(event, "users", None) or [])
        if kind == "ack":
            line = self._acked(field(event, "cid"), field(event, "time"))
        elif kind == "error":
            if self._outgoing:
                self._outgoing.pop(next(iter(self._outgoing)))
            line = self.renderer.event(event)
        else:
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
    def show(self, fragments, bell: bool = False) -> None:
        """Print one line above the input (on the UI loop); batched with others."""
        self._queue.append(fragments)
        self._ring = self._ring or bell
        if self._loop is None or self._flush_scheduled:
            return
        self._flush_scheduled = True
        run_in_terminal(self._flush)

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
        if not text.strip():
            return False
        parsed = split_command(text)
        if parsed is not None:
            return self._command(text, *parsed)
        if text.startswith("//"):
            text = text[1:]
        return self._send("say", text, False)

    def _command(self, line: str, name: str, args: str) -> bool:
        if name == "help":
            if args:
                cmd = COMMANDS.get(args.lstrip("/").lower())
                self.show(self.renderer.line("class:notice", "-!-", f"{cmd.usage}  {cmd.help}")
                          if cmd else self.renderer.warning(f"no command /{args}"))
            else:
                self.show(self.renderer.line("class:notice", "-!-", help_text()))
            return False
        if name == "quit":
            self.quit()
            return False
        if name == "clear":
            self.app.renderer.clear()
            return False
        if name == "me":
            if not args:
                self.show(self.renderer.warning(f"usage: {COMMANDS['me'].usage}"))
                return True
            return self._send("say", args, True)
        if name == "msg":
            to, _, text = args.partition(" ")
            if not to or not text.strip():
                self.show(self.renderer.warning(f"usage: {COMMANDS['msg'].usage}"))
                return True
            return self._send("msg", to, text.strip())
        if name == "who":
            return self._send("command", line, None)
        if name in ("whois", "verify", "trust"):
            if self.dm is None or self.state != "connected":
                return self._send("command", line, None)
            self._background(lambda: self.dm.handle_line(line), self._show_notice_lines)
            return False
        close = suggest(name)
        hint = f"; did you mean /{close}?" if close else "; /help lists the commands"
        self.show(self.renderer.warning(f"unknown command /{name[:32]}{hint}"))
        return True

    def _send(self, kind: str, a: str, b: Any) -> bool:
        text = b if kind == "msg" else a
        size = len(text.encode("utf-8"))
        if size > MAX_TEXT_BYTES:
            self.show(self.renderer.warning(
                f"not sent: {size} bytes is over the {MAX_TEXT_BYTES}-byte limit "
                "for one message (the text is still in the input line)"))
            return True
        session = self.session
        if session is None or self.state != "connected":
            self.show(self.renderer.warning("not connected; the line is kept, "
                                            "press Enter again once back online"))
            return True
        if kind == "msg" and self.dm is not None:
            dm = self.dm
            self._background(lambda: dm.send(a, b), lambda cid: self._sent(cid, kind, a, b))
            return False
        try:
            if kind == "say":
                cid = session.say(a, action=bool(b))
            elif kind == "msg":
                cid = session.msg(a, b)
            else:
                cid = session.command(a)
        except SchatError as err:
            self.show(self.renderer.warning(f"not sent: {err}"))
            return True
        self._sent(cid, kind, a, b)
        return False

    def _sent(self, cid: str, kind: str, a: str, b: Any) -> None:
        self._outgoing[cid] = (kind, a, b)
        if cid in self._early_acks:
            line = self._acked(cid, self._early_acks.pop(cid))
            if line is not None:
                self.show(line)

    def _show_notice_lines(self, lines) -> None:
        if lines:
            self.show(self.renderer.line("class:notice", "-!-", "\n".join(lines)))

    # -- reconnecting -------------------------------------------------------
    def _lost(self, event) -> None:
        if self._quitting:
            return
        reason = getattr(event, "reason", "") or "connection closed"
        if self._reconnect is None:
            self.state = "offline"
            self.show(self.renderer.warning(f"disconnected: {reason}; /quit to leave"))
            self.app.invalidate()
            return
        self.state = "reconnecting"
        self.show(self.renderer.warning(f"disconnected: {reason}; reconnecting"))
        self.app.invalidate()
        threading.Thread(target=self._reconnect_loop, name="schat-reconnect",
                         daemon=True).start()

    def _reconnect_loop(self) -> None:
        refusals = 0
        for delay in backoff_delays(*self._backoff):
            self._call(self._set_state, f"reconnecting in {delay:g} s")
            if self._stop.wait(delay):
                return
            self._call(self._set_state, "reconnecting")
            try:
                session = self._reconnect()
            except TrustError as err:
                self._call(self._give_up, str(err))
                return
            except AuthenticationFailed as err:
                refusals += 1
                if refusals >= MAX_AUTH_REFUSALS:
                    self._call(self._give_up, str(err))
                    return
                self._call(self.show, self.renderer.warning(f"reconnect failed: {err}"))
                continue
            except (SchatError, OSError) as err:
                refusals = 0
                self._call(self._set_state, "offline")
                log.info("reconnect failed: %s", err)
                continue
            self._call(self._attach, session)
            return

    def _call(self, func, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(func, *args)
            except RuntimeError:
                pass

    def _set_state(self, state: str) -> None:
        self.state = state
        self.app.invalidate()

    def _give_up(self, reason: str) -> None:
        self.state = "offline"
        self.show(self.renderer.warning(f"cannot reconnect: {reason}\n/quit to leave"))
        self.app.invalidate()


def run_chat_screen(app, name: str, session, user: str, private_key, password: Optional[str],
                    bell: bool = True, reopen: Optional[Callable[..., Any]] = None) -> int:
    """Run the chat screen for ``schat connect`` on a logged-in session; return the exit code.

    ``reopen(app, name, accept_new, ask=False)`` opens a new pinned connection
    (``schat.commands.connect.open_session``); the credentials stay in this
    closure, in memory only, for logging in again after a drop.
    """
    from schat.client.dm import DmClient
    from schat.client.history import ChatHistory, history_path

    def reconnect():
        fresh = reopen(app, name, False, ask=False)
        try:
            if private_key is not None:
                fresh.login_key(user, private_key)
            else:
                fresh.login_password(user, password)
        except BaseException:
            fresh.close()
            raise
        return fresh

    def dm_factory(s):
        return DmClient(s, app.home.root, private_key, lambda msg: None)

    tui = ChatTUI(session, reconnect if reopen is not None else None, server=name,
                  history=ChatHistory(history_path(app.home.root, name)), bell=bell,
                  dm_factory=dm_factory)
    return tui.run()
