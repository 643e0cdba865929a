"""The cluster benchmark: the same fan-out on one node and on two nodes of a cluster.

    python -m bench.cluster                  # 2 rounds, ~3 minutes
    python -m bench.cluster --rounds 1 --members 300 --duration 4
    python -m bench.cluster --rounds 1 --profile DIR   # py-spy on each node, flat out
    python -m bench.cluster --code ../before --code .  # A/B: nodes of two checkouts
    python -m bench.cluster --burst 10                 # flat out as a trickle

Everything runs on this machine: a throwaway PostgreSQL and Redis (the test
suite's runners, tests/services.py), and `schat serve --bus ... --store ...`
processes, each node pinned to a core of its own with taskset (one node: CPU 0;
two nodes: CPU 0 and CPU 1). The load generator (this process), PostgreSQL and
Redis are not pinned: on a two-core machine they take their share from the
nodes, which is what limits the two-node figure (the report says how much).

Rounds interleave the configurations (one node, two nodes, one, two...) and
every ratio is taken within a round. Per round and configuration:

- **flat out**: ``--members`` members in #lobby, spread over the nodes (all on
  the one node), 10 senders spread the same way keeping 8,000 messages in
  flight (each member's outbound cap raised to 4 MiB to hold them); deliveries/s, each node's CPU, the generator's, PostgreSQL's and
  Redis's, and the CPU other processes of the machine took meanwhile.
- **10,000 deliveries/s** (two nodes): senders all on node A, so a receiver on
  A gets a same-node delivery and one on B a cross-node one (through Redis);
  p50/p99 of each, from CLOCK_MONOTONIC stamps in the text.
- **memory**: idle members logged in on one node: KiB of that node's RSS per
  connection, and KiB of the other node's RSS per member it only knows of
  (presence).

The generator must not be the bottleneck: most receivers count deliveries
without decrypting (a record of k chat lines of one fixed length has a known
size), only senders and latency samplers open their records.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from bench.loadgen import BenchClient, bench_text, connect_client
from bench.procstat import cpu_seconds, memory_kib, percentile
from bench.server_proc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
NODE_ARGS = ["--no-signup", "--rate-limit", "0", "--address-rate-limit", "0",
             "--max-unauthenticated", "20000", "--max-unauthenticated-per-ip", "20000",
             "--presence-lease", "10",
             # Room for the flat-out window in every member's outbox (8,000 lines of
             # 208 bytes): the cross-node path is longer, and a window that only just
             # covers one node's latency would measure latency, not capacity.
             "--outbound-cap", str(4 << 20)]
SENDERS = 10
SAMPLERS_PER_NODE = 20
WINDOW = 8000
SETTLE = 30.0
PASSWORD = "bench-cluster-pw-1"
# Accounts from this one on are the idle members of the memory phase.
FIRST_IDLE = 0


def user(i: int) -> str:
    return f"bench{i:05d}"


# -- the load generator -----------------------------------------------------------------

class Receiver(BenchClient):
    """A member that counts deliveries from record sizes, without opening them."""

    line = 0  # bytes of one encoded chat line (all are the same length here)

    def count_only(self) -> None:
        self._decoder = self.conn._decoder
        self._fast = True
        self._fast_receive = self._count
        self._count(b"")

    def _count(self, data: bytes) -> None:
        decoder = self._decoder
        if data:
            decoder.feed(data)
        size = Receiver.line + 1
        while (got := decoder.next_frame()) is not None:
            payload = len(got[1]) - 16          # OCB: ciphertext + 16-byte tag
            n = (payload + 1) // size
            self.deliveries += n
            if self.on_delivery is not None:
                self.on_delivery(n)


class _Probe:
    """A channel that notes the length of a record holding one chat line, and counts
    the lines refused (``busy``: the store's queue is full) of a sender."""

    def __init__(self, channel):
        self.channel = channel
        self.refused = 0

    def open(self, header, body):
        payload = self.channel.open(header, body)
        if payload.startswith(b'{"type":"message"') and b"\n" not in payload:
            Receiver.line = len(payload)
        self.refused += payload.count(b'"type":"error"')
        return payload

    def seal(self, payload):
        return self.channel.seal(payload)


class Members:
    """Members on one or two nodes; senders and samplers spread the same way."""

    def __init__(self, ports: List[int], count: int):
        self.ports = ports
        self.count = count
        self.clients: List[BenchClient] = []
        self.node_of: Dict[int, int] = {}
        self.delivered = 0
        self._progress = asyncio.Event()
        self._cid = itertools.count()

    def _on_delivery(self, n: int) -> None:
        self.delivered += n
        self._progress.set()

    async def connect(self) -> None:
        sem = asyncio.Semaphore(16)

        async def one(i: int):
            node = i % len(self.ports)
            async with sem:
                client = await connect_client("127.0.0.1", self.ports[node], user(i),
                                              password=PASSWORD)
            client.__class__ = Receiver
            self.node_of[id(client)] = node
            return client

        self.clients = list(await asyncio.gather(*(one(i) for i in range(self.count))))
        for c in self.clients:
            c.on_delivery = self._on_delivery
            c.go_fast()
        # Everyone has seen everyone join once a line from the last one reaches all.
        await self.round(self.clients[-1])
        # The length of a chat line as the nodes encode it, from an opened record.
        sample = [c for c in self.clients if c is not self.clients[-1]][0]
        sample._channel = _Probe(sample._channel)
        await self.round(self.clients[-1])
        sample._channel = sample._channel.channel
        if not Receiver.line:
            raise RuntimeError("no chat line seen alone in a record")
        self.senders = self.clients[:SENDERS]
        for c in self.senders:
            c._channel = _Probe(c._channel)
        per_node: Dict[int, int] = {}
        self.samplers = []
        for c in self.clients[SENDERS:]:
            node = self.node_of[id(c)]
            if per_node.get(node, 0) < SAMPLERS_PER_NODE:
                per_node[node] = per_node.get(node, 0) + 1
                self.samplers.append(c)
            else:
                c.count_only()

    async def round(self, sender) -> None:
        target = self.delivered + self.count - 1
        sender.say(bench_text(time.monotonic_ns()), f"r{next(self._cid)}")
        if not await self.wait(target, SETTLE):
            raise RuntimeError("a barrier round did not reach every member")

    async def wait(self, target: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.delivered < target:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass
        return True

    def refused(self) -> int:
        return sum(c._channel.refused for c in self.senders)

    async def flat_out(self, duration: float, burst_cap: int = 0) -> Dict:
        """Keep WINDOW lines in flight for ``duration`` seconds: at each turn of the
        generator's loop, as many new lines as were delivered (or refused) since, spread
        over the senders round robin, each sender's lines written at once (a record per
        line). ``burst_cap`` > 0 sends at most that many per turn: the window then fills
        only if the generator turns fast enough (a trickle of lines, few per node loop turn)."""
        receivers = self.count - 1
        senders = self.senders
        start, sent, refused = self.delivered, 0, self.refused()
        for c in self.samplers + senders:
            c.record_latency = False  # only the lines' count matters here
        t0 = time.monotonic()
        end = t0 + duration
        while time.monotonic() < end:
            in_flight = sent - (self.refused() - refused) - (self.delivered - start) // receivers
            if in_flight >= WINDOW:
                self._progress.clear()
                try:
                    await asyncio.wait_for(self._progress.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            burst = WINDOW - in_flight
            if burst_cap:
                burst = min(burst, burst_cap)
            text = bench_text(time.monotonic_ns())
            cid = self._cid
            for k, sender in enumerate(senders):
                count = (burst - k + len(senders) - 1) // len(senders)
                if count:
                    sender.say_many(text, [f"f{next(cid)}" for _ in range(count)])
            sent += burst
            await asyncio.sleep(0)
        send_end = time.monotonic()
        while True:  # every line is delivered, or refused (its error comes back)
            accepted = sent - (self.refused() - refused)
            if await self.wait(start + accepted * receivers, 0.5) or \
                    time.monotonic() - send_end > SETTLE:
                break
        complete = self.delivered - start >= accepted * receivers
        elapsed = time.monotonic() - t0
        delivered = self.delivered - start
        return {"sent": sent, "refused_busy": sent - accepted, "deliveries": delivered,
                "lost": accepted * receivers - delivered, "complete": complete,
                "seconds": elapsed, "deliveries_per_s": delivered / elapsed}

    async def fixed_rate(self, rate: float, duration: float) -> Dict:
        """Senders on node 0 only: latency at samplers of node 0 (same node) and 1 (cross)."""
        receivers = self.count - 1
        senders = [c for c in self.senders if self.node_of[id(c)] == 0]
        for c in self.samplers:
            c.latencies_ns = []
            c.record_latency = True
        start, sent = self.delivered, 0
        interval = receivers / rate
        t0 = time.monotonic()
        next_at = t0
        while time.monotonic() < t0 + duration:
            now = time.monotonic()
            if now < next_at:
                await asyncio.sleep(next_at - now)  # pacing to a schedule
                continue
            senders[sent % len(senders)].say(bench_text(time.monotonic_ns()),
                                             f"x{next(self._cid)}")
            sent += 1
            next_at += interval
        complete = await self.wait(start + sent * receivers, SETTLE)
        elapsed = time.monotonic() - t0
        out = {"sent": sent, "lost": sent * receivers - (self.delivered - start),
               "complete": complete, "deliveries_per_s": (self.delivered - start) / elapsed}
        for node, label in ((0, "same_node"), (1, "cross_node")):
            lat = sorted(x for c in self.samplers if self.node_of[id(c)] == node
                         for x in c.latencies_ns)
            out[f"{label}_samples"] = len(lat)
            out[f"{label}_p50_ms"] = percentile(lat, 50) / 1e6
            out[f"{label}_p99_ms"] = percentile(lat, 99) / 1e6
        return out

    def close(self) -> None:
        for c in self.clients:
            c.close()


# -- processes --------------------------------------------------------------------------

def children_of(pid: int) -> List[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    raw = fh.read().decode()
                if int(raw[raw.rindex(")") + 2:].split()[1]) == pid:
                    out.append(int(entry))
            except (OSError, ValueError):
                continue
    return out


def machine_busy() -> float:
    """CPU seconds every core of the machine spent busy so far."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU seconds of the nodes, PostgreSQL, Redis, this process, and the rest."""

    def __init__(self, nodes: List[ServerProcess], engines):
        self.nodes = nodes
        self.engines = engines

    def sample(self) -> Dict[str, float]:
        pg_pids = [self.engines.pg.proc.pid] + children_of(self.engines.pg.proc.pid)
        out = {f"node{i}": cpu_seconds(n.pid) for i, n in enumerate(self.nodes)}
        out["postgres"] = sum(_cpu(p) for p in pg_pids)
        out["redis"] = _cpu(self.engines.redis.proc.pid)
        out["loadgen"] = time.process_time()
        out["machine"] = machine_busy()
        return out

    @staticmethod
    def delta(a: Dict[str, float], b: Dict[str, float], seconds: float) -> Dict[str, float]:
        use = {k: (b[k] - a[k]) / seconds for k in a}
        use["others"] = max(0.0, use.pop("machine") - sum(use.values()))
        return {f"cpu_{k}": round(v, 3) for k, v in use.items()}


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


class Engines:
    def __init__(self):
        sys.path.insert(0, str(ROOT / "tests"))
        from services import PostgresService, RedisService

        self.pg = PostgresService()
        self.pg.start()
        self.redis = RedisService()
        self.redis.start()

    def close(self) -> None:
        self.pg.close()
        self.redis.close()


def prepare(engines: Engines, root: Path, users: int):
    from schat.crypto import keys
    from schat.store.accounts import AccountStore
    from schat.store.files import atomic_write
    from schat.store.postgres import PostgresEngine

    os.environ["SCHAT_SCRYPT_N"] = "1024"
    url = engines.pg.url(engines.pg.create_database())
    key = root / "cluster-host-key.pem"
    atomic_write(key, keys.export_private_pem(keys.generate_rsa_key(), None))
    store = AccountStore(PostgresEngine(url), owns_engine=True)
    for i in range(users):
        store.add(user(i), PASSWORD)
    store.close()
    return url, key


def start_nodes(root: Path, count: int, url: str, key: Path, bus: str,
                code: Path = ROOT) -> List[ServerProcess]:
    """``count`` nodes running the schat package of the checkout ``code``."""
    nodes = []
    for i in range(count):
        home = root / f"node{i}-{time.monotonic_ns()}"
        home.mkdir()
        node = ServerProcess(home, cpu=i, extra_args=["--host-key", str(key), *NODE_ARGS],
                             env={"SCHAT_STORE": url, "SCHAT_BUS": bus,
                                  "SCHAT_SCRYPT_N": "1024", "PYTHONPATH": str(code)},
                             cwd=code)
        node.start(timeout=60)
        nodes.append(node)
    return nodes


# -- one configuration ------------------------------------------------------------------

async def measure(root, nodes_count, args, url, key, engines, emit, round_,
                  code: Path = ROOT) -> Dict:
    nodes = start_nodes(root, nodes_count, url, key, engines.redis.url(), code)
    meter = Meter(nodes, engines)
    label = code_label(code)
    result: Dict = {}
    try:
        members = Members([n.port for n in nodes], args.members)
        await members.connect()
        if nodes_count == 2:
            a, t0 = meter.sample(), time.monotonic()
            fixed = await members.fixed_rate(args.rate, args.duration)
            used = meter.delta(a, meter.sample(), time.monotonic() - t0)
            row = {"nodes": 2, "code": label, "members": args.members, "mode": "rate",
                   "rate": args.rate, **fixed, **used}
            emit(round_, row)
            result["rate"] = row
        # Flat out, only the senders open their records (the generator must not be what
        # limits the figure); the latency samplers count like everyone else from now on.
        for c in members.samplers:
            c.count_only()
        for rep in range(args.repeat):
            spies = profile(args, nodes, f"round{round_}-{nodes_count}nodes-{rep + 1}")
            a, t0 = meter.sample(), time.monotonic()
            flat = await members.flat_out(args.duration, args.burst)
            used = meter.delta(a, meter.sample(), time.monotonic() - t0)
            for spy in spies:
                spy.wait(timeout=60)
            row = {"nodes": nodes_count, "code": label, "members": args.members,
                   "mode": "flat-out", "burst": args.burst, **flat, **used}
            cpu = sum(used.get(f"cpu_node{i}", 0.0) for i in range(nodes_count))
            row["per_node_cpu_s"] = flat["deliveries_per_s"] / cpu if cpu else None
            emit(round_, row)
            result.setdefault("flat", []).append(row)
        members.close()
    finally:
        for n in nodes:
            n.stop()
    return result


PY_SPY = Path(sys.executable).parent / "py-spy"


def code_label(code: Path) -> str:
    """A checkout's name in the results: its commit (and ``+`` when it has changes)."""
    try:
        head = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "schat"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return code.name
    return (head or code.name) + ("+" if dirty else "")


def profile(args, nodes: List[ServerProcess], label: str) -> List[subprocess.Popen]:
    """With --profile: py-spy attached to each node for the flat-out phase (its sending
    part), writing DIR/LABEL-nodeI.speedscope.json for bench/profile_summary.py."""
    if args.profile is None:
        return []
    args.profile.mkdir(parents=True, exist_ok=True)
    spies = []
    for i, node in enumerate(nodes):
        out = args.profile / f"{label}-node{i}.speedscope.json"
        spies.append(subprocess.Popen(
            [str(PY_SPY), "record", "-p", str(node.pid), "-d", str(int(args.duration)),
             "-r", "200", "-f", "speedscope", "-o", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


async def memory(root, args, url, key, engines, emit, round_) -> Dict:
    """Fresh nodes; idle members on node 0: its RSS per connection, and node 1's per
    member it only knows of (presence)."""
    nodes = start_nodes(root, 2, url, key, engines.redis.url())
    try:
        return await _memory(nodes, args.idle, emit, round_)
    finally:
        for n in nodes:
            n.stop()


async def _memory(nodes, idle: int, emit, round_) -> Dict:
    first = FIRST_IDLE
    warm = await asyncio.gather(*(connect_client("127.0.0.1", nodes[0].port, user(first + i),
                                                 password=PASSWORD) for i in range(50)))
    await asyncio.sleep(1)
    base = [memory_kib(n.pid)["rss_kib"] for n in nodes]
    sem = asyncio.Semaphore(16)

    async def one(i):
        async with sem:
            return await connect_client("127.0.0.1", nodes[0].port, user(first + 50 + i),
                                        password=PASSWORD)
    held = await asyncio.gather(*(one(i) for i in range(idle)))
    await asyncio.sleep(2)  # presence reaches node 1
    after = [memory_kib(n.pid)["rss_kib"] for n in nodes]
    row = {"nodes": 2, "mode": "memory", "idle": idle,
           "kib_per_connection": (after[0] - base[0]) / idle,
           "kib_per_remote_member": (after[1] - base[1]) / idle,
           "rss_mib": [round(x / 1024, 1) for x in after]}
    emit(round_, row)
    for c in list(warm) + list(held):
        c.close()
    return row


def report(rows: List[Dict]) -> str:
    flat = [r for r in rows if r.get("mode") == "flat-out"]
    keys = sorted({(r["round"], r.get("code", "")) for r in flat})
    lines = ["| round | code | nodes | deliveries/s (median) | ratio 2/1 | per node-CPU-s | "
             "lines sent | CPU node0 | CPU node1 | CPU loadgen | CPU postgres | CPU redis | "
             "CPU others | lost |",
             "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for rnd, code in keys:
        med = {}
        for n in (1, 2):
            items = [r for r in flat
                     if r["round"] == rnd and r.get("code", "") == code and r["nodes"] == n]
            if not items:
                continue
            med[n] = statistics.median(r["deliveries_per_s"] for r in items)

            def avg(key):
                vals = [r.get(key) for r in items if r.get(key) is not None]
                return f"{statistics.median(vals):.2f}" if vals else "-"
            ratio = f"**{med[2] / med[1]:.2f}**" if n == 2 and 1 in med else ""
            per_cpu = ", ".join(f"{r['per_node_cpu_s'] / 1e6:.2f} M" for r in items
                                if r.get("per_node_cpu_s"))
            sent = ", ".join(f"{r['sent']:,}" for r in items)
            lines.append(f"| {rnd} | {code} | {n} | {med[n]:,.0f} | {ratio} | {per_cpu} | "
                         f"{sent} | {avg('cpu_node0')} | {avg('cpu_node1')} | "
                         f"{avg('cpu_loadgen')} | {avg('cpu_postgres')} | {avg('cpu_redis')} | "
                         f"{avg('cpu_others')} | {max(r['lost'] for r in items)} |")
    rate = [r for r in rows if r.get("mode") == "rate"]
    if rate:
        lines += ["", "| round | deliveries/s | same-node p50 / p99 ms | cross-node p50 / p99 ms "
                      "| p99 ratio | lost |", "|---:|---:|---|---|---:|---:|"]
        for r in rate:
            lines.append(f"| {r['round']} | {r['deliveries_per_s']:,.0f} | "
                         f"{r['same_node_p50_ms']:.2f} / {r['same_node_p99_ms']:.2f} | "
                         f"{r['cross_node_p50_ms']:.2f} / {r['cross_node_p99_ms']:.2f} | "
                         f"**{r['cross_node_p99_ms'] / r['same_node_p99_ms']:.2f}** | "
                         f"{r['lost']} |")
    mem = [r for r in rows if r.get("mode") == "memory"]
    if mem:
        lines += ["", "| round | idle members | KiB per connection (its node) | KiB per member "
                      "on the other node | node RSS MiB |", "|---:|---:|---:|---:|---|"]
        for r in mem:
            lines.append(f"| {r['round']} | {r['idle']} | {r['kib_per_connection']:.1f} | "
                         f"{r['kib_per_remote_member']:.1f} | {r['rss_mib']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=400)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=2, help="flat-out runs per configuration")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=10000.0)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=0, metavar="N",
                        help="flat out, send at most N lines per turn of the generator's loop "
                             "(default: refill the window at once)")
    parser.add_argument("--code", type=Path, action="append", default=None, metavar="DIR",
                        help="run the nodes from the schat checkout DIR (default: this one); "
                             "given twice or more, every round runs each in turn (A/B)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the nodes' homes (their logs) in DIR")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record each node with py-spy during every flat-out phase "
                             "(its CPU then shares the machine: figures of such a run are "
                             "for the profile, not the table)")
    args = parser.parse_args(argv)
    args.code = args.code or [ROOT]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: List[Dict] = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    jsonl = args.out / "cluster.jsonl"
    engines = Engines()
    try:
        with tempfile.TemporaryDirectory(prefix="schat-cluster-bench-") as tmp, \
                open(jsonl, "a") as out:
            root = Path(tmp)
            if args.keep is not None:
                root = args.keep
                root.mkdir(parents=True, exist_ok=True)
            print("preparing accounts ...", file=sys.stderr)
            global FIRST_IDLE
            FIRST_IDLE = args.members
            url, key = prepare(engines, root, args.members + 50 + args.idle)

            def emit(round_, row):
                row = {"run": stamp, "round": round_, **row}
                rows.append(row)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(json.dumps(row), file=sys.stderr)

            for rnd in range(1, args.rounds + 1):
                for code in args.code:
                    for nodes_count in (1, 2):
                        asyncio.run(measure(root, nodes_count, args, url, key, engines, emit,
                                            rnd, code.resolve()))
                if args.idle:
                    asyncio.run(memory(root, args, url, key, engines, emit, rnd))
    finally:
        engines.close()
    text = (f"Run {stamp} on {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; {args.members} members, {args.duration:g} s phases.\n\n"
            + report(rows))
    (args.out / "cluster.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
