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

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from bench.floods import (ADVERSARIAL, Run, Window, chat_failed, expect_ready, flood_round,
                          parse_args, start_members, stop_all, subprocess_env, table,
                          wait_for)
from bench.procstat import cpu_seconds
from bench.run import SERVER_ENV, make_home
from bench.server_proc import ServerProcess
from latency import interleaved, median_ratio, on_attacker_cpu, on_client_cpu, split_cpus

MEMBERS = 20
FLOOD = 200
FLOOD_PARALLEL = 50
FIRST_QUIET = 3.0
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


def quiet_window(server: ServerProcess, seconds: float, sockets: int) -> Window:
    """A quiet window of ``seconds``, once the flood's connections are all closed."""
    wait_for(lambda: open_sockets(server.pid) <= sockets, 30,
             "the flood's connections were not all closed")
    cpu0, start = cpu_seconds(server.pid), time.monotonic()
    time.sleep(seconds)
    return Window(start, time.monotonic(), cpu_seconds(server.pid) - cpu0)


def measure(root: Path, rounds: int) -> Dict:
    """One run: ``rounds`` flood rounds between quiet windows; every figure of it."""
    server_cpus, _ = split_cpus()
    server = ServerProcess(root, cpu=min(server_cpus), extra_args=SERVER_ARGS, env=SERVER_ENV)
    server.start()
    # Generous: the members stop on their own only if this process died.
    max_run = 60 + 30 * rounds
    chatters = flood = None
    try:
        chatters = start_members(server.port, MEMBERS, 0.002, max_run)
        # Started (and idle) before the first quiet window: quiet and flood
        # windows differ only by the flood itself.
        flood = subprocess.Popen(
            [sys.executable, str(ADVERSARIAL / "flood_logins.py"), "127.0.0.1", str(server.port),
             str(FLOOD), str(FLOOD_PARALLEL)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=subprocess_env(), text=True, preexec_fn=on_attacker_cpu)
        expect_ready(chatters, "the members did not log in", server.log_path)
        expect_ready(flood, "the flood process did not start")
        # This process only waits and reads /proc; it stays off the server's core.
        on_client_cpu()
        sockets = open_sockets(server.pid)
        rss0 = server.memory()["rss_kib"]
        quiet = [quiet_window(server, FIRST_QUIET, sockets)]
        floods: List[Window] = []
        answers: Dict[str, int] = {}
        for _ in range(rounds):
            report, window = flood_round(server.pid, flood)
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
        stop_all(chatters, flood)
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


def summary(result: Dict) -> str:
    return (f"Answers to the {sum(result['answers'].values())} bogus logins: "
            f"{result['answers']}; chat errors {len(result['chat_errors'])}, lost "
            f"{result['lost']}, unacked {result['unacked']}; server RSS growth "
            f"{result['server_rss_growth_kib']} KiB.")


def main(argv=None) -> int:
    args = parse_args(__doc__, 5, argv)
    run = Run("login_flood", args.out, args.rounds)
    with tempfile.TemporaryDirectory(prefix="schat-bench-flood-") as tmp:
        root = Path(tmp)
        make_home(root, 0)
        from schat.store.accounts import AccountStore
        store = AccountStore(root / "server" / "users.db")
        for i in range(MEMBERS):
            store.add(f"member{i}", f"member{i}-pass-1")
        store.close()
        result = measure(root, args.rounds)
    run.save(result, f"Chat p99 of {MEMBERS} members during each {FLOOD}-login flood round "
             f"against the mean p99 of the quiet windows either side of it.",
             table(result, summary(result)))
    return 1 if chat_failed(result) else 0


if __name__ == "__main__":
    sys.exit(main())
