"""Summarise a py-spy collapsed-stack profile (``--format raw``): the top frames by own and by total samples.

.venv/bin/python bench/profile_top.py /tmp/daemon.txt --top 25
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """``fn (path/to/site-packages/pkg/mod.py:12)`` -> ``pkg/mod.py:fn``."""
    m = _FRAME.match(frame)
    if m is None:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "lib/python3", "/vk-eci/", "/perf/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{m['fn']}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    with open(args.file) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = [short(fr) for fr in stack.split(";")[1:]]  # the first is the thread
            samples += n
            if frames:
                own[frames[-1]] += n
            for fr in set(frames):
                total[fr] += n
    print(f"{samples} samples\n\n| own % | function |\n|---|---|")
    for fr, n in own.most_common(args.top):
        print(f"| {100 * n / samples:.1f} | `{fr}` |")
    print("\n| total % | function |\n|---|---|")
    for fr, n in total.most_common(args.top * 2):
        print(f"| {100 * n / samples:.1f} | `{fr}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
