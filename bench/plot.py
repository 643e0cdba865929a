"""Render the benchmark results as a PNG for the README.

    python -m bench.plot [bench/results/results.jsonl] [-o bench/results/fanout.png]

Left: fan-out latency percentiles at the fixed rate against members. Right:
server CPU per delivery against members, at the fixed rate and flat out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.run import RESULTS


def load(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def medians(rows, mode: str, key: str):
    by_n = {}
    for r in rows:
        if r["scenario"] == "fanout" and r["mode"] == mode and r.get(key) is not None:
            by_n.setdefault(r["members"], []).append(r[key])
    xs = sorted(by_n)
    return xs, [statistics.median(by_n[x]) for x in xs]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Plot fan-out results.")
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS / "results.jsonl")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "fanout.png")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load(args.results)
    fig, (lat_ax, cpu_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for q, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^-.")):
        xs, ys = medians(rows, "rate", q)
        lat_ax.plot(xs, ys, style, label=q.replace("_ms", ""))
    rate = next((r["target_rate"] for r in rows if r.get("mode") == "rate"), 0)
    lat_ax.set(title=f"Latency send → every receiver at {rate:,.0f} deliveries/s",
               xlabel="members", ylabel="ms", xscale="log")
    lat_ax.grid(True, alpha=0.3)
    lat_ax.legend()
    for mode, style in (("rate", "o-"), ("flat-out", "s--")):
        xs, ys = medians(rows, mode, "server_cpu_us_per_delivery")
        cpu_ax.plot(xs, ys, style, label=mode)
    cpu_ax.set(title="Server CPU per delivery", xlabel="members", ylabel="µs", xscale="log")
    cpu_ax.grid(True, alpha=0.3)
    cpu_ax.legend()
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
