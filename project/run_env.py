"""What a running `make run` tells `manage.py` in another terminal: var/run.env.

`make run` picks its Redis at start-up (the one at REDIS_URL, or an embedded one on a free
port) and runs with development settings; a command typed in a second terminal knows
neither. So `make run` writes them to var/run.env with its process id, and `manage.py`
takes from that file whatever its own environment does not set, while that process lives.
Nothing else reads the file: daphne, Celery and production settings never see it.
"""

from __future__ import annotations

import os
from pathlib import Path

RUN_ENV = Path(__file__).resolve().parent.parent / "var" / "run.env"
SHARED = ("DJANGO_DEBUG", "REDIS_URL", "CELERY_BROKER_URL", "REDIS_NAMESPACE", "DATABASE_URL", "PORT")


def run_env_write(environ: dict[str, str] | os._Environ[str], pid: int) -> None:
    lines = [f"NOTIFY_RUN_PID={pid}"] + [f"{name}={environ[name]}" for name in SHARED if environ.get(name)]
    RUN_ENV.parent.mkdir(exist_ok=True)
    RUN_ENV.write_text("\n".join(lines) + "\n")


def run_env_load() -> None:
    """Fill os.environ from var/run.env, if a `make run` that wrote it still runs."""
    try:
        text = RUN_ENV.read_text()
    except OSError:
        return
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if not _alive(values.pop("NOTIFY_RUN_PID", "")):
        return
    for name, value in values.items():
        os.environ.setdefault(name, value)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
