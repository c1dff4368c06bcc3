"""Top costs from a py-spy `--format raw` profile (collapsed stacks: `frame;frame;... count`)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

IDLE = re.compile(r"\b(select|epoll_wait|poll|_worker|wait|_wait_for_tstate_lock)\b")


def _frames(stack: str) -> list[str]:
    frames = [frame for frame in stack.split(";") if frame and not frame.startswith(("thread ", "process "))]
    return [re.sub(r"\s*\(.*?:(\d+)\)$", "", frame) + _where(frame) for frame in frames]


def _where(frame: str) -> str:
    match = re.search(r"\((.*?):\d+\)$", frame)
    if not match:
        return ""
    path = match.group(1)
    for marker in ("site-packages/", "/server/", "lib/python3"):
        if marker in path:
            return f" ({path.split(marker, 1)[1]})"
    return f" ({Path(path).name})"


def summarize(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares of the busiest functions, idle waits left out."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = _frames(stack)
        if not frames or IDLE.search(frames[-1].split(" (")[0]):
            continue
        samples = int(count)
        total += samples
        self_counts[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"busy samples: {total}", "", "self %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in self_counts.most_common(top)] if total else []
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in inclusive.most_common(top * 2)] if total else []
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
