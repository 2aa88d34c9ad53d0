"""Sampling profiles of running processes with py-spy, summed by package and by function.

Only with `--profile`: sampling costs the profiled process some CPU, so the figures of a
profiled phase are not the ones to quote. Stacks are read in py-spy's raw (collapsed) form;
each sample's innermost frame is where the time went ("self" time).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.stack import BIN, ROOT

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")
OURS = ("events", "delivery", "workers", "project", "messaging", "bench")


class Profiles:
    """py-spy recorders started together, read together."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, pid: int, seconds: float, *, subprocesses: bool = False) -> None:
        out = self.folder / f"profile-{name}-{pid}.txt"
        command = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100"]
        # --gil: only the thread holding the GIL, i.e. where the Python CPU goes, not I/O waits.
        command += ["--format", "raw", "--output", str(out), "--nonblocking", "--gil"]
        if subprocesses:
            command.append("--subprocesses")
        popen = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.running[name] = (popen, out)

    def finish(self) -> dict[str, dict[str, Any]]:
        found = {}
        for name, (popen, out) in self.running.items():
            try:
                popen.wait(60)
            except subprocess.TimeoutExpired:
                popen.kill()
            if out.exists():
                found[name] = summarise(out.read_text(errors="replace"))
        self.running.clear()
        return found


def summarise(raw: str, top: int = 8) -> dict[str, Any]:
    """Share of samples per package and per function, by the innermost frame."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    ours_inclusive: Counter[str] = Counter()  # samples with one of our functions anywhere on the stack
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        for name in {_ours(frame) for frame in frames} - {None}:
            ours_inclusive[name] += count  # type: ignore[index]
        leaf = frames[-1]
        matched = FRAME.match(leaf)
        function, file = (matched["function"], matched["file"]) if matched else (leaf, "")
        by_package[package_of(file)] += count
        by_function[f"{function} ({Path(file).name})"] += count
        total += count
    share = lambda counter: [[key, round(100 * value / total, 1)] for key, value in counter.most_common(top)]  # noqa: E731
    return {
        "samples": total,
        "packages": share(by_package),
        "functions": share(by_function),
        "ours_inclusive": share(ours_inclusive),
    }


def _ours(frame: str) -> str | None:
    matched = FRAME.match(frame)
    if matched and package_of(matched["file"]).endswith("(ours)"):
        return f"{matched['function']} ({matched['file']})"
    return None


def package_of(file: str) -> str:
    """py-spy names files by module path: 'django/db/models/query.py' is django's,
    'delivery/consumers.py' ours, 'threading.py' or 'asyncio/events.py' the stdlib's."""
    if not file:
        return "native"
    top = Path(file).parts[0].removesuffix(".py")
    if top in OURS:
        return f"{top} (ours)"
    home = next((folder for folder in OURS if (ROOT / folder / f"{top}.py").exists()), None)
    if home is not None:  # py-spy sometimes names one of our modules by its file alone
        return f"{home} (ours)"
    if top in sys.stdlib_module_names or top.startswith("<"):
        return "python (stdlib)"
    return top
