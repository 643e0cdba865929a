"""Chat latency during a login flood, against quiet windows adjacent in time.

    python -m bench.login_flood              # 5 rounds, about a minute
    python -m bench.login_flood --rounds 9

A real `schat serve` process (one crypto thread, 8 waiting hash/RSA jobs, no
message or failed-login throttles) runs pinned to the first CPU. On the other
CPU(s), 20 members chat from one process (tests/adversarial/chatters.py: one
probe line every 2 ms, the others a line every 200 ms) and a lowest-priority
process (tests/adversarial/flood_logins.py) sends rounds of 200 bogus logins
from 50 threads. Quiet and flood windows alternate (quiet, flood, quiet, ...,
quiet), each quiet window as long as the round before it; each round's probe
p99 is divided by the mean p99 of the quiet windows on either side of it
(tests/adversarial/latency.py, shared with tests/adversarial/test_login_flood.py),
and the figure is the median of those ratios. Target: at most 2.

The server's CPU time (/proc/PID/stat) is read at the edges of every window.
Results: one JSON line per round and one per run appended to
bench/results/login_flood.jsonl, the table in bench/results/login_flood.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

from bench.procstat import cpu_seconds
from bench.run import SERVER_ENV, make_home
from bench.server_proc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
ADVERSARIAL = ROOT / "tests" / "adversarial"
# The windows, the per-round ratios and the CPU placement are the test's own code.
sys.path.insert(0, str(ADVERSARIAL))
from latency import interleaved, median_ratio, on_attacker_cpu, on_client_cpu, split_cpus  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MEMBERS = 20
FLOOD = 200
FLOOD_PARALLEL = 50
FIRST_QUIET = 3.0
POLL = 0.02
# The settings of tests/adversarial/test_login_flood.py: a small crypto pool and
# queue, so the flood is mostly turned away as busy, and no throttle that would
# slow the flood (all from 127.0.0.1) down before it reaches the queue.
SERVER_ARGS = ["--crypto-workers", "1", "--max-pending-logins", "8", "--rate-limit", "0",
               "--address-rate-limit", "0", "--penalty-base", "0",
               "--max-unauthenticated", "1000", "--max-unauthenticated-per-ip", "1000"]


def open_sockets(pid: int) -> int:
    """How many sockets process ``pid`` holds open (listening, members, flood)."""
    fd_dir = f"/proc/{pid}/fd"
    count = 0
    for fd in os.listdir(fd_dir):
        try:
            count += os.readlink(f"{fd_dir}/{fd}").startswith("socket:")
        except OSError:  # closed since the listing
            pass
    return count


def wait_for(done, timeout: float, what: str) -> None:
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


def quiet_window(server: ServerProcess, seconds: float, sockets: int) -> Window:
    """A quiet window of ``seconds``, once the flood's connections are all closed."""
    wait_for(lambda: open_sockets(server.pid) <= sockets, 30,
             "the flood's connections were not all closed")
    cpu0, start = cpu_seconds(server.pid), time.monotonic()
    time.sleep(seconds)
    return Window(start, time.monotonic(), cpu_seconds(server.pid) - cpu0)


