"""The plain terminal / pipe user interface, and ``--json`` lines.

Incoming events are printed one per line by the receiver thread; the input
lines come from a reader thread. The main thread waits on one queue for both,
so it can leave as soon as the server goes away even while stdin is idle.

Every refusal (an ``error`` from the server or a line the client could not
send) is printed in the event stream on stdout, as a JSON object with
``--json``, and makes the exit code 1, so a script knows a line was lost.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from datetime import datetime, timezone
from typing import List, Optional, TextIO

from schat.client import room_text
from schat.client.dm import LOCAL_HELP, DmClient
from schat.client.local_events import LocalNotice, LocalWarning, PrivateMessage
from schat.client.render import UNVERIFIED_MARK
from schat.client.render import clock_seconds as clock
from schat.client.sanitize import json_line, one_line
from schat.client.pacing import Pacer
from schat.client.session import ClientSession, Disconnected
from schat.errors import ConnectionFailed, SchatError
from schat.protocol import messages, room_messages
from schat.protocol.schema import MAX_TEXT_BYTES

# How long to wait at end of input for the server to confirm what we sent.
ACK_WAIT = 10.0

_EOF = object()


class ClientError:
    """A line the client itself refused, printed in the event stream like a server error."""

    TYPE = "error"
    code = "client"

    def __init__(self, text: str):
        self.text = text


def local_help() -> str:
    """The commands the client answers itself (listed before the server's /help)."""
    width = max(len(usage) for usage, _ in LOCAL_HELP)
    return "\n".join(["commands of your client:"]
                     + [f"{usage.ljust(width)}  {text}" for usage, text in LOCAL_HELP]
                     + ["commands of the server:"])


def iso_time(ms: int) -> str:
    """ISO 8601 local time with offset, millisecond precision."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone().isoformat(
        timespec="milliseconds")


def format_text(msg) -> Optional[str]:
    """The line for one event (None: nothing to show), every network string cleaned.

    One event is one line: a break inside a text shows as ``⏎``
    (:func:`schat.client.sanitize.one_line`), so no member or server can print
    something that looks like another event. The welcome is three events: the
    session, the message of the day (when there is one) and who is online.
    """
    lines = _format_lines(msg)
    if lines is None:
        return None
    return "\n".join(one_line(line) for line in lines)


def _format_lines(msg) -> Optional[List[str]]:
    rooms = room_text.describe(msg)
    if rooms is not None:  # a /rooms listing is one line per room
        stamp = f"[{clock(getattr(msg, 'time', None))}] "
        prefix = "-!-" if msg.TYPE in ("topic", "moderation") else "---"
        return [f"{stamp}{prefix} {line}" for line in rooms.splitlines()]
    line = _format_line(msg)
    if line is not None:
        return [line]
    if isinstance(msg, messages.Welcome):
        lines = [f"[{clock(msg.time)}] connected to {msg.server} as {msg.user}"]
        if msg.motd:
            lines.append(f"[{clock(msg.time)}] -!- {msg.motd}")
        lines.append(f"[{clock(msg.time)}] online ({len(msg.users)}): {', '.join(msg.users)}")
        return lines
    return None


def _format_line(msg) -> Optional[str]:
    if isinstance(msg, messages.ChatMessage):
        tag = room_text.tag(msg)
        if msg.action:
            return f"[{clock(msg.time)}] {tag}* {msg.sender} {msg.text}"
        return f"[{clock(msg.time)}] {tag}<{msg.sender}> {msg.text}"
    if isinstance(msg, PrivateMessage):
        # As the chat screen shows it: <- from, -> to (a note to yourself).
        mark = "" if msg.verified else " " + UNVERIFIED_MARK
        if msg.version == 1:
            mark += " [format 1]"
        if msg.sender.lower() == msg.to.lower():
            return f"[{clock(msg.time)}] -> {msg.to}{mark}: {msg.text}"
        return f"[{clock(msg.time)}] <- {msg.sender}{mark}: {msg.text}"
    if isinstance(msg, LocalWarning):
        return f"[{clock(msg.time)}] !!! {msg.text}"
    if isinstance(msg, LocalNotice):
        return f"[{clock(msg.time)}] --- {msg.text}"
    if isinstance(msg, messages.Join):
        where = f" {msg.room}" if msg.room else ""
        return f"[{clock(msg.time)}] --> {msg.user} joined{where}"
    if isinstance(msg, messages.Leave):
        suffix = f" ({msg.reason})" if msg.reason else ""
        where = f" {msg.room}" if msg.room else ""
        return f"[{clock(msg.time)}] <-- {msg.user} left{where}{suffix}"
    if isinstance(msg, messages.Notice):
        return f"[{clock(msg.time)}] -!- {msg.text}"
    if isinstance(msg, messages.Users):
        if msg.room:
            return f"{msg.room} ({len(msg.users)}): {room_text.names(msg)}"
        return f"online ({len(msg.users)}): {room_text.names(msg)}"
    if isinstance(msg, (messages.Error, ClientError)):
        return f"error: {msg.text}"
    if isinstance(msg, messages.Bye):
        return f"server closed the session: {msg.reason}"
    return None


# Event types that belong to a room: their JSON carries "room" (#lobby when the wire omits it).
_ROOM_TYPES = (messages.ChatMessage, messages.Join, messages.Leave, room_messages.RoomState,
               room_messages.Topic, room_messages.Moderation)


def format_json(msg) -> Optional[str]:
    """One JSON object per line: type, sender, text, time (ISO 8601), id; room events also
    carry "room", and backlog messages "history": true.

    Strings are exactly as received; the controls a terminal would act on are
    ``\\uXXXX`` escapes (:func:`schat.client.sanitize.json_line`).
    """
    record = {"type": msg.TYPE, "sender": None,
              "text": None, "time": None, "id": None}
    if isinstance(msg, _ROOM_TYPES) or (isinstance(msg, messages.Users) and msg.room):
        record["room"] = msg.room or room_text.LOBBY
    if isinstance(msg, messages.ChatMessage):
        record.update(sender=msg.sender, text=msg.text, id=msg.id, action=msg.action)
        if msg.history:
            record["history"] = True
    elif isinstance(msg, PrivateMessage):
        record.update(sender=msg.sender, text=msg.text, id=msg.id, to=msg.to,
                      verified=msg.verified, warning=msg.warning or None, format=msg.version)
    elif isinstance(msg, (messages.Join, messages.Leave)):
        record.update(sender=msg.user, text=getattr(msg, "reason", None))
    elif isinstance(msg, (messages.Notice, LocalWarning, LocalNotice)):
        record["text"] = msg.text
    elif isinstance(msg, (messages.Error, ClientError)):
        record.update(text=msg.text, code=msg.code)
    elif isinstance(msg, messages.Users):
        record["users"] = list(msg.users)
        if msg.away:
            record["away"] = {item["user"]: item["text"] for item in msg.away}
    elif isinstance(msg, messages.Welcome):
        record.update(text=msg.motd, users=list(msg.users), server=msg.server, user=msg.user)
    elif isinstance(msg, messages.Bye):
        record["text"] = msg.reason
    elif isinstance(msg, room_messages.RoomState):
        record.update(text=msg.topic, users=list(msg.users), ops=list(msg.ops), owner=msg.owner,
                      private=msg.private)
    elif isinstance(msg, room_messages.Focus):
        record["room"] = msg.room
    elif isinstance(msg, room_messages.Topic):
        record.update(sender=msg.user, text=msg.topic)
    elif isinstance(msg, room_messages.Moderation):
        record.update(sender=msg.actor, text=msg.reason, action=msg.action, target=msg.target,
                      until=iso_time(msg.until) if msg.until else None,
                      description=room_text.moderation(msg))
    elif isinstance(msg, room_messages.Rooms):
        record["rooms"] = [dict(r) for r in msg.rooms]
    else:
        return None
    ms = getattr(msg, "time", None)
    if ms is not None:
        record["time"] = iso_time(ms)
    return json_line(record)


class LineUI:
    """Plain terminal and pipe UI: input lines in, one line per event out."""

    def __init__(self, session: ClientSession, dm: DmClient, stdin: TextIO = None,
                 stdout: TextIO = None, stderr: TextIO = None, as_json: bool = False,
                 ack_wait: float = ACK_WAIT):
        self.session = session
        # Input may come in bulk: stay under the server's rate from the start.
        session.pacer = session.pacer or Pacer()
        # End-to-end encrypted /msg, /whois, /verify, /trust; its events come here too.
        self.dm = dm
        dm.emit = self.show
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.as_json = as_json
        self.ack_wait = ack_wait
        self.refused = 0
        self._out_lock = threading.Lock()
        self._inbox: "queue.Queue" = queue.Queue()
        self._disconnect: Optional[Disconnected] = None
        # The room plain lines go to, as this client's own lines decided it (None: the
        # server's choice). Lines are sent in order, each naming its room, so a line
        # after `/join #dev` goes to #dev, or is refused if the join was.
        self.focus: Optional[str] = None

    def show(self, msg) -> None:
        """Receiver-thread callback: print one event."""
        if isinstance(msg, Disconnected):
            self._disconnect = msg
            self._inbox.put(msg)
            return
        if isinstance(msg, (messages.Error, ClientError)):
            self.refused += 1
        line = format_json(msg) if self.as_json else format_text(msg)
        if line is None:
            return
        with self._out_lock:
            self.stdout.write(line + "\n")
            self.stdout.flush()

    def refuse(self, text: str) -> None:
        """Report a line the client could not send (counted for the exit code)."""
        self.show(ClientError(text))

    def error(self, text: str) -> None:
        """A diagnostic about the session itself (stderr)."""
        with self._out_lock:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def run(self) -> int:
        """Chat until /quit, end of input or the server leaving; return the exit code."""
        if self.session.welcome is not None:
            self.show(self.session.welcome)
        self.session.start(self.dm.wrap(self.show))
        # Stored direct messages are shown before the first input line is read.
        self.dm.wait_mailbox(self.ack_wait)
        try:
            self.dm.register_key()
        except ConnectionFailed:
            return self._ended(self._wait_disconnect())
        except SchatError as err:
            self.refuse(str(err))
        reader = threading.Thread(target=self._read_input, name="schat-input", daemon=True)
        reader.start()
        number = 0
        while True:
            item = self._inbox.get()
            if isinstance(item, Disconnected):
                return self._ended(item)
            if item is _EOF:
                return self._finish()
            number += 1
            line = item.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                if self._dispatch(line):
                    return self._finish()
            except ConnectionFailed:
                return self._ended(self._wait_disconnect())
            except SchatError as err:
                self.refuse(f"line {number} not sent: {err}")

    def _dispatch(self, line: str) -> bool:
        """Send one input line; True when the user asked to leave."""
        if line.startswith("/") and not line.startswith("//"):
            word = line.split(None, 1)[0].lower()
            if word == "/quit":
                return True
            if word == "/help":
                self._notices(local_help().splitlines())
            lines = self.dm.handle_line(line)
            if lines is not None:
                self._notices(lines)
                return False
            self._check_size(line)
            self.session.command(line, room=self.focus)
            self._follow(word, line)
            return False
        text = line[1:] if line.startswith("//") else line
        self._check_size(text)
        self.session.say(text, room=self.focus)
        return False

    def _follow(self, word: str, line: str) -> None:
        """Where plain lines go after ``line`` (the server does the same)."""
        args = line.split()[1:]
        if word in ("/join", "/switch") and args:
            room = args[0].lower()
            self.focus = room if room.startswith("#") else "#" + room
        elif word == "/part" and (not args or not args[0].startswith("#")
                                  or args[0].lower() == self.focus):
            self.focus = None

    def _notices(self, lines) -> None:
        # The client's own multi-line answers (/help, /verify): a line, an event.
        now = int(time.time() * 1000)
        for line in lines:
            self.show(LocalNotice(text=line, time=now))

    @staticmethod
    def _check_size(text: str) -> None:
        size = len(text.encode("utf-8"))
        if size > MAX_TEXT_BYTES:
            raise SchatError(f"{size} bytes is over the {MAX_TEXT_BYTES}-byte limit "
                             f"for one message")

    def _read_input(self) -> None:
        try:
            for line in self.stdin:
                self._inbox.put(line)
        except (OSError, ValueError):
            pass
        self._inbox.put(_EOF)

    def _finish(self) -> int:
        confirmed = self.session.wait_acked(self.ack_wait)
        if self._disconnect is not None and not self._disconnect.clean:
            return self._ended(self._disconnect)
        self.session.close("quit")
        if not confirmed:
            self.error(f"warning: {self.session.pending} message(s) not confirmed by the server")
            return 1
        if self.refused:
            self.error(f"{self.refused} line(s) or request(s) were refused; see the errors above")
            return 1
        return 0

    def _wait_disconnect(self) -> Disconnected:
        while self._disconnect is None:
            item = self._inbox.get(timeout=self.session.timeout)
            if isinstance(item, Disconnected):
                return item
        return self._disconnect

    def _ended(self, item: Disconnected) -> int:
        self.session.close()
        if item.clean:
            return 0 if item.reason in ("quit", "left") else self._lost(item.reason)
        return self._lost(item.reason)

    def _lost(self, reason: str) -> int:
        self.error(f"disconnected: {one_line(reason)}")
        return 1
