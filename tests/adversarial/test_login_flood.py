"""200 bogus logins while 20 members chat: the flood is refused and bounded, chat goes on.

Every bogus login is answered (auth_failed, busy or closed), the hash queue
stays bounded, the server's memory barely grows, and the members lose nothing
and see no error while it runs. How much the flood costs the members' latency
is measured by the benchmark (`python -m bench.login_flood`, bench/README.md),
which runs these same members and flood against a `schat serve` process; this
test prints the same figures (with -s) but asserts none of them.

Only the server runs in this process (so its pending crypto jobs can be read);
the members chat from one subprocess (chatters.py) and the flood comes from
another (flood_logins.py). On a machine with two cores or more the server gets
one core and the clients the others, as on a real host. Both scripts stamp
their events with time.monotonic(), which is one clock system-wide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from hostile import disconnect_reasons, rss_bytes
from latency import describe, interleaved, median_ratio, on_client_cpu

MEMBERS = 20
FLOOD = 200
FLOOD_PARALLEL = 50
# One flood round between two quiet windows (quiet, flood, quiet), as in the
# benchmark, which runs more rounds to measure: the test only prints the latency,
# and one round of 200 already overflows the bounded queue (50 at once against 8
# places) many times over. The quiet window after the round also waits until the
# round's connections are all closed. Each quiet window is as long as the round,
# at most QUIET seconds (the printed p99 then rests on ~1,500 probes, not on a
# longer wait on a loaded machine, where a round lasted 10-14 s).
ROUNDS = 1
QUIET = 3.0
POLL = 0.02
# The test's own bound, and so the members' longest run: they stop at the end of
# their stdin, and on their own only if the test died. (With the members' default
# of 55 s, a run of the whole directory on a loaded machine outlived them.)
TIMEOUT = 120
HERE = Path(__file__).parent
ROOT = HERE.resolve().parents[1]


def _peak_rss() -> int:
    """This process's peak resident set size (VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM in /proc/self/status")


def _watch(srv, done, timeout: float, what: str) -> int:
    """Poll until ``done()``; the peak number of pending crypto jobs seen meanwhile.

    Quiet and flood windows are watched alike, so this thread's own polling
    costs the server the same in both. It only reads counters: it must not
    compete with the server for the interpreter lock.
    """
    peak = 0
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        peak = max(peak, srv.server._pending_crypto)
        threading.Event().wait(POLL)
    return peak


def _quiet(srv, seconds: float):
    """A quiet window of ``seconds``, once the last round has left nothing behind
    (its connections closed, its crypto jobs done)."""
    server = srv.server
    _watch(srv, lambda: len(server.links) == MEMBERS and server._pending_crypto == 0, 20,
           "the flood's connections were not all closed")
    start = time.monotonic()
    _watch(srv, lambda: time.monotonic() >= start + seconds, seconds + 1, "")
    return start, time.monotonic()


def _round(srv, flood):
    """One flood round; (its JSON report, peak pending crypto jobs)."""
    flood.stdin.write("go\n")
    flood.stdin.flush()
    line = []
    reader = threading.Thread(target=lambda: line.append(flood.stdout.readline()), daemon=True)
    reader.start()
    peak = _watch(srv, lambda: not reader.is_alive(), 30, "the login flood did not finish")
    return json.loads(line[0]), peak


# About 10 s on a quiet 2-core machine; the round lasts longer on a busy one.
@pytest.mark.timeout(TIMEOUT)
def test_login_flood_stays_bounded_and_chat_goes_on(server_cpu, server_factory, server_log):
    srv = server_factory(crypto_workers=1, max_pending_logins=8, rate_limit=0,
                         address_rate_limit=0, penalty_base=0,
                         max_unauthenticated=1000, max_unauthenticated_per_ip=1000)
    for i in range(MEMBERS):
        srv.store.add(f"member{i}", f"member{i}-pass-1")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    chatters = subprocess.Popen(
        [sys.executable, str(HERE / "chatters.py"), srv.host, str(srv.port), str(MEMBERS),
         "0.002", str(TIMEOUT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        preexec_fn=on_client_cpu)
    flood = None
    try:
        # The flood's process is started (and idle) before the first quiet window:
        # quiet and flood windows differ only by the flood itself. It lowers its own
        # priority to nice 19 once its imports are done (flood_logins.main): started
        # at nice 19, a loaded machine starved its start-up for over a minute.
        flood = subprocess.Popen(
            [sys.executable, str(HERE / "flood_logins.py"), srv.host, str(srv.port), str(FLOOD),
             str(FLOOD_PARALLEL)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            text=True, preexec_fn=on_client_cpu)
        assert chatters.stdout.readline().strip() == "ready"
        assert flood.stdout.readline().strip() == "ready"
        rss_before = rss_bytes()
        quiet = [_quiet(srv, QUIET)]
        rounds = []
        for _ in range(ROUNDS):
            rounds.append(_round(srv, flood))
            quiet.append(_quiet(srv, min(QUIET, rounds[-1][0]["end"] - rounds[-1][0]["start"])))
        rss_growth = rss_bytes() - rss_before
        first_round = min(QUIET, rounds[0][0]["end"] - rounds[0][0]["start"])
        quiet[0] = (max(quiet[0][0], quiet[0][1] - first_round), quiet[0][1])
        # The flood ends at the end of its stdin; at nice 19 on a loaded machine its
        # exit took over 10 s, so the members are collected first.
        flood.stdin.close()
        out, _ = chatters.communicate("", timeout=20)
        flood.wait(timeout=30)
    finally:
        for proc in (chatters, flood):
            if proc is not None and proc.poll() is None:
                proc.kill()
    chat = json.loads(out)
    assert chat["errors"] == [] and chat["lost"] == 0 and chat["unacked"] == 0, chat
    floods = [(report["start"], report["end"]) for report, _ in rounds]
    latency = interleaved(chat["samples"], quiet, floods)
    ratio = median_ratio(latency)
    answers = Counter()
    for report, _ in rounds:
        answers.update(report["answers"])
    peak_pending = max(peak for _, peak in rounds)
    print(f"\nchat latency p99, quiet (mean of the windows either side) -> under a "
          f"{FLOOD}-login flood, rounds of "
          f"{', '.join(f'{end - start:.2f}' for start, end in floods)} s: {describe(latency)}; "
          f"median {ratio:.2f}x; answers {dict(answers)}; peak pending crypto jobs "
          f"{peak_pending}; RSS growth {rss_growth >> 10} KiB, peak RSS {_peak_rss() >> 20} MiB")
    assert sum(answers.values()) == ROUNDS * FLOOD
    # Every bogus login was refused as wrong, or as busy past the bounded queue: with an
    # error when the channel was open, else (a hello or key exchange beyond the queue)
    # by closing.
    assert set(answers) <= {"auth_failed", "busy", "closed"}, answers
    assert answers["auth_failed"] > 0, answers
    busy_closes = sum("the server is busy" in r for r in disconnect_reasons(server_log))
    assert busy_closes == answers["busy"] + answers["closed"]
    assert peak_pending <= 1 + 8
    assert rss_growth < 64 << 20
    # The chat latency under the flood is not asserted here: on a shared 2-core machine
    # its ratio to the quiet windows ranges 1.1-2.4x from run to run (median ~1.7x), so a
    # timed assertion would fail one run in four whatever the server does. It is measured
    # by `python -m bench.login_flood` against quiet windows of the same run.
