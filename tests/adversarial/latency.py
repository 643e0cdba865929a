"""Latency windows and CPU placement shared by the flood tests.

The server under test runs in the test process, pinned to one core; the
members being measured and the attackers run in subprocesses on the other
cores, as on a real host whose members and attackers are elsewhere (like the
benchmark). Every process stamps its events with time.monotonic(), one clock
system-wide, so a window observed by one process cuts the samples of another.
"""

from __future__ import annotations

import os
import statistics


def p99(samples, start: float, end: float) -> float:
    """p99 latency of the probes sent within [start, end)."""
    window = [lat for sent, lat in samples if start <= sent < end]
    assert len(window) >= 10, f"only {len(window)} probes in a {end - start:.2f} s window"
    return statistics.quantiles(window, n=100, method="inclusive")[98]


def quiet_p99(samples, start: float, end: float, width: float) -> float:
    """Median p99 over the quiet period cut into windows as long as a flood round.

    Equal windows hold about as many probes as a flood round, so both figures
    are the same estimate from the same number of samples.
    """
    count = max(1, int((end - start) // width))
    return statistics.median(p99(samples, start + k * width, start + (k + 1) * width)
                             for k in range(count))


def interleaved(samples, quiet, floods):
    """Each flood window's p99 against the quiet windows on either side of it.

    ``quiet`` and ``floods`` are (start, end) windows taken in turn, quiet
    first and last: q0 f1 q1 f2 q2 ... Machine noise (other processes, CPU
    frequency) drifts over seconds, so each flood round is compared with the
    quiet periods next to it in time, as the benchmark compares with a
    reference measured in the same run; the windows are equally long, so each
    p99 is the same estimate from about the same number of probes. Returns
    [(flood p99, reference: the mean of its neighbours' quiet p99), ...].
    """
    assert len(quiet) == len(floods) + 1, (quiet, floods)
    quiet_p99 = [p99(samples, *window) for window in quiet]
    return [(p99(samples, *window), (quiet_p99[k] + quiet_p99[k + 1]) / 2)
            for k, window in enumerate(floods)]


def median_ratio(rounds) -> float:
    """The median over rounds of flood p99 / quiet reference."""
    return statistics.median(flood / quiet for flood, quiet in rounds)


def describe(rounds) -> str:
    """One line with every round's figures, in milliseconds."""
    return ", ".join(f"{quiet * 1000:.2f} -> {flood * 1000:.2f} ms ({flood / quiet:.2f}x)"
                     for flood, quiet in rounds)


def split_cpus():
    """(server CPUs, client CPUs): the server gets a core of its own when there are two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


def on_client_cpu():
    """preexec_fn of the client subprocesses: run on the cores the server does not use."""
    os.sched_setaffinity(0, split_cpus()[1])


def on_attacker_cpu():
    """preexec_fn of the attacking subprocesses: the clients' cores, at the lowest priority.

    On a real host the attackers' own work (their key exchanges, their sealing) runs
    elsewhere; here it shares a core with the members being measured, so it yields
    to them, and what the members' latency shows is the server's.
    """
    on_client_cpu()
    os.nice(19)
