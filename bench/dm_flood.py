"""Chat latency during a direct-message flood from one address, against a quiet window before it.

    python -m bench.dm_flood              # 4 rounds, about 45 s
    python -m bench.dm_flood --rounds 9

Each round starts a fresh `schat serve` process pinned to the first CPU, with
the settings of tests/adversarial/test_dm_flood.py (message rate limits raised
for the members' probe, no per-address message throttle, 1,000 connections
not logged in per address; the signature lane at its defaults). On the other
CPU(s), 6 members chat from one process (tests/adversarial/chatters.py: a
probe line every 10 ms from member0 to member1, the others a line every
200 ms) and tests/adversarial/flood_dms.py logs in 50 throwaway accounts from
127.0.0.2, each with an RSA-8192 key registered, then sends forged envelopes
to member1 at 4.5 a second per account for 3 s (about 650), reading nothing;
halfway through, a member logs in from 127.0.0.3.

The quiet window comes first (6 s, cut into windows as long as the round; its
reference is their median p99, tests/adversarial/latency.py, the test's own
code), then the flood round. No quiet window follows a round: the server goes
on checking the envelopes waiting in the flood's socket buffers at the
address's share (5 % of a crypto thread) for up to a minute, so a window after
it would not be quiet; a new server per round starts with no backlog. The
figure is each round's probe p99 divided by its quiet reference, and the
median of those ratios. Target: at most 2.

The server's CPU time (/proc/PID/stat) is read at the edges of both windows.
Results: one JSON line per round and one per run appended to
bench/results/dm_flood.jsonl, the table in bench/results/dm_flood.md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

from bench.floods import (ADVERSARIAL, KEY_DIR, Run, Window, chat_failed, expect_ready,
                          flood_round, parse_args, start_members, stop_all, subprocess_env,
                          table)
from bench.procstat import cpu_seconds
from bench.run import SERVER_ENV, make_home
from bench.server_proc import ServerProcess
from latency import on_client_cpu, p99, quiet_p99, split_cpus

# The settings and sizes of tests/adversarial/test_dm_flood.py.
MEMBERS = 6
FLOOD_ACCOUNTS = 50
FLOOD_RATE = 4.5  # per account per second: inside the default rate limit of 5
FLOOD_SECONDS = 3.0
QUIET = 2 * FLOOD_SECONDS
PROBE_INTERVAL = 0.01
FLOOD_SOURCE = "127.0.0.2"
LOGIN_SOURCE = "127.0.0.3"
SERVER_ARGS = ["--rate-limit", "1000", "--rate-burst", "2000", "--address-rate-limit", "0",
               "--max-unauthenticated-per-ip", "1000"]
# The members stop by themselves after this long only if this process died.
MAX_RUN = 60.0


def make_accounts(root: Path) -> None:
    """The test's accounts in the home's store: the members (member1, the flood's target,
    with a key so that every check runs), the flood's accounts with the RSA-8192 key of
    tests/data/keys, and the member who logs in during the flood."""
    from schat.crypto.keys import import_public_key, public_der
    from schat.store.accounts import AccountStore

    make_home(root, 0)
    store = AccountStore(root / "server" / "users.db")
    try:
        for i in range(MEMBERS):
            store.add(f"member{i}", f"member{i}-pass-1")
        store.set_public_key("member1", public_der(import_public_key(
            (KEY_DIR / "bob.pub.pem").read_bytes())))
        big = public_der(import_public_key((KEY_DIR / "flood8192.pub.pem").read_bytes()))
        for i in range(FLOOD_ACCOUNTS):
            store.add(f"flood{i}", f"flood{i}-pass-1", public_key_der=big)
        store.add("latecomer", "latecomer-pass-1")
    finally:
        store.close()


def measure_round(root: Path) -> Dict:
    """One round on a new server: a quiet window, then the flood; every figure of it."""
    server = ServerProcess(root, cpu=min(split_cpus()[0]), extra_args=SERVER_ARGS,
                           env=SERVER_ENV)
    server.start()
    chatters = flood = None
    try:
        chatters = start_members(server.port, MEMBERS, PROBE_INTERVAL, MAX_RUN)
        expect_ready(chatters, "the members did not log in", server.log_path)
        # The flood's accounts log in before the quiet window: both windows have the
        # same room, and only the direct messages differ.
        flood = subprocess.Popen(
            [sys.executable, str(ADVERSARIAL / "flood_dms.py"), "127.0.0.1", str(server.port),
             FLOOD_SOURCE, "member1", str(FLOOD_ACCOUNTS), str(FLOOD_RATE), str(FLOOD_SECONDS),
             "1", LOGIN_SOURCE, "latecomer"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=subprocess_env(), text=True, preexec_fn=on_client_cpu)
        expect_ready(flood, "the flood's accounts did not log in", server.log_path)
        # This process only waits and reads /proc; it stays off the server's core.
        on_client_cpu()
        cpu0, start = cpu_seconds(server.pid), time.monotonic()
        time.sleep(QUIET)
        quiet = Window(start, time.monotonic(), cpu_seconds(server.pid) - cpu0)
        report, window = flood_round(server.pid, flood)
        out, _ = chatters.communicate("", timeout=30)
        flood.communicate("", timeout=30)
    finally:
        stop_all(chatters, flood)
        server.stop()
    chat = json.loads(out)
    width = window.end - window.start
    quiet_ms = quiet_p99(chat["samples"], quiet.start, quiet.end, width) * 1000
    flood_ms = p99(chat["samples"], window.start, window.end) * 1000
    return {"flood_s": width, "sent": report["sent"], "quiet_p99_ms": quiet_ms,
            "flood_p99_ms": flood_ms, "ratio": flood_ms / quiet_ms,
            "server_cpu_quiet_share": quiet.share, "server_cpu_flood_s": window.cpu,
            "server_cpu_flood_share": window.share, "login": report["login"],
            "chat_errors": chat["errors"], "lost": chat["lost"], "unacked": chat["unacked"]}


def measure(root: Path, rounds: int) -> Dict:
    per_round = []
    for k in range(rounds):
        per_round.append({"round": k + 1, **measure_round(root)})
    return {"rounds": per_round, "median_ratio": statistics.median(r["ratio"] for r in per_round),
            "chat_errors": [e for r in per_round for e in r["chat_errors"]],
            "lost": sum(r["lost"] for r in per_round),
            "unacked": sum(r["unacked"] for r in per_round),
            "logins_ok": sum(r["login"]["ok"] for r in per_round)}


def login_cell(r: Dict) -> str:
    return f"{r['login']['seconds'] * 1000:.0f} ms" if r["login"]["ok"] else "failed"


def summary(result: Dict) -> str:
    return (f"Chat errors {len(result['chat_errors'])}, lost {result['lost']}, unacked "
            f"{result['unacked']}; logins during the flood let in: {result['logins_ok']} of "
            f"{len(result['rounds'])}.")


def main(argv=None) -> int:
    args = parse_args(__doc__, 4, argv)
    run = Run("dm_flood", args.out, args.rounds)
    with tempfile.TemporaryDirectory(prefix="schat-bench-dm-flood-") as tmp:
        root = Path(tmp)
        make_accounts(root)
        result = measure(root, args.rounds)
    run.save(result, f"Chat p99 of {MEMBERS} members during a {FLOOD_SECONDS:g} s flood of "
             f"forged direct messages from {FLOOD_ACCOUNTS} accounts (RSA-8192 keys) on one "
             f"address, against the quiet window before it on the same server.",
             table(result, summary(result), before=[("envelopes", lambda r: str(r["sent"]))],
                   after=[("login during it", login_cell)]))
    return 1 if chat_failed(result) or result["logins_ok"] < len(result["rounds"]) else 0


if __name__ == "__main__":
    sys.exit(main())
