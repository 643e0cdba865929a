"""50 throwaway accounts on one address flood direct messages: held to the address's share.

Every forged envelope is refused and none stored; every signature check ran in
a crypto thread (counted there: a check on the event loop is not) and the
address was charged no more than its share of their time; most of the flood
was never even read; a member logging in meanwhile from another address gets
in; the members chatting lose nothing and see no error. How much the flood
costs the members' latency is measured by the benchmark (`python -m
bench.dm_flood`, bench/README.md), which runs these same members, accounts
and flood against a `schat serve` process; this test prints the same figures
(with -s) but asserts none of them.

Each flood account stays inside the per-member message rate (4.5 of 5 per
second) and has an RSA-8192 key registered, the most expensive signature the
server checks; every envelope passes the checks that need no crypto and fails
only the signature. As in test_login_flood.py the server runs alone in this
process on a core of its own; the members chat from one subprocess
(chatters.py) and the flood comes from another (flood_dms.py).

The members' probe sends far more than 5 lines a second, so the message rate
limits are raised for this test: what holds the room together here is the
signature lane (checks off the loop, in a per-address share of the crypto
threads), not the message rate.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from chatkit import KEY_DIR
from hostile import assert_no_traceback
from latency import on_client_cpu, p99, quiet_p99

from schat.crypto.keys import import_public_key, public_der
from schat.server.limits import DM_CHECK_BURST

MEMBERS = 6
FLOOD_ACCOUNTS = 50
FLOOD_RATE = 4.5  # per account per second: inside the default rate limit of 5
FLOOD_SECONDS = 3.0  # about 300 probes and 650 envelopes a round
# The flood is sent in two rounds and its p99 is the median over them; the quiet
# p99 is the median over windows as long as a round. Unlike the login flood
# (test_login_flood.py), quiet windows cannot be taken between the rounds: most
# envelopes are still waiting in the flood's socket buffers when a round ends,
# and the server goes on checking them at the address's share for a minute, so
# a window after a round would not be quiet (and would flatter the ratio).
ROUNDS = 2
QUIET = ROUNDS * FLOOD_SECONDS
# The flood's accounts read nothing, so the room's chat piles up for them: at 100
# probes a second it stays well under the outbound cap for the test's length.
PROBE_INTERVAL = 0.01
FLOOD_SOURCE = "127.0.0.2"
LOGIN_SOURCE = "127.0.0.3"
# One check may start with the share's last millisecond and run past it: an RSA-8192
# check takes about 1 ms of a thread's CPU time, so 50 ms holds it many times over.
ONE_CHECK = 0.05
HERE = Path(__file__).parent
ROOT = HERE.resolve().parents[1]


def _decrypted_from(srv, address: str) -> int:
    """Messages the server has decrypted from the connections of ``address``."""
    def count():
        return sum(link.conn.stats.messages_received for link in srv.server.links
                   if link.address == address and link.conn is not None)
    return srv.thread.call(count)


def _signature_checks(srv):
    """(checks counted by the crypto threads, their thread CPU seconds, checks running,
    how each dm_send was answered, time.monotonic()), all read at one moment on the loop."""
    def read():
        stats = srv.server.stats
        return (stats.signature_checks, stats.signature_check_seconds, srv.server.dm.lane.running,
                dict(srv.server.dm.outcomes), time.monotonic())
    return srv.thread.call(read)


def test_dm_flood_from_one_address_is_refused_and_held_to_its_share(server_cpu, server_factory,
                                                                    server_log, user_keys):
    srv = server_factory(rate_limit=1000, rate_burst=2000, address_rate_limit=0,
                         max_unauthenticated_per_ip=1000)
    for i in range(MEMBERS):
        srv.store.add(f"member{i}", f"member{i}-pass-1")
    # The probe's receiver is the flood's target: it has a key, so every check runs.
    srv.store.set_public_key("member1", public_der(user_keys["bob"]))
    big = public_der(import_public_key((KEY_DIR / "flood8192.pub.pem").read_bytes()))
    for i in range(FLOOD_ACCOUNTS):
        srv.store.add(f"flood{i}", f"flood{i}-pass-1", public_key_der=big)
    srv.store.add("latecomer", "latecomer-pass-1")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    chatters = subprocess.Popen(
        [sys.executable, str(HERE / "chatters.py"), srv.host, str(srv.port), str(MEMBERS),
         str(PROBE_INTERVAL)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        preexec_fn=on_client_cpu)
    flood = None
    try:
        assert chatters.stdout.readline().strip() == "ready"
        # The flood's accounts are members too: they log in before the quiet
        # period, so both periods have the same room and only the DMs differ.
        flood = subprocess.Popen(
            [sys.executable, str(HERE / "flood_dms.py"), srv.host, str(srv.port), FLOOD_SOURCE,
             "member1", str(FLOOD_ACCOUNTS), str(FLOOD_RATE), str(FLOOD_SECONDS), str(ROUNDS),
             LOGIN_SOURCE, "latecomer"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
            preexec_fn=on_client_cpu)
        assert flood.stdout.readline().strip() == "ready"
        read_before = _decrypted_from(srv, FLOOD_SOURCE)
        quiet_start = time.monotonic()
        threading.Event().wait(QUIET)
        quiet_end = time.monotonic()
        reports = []
        for _ in range(ROUNDS):
            flood.stdin.write("go\n")
            flood.stdin.flush()
            reports.append(json.loads(flood.stdout.readline()))
        # Decrypted and answered by the end of the flood: the rest waited in the
        # flood's own socket buffers (the server stops reading a congested address).
        read = _decrypted_from(srv, FLOOD_SOURCE) - read_before
        checks, check_seconds, running, answered, checked_at = _signature_checks(srv)
        chat_out, _ = chatters.communicate(timeout=30)
        flood.communicate("", timeout=10)
    finally:
        for proc in (chatters, flood):
            if proc is not None and proc.poll() is None:
                proc.kill()
    chat = json.loads(chat_out)
    assert chat["errors"] == [] and chat["lost"] == 0 and chat["unacked"] == 0, chat
    samples = chat["samples"]
    width = statistics.median(r["end"] - r["start"] for r in reports)
    flood_p99 = statistics.median(p99(samples, r["start"], r["end"]) for r in reports)
    quiet = quiet_p99(samples, quiet_start, quiet_end, width)
    sent = sum(r["sent"] for r in reports)
    print(f"\nchat latency p99: quiet {quiet * 1000:.2f} ms, under a DM flood of "
          f"{sent} envelopes from {FLOOD_ACCOUNTS} accounts on one address "
          f"{flood_p99 * 1000:.2f} ms (median of {ROUNDS} rounds of {width:.2f} s); decrypted "
          f"during the flood {read}, answered {answered}; signature checks in the crypto "
          f"threads {checks} ({check_seconds:.3f} s of CPU); logins during the flood "
          f"{[r['login'] for r in reports]}")
    # Not one forged envelope was stored or delivered; each that was read was
    # checked and refused as forged, or refused unchecked.
    assert srv.server.dm.mailbox.count("member1") == 0
    assert set(answered) <= {"invalid", "throttled", "busy"}, answered
    assert answered.get("invalid", 0) > 0, answered
    # Most were never even read while the flood lasted: the address's share of the
    # signature checks ran out, and its connections were held.
    assert read < sent / 2, (read, sent)
    # Every envelope refused as forged had its signature checked by a crypto thread,
    # which counts each check it runs (a check run on the event loop is not counted).
    assert answered["invalid"] <= checks <= answered["invalid"] + running, (checks, answered)
    # Within the address's share of the threads' time: what its checks cost in CPU is at
    # most the share's burst, plus the share per second since the flood began, plus the
    # one check that may have started on the share's last remainder (one at a time).
    share = srv.server.settings.dm_check_share
    allowed = DM_CHECK_BURST + share * (checked_at - reports[0]["start"]) + ONE_CHECK
    assert check_seconds <= allowed, (check_seconds, allowed, checks)
    # A member logging in meanwhile from another address is let in.
    assert all(r["login"]["ok"] for r in reports), reports
    assert_no_traceback(server_log)
    # The chat latency under the flood is not asserted here: on a shared 2-core machine two
    # busy processes started with the flood took its ratio to the quiet windows to 5-8x
    # while every check above held (1.6-1.8x on a quiet machine), so a timed assertion fails
    # by chance. It is measured by `python -m bench.dm_flood` against quiet windows of the
    # same run.
