"""PNG plots of a run: latency CDFs per rate, throughput against offered rate, fan-out, servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

COLORS = {
    "naive": "tab:gray",
    "product": "tab:blue",
    "daphne": "tab:blue",
    "uvicorn": "tab:orange",
    "granian": "tab:green",
}
PATHS = {"emitter": "emitting process", "http": "HTTP ingest", "http-api": "HTTP to an API process"}


def draw_all(results: dict[str, Any], out: Path) -> dict[str, str]:
    """Draw what the results allow; answers {name: file name} of the plots written."""
    drawn: dict[str, str] = {}
    if "delivery" in results:
        phases = results["delivery"]["phases"]
        for path in sorted({phase["path"] for phase in phases}):
            drawn[f"cdf_{path}"] = _delivery_cdf(phases, path, out / f"latency-cdf-{path}.png")
        drawn["throughput"] = _throughput(phases, out / "throughput.png")
    if "fanout" in results and results["fanout"]["events"]:
        drawn["fanout"] = _fanout(results["fanout"], out / "fanout.png")
    if "servers" in results and results["servers"]["servers"]:
        drawn["servers"] = _servers(results["servers"]["servers"], out / "servers-cdf.png")
    return drawn


def _cdf(axes: Any, points_ms: list[float], label: str, color: str, style: str = "-") -> None:
    if points_ms:
        fractions = [(index + 1) / len(points_ms) for index in range(len(points_ms))]
        axes.plot(points_ms, fractions, style, label=label, color=color, drawstyle="steps-post")


def _save(figure: Any, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def _delivery_cdf(phases: list[dict[str, Any]], path: str, file: Path) -> str:
    rates = sorted({phase["rate"] for phase in phases if phase["path"] == path})
    figure, axes_row = plt.subplots(1, len(rates), figsize=(4.2 * len(rates), 3.6), squeeze=False)
    for axes, rate in zip(axes_row[0], rates, strict=True):
        for phase in phases:
            if phase["path"] == path and phase["rate"] == rate:
                _cdf(axes, phase["cdf"], f"{phase['system']} e2e", COLORS[phase["system"]])
                if path != "emitter":
                    _cdf(
                        axes, phase.get("http_cdf", []), f"{phase['system']} HTTP answer", COLORS[phase["system"]], ":"
                    )
        axes.set_xscale("log")
        axes.set_title(f"{rate:g} events/s ({PATHS[path]})")
        axes.set_xlabel("emit -> tab (ms, log)")
        axes.grid(True, which="both", alpha=0.3)
    axes_row[0][0].set_ylabel("fraction of frames")
    axes_row[0][0].legend(loc="lower right", fontsize="small")
    return _save(figure, file)


def _throughput(phases: list[dict[str, Any]], file: Path) -> str:
    figure, axes = plt.subplots(figsize=(6, 4))
    top = 0.0
    for system in ("naive", "product"):
        for path, style in (("emitter", "-o"), ("http", "--s"), ("http-api", ":^")):
            chosen = sorted((p for p in phases if p["system"] == system and p["path"] == path), key=lambda p: p["rate"])
            if chosen:
                rates = [p["rate"] for p in chosen]
                top = max(top, *rates)
                label = f"{system}, {PATHS[path]}"
                axes.plot(rates, [p["reached"] for p in chosen], style, color=COLORS[system], label=label)
    axes.plot([0, top], [0, top], ":", color="black", alpha=0.4, label="offered")
    axes.set_xlabel("offered events/s")
    axes.set_ylabel("delivered events/s (to all 10 tabs)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, file)


def _fanout(fanout: dict[str, Any], file: Path) -> str:
    figure, axes = plt.subplots(figsize=(6, 4))
    for event in fanout["events"]:
        style = "-" if event["repeat"] == 1 else "--"
        _cdf(
            axes,
            [value / 1000 for value in event["cdf"]],
            f"{event['system']} #{event['repeat']}",
            COLORS[event["system"]],
            style,
        )
    axes.set_xlabel("seconds from emit until the tab has it")
    axes.set_ylabel(f"fraction of the {fanout['connected']:,} connected tabs")
    axes.set_title(f"one event to {fanout['recipients']:,} users")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, file)


def _servers(servers: list[dict[str, Any]], file: Path) -> str:
    rates = sorted({phase["rate"] for row in servers for phase in row["phases"]})
    figure, axes_row = plt.subplots(1, len(rates), figsize=(4.2 * len(rates), 3.6), squeeze=False)
    for axes, rate in zip(axes_row[0], rates, strict=True):
        for row in servers:
            for phase in row["phases"]:
                if phase["rate"] == rate:
                    _cdf(axes, phase["cdf"], row["server"], COLORS.get(row["server"], "black"))
        axes.set_xscale("log")
        axes.set_title(f"{rate:g} events/s, emitting process")
        axes.set_xlabel("emit -> tab (ms, log)")
        axes.grid(True, which="both", alpha=0.3)
    axes_row[0][0].set_ylabel("fraction of frames")
    axes_row[0][0].legend(loc="lower right", fontsize="small")
    return _save(figure, file)
