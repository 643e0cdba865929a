"""The side-by-side table from bench/peer.sh's results: ratios against ngIRCd+TLS per round.

    python bench/peer_table.py bench/results/peer.jsonl [LABEL-PREFIX]

Lines are matched by their label, ``<prefix>-<variant> <server>[-extra] r<round>``
(variant: ``ngircd``, ``openssl``, ``pycryptodome``), and by scenario; every
ratio divides a schat figure by ngIRCd+TLS's from the same round.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

SCENARIOS = [
    # (title, predicate on a result line)
    ("fanout 10k deliveries/s, N = 200",
     lambda r: r["scenario"] == "fanout" and r.get("mode") == "fixed-rate" and r.get("clients") == 200),
    ("fanout flat out, N = 200",
     lambda r: r["scenario"] == "fanout" and r.get("mode") != "fixed-rate" and r.get("clients") == 200),
    ("connect 1,000 (schat: + key login, then close)",
     lambda r: r["scenario"] == "connect" and r.get("clients") == 1000
     and (r.get("driver") != "schat" or r.get("login") == "key")),
]


def _lat(key):
    return lambda r: (r.get("latency_ms") or {}).get(key)


METRICS = {
    "fanout": [("server CPU µs/delivery", lambda r: r.get("server_cpu_us_per_delivery"), 2, True),
               ("deliveries/s", lambda r: r.get("deliveries_per_s"), 0, True),
               ("latency p50 ms", _lat("p50"), 2, True),
               ("latency p99 ms", _lat("p99"), 2, True),
               ("lost", lambda r: r.get("lost"), 0, False),
               ("server CPU %", lambda r: _pct(r.get("server_cpu_util")), 0, False),
               ("loadgen CPU %", lambda r: _pct(r.get("loadgen_cpu_util")), 0, False),
               ("others' CPU ms (cpu0+cpu1)", lambda r: _others(r), 0, False),
               ("server RSS at end MiB", lambda r: _mib(r.get("server_rss_end_kib")), 1, True)],
    "connect": [("server CPU ms/connect", lambda r: _ms(r.get("server_cpu_us_per_connect")), 2, True),
                ("connects/s", lambda r: r.get("connects_per_s"), 0, True),
                ("connect p99 ms", lambda r: (r.get("connect_latency_ms") or {}).get("p99"), 1, True),
                ("failed", lambda r: r.get("failed"), 0, False),
                ("server CPU %", lambda r: _pct(r.get("server_cpu_util")), 0, False),
                ("loadgen CPU %", lambda r: _pct(r.get("loadgen_cpu_util")), 0, False),
                ("others' CPU ms (cpu0+cpu1)", lambda r: _others(r), 0, False)],
}


def _pct(v):
    return None if v is None else v * 100


def _ms(v):
    return None if v is None else v / 1000


def _mib(v):
    return None if v is None else v / 1024


def _others(r):
    o = r.get("others_cpu_ms")
    return sum(o.values()) if o else None


def parse_label(label: str, prefix: str) -> Optional[Tuple[str, str]]:
    """(variant, round) of a label written by bench/peer.sh, or None."""
    if not label.startswith(prefix + "-"):
        return None
    parts = label[len(prefix) + 1:].split()
    if len(parts) < 3 or not parts[-1].startswith("r"):
        return None
    return parts[0], parts[-1]


def fmt(v, nd):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}"


def table(rows: List[Dict], prefix: str) -> str:
    cells: Dict = defaultdict(dict)  # (title, variant, round) -> row
    rounds, variants = set(), []
    for r in rows:
        parsed = parse_label(r.get("label", ""), prefix)
        if parsed is None:
            continue
        variant, rnd = parsed
        rounds.add(rnd)
        if variant not in variants:
            variants.append(variant)
        for title, pred in SCENARIOS:
            if pred(r):
                cells[(title, variant, rnd)] = r
    rounds = sorted(rounds)
    schat_variants = [v for v in variants if v != "ngircd"]
    head = ["scenario", "metric", "ngIRCd+TLS " + "; ".join(rounds)]
    for v in schat_variants:
        head += [f"schat ({v}) " + "; ".join(rounds), f"ratio ({v})"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for title, _ in SCENARIOS:
        kind = "fanout" if title.startswith("fanout") else "connect"
        for i, (name, get, nd, ratio) in enumerate(METRICS[kind]):
            def vals(variant):
                return [get(cells[(title, variant, rd)]) if (title, variant, rd) in cells else None
                        for rd in rounds]
            base = vals("ngircd")
            line = [title if i == 0 else "", name, "; ".join(fmt(v, nd) for v in base)]
            for v in schat_variants:
                mine = vals(v)
                line.append("; ".join(fmt(x, nd) for x in mine))
                line.append("; ".join(
                    f"{a / b:.2f}" if ratio and a is not None and b else "–"
                    for a, b in zip(mine, base)))
            out.append("| " + " | ".join(line) + " |")
    return "\n".join(out) + "\n"


def main(argv: List[str]) -> int:
    path = argv[1] if len(argv) > 1 else "bench/results/peer.jsonl"
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    if len(argv) > 2:
        prefix = argv[2]
    else:  # the latest run in the file
        labels = [r.get("label", "") for r in rows if r.get("label", "").startswith("peer-")]
        if not labels:
            print("no bench/peer.sh results in " + path, file=sys.stderr)
            return 1
        prefix = "-".join(labels[-1].split()[0].split("-")[:2])
    print(f"Run {prefix}; ratio = schat / ngIRCd+TLS in the same round.\n")
    print(table(rows, prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
