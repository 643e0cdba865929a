"""Members chatting from one single-threaded asyncio process, with a latency probe.

Usage: python chatters.py HOST PORT COUNT [PROBE_INTERVAL]
Logs in member0..member{COUNT-1} (password "<name>-pass-1"), then prints "ready".
member0 sends a probe line every PROBE_INTERVAL seconds (default 2 ms),
member1 receives the probes, the
others say a line every 200 ms. At end of stdin (or after MAX_RUN seconds)
sending stops, the probes and acks still in flight are awaited, and one JSON
object is printed: {"samples": [[sent, latency], ...], "lost": n,
"unacked": n, "errors": [...]}. ``sent`` is time.monotonic() (CLOCK_MONOTONIC,
the same clock in every process), so a caller can cut the samples into the
time windows it observed.

Its own process, so the members' decryption and parsing do not share the
measured server's interpreter lock.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Dict, List

from schat.protocol import events, messages
from schat.protocol.connection import ClientConnection

PROBE_INTERVAL = 0.002
TALK_INTERVAL = 0.2
# The caller normally ends the run; this keeps a forgotten process from living on.
MAX_RUN = 55.0
DRAIN = 5.0


class Member:
    """One logged-in member on an asyncio stream, driven by the sans-I/O connection."""

    def __init__(self, name: str, reader, writer):
        self.name = name
        self.reader = reader
        self.writer = writer
        self.conn = ClientConnection()
        self.said = 0
        self.acked = 0

    def _write(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def _event(self):
        while True:
            ev = self.conn.next_event()
            if ev is not None:
                return ev
            data = await self.reader.read(65536)
            self.conn.receive_data(data)

    async def login(self) -> None:
        """Handshake (the key is accepted unchecked: a test peer) and password login."""
        while True:
            ev = await self._event()
            if isinstance(ev, events.ServerKeyReceived):
                self.conn.accept_server_key()
                self._write()
            elif isinstance(ev, events.HandshakeComplete):
                self.conn.send(messages.Login(user=self.name, password=f"{self.name}-pass-1"))
                self._write()
            elif isinstance(ev, events.MessageReceived):
                if isinstance(ev.message, messages.Welcome):
                    return
                if isinstance(ev.message, messages.Error):
                    raise RuntimeError(f"{self.name}: login refused: {ev.message.text}")
            elif isinstance(ev, events.ConnectionClosed):
                raise RuntimeError(f"{self.name}: closed during login")

    def say(self, text: str) -> None:
        """Send one line (nothing once the connection has ended: pump() reports that)."""
        if self.conn.closed:
            return
        self.said += 1
        self.conn.send(messages.Say(text=text, cid=str(self.said)))
        self._write()

    async def pump(self, on_chat) -> None:
        """Read until the connection ends: count acks, answer pings, pass on chat lines."""
        while True:
            ev = await self._event()
            if isinstance(ev, events.ConnectionClosed):
                raise RuntimeError(f"{self.name}: disconnected: {ev.reason}")
            if not isinstance(ev, events.MessageReceived):
                continue
            msg = ev.message
            if isinstance(msg, messages.ChatMessage):
                on_chat(msg)
            elif isinstance(msg, messages.Ack):
                self.acked += 1
            elif isinstance(msg, messages.Ping):
                self.conn.send(messages.Pong(n=msg.n))
                self._write()
            elif isinstance(msg, (messages.Error, messages.Bye)):
                raise RuntimeError(f"{self.name}: {type(msg).__name__}: {msg}")


async def connect(host: str, port: int, name: str) -> Member:
    reader, writer = await asyncio.open_connection(host, port)
    member = Member(name, reader, writer)
    await member.login()
    return member


async def stdin_closed() -> None:
    """Return at end of stdin (the caller's signal to stop)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def paced(interval: float, offset: float, stop: asyncio.Event, action) -> None:
    """Call ``action(i)`` every ``interval`` seconds on a fixed schedule (no drift)."""
    start = time.monotonic() + offset
    i = 0
    while not stop.is_set():
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
        action(i)
        i += 1


async def main(host: str, port: int, count: int, probe_interval: float = PROBE_INTERVAL) -> Dict:
    members: List[Member] = [await connect(host, port, f"member{i}") for i in range(count)]
    probe, watcher, talkers = members[0], members[1], members[2:]
    sent: Dict[str, float] = {}
    samples: List[List[float]] = []
    errors: List[str] = []

    def on_probe(msg) -> None:
        if msg.sender == probe.name and msg.text in sent:
            now = time.monotonic()
            at = sent.pop(msg.text)
            samples.append([at, now - at])

    def send_probe(i: int) -> None:
        text = f"probe {i}"
        sent[text] = time.monotonic()
        probe.say(text)

    async def guarded(coro):
        try:
            await coro
        except (RuntimeError, ConnectionError, OSError) as err:
            errors.append(str(err))

    readers = [asyncio.ensure_future(guarded(m.pump(on_probe if m is watcher else
                                                    lambda msg: None)))
               for m in members]
    print("ready", flush=True)
    stop = asyncio.Event()
    senders = [asyncio.ensure_future(paced(probe_interval, 0.0, stop, send_probe))]
    for n, member in enumerate(talkers):
        senders.append(asyncio.ensure_future(paced(
            TALK_INTERVAL, TALK_INTERVAL * n / len(talkers), stop,
            lambda i, m=member: m.say(f"{m.name} line {i}"))))
    try:
        await asyncio.wait_for(stdin_closed(), MAX_RUN)
    except asyncio.TimeoutError:
        errors.append(f"not stopped within {MAX_RUN:g} s")
    stop.set()
    await asyncio.gather(*senders)
    deadline = time.monotonic() + DRAIN
    while (sent or any(m.acked < m.said for m in members)) and time.monotonic() < deadline \
            and not errors:
        await asyncio.sleep(0.01)
    for task in readers:
        task.cancel()
    for member in members:
        member.writer.close()
    return {"samples": samples, "lost": len(sent),
            "unacked": sum(m.said - m.acked for m in members), "errors": errors}


if __name__ == "__main__":
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else PROBE_INTERVAL
    result = asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), interval))
    print(json.dumps(result), flush=True)
