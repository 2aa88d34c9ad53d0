"""A progress bar on stderr for a run of many steps: done/total, elapsed, and time left."""

from __future__ import annotations

import sys
import time

WIDTH = 30


class Progress:
    """Counts weighted steps; each `step()` prints one line, between the log lines."""

    def __init__(self, total: float) -> None:
        self.total = max(total, 1e-9)
        self.done = 0.0
        self.started = time.monotonic()

    def add(self, weight: float) -> None:
        """More work than planned (a step that was not known at the start)."""
        self.total += weight

    def step(self, label: str, weight: float = 1.0) -> None:
        self.done = min(self.done + weight, self.total)
        self.show(label)

    def show(self, label: str) -> None:
        fraction = self.done / self.total
        elapsed = time.monotonic() - self.started
        left = elapsed / fraction - elapsed if fraction > 0.02 else float("nan")
        filled = int(WIDTH * fraction)
        bar = "#" * filled + "-" * (WIDTH - filled)
        line = f"[{bar}] {100 * fraction:3.0f}%  {_clock(elapsed)} elapsed, ~{_clock(left)} left  {label}"
        print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?:??"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
