"""The side-by-side table from bench/peer.sh's results: ratios against ngIRCd+TLS per round.

    python bench/peer_table.py bench/results/peer.jsonl [LABEL-PREFIX]

Lines are matched by their label, ``<prefix>-<variant> <server>[-extra] r<round>``
(variant: ``ngircd``, ``openssl``, ``pycryptodome``), and by scenario; every
ratio divides a schat figure by ngIRCd+TLS's from the same round, and the
median of those ratios is what is held against issue #14's targets (second
table). The primitives line of each round (``bench.primitives``, timed on the
server's CPU with the server's library) is the reference of the connect target.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Dict, List, Optional, Tuple


def _fanout(mode_fixed: bool, n: int):
    return lambda r: (r["scenario"] == "fanout" and (r.get("mode") == "fixed-rate") == mode_fixed
                      and r.get("clients") == n)


SCENARIOS = [
    # (title, predicate on a result line)
    ("fanout 10k deliveries/s, N = 200", _fanout(True, 200)),
    ("fanout 10k deliveries/s, N = 1,000", _fanout(True, 1000)),
    ("fanout flat out, N = 200", _fanout(False, 200)),
    ("fanout flat out, N = 1,000", _fanout(False, 1000)),
    ("connect 1,000 (schat: + key login, then close)",
     lambda r: r["scenario"] == "connect" and r.get("clients") == 1000
     and (r.get("driver") != "schat" or (r.get("login") == "key" and r.get("leave_after_login")))),
    ("connect 2,000 and stay (schat: + key login)",
     lambda r: r["scenario"] == "connect" and r.get("clients") == 2000
     and (r.get("driver") != "schat" or (r.get("login") == "key"
                                          and not r.get("leave_after_login")))),
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
                ("connected", lambda r: r.get("connected"), 0, False),
                ("connects/s", lambda r: r.get("connects_per_s"), 0, True),
                ("connect p99 ms", lambda r: (r.get("connect_latency_ms") or {}).get("p99"), 1, True),
                ("server CPU %", lambda r: _pct(r.get("server_cpu_util")), 0, False),
                ("loadgen CPU %", lambda r: _pct(r.get("loadgen_cpu_util")), 0, False),
                ("others' CPU ms (cpu0+cpu1)", lambda r: _others(r), 0, False),
                ("KiB per idle connection", lambda r: r.get("kib_per_idle_conn"), 2, True),
                ("fresh server RSS MiB", lambda r: _mib(r.get("rss_before_kib")), 1, True)],
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


def parse_label(label: str, prefix: str) -> Optional[Tuple[str, str, bool]]:
    """(variant, round, is_primitives) of a label written by bench/peer.sh, or None."""
    if not label.startswith(prefix + "-"):
        return None
    parts = label[len(prefix) + 1:].split()
    if len(parts) < 2 or not parts[-1].startswith("r"):
        return None
    return parts[0], parts[-1], parts[1] == "primitives"


def fmt(v, nd):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}"


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Run:
    """The lines of one bench/peer.sh run, by (scenario title, variant, round)."""

    def __init__(self, rows: List[Dict], prefix: str):
        self.cells: Dict = {}
        self.primitives: Dict = {}
        rounds, self.variants = set(), []
        for r in rows:
            parsed = parse_label(r.get("label", ""), prefix)
            if parsed is None:
                continue
            variant, rnd, is_primitives = parsed
            rounds.add(rnd)
            if variant not in self.variants:
                self.variants.append(variant)
            if is_primitives:
                self.primitives[(variant, rnd)] = r
                continue
            for title, pred in SCENARIOS:
                if pred(r):
                    self.cells[(title, variant, rnd)] = r
        self.rounds = sorted(rounds)
        self.schat = [v for v in self.variants if v != "ngircd"]

    def values(self, title, variant, get):
        return [get(self.cells[(title, variant, rd)]) if (title, variant, rd) in self.cells
                else None for rd in self.rounds]

    def ratios(self, title, variant, get):
        return [a / b if a is not None and b else None
                for a, b in zip(self.values(title, variant, get), self.values(title, "ngircd", get))]

    def primitive_ms(self, variant):
        out = []
        for rd in self.rounds:
            r = self.primitives.get((variant, rd))
            out.append(r[r["default"]]["handshake_crypto_ms"] if r else None)
        return out


def table(run: Run) -> str:
    rounds = run.rounds
    head = ["scenario", "metric", "ngIRCd+TLS " + "; ".join(rounds)]
    for v in run.schat:
        head += [f"schat ({v}) " + "; ".join(rounds), f"ratio ({v}) per round; median"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for title, _ in SCENARIOS:
        kind = "fanout" if title.startswith("fanout") else "connect"
        for i, (name, get, nd, ratio) in enumerate(METRICS[kind]):
            base = run.values(title, "ngircd", get)
            line = [title if i == 0 else "", name, "; ".join(fmt(v, nd) for v in base)]
            for v in run.schat:
                line.append("; ".join(fmt(x, nd) for x in run.values(title, v, get)))
                if ratio:
                    rs = run.ratios(title, v, get)
                    med = _median(rs)
                    line.append("; ".join(fmt(x, 2) for x in rs) +
                                (f"; **{med:.2f}**" if med is not None else ""))
                else:
                    line.append("")
            out.append("| " + " | ".join(line) + " |")
    for v in run.schat:
        prim = run.primitive_ms(v)
        per = run.values(SCENARIOS[4][0], v, METRICS["connect"][0][1])
        rs = [a / b if a is not None and b else None for a, b in zip(per, prim)]
        out.append(f"| primitives ({v}) | RSA-3072 OAEP + X25519 + PSS verify, CPU ms "
                   f"| | {'; '.join(fmt(x, 3) for x in prim)} | connect ÷ primitives: "
                   f"{'; '.join(fmt(x, 2) for x in rs)}; **{fmt(_median(rs), 2)}** |")
    return "\n".join(out) + "\n"


def targets(run: Run) -> str:
    """Issue #14's targets against the medians of this run."""
    cpu = METRICS["fanout"][0][1]
    p99 = METRICS["fanout"][3][1]
    lost = METRICS["fanout"][4][1]
    per_connect = METRICS["connect"][0][1]
    out = ["| target | schat variant | this run (median of the rounds) | met? |",
           "|---|---|---|---|"]
    for v in run.schat:
        for title in (SCENARIOS[0][0], SCENARIOS[1][0]):
            c, p = _median(run.ratios(title, v, cpu)), _median(run.ratios(title, v, p99))
            losses = [x for x in run.values(title, v, lost) if x is not None]
            ok = c is not None and c <= 1.0 and p is not None and p <= 1.5 and not any(losses)
            out.append(f"| 1. {title}: CPU/delivery ≤ 1.0×, p99 ≤ 1.5×, nothing lost | {v} "
                       f"| {fmt(c, 2)}×, p99 {fmt(p, 2)}×, lost {losses} | {'yes' if ok else 'no'} |")
        for title in (SCENARIOS[2][0], SCENARIOS[3][0]):
            c = _median(run.ratios(title, v, cpu))
            out.append(f"| 2. {title}: CPU/delivery ≤ 1.0× | {v} | {fmt(c, 2)}× "
                       f"| {'yes' if c is not None and c <= 1.0 else 'no'} |")
        per = run.values(SCENARIOS[4][0], v, per_connect)
        rs = [a / b if a is not None and b else None for a, b in zip(per, run.primitive_ms(v))]
        r = _median(rs)
        out.append(f"| 3. connect + key login ≤ 1.25 × its primitives | {v} | {fmt(r, 2)}× "
                   f"({fmt(_median(per), 2)} ms against {fmt(_median(run.primitive_ms(v)), 3)} ms) "
                   f"| {'yes' if r is not None and r <= 1.25 else 'no'} |")
        stay = SCENARIOS[5][0]
        connected = run.values(stay, v, lambda r: r.get("connected"))
        big = _median(run.values(stay, v, per_connect))
        small = _median(per)
        grow = big / small if big and small else None
        out.append(f"| 4. 2,000 log in and stay: all connected, CPU per connect independent of "
                   f"the room | {v} | connected {connected}; {fmt(big, 2)} ms per connect into a "
                   f"room growing to 2,000 against {fmt(small, 2)} ms into a room of ~8: "
                   f"{fmt(grow, 2)}× | see README |")
        kib = _median(run.values(stay, v, lambda r: r.get("kib_per_idle_conn")))
        rss = _median(run.values(stay, v, lambda r: _mib(r.get("rss_before_kib"))))
        out.append(f"| 5. idle ≤ 4.5 KiB per connection; fresh RSS | {v} | {fmt(kib, 2)} KiB; "
                   f"{fmt(rss, 1)} MiB | {'yes' if kib is not None and kib <= 4.5 else 'no'} |")
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
    run = Run(rows, prefix)
    print(f"Run {prefix}; ratio = schat / ngIRCd+TLS in the same round.\n")
    print(table(run))
    print(targets(run))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