def flood_round(server: ServerProcess, flood: subprocess.Popen) -> Tuple[Dict, Window]:
    """One flood round: the flood process's report and the window it ran in."""
    cpu0 = cpu_seconds(server.pid)
    flood.stdin.write("go\n")
    flood.stdin.flush()
    line: List[str] = []
    reader = threading.Thread(target=lambda: line.append(flood.stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    if not line or not line[0]:
        raise RuntimeError("the login flood did not finish a round within 60 s")
    cpu = cpu_seconds(server.pid) - cpu0
    report = json.loads(line[0])
    return report, Window(report["start"], report["end"], cpu)


def measure(root: Path, rounds: int) -> Dict:
    """One run: ``rounds`` flood rounds between quiet windows; every figure of it."""
    server_cpus, _ = split_cpus()
    server = ServerProcess(root, cpu=min(server_cpus), extra_args=SERVER_ARGS, env=SERVER_ENV)
    server.start()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Generous: the members stop on their own only if this process died.
    max_run = 60 + 30 * rounds
    chatters = flood = None
    try:
        chatters = subprocess.Popen(
            [sys.executable, str(ADVERSARIAL / "chatters.py"), "127.0.0.1", str(server.port),
             str(MEMBERS), "0.002", str(max_run)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
            preexec_fn=on_client_cpu)
        # Started (and idle) before the first quiet window: quiet and flood
        # windows differ only by the flood itself.
        flood = subprocess.Popen(
            [sys.executable, str(ADVERSARIAL / "flood_logins.py"), "127.0.0.1", str(server.port),
             str(FLOOD), str(FLOOD_PARALLEL)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, text=True, preexec_fn=on_attacker_cpu)
        if chatters.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the members did not log in:\n{server.log_path.read_text()[-2000:]}")
        if flood.stdout.readline().strip() != "ready":
            raise RuntimeError("the flood process did not start")
        # This process only waits and reads /proc; it stays off the server's core.
        on_client_cpu()
        sockets = open_sockets(server.pid)
        rss0 = server.memory()["rss_kib"]
        quiet = [quiet_window(server, FIRST_QUIET, sockets)]
        floods: List[Window] = []
        answers: Dict[str, int] = {}
        for _ in range(rounds):
            report, window = flood_round(server, flood)
            floods.append(window)
            for code, n in report["answers"].items():
                answers[code] = answers.get(code, 0) + n
            quiet.append(quiet_window(server, window.end - window.start, sockets))
        memory = server.memory()
        # At nice 19 on a loaded machine the flood's exit can take over 10 s.
        flood.stdin.close()
        out, _ = chatters.communicate("", timeout=30)
        flood.wait(timeout=30)
    finally:
        for proc in (chatters, flood):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
        server.stop()
    chat = json.loads(out)
    # The first quiet window is cut to its end part, as long as the first round,
    # so that every window holds about as many probes.
    first = quiet[0]
    cut = max(first.start, first.end - (floods[0].end - floods[0].start))
    quiet_spans = [(cut, first.end)] + [(w.start, w.end) for w in quiet[1:]]
    latency = interleaved(chat["samples"], quiet_spans, [(w.start, w.end) for w in floods])
    per_round = []
    for k, ((flood_p99, quiet_p99), window) in enumerate(zip(latency, floods)):
        per_round.append({
            "round": k + 1, "flood_s": window.end - window.start,
            "quiet_p99_ms": quiet_p99 * 1000, "flood_p99_ms": flood_p99 * 1000,
            "ratio": flood_p99 / quiet_p99,
            "server_cpu_quiet_s": [quiet[k].cpu, quiet[k + 1].cpu],
            "server_cpu_quiet_share": (quiet[k].share + quiet[k + 1].share) / 2,
            "server_cpu_flood_s": window.cpu, "server_cpu_flood_share": window.share})
    return {"rounds": per_round, "median_ratio": median_ratio(latency), "answers": answers,
            "chat_errors": chat["errors"], "lost": chat["lost"], "unacked": chat["unacked"],
            "server_rss_growth_kib": memory["rss_kib"] - rss0,
            "server_peak_rss_kib": memory["peak_rss_kib"]}


def table(result: Dict) -> str:
    lines = ["| round | flood s | quiet p99 ms | flood p99 ms | ratio | server CPU, quiet "
             "(% of core) | server CPU, flood (s, % of core) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rounds"]:
        lines.append(f"| {r['round']} | {r['flood_s']:.2f} | {r['quiet_p99_ms']:.2f} | "
                     f"{r['flood_p99_ms']:.2f} | {r['ratio']:.2f}x | "
                     f"{r['server_cpu_quiet_share']:.0%} | "
                     f"{r['server_cpu_flood_s']:.2f} s, {r['server_cpu_flood_share']:.0%} |")
    verdict = "met" if result["median_ratio"] <= 2 else "NOT met"
    lines += ["", f"Median ratio: **{result['median_ratio']:.2f}x** (target at most 2x: {verdict}). "
              f"Answers to the {sum(result['answers'].values())} bogus logins: "
              f"{result['answers']}; chat errors {len(result['chat_errors'])}, lost "
              f"{result['lost']}, unacked {result['unacked']}; server RSS growth "
              f"{result['server_rss_growth_kib']} KiB."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="flood rounds (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    server_cpus, client_cpus = split_cpus()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="schat-bench-flood-") as tmp:
        root = Path(tmp)
        make_home(root, 0)
        from schat.store.accounts import AccountStore
        store = AccountStore(root / "server" / "users.db")
        for i in range(MEMBERS):
            store.add(f"member{i}", f"member{i}-pass-1")
        store.close()
        result = measure(root, args.rounds)
    load = os.getloadavg()
    with open(args.out / "login_flood.jsonl", "a") as out:
        for r in result["rounds"]:
            out.write(json.dumps({"scenario": "login_flood_round", "run": stamp, **r}) + "\n")
        summary = {k: v for k, v in result.items() if k != "rounds"}
        out.write(json.dumps({"scenario": "login_flood", "run": stamp, "rounds": args.rounds,
                              "loadavg_before": load_before, "loadavg_after": load,
                              **summary}) + "\n")
    header = (f"Run {stamp} on {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, load average {load_before[0]:.2f} before and "
              f"{load[0]:.2f} after (1 min); server on CPU {min(server_cpus)}, members and "
              f"flood on CPU {','.join(str(c) for c in sorted(client_cpus))}."
              f"\nChat p99 of {MEMBERS} members during each {FLOOD}-login flood round against the "
              f"mean p99 of the quiet windows either side of it.\n\n")
    text = header + table(result)
    (args.out / "login_flood.md").write_text(text)
    print(text)
    if result["chat_errors"] or result["lost"] or result["unacked"]:
        print(f"chat failed during the run: {result['chat_errors']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
