"""Numbers for the report: percentiles, units, ratios and Markdown tables."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when empty)."""
    if not values:
        return float("nan")
    rank = max(math.ceil(fraction * len(values)) - 1, 0)
    return values[min(rank, len(values) - 1)]


def summary_ms(latencies_s: Iterable[float]) -> dict[str, float]:
    values = sorted(value * 1000 for value in latencies_s)
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": values[-1] if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def cdf_points(latencies_s: Sequence[float], points: int = 200) -> list[float]:
    """The latency (ms) at `points` evenly spaced quantiles: enough to draw a CDF."""
    values = sorted(value * 1000 for value in latencies_s)
    if not values:
        return []
    return [percentile(values, (index + 1) / points) for index in range(points)]


def ms(value: float | None) -> str:
    """A latency for a table: ms below 1 s, else seconds."""
    if value is None or value != value:  # nan
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def ratio(ours: float | None, baseline: float | None) -> str:
    """ours / baseline, as a multiplier ('x0.42'); '-' when either is missing or zero."""
    if ours is None or baseline is None or ours != ours or baseline != baseline or baseline == 0:
        return "-"
    value = ours / baseline
    return f"x{value:.2f}" if value < 10 else f"x{value:.0f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
