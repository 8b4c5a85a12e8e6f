"""Summarise py-spy raw profiles (``python -m bench --profile DIR``): top functions by own time
and by inclusive time. ``python -m bench.profiles DIR/throughput-*.txt [--top N]``."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarise(paths: list[Path], top: int = 25, match: str = "") -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = stack.split(";")
            own[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples
    if not total:
        return "no samples"
    lines = [f"{total} samples from {len(paths)} profile(s)", "", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common() if match in name][
        :top
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only inclusive frames containing this text")
    args = parser.parse_args()
    print(summarise(args.paths, args.top, args.match))


if __name__ == "__main__":
    main()
