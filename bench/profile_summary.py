"""Where a py-spy profile spent its time: inclusive share per function, per thread.

    python bench/profile_summary.py PROFILE.speedscope.json [--top 25] [--thread MainThread]

Reads py-spy's speedscope output (``bash bench/peer.sh`` with ``PROFILE=1``
writes one for the server at 10,000 deliveries/s with 200 members) and prints,
for each sampled thread, the functions on the most samples' stacks: the share
of that thread's busy samples (those not waiting in the event loop's
``select``) in which the function was running or calling below.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter


def summarize(path: str, top: int, thread: str = "") -> str:
    data = json.load(open(path, encoding="utf-8"))
    frames = data["shared"]["frames"]
    lines = []
    for profile in data["profiles"]:
        name = profile.get("name", "?")
        if thread and thread not in name:
            continue
        samples = profile.get("samples", [])
        weights = profile.get("weights") or [1] * len(samples)
        everything = sum(weights)
        total = 0.0
        inclusive: Counter = Counter()
        for stack, weight in zip(samples, weights):
            if stack and frames[stack[-1]]["name"].endswith("select"):
                continue  # the loop waiting for I/O: idle
            total += weight
            seen = set()
            for index in stack:
                f = frames[index]
                label = f"{f['name']} ({f.get('file', '?').rsplit('/', 1)[-1]})"
                if label not in seen:
                    seen.add(label)
                    inclusive[label] += weight
        if not total:
            continue
        lines.append(f"## {name}: busy {100 * total / everything:.0f} % of what was sampled")
        lines.append("")
        lines.append("| share | function |")
        lines.append("|---:|---|")
        for label, weight in inclusive.most_common(top):
            lines.append(f"| {100 * weight / total:.1f} % | `{label}` |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default="", help="only threads whose name contains this")
    args = parser.parse_args(argv)
    print(summarize(args.profile, args.top, args.thread))
    return 0


if __name__ == "__main__":
    sys.exit(main())
