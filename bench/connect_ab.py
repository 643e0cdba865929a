"""Connect + key login: server CPU per connect against its primitives, checkout A against B.

    python -m bench.connect_ab [--rounds 3] [-n 400] [DIR[::SERVE-OPTIONS] ...]

Each checkout named (default: this one) runs a fresh `schat serve` pinned to
CPU 0 from its own directory; this process (CPU 1) connects ``-n`` clients that
complete the handshake and a key login and leave once welcomed
(``bench.scenarios.connect_phase``), after a warm-up of 50. The checkouts take
turns within each round, so a noisy neighbour hits both alike, and every round
ends with ``bench.primitives`` pinned to CPU 0 (RSA-3072 OAEP decryption + X25519
+ PSS verification with the server's library). Printed per checkout: server CPU
per connect and its ratio to the primitives of the same round (issue #14,
target 3: ≤ 1.25), per round and the median.

A checkout named ``DIR::OPTIONS`` runs with extra ``schat serve`` options (split
on spaces), so that settings can be compared interleaved as checkouts are:
``python -m bench.connect_ab . '.::--crypto-nice 0'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench import run as bench_run
from bench import scenarios
from bench.procstat import CLK_TCK
from bench.server_proc import ServerProcess

HERE = Path(__file__).resolve().parent.parent
WARM = 50


def kernel_seconds(pid: int) -> float:
    """stime of ``pid``: the part of its CPU time spent in the kernel (sockets, epoll,
    futexes)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read().decode()
    return int(raw[raw.rindex(")") + 2:].split()[12]) / CLK_TCK


def split_spec(spec: str):
    """``DIR::OPTIONS`` -> (DIR resolved, [options]); a bare DIR has none."""
    where, _, options = spec.partition("::")
    return Path(where).resolve(), options.split()


def one(spec: str, home: Path, user_key, first: int, count: int) -> dict:
    checkout, options = split_spec(spec)
    env = dict(bench_run.SERVER_ENV, PYTHONPATH=str(checkout))
    server = ServerProcess(home, cpu=0, extra_args=bench_run.SERVER_ARGS + options, env=env,
                           cwd=checkout)
    port = server.start()
    try:
        asyncio.run(scenarios.connect_phase(port, server.pid, 0, WARM, user_key))
        k0 = kernel_seconds(server.pid)
        result = asyncio.run(scenarios.connect_phase(port, server.pid, first, count, user_key))
        result["kernel_ms_per_connect"] = (kernel_seconds(server.pid) - k0) * 1e3 / count
        return result
    finally:
        server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", default=[str(HERE)],
                        help="checkout directories, each optionally DIR::SERVE-OPTIONS")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=400, help="measured connects per server")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="schat-connect-ab-"))
    home = bench_run.make_home(root, WARM + args.n)
    results = {str(c): [] for c in args.checkouts}
    for rnd in range(args.rounds):
        for checkout in args.checkouts:
            r = one(checkout, root, home["user_key"], WARM, args.n)
            results[str(checkout)].append(r)
        prim = bench_run.ceiling(home, bench_run.SERVER_ENV)
        crypto_ms = prim[prim["default"]]["handshake_crypto_ms"]
        for checkout in args.checkouts:
            r = results[str(checkout)][-1]
            r["primitives_ms"] = crypto_ms
            r["ratio"] = r["server_cpu_ms_per_handshake"] / crypto_ms
            print(json.dumps({"round": rnd + 1, "checkout": str(checkout),
                              "server_cpu_ms_per_connect": round(r["server_cpu_ms_per_handshake"], 3),
                              "kernel_ms_per_connect": round(r["kernel_ms_per_connect"], 3),
                              "primitives_ms": round(crypto_ms, 3), "ratio": round(r["ratio"], 2),
                              "connects_per_s": round(r["handshakes_per_s"], 1)}), flush=True)
    for checkout, rows in results.items():
        print(f"{checkout}: connect ÷ primitives per round "
              f"{'; '.join(format(r['ratio'], '.2f') for r in rows)}; median "
              f"{statistics.median(r['ratio'] for r in rows):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
