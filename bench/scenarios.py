"""The benchmark scenarios: fan-out, connect, idle.

Each scenario drives a real server process (pinned to CPU 0) from this process
(pinned to CPU 1) over 127.0.0.1, and reads the server's CPU time and memory
from /proc. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Dict, List

from bench.loadgen import BenchClient, bench_text, connect_client
from bench.procstat import cpu_seconds, percentile

CONNECT_CONCURRENCY = 16
LATENCY_SAMPLE = 50
# Flat out: messages in flight between send and the last delivery. Enough to keep
# the server saturated (its batches grow with load), well under the outbound cap.
FLAT_OUT_WINDOW = 2000
SETTLE_TIMEOUT = 30.0


def user_name(i: int) -> str:
    return f"bench{i:05d}"


def user_password(i: int) -> str:
    return f"bench-pass-{i:05d}-q7"


async def connect_many(port: int, names: List[int], *, key=None,
                       concurrency: int = 0, leave: bool = False) -> List[BenchClient]:
    """Connect and log in ``names`` (indices), ``concurrency`` handshakes at a time;
    with ``leave``, each client disconnects as soon as it is welcomed."""
    sem = asyncio.Semaphore(concurrency or CONNECT_CONCURRENCY)

    async def one(i: int) -> BenchClient:
        async with sem:
            if key is not None:
                client = await connect_client("127.0.0.1", port, user_name(i), key=key)
            else:
                client = await connect_client("127.0.0.1", port, user_name(i),
                                              password=user_password(i))
            if leave:
                client.close()
            return client

    return list(await asyncio.gather(*(one(i) for i in names)))


class Fanout:
    """N members connected once; fixed-rate and flat-out phases run on them."""

    def __init__(self, port: int, members: int, senders: int = 10):
        self.port = port
        self.members = members
        self.senders_count = senders
        self.clients: List[BenchClient] = []
        self.delivered = 0
        self._progress = asyncio.Event()
        self._cid = itertools.count()

    def _on_delivery(self, n: int) -> None:
        self.delivered += n
        self._progress.set()

    async def setup(self) -> None:
        self.clients = await connect_many(self.port, list(range(self.members)))
        for client in self.clients:
            client.on_delivery = self._on_delivery
            client.go_fast()
        # Everyone has seen every join once the last member's own broadcast arrives.
        await self._round(record=False)

    async def _round(self, record: bool) -> None:
        """One message from the first sender, awaited at every receiver (a barrier)."""
        target = self.delivered + self.members - 1
        for c in self.clients:
            c.record_latency = record
        self.clients[0].say(bench_text(time.monotonic_ns()), f"s{next(self._cid)}")
        await self._wait_delivered(target, SETTLE_TIMEOUT)

    async def _wait_delivered(self, target: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.delivered < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
        return True

    def _reset(self) -> None:
        # Latency is sampled at LATENCY_SAMPLE receivers spread over the room: the
        # distribution is the same, and the generator spends its time receiving.
        step = max(1, len(self.clients) // LATENCY_SAMPLE)
        for i, c in enumerate(self.clients):
            c.latencies_ns = []
            c.record_latency = i % step == 0

    async def run(self, server_pid: int, *, rate: float = 0.0, duration: float = 5.0,
                  window: int = 0) -> Dict:
        """One measured phase. ``rate``: total deliveries/s (0 = flat out, paced by
        ``window`` messages in flight between send and the last delivery)."""
        receivers = self.members - 1
        senders = self.clients[:self.senders_count]
        self._reset()
        start_delivered = self.delivered
        sent = 0
        cpu0 = cpu_seconds(server_pid)
        gen0 = time.process_time()
        t0 = time.monotonic()
        end = t0 + duration
        if rate > 0:
            interval = receivers / rate  # seconds between messages, all senders together
            next_at = t0
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                if now < next_at:
                    await asyncio.sleep(next_at - now)  # pacing to a schedule, not a wait for an event
                    continue
                senders[sent % len(senders)].say(bench_text(time.monotonic_ns()),
                                                 f"s{next(self._cid)}")
                sent += 1
                next_at += interval
        else:
            window = window or FLAT_OUT_WINDOW
            while time.monotonic() < end:
                in_flight = sent - (self.delivered - start_delivered) // receivers
                if in_flight >= window:
                    self._progress.clear()
                    try:
                        await asyncio.wait_for(self._progress.wait(), 1.0)
                    except asyncio.TimeoutError:
                        pass
                    continue
                burst = min(window - in_flight, len(senders))
                stamp = time.monotonic_ns()
                for k in range(burst):
                    senders[(sent + k) % len(senders)].say(bench_text(stamp), f"s{next(self._cid)}")
                sent += burst
                await asyncio.sleep(0)
        send_end = time.monotonic()
        expected = sent * receivers
        complete = await self._wait_delivered(start_delivered + expected, SETTLE_TIMEOUT)
        t1 = time.monotonic()
        cpu1 = cpu_seconds(server_pid)
        gen1 = time.process_time()
        delivered = self.delivered - start_delivered
        lat = sorted(x for c in self.clients for x in c.latencies_ns)
        elapsed = t1 - t0
        return {
            "members": self.members,
            "mode": "rate" if rate > 0 else "flat-out",
            "target_rate": rate,
            "messages_sent": sent,
            "deliveries": delivered,
            "lost": expected - delivered,
            "complete": complete,
            "deliveries_per_s": delivered / elapsed if elapsed else 0.0,
            "send_seconds": send_end - t0,
            "p50_ms": percentile(lat, 50) / 1e6,
            "p95_ms": percentile(lat, 95) / 1e6,
            "p99_ms": percentile(lat, 99) / 1e6,
            "server_cpu_us_per_delivery": (cpu1 - cpu0) * 1e6 / delivered if delivered else None,
            "server_cpu_util": (cpu1 - cpu0) / elapsed if elapsed else None,
            "loadgen_cpu_util": (gen1 - gen0) / elapsed if elapsed else None,
        }

    def close(self) -> None:
        for c in self.clients:
            c.close()


async def connect_phase(port: int, server_pid: int, first: int, count: int, key) -> Dict:
    """``count`` clients complete the handshake and a key login; measure the server."""
    cpu0 = cpu_seconds(server_pid)
    gen0 = time.process_time()
    t0 = time.monotonic()
    # Each client leaves once welcomed: the phase measures handshakes and logins,
    # not the join notices of an ever larger room (the fan-out scenario does that).
    await connect_many(port, list(range(first, first + count)), key=key, leave=True)
    t1 = time.monotonic()
    cpu1 = cpu_seconds(server_pid)
    gen1 = time.process_time()
    elapsed = t1 - t0
    return {
        "handshakes": count,
        "handshakes_per_s": count / elapsed,
        "server_cpu_ms_per_handshake": (cpu1 - cpu0) * 1e3 / count,
        "server_cpu_util": (cpu1 - cpu0) / elapsed,
        "loadgen_cpu_util": (gen1 - gen0) / elapsed,
    }


async def idle_phase(port: int, server, total: int, key) -> Dict:
    """Hold ``total`` authenticated idle connections; server KiB per connection."""
    warm = max(1, total // 10)
    base_clients = await connect_many(port, list(range(warm)), key=key)
    base = server.memory()["rss_kib"]
    rest = await connect_many(port, list(range(warm, total)), key=key)
    held = server.memory()["rss_kib"]
    alive = sum(1 for c in base_clients + rest if not c.closed.done())
    for c in base_clients + rest:
        c.close()
    return {
        "connections": total,
        "held": alive,
        "rss_base_kib": base,
        "rss_kib": held,
        "kib_per_connection": (held - base) / (total - warm),
    }
