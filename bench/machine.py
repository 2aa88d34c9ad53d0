"""What a report says about its run: the command, the machine, and the versions of everything."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil
import psycopg

from devtools.with_redis import redis_server_binary
from tests.live import ROOT

PACKAGES = (
    "Django",
    "channels",
    "channels-redis",
    "daphne",
    "Twisted",
    "uvicorn",
    "uvloop",
    "granian",
    "celery",
    "kombu",
    "redis",
    "psycopg",
    "psycopg-pool",
    "websockets",
)


def describe_run(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "command": " ".join([".venv/bin/python -m bench", *map(shlex.quote, args.argv)]),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git(),
        "cpu": _cpu_model(),
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "os": _os_name(),
        "load_at_start": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "postgres": _postgres_version(args.postgres),
        "redis_server": _redis_version(),
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _git() -> str:
    def run(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    commit = run("rev-parse", "--short", "HEAD")
    dirty = run("status", "--porcelain", "--untracked-files=no")
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _postgres_version(server_url: str) -> str:
    try:
        with psycopg.connect(f"{server_url}/postgres") as connection:
            return str(connection.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except psycopg.Error as exc:
        return f"unknown ({exc})"


def _redis_version() -> str:
    done = subprocess.run([redis_server_binary(), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.split()[2].removeprefix("v=") if done.stdout else "unknown"
