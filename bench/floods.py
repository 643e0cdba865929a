"""What the flood benchmarks share: the test's members, windows, reports and result files.

`bench.login_flood` and `bench.dm_flood` run the members and floods of
tests/adversarial (chatters.py, flood_logins.py, flood_dms.py) against a
`schat serve` process, cut the members' probe latencies with the test's own
code (tests/adversarial/latency.py, importable once this module is) and write
their results the same way: one JSON line per round and one per run, and a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from bench.procstat import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
ADVERSARIAL = ROOT / "tests" / "adversarial"
KEY_DIR = ROOT / "tests" / "data" / "keys"
RESULTS = Path(__file__).parent / "results"
# The windows, the per-round ratios and the CPU placement are the tests' own code.
sys.path.insert(0, str(ADVERSARIAL))
from latency import on_client_cpu, split_cpus  # noqa: E402

POLL = 0.02


def wait_for(done: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``done`` until it is true; RuntimeError(``what``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(POLL)  # polling /proc: there is no event to wait on


class Window:
    """One time window with the server's CPU seconds over it."""

    def __init__(self, start: float, end: float, cpu: float):
        self.start, self.end, self.cpu = start, end, cpu

    @property
    def share(self) -> float:
        """The server's CPU time as a share of one core over the window."""
        return self.cpu / (self.end - self.start)


def subprocess_env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def start_members(port: int, count: int, probe_interval: float, max_run: float) -> subprocess.Popen:
    """tests/adversarial/chatters.py on the clients' CPUs: ``count`` members, a probe
    every ``probe_interval`` s; it stops by itself after ``max_run`` s."""
    return subprocess.Popen(
        [sys.executable, str(ADVERSARIAL / "chatters.py"), "127.0.0.1", str(port), str(count),
         str(probe_interval), str(max_run)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=subprocess_env(), text=True,
        preexec_fn=on_client_cpu)


def expect_ready(proc: subprocess.Popen, what: str, log: Optional[Path] = None) -> None:
    """Wait for ``proc``'s "ready" line; RuntimeError(``what``, with the end of the
    server's ``log``) when it prints anything else or exits."""
    if proc.stdout.readline().strip() != "ready":
        tail = f":\n{log.read_text(errors='replace')[-2000:]}" if log is not None else ""
        raise RuntimeError(what + tail)


def flood_round(server_pid: int, flood: subprocess.Popen, timeout: float = 60.0):
    """Start one round of ``flood`` (a line on its stdin) and wait for its JSON report:
    (report, the Window from its "start" to its "end" with the server's CPU over the round)."""
    cpu0 = cpu_seconds(server_pid)
    flood.stdin.write("go\n")
    flood.stdin.flush()
    line: List[str] = []
    reader = threading.Thread(target=lambda: line.append(flood.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not line or not line[0]:
        raise RuntimeError(f"the flood did not finish a round within {timeout:g} s")
    cpu = cpu_seconds(server_pid) - cpu0
    report = json.loads(line[0])
    return report, Window(report["start"], report["end"], cpu)


# (column title, the cell of a round), the columns every flood table has after "flood s".
Column = Tuple[str, Callable[[Dict], str]]
LATENCY_COLUMNS: List[Column] = [
    ("quiet p99 ms", lambda r: f"{r['quiet_p99_ms']:.2f}"),
    ("flood p99 ms", lambda r: f"{r['flood_p99_ms']:.2f}"),
    ("ratio", lambda r: f"{r['ratio']:.2f}x"),
    ("server CPU, quiet (% of core)", lambda r: f"{r['server_cpu_quiet_share']:.0%}"),
    ("server CPU, flood (s, % of core)",
     lambda r: f"{r['server_cpu_flood_s']:.2f} s, {r['server_cpu_flood_share']:.0%}"),
]


def table(result: Dict, note: str, before: Sequence[Column] = (),
          after: Sequence[Column] = ()) -> str:
    """The rounds as a Markdown table (round, flood s, ``before``, the latency and CPU
    columns, ``after``), then the median ratio against the target of 2 and ``note``."""
    columns = [("round", lambda r: str(r["round"])), ("flood s", lambda r: f"{r['flood_s']:.2f}"),
               *before, *LATENCY_COLUMNS, *after]
    lines = ["| " + " | ".join(title for title, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    for r in result["rounds"]:
        lines.append("| " + " | ".join(cell(r) for _, cell in columns) + " |")
    verdict = "met" if result["median_ratio"] <= 2 else "NOT met"
    lines += ["", f"Median ratio: **{result['median_ratio']:.2f}x** (target at most 2x: "
              f"{verdict}). {note}"]
    return "\n".join(lines) + "\n"


def stop_all(*procs: Optional[subprocess.Popen]) -> None:
    """Kill (by their own pid) the ones still running."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)


def parse_args(doc: str, rounds: int, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=rounds,
                        help=f"flood rounds (default {rounds})")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    return args


class Run:
    """One run's stamp, load and CPU placement, and its result files."""

    def __init__(self, scenario: str, out: Path, rounds: int):
        self.scenario, self.out, self.rounds = scenario, out, rounds
        self.stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.server_cpus, self.client_cpus = split_cpus()
        self.load_before = os.getloadavg()

    def save(self, result: Dict, what: str, table: str) -> None:
        """Append the rounds and the run to SCENARIO.jsonl, write SCENARIO.md and print it.
        ``what`` says in one line what the table compares."""
        load = os.getloadavg()
        with open(self.out / f"{self.scenario}.jsonl", "a") as out:
            for r in result["rounds"]:
                out.write(json.dumps({"scenario": f"{self.scenario}_round", "run": self.stamp,
                                      **r}) + "\n")
            summary = {k: v for k, v in result.items() if k != "rounds"}
            out.write(json.dumps({"scenario": self.scenario, "run": self.stamp,
                                  "rounds": self.rounds, "loadavg_before": self.load_before,
                                  "loadavg_after": load, **summary}) + "\n")
        text = (f"Run {self.stamp} on {platform.machine()}, {os.cpu_count()} cores, Python "
                f"{platform.python_version()}, load average {self.load_before[0]:.2f} before and "
                f"{load[0]:.2f} after (1 min); server on CPU {min(self.server_cpus)}, members "
                f"and flood on CPU {','.join(str(c) for c in sorted(self.client_cpus))}."
                f"\n{what}\n\n{table}")
        (self.out / f"{self.scenario}.md").write_text(text)
        print(text)


def chat_failed(result: Dict) -> bool:
    """True (and says so) when the members lost a line or saw an error during the run."""
    if result["chat_errors"] or result["lost"] or result["unacked"]:
        print(f"chat failed during the run: {result['chat_errors']}", file=sys.stderr)
        return True
    return False
