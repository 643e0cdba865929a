"""A direct-message flood from its own process: many throwaway accounts on one address.

Usage: python flood_dms.py HOST PORT SOURCE TARGET COUNT RATE DURATION ROUNDS LOGIN_SOURCE LOGIN_USER

Logs in flood0..flood{COUNT-1} (password "<name>-pass-1") from the address
SOURCE, each an account whose registered key is an RSA-8192 public key (the
largest the server takes: the most expensive signature to check), asks for
TARGET's key and prints "ready". At each of ROUNDS lines on stdin, each sends
``dm_send`` at RATE per second (inside the per-member rate limit) for DURATION seconds:
forged envelopes that pass every check but the signature, sized to the
limits, reading nothing (a flood has no use for the answers, and the room's
chat waits in the socket buffers). Halfway through, an honest member
(LOGIN_USER, password "<name>-pass-1") logs in from LOGIN_SOURCE, to show that
logins are not locked out. After each round it prints one JSON line: {"sent":
n, "start", "end" (time.monotonic(), one clock across processes), "login":
{"ok": bool, "seconds": float, "error": str}}; after the last it keeps its
connections open until the end of stdin.
Its own process, so the flood's client-side work does not share the server's interpreter.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
import time
from typing import Dict

from schat.crypto.envelope import key_fp
from schat.names import name_key
from schat.protocol import dm_messages as dmm
from schat.protocol import events, messages
from schat.protocol.connection import ClientConnection

def _name(name: str) -> bytes:
    raw = name_key(name).encode("ascii")  # envelopes carry names in canonical form
    return bytes([len(raw)]) + raw


def forged_envelope(sender: str, sender_fp: bytes, recipient: str, recipient_fp: bytes) -> bytes:
    """An envelope laid out as docs/PROTOCOL.md says, with random bytes where only a
    private key could produce the right ones (wrapped keys, ciphertext, signature)."""
    header = (b"SCDM" + b"\x02" + _name(sender) + _name(recipient)
              + struct.pack(">Q", int(time.time() * 1000)) + os.urandom(16) + sender_fp
              + os.urandom(32))  # the key commitment
    wraps = b"".join(_name(n) + fp + struct.pack(">H", 1024) + os.urandom(1024)
                     for n, fp in ((recipient, recipient_fp), (sender, sender_fp)))
    ciphertext = os.urandom(16 + 4096)
    signature = b"\x01" + os.urandom(1023)  # below any 8192-bit modulus: a full check
    return (header + b"\x02" + wraps + os.urandom(12) + struct.pack(">I", len(ciphertext))
            + ciphertext + struct.pack(">H", len(signature)) + signature)


class Peer:
    """One logged-in connection on an asyncio stream, driven by the sans-I/O connection."""

    def __init__(self, name: str, reader, writer):
        self.name = name
        self.reader = reader
        self.writer = writer
        self.conn = ClientConnection()

    def send(self, *msgs) -> None:
        self.conn.send(*msgs)
        self.writer.write(self.conn.data_to_send())

    async def event(self):
        while True:
            ev = self.conn.next_event()
            if ev is not None:
                return ev
            data = await self.reader.read(65536)
            self.conn.receive_data(data)

    async def message(self):
        while True:
            ev = await self.event()
            if isinstance(ev, events.MessageReceived):
                return ev.message
            if isinstance(ev, events.ConnectionClosed):
                raise ConnectionError(f"{self.name}: closed: {ev.reason}")

    async def login(self) -> None:
        while True:
            ev = await self.event()
            if isinstance(ev, events.ServerKeyReceived):
                self.conn.accept_server_key()
                self.writer.write(self.conn.data_to_send())
            elif isinstance(ev, events.HandshakeComplete):
                self.send(messages.Login(user=self.name, password=f"{self.name}-pass-1"))
            elif isinstance(ev, events.MessageReceived):
                if isinstance(ev.message, messages.Welcome):
                    return
                if isinstance(ev.message, messages.Error):
                    raise ConnectionError(f"{self.name}: login refused: {ev.message.text}")
            elif isinstance(ev, events.ConnectionClosed):
                raise ConnectionError(f"{self.name}: closed during login")


def seal_dm(peer: Peer, to: str, envelope: bytes, cid: str) -> bytes:
    """The record carrying one ``dm_send``, sealed now to be written later."""
    peer.conn.send(dmm.DmSend(to=to, envelope=envelope, cid=cid))
    return peer.conn.data_to_send()


async def connect(host: str, port: int, source: str, name: str) -> Peer:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    peer = Peer(name, reader, writer)
    await peer.login()
    return peer


async def key_of(peer: Peer, user: str) -> bytes:
    """The raw SHA-256 of ``user``'s registered key, as the envelope carries it."""
    peer.send(dmm.GetKey(user=user, cid="k"))
    while True:
        msg = await peer.message()
        if isinstance(msg, dmm.Key) and msg.cid == "k":
            if msg.status != "ok":
                raise ConnectionError(f"no key for {user}: {msg.status}")
            return key_fp(msg.public_key)


