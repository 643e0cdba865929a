"""Run every benchmark scenario and write JSON lines plus a Markdown table.

    python -m bench.run                 # everything, 3 repeats, results in bench/results/
    python -m bench.run --quick         # a smaller, faster pass (smoke test)

The server runs as a real `schat serve` process pinned to CPU 0; this process
(the load generator) pins itself to CPU 1. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
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

from bench import scenarios
from bench.server_proc import ServerProcess, pinned

RESULTS = Path(__file__).parent / "results"
# Operator settings for the run: cheap password hashing for the thousands of
# bench accounts, and no message throttle per member or per address (10 senders flat
# out, all from 127.0.0.1, is the point).
SERVER_ENV = {"SCHAT_SCRYPT_N": "1024"}
SERVER_ARGS = ["--no-signup", "--rate-limit", "0", "--address-rate-limit", "0",
               "--max-unauthenticated", "20000",
               "--max-unauthenticated-per-ip", "20000"]


def make_home(root: Path, users: int) -> Dict:
    """A data home with a host key and ``users`` accounts sharing one RSA key."""
    from schat.crypto import keys
    from schat.store.accounts import AccountStore
    from schat.store.files import atomic_write

    os.environ.update(SERVER_ENV)
    host = keys.generate_rsa_key()
    user_key = keys.generate_rsa_key()
    atomic_write(root / "server" / "host_key.pem", keys.export_private_pem(host, None))
    store = AccountStore(root / "server" / "users.db")
    der = keys.public_der(user_key)
    existing = {a.name for a in store.list()}
    for i in range(users):
        name = scenarios.user_name(i)
        if name not in existing:
            store.add(name, scenarios.user_password(i), public_key_der=der)
    store.close()
    return {"host_pem": keys.export_private_pem(host, None),
            "user_pem": keys.export_private_pem(user_key, None), "user_key": user_key}


def server_args() -> List[str]:
    """SERVER_ARGS, keeping only the options this server build knows."""
    help_text = subprocess.run([sys.executable, "-m", "schat", "serve", "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    args, i = [], 0
    while i < len(SERVER_ARGS):
        opt = SERVER_ARGS[i]
        takes_value = i + 1 < len(SERVER_ARGS) and not SERVER_ARGS[i + 1].startswith("--")
        if opt in help_text:
            args.extend(SERVER_ARGS[i:i + 2] if takes_value else [opt])
        i += 2 if takes_value else 1
    return args


def ceiling(home: Dict, env: Dict[str, str]) -> Dict:
    """The primitives' costs and the handshake crypto ceiling, measured pinned to the
    server's CPU with the server's environment (so with its crypto backend)."""
    code = ("import json,sys; from bench.primitives import measure; "
            "d=json.load(sys.stdin); print(json.dumps(measure("
            "d['h'].encode(), d['u'].encode())))")
    out = subprocess.run(pinned([sys.executable, "-c", code], 0), capture_output=True, text=True,
                         input=json.dumps({"h": home["host_pem"].decode(),
                                           "u": home["user_pem"].decode()}),
                         timeout=300, cwd=Path(__file__).parent.parent,
                         env=dict(os.environ, **env))
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def server_env(args) -> Dict[str, str]:
    """The server's environment: SERVER_ENV, plus the crypto backend when one is asked for."""
    env = dict(SERVER_ENV)
    if args.backend:
        env["SCHAT_CRYPTO_BACKEND"] = args.backend
    return env


async def run_all(args, root: Path, home: Dict, emit) -> None:
    server = ServerProcess(root, cpu=0, extra_args=server_args(), env=server_env(args))
    port = server.start()
    try:
        for n in args.members:
            fan = scenarios.Fanout(port, n)
            await fan.setup()
            for rep in range(args.repeat):
                emit("fanout", rep, await fan.run(server.pid, rate=args.rate, duration=args.duration))
                emit("fanout", rep, await fan.run(server.pid, rate=0, duration=args.duration))
            fan.close()
        base = max(args.members)
        for rep in range(args.repeat):
            first = base + rep * args.handshakes
            result = await scenarios.connect_phase(port, server.pid, first, args.handshakes,
                                                   home["user_key"])
            emit("connect", rep, result)
    finally:
        server.stop()
    for rep in range(args.idle_repeat):
        server = ServerProcess(root, cpu=0, extra_args=server_args(), env=server_env(args))
        port = server.start()
        fresh = server.memory()["rss_kib"]
        try:
            emit("idle", rep, {"fresh_rss_kib": fresh,
                               **await scenarios.idle_phase(port, server, args.idle, home["user_key"])})
        finally:
            server.stop()


