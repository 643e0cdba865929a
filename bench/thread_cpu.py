"""CPU time and context switches of each thread of a process, over a window.

    python bench/thread_cpu.py sample PID FILE [--interval 0.5]
    python bench/thread_cpu.py summary FILE --start T0 --end T1 [--deliveries N]

``sample`` reads ``/proc/PID/task/*/stat`` and ``status`` every interval until
the process ends and appends one JSON line per sample (``time.monotonic()``
stamps). ``summary`` takes the samples nearest to T0 and T1 (monotonic seconds)
and prints each thread's user and system CPU (per delivery with
``--deliveries``) and its voluntary and involuntary context switches per second.
``THREADS=1 bash bench/peer_profile.sh fixed 200`` samples the server this way
and prints the summary of the measured phase: how much of a delivery's CPU the
event loop takes and how much the store's writer thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time

TICK = os.sysconf("SC_CLK_TCK")


def snapshot(pid: int) -> dict:
    """{tid: [utime ticks, stime ticks, voluntary, involuntary switches]} of ``pid``."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        switches = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
                    if "ctxt_switches:" in line}
        threads[tid] = [int(fields[11]), int(fields[12]),
                        switches.get("voluntary_ctxt_switches", 0),
                        switches.get("nonvoluntary_ctxt_switches", 0)]
    return threads


def sample(pid: int, path: str, interval: float) -> None:
    with open(path, "a") as out:
        while True:
            try:
                threads = snapshot(pid)
            except OSError:
                return  # the process ended
            out.write(json.dumps({"t": time.monotonic(), "pid": pid, "threads": threads}) + "\n")
            out.flush()
            time.sleep(interval)


def summary(path: str, start: float, end: float, deliveries: int = 0) -> str:
    with open(path) as f:
        samples = [json.loads(line) for line in f if line.strip()]
    if len(samples) < 2:
        return "# fewer than two samples"
    first = min(samples, key=lambda s: abs(s["t"] - start))
    last = min(samples, key=lambda s: abs(s["t"] - end))
    span = last["t"] - first["t"]
    if span <= 0:
        return "# the window holds no samples"
    scale = deliveries * span / (end - start) if deliveries else 0
    unit = "µs per delivery" if scale else "% of a core"
    lines = [f"| thread | user ({unit}) | system ({unit}) | voluntary switches/s | involuntary/s |",
             "|---|---:|---:|---:|---:|"]
    pid = str(last["pid"])
    for tid, now in sorted(last["threads"].items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
        before = first["threads"].get(tid)
        if before is None:
            continue
        ut, st, vol, invol = (a - b for a, b in zip(now, before))
        if ut + st + vol + invol == 0:
            continue
        if scale:
            user, system = ut / TICK * 1e6 / scale, st / TICK * 1e6 / scale
        else:
            user, system = ut / TICK / span * 100, st / TICK / span * 100
        name = "event loop (main)" if tid == pid else f"thread {tid}"
        lines.append(f"| {name} | {user:.2f} | {system:.2f} | {vol / span:.0f} | {invol / span:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample")
    s.add_argument("pid", type=int)
    s.add_argument("file")
    s.add_argument("--interval", type=float, default=0.5)
    m = sub.add_parser("summary")
    m.add_argument("file")
    m.add_argument("--start", type=float, required=True)
    m.add_argument("--end", type=float, required=True)
    m.add_argument("--deliveries", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "sample":
        sample(args.pid, args.file, args.interval)
    else:
        print(summary(args.file, args.start, args.end, args.deliveries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