async def honest_login(host: str, port: int, source: str, user: str) -> Dict:
    started = time.monotonic()
    try:
        peer = await asyncio.wait_for(connect(host, port, source, user), 30)
    except (OSError, ConnectionError, asyncio.TimeoutError) as err:
        return {"ok": False, "seconds": time.monotonic() - started,
                "error": f"{type(err).__name__}: {err}"}
    seconds = time.monotonic() - started
    peer.writer.close()
    return {"ok": True, "seconds": seconds, "error": ""}


async def main(host: str, port: int, source: str, target: str, count: int, rate: float,
               duration: float, rounds: int, login_source: str, login_user: str) -> None:
    peers = []
    own_fp: Dict[str, bytes] = {}
    for i in range(count):
        # Each asks for the keys right after its login, before chat piles up unread.
        peer = await connect(host, port, source, f"flood{i}")
        target_fp = await key_of(peer, target)
        own_fp[peer.name] = await key_of(peer, peer.name)
        peers.append(peer)
    # Every record is sealed before the flood starts (nothing else is sent on these
    # connections meanwhile, so the sequence numbers hold): sending costs this
    # process next to nothing, and it keeps to its schedule on a busy machine.
    per_round = int(rate * duration)
    records = {p.name: [seal_dm(p, target, forged_envelope(p.name, own_fp[p.name], target,
                                                           target_fp), f"d{i}")
                        for i in range(per_round * rounds)] for p in peers}
    # From here on the flood stands in for a machine elsewhere: its own work yields the
    # shared cores to the server and the members being measured. (Its logins above run
    # at the normal priority: they come before any window is measured, and at nice 19
    # a loaded machine can starve them for as long as it likes.)
    os.nice(19)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    for round_ in range(rounds):
        await loop.run_in_executor(None, sys.stdin.readline)
        start = time.monotonic()
        sent = 0

        async def flood(n: int, peer: Peer) -> None:
            nonlocal sent
            first = start + n / (rate * len(peers))
            mine = records[peer.name][round_ * per_round:(round_ + 1) * per_round]
            for i, record in enumerate(mine):
                delay = first + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                peer.writer.write(record)
                sent += 1

        async def later_login() -> Dict:
            await asyncio.sleep(duration / 2)
            return await honest_login(host, port, login_source, login_user)

        login = asyncio.ensure_future(later_login())
        await asyncio.gather(*(flood(n, p) for n, p in enumerate(peers)))
        end = time.monotonic()
        result = await login
        print(json.dumps({"sent": sent, "start": start, "end": end, "login": result}),
              flush=True)
    # Connected until told: the server may still be answering.
    await loop.run_in_executor(None, sys.stdin.readline)
    for peer in peers:
        peer.writer.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], int(args[1]), args[2], args[3], int(args[4]), float(args[5]),
                     float(args[6]), int(args[7]), args[8], args[9]))