def summarize(rows: List[Dict], ceil: Dict) -> str:
    """Medians of repeated runs as a Markdown table per scenario."""
    def med(items, key):
        vals = [r[key] for r in items if r.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")

    lines = ["### fanout (medians)", "",
             "| members | mode | deliveries/s | p50 ms | p95 ms | p99 ms | lost | "
             "server CPU µs/delivery | server CPU | loadgen CPU |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fan = [r for r in rows if r["scenario"] == "fanout"]
    for key in sorted({(r["members"], r["mode"]) for r in fan}):
        items = [r for r in fan if (r["members"], r["mode"]) == key]
        lines.append(
            f"| {key[0]} | {key[1]} | {med(items, 'deliveries_per_s'):,.0f} | "
            f"{med(items, 'p50_ms'):.2f} | {med(items, 'p95_ms'):.2f} | {med(items, 'p99_ms'):.2f} | "
            f"{max(r['lost'] for r in items)} | {med(items, 'server_cpu_us_per_delivery'):.2f} | "
            f"{med(items, 'server_cpu_util'):.0%} | {med(items, 'loadgen_cpu_util'):.0%} |")
    con = [r for r in rows if r["scenario"] == "connect"]
    if con:
        hs = med(con, "handshakes_per_s")
        lines += ["", "### connect (medians)", "",
                  "| handshakes/s | server CPU ms/handshake | ceiling/s | ratio | loadgen CPU |",
                  "|---:|---:|---:|---:|---:|",
                  f"| {hs:.1f} | {med(con, 'server_cpu_ms_per_handshake'):.2f} | "
                  f"{ceil['ceiling_handshakes_per_s']:.1f} | "
                  f"{hs / ceil['ceiling_handshakes_per_s']:.0%} | {med(con, 'loadgen_cpu_util'):.0%} |",
                  "", f"Ceiling from costs measured in this run on CPU 0 with the server's "
                  f"backend ({ceil['default']}): RSA-3072 OAEP decrypt "
                  f"{ceil['oaep_decrypt_ms']:.2f} ms + X25519 {ceil['x25519_ms']:.2f} ms + "
                  f"PSS verify {ceil['pss_verify_ms']:.2f} ms."]
    if "openssl" in ceil:
        lines += ["", "### primitives and the record layer (this run, CPU 0)", "",
                  "| backend | OAEP decrypt ms | PSS verify ms | X25519 ms | OCB seal µs "
                  "(key object reused) | new key object + seal µs | SecureChannel.seal µs | "
                  "seal_encoded µs |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in ("openssl", "pycryptodome"):
            c = ceil[name]
            lines.append(f"| {name} | {c['oaep_decrypt_ms']:.2f} | {c['pss_verify_ms']:.3f} | "
                         f"{c['x25519_ms']:.3f} | {c['ocb_seal_us']:.2f} | "
                         f"{c['ocb_seal_new_key_us']:.2f} | {c['channel_seal_us']:.2f} | "
                         f"{c['seal_encoded_us']:.2f} |")
    idle = [r for r in rows if r["scenario"] == "idle"]
    if idle:
        lines += ["", "### idle (medians)", "",
                  "| connections | held | KiB per connection | fresh server RSS MiB |",
                  "|---:|---:|---:|---:|",
                  f"| {idle[0]['connections']} | {min(r['held'] for r in idle)} | "
                  f"{med(idle, 'kib_per_connection'):.1f} | {med(idle, 'fresh_rss_kib') / 1024:.1f} |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=lambda s: [int(x) for x in s.split(",")],
                        default=[50, 200, 1000], help="fan-out sizes (comma-separated)")
    parser.add_argument("--rate", type=float, default=10000.0,
                        help="deliveries/s of the fixed-rate phase")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per fan-out phase")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each measurement")
    parser.add_argument("--handshakes", type=int, default=150, help="clients per connect run")
    parser.add_argument("--idle", type=int, default=5000, help="idle connections to hold")
    parser.add_argument("--idle-repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--backend", choices=("openssl", "pycryptodome"),
                        help="the server's crypto backend (default: its own default, OpenSSL)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.duration, args.repeat = [50, 200], 3.0, 1
        args.handshakes, args.idle, args.idle_repeat = 40, 500, 1
    try:
        os.sched_setaffinity(0, {1})
    except (AttributeError, OSError):
        print("note: could not pin the load generator to CPU 1", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    users = max(max(args.members) + args.repeat * args.handshakes, args.idle)
    rows: List[Dict] = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    jsonl = args.out / "results.jsonl"
    with tempfile.TemporaryDirectory(prefix="schat-bench-") as tmp:
        root = Path(tmp)
        print(f"preparing {users} accounts ...", file=sys.stderr)
        home = make_home(root, users)
        ceil = ceiling(home, server_env(args))
        with open(jsonl, "w") as out:
            def emit(name, rep, result):
                row = {"scenario": name, "repeat": rep, "run": stamp, **result}
                rows.append(row)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(json.dumps(row), file=sys.stderr)
            emit("ceiling", 0, ceil)
            asyncio.run(run_all(args, root, home, emit))
    table = summarize(rows, ceil)
    header = (f"Run {stamp} on {platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}; server on CPU 0, load generator on CPU 1.\n\n")
    (args.out / "results.md").write_text(header + table)
    print(header + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
