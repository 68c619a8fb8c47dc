"""Summarise a py-spy ``--format raw`` profile: samples per thread, inclusive and self time.

    uv run python bench/spy_summary.py PROFILE [--top 30] [--thread hub-pipeline] [--active]

``--active`` leaves out samples whose innermost frame is a wait (lock, queue, select), so the
percentages are of CPU, not of wall time.
"""

from __future__ import annotations

import argparse
import collections
import sys

IDLE = ("Condition.wait", "EpollSelector.select", "Event.wait", "select (", "Queue.get",
        "_wait_for_tstate_lock", "sleep", "lock.acquire")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--thread", help="only threads whose name contains this")
    parser.add_argument("--active", action="store_true", help="drop idle samples")
    args = parser.parse_args()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    with open(args.profile) as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            thread = frames[0].split(": ", 1)[-1]
            if args.thread and args.thread not in thread:
                continue
            if args.active and any(frames[-1].startswith(i) for i in IDLE):
                continue
            threads[thread] += count
            total += count
            for frame in set(frames[1:]):
                inclusive[frame] += count
            own[frames[-1]] += count
    print(f"samples: {total}")
    print("per thread:")
    for name, count in threads.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("inclusive:")
    for frame, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {frame[:140]}")
    print("self:")
    for frame, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {frame[:140]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
