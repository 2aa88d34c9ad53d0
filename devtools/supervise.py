"""`python -m devtools.supervise`: run deploy/supervisord.conf in the foreground, with defaults
for the variables it needs (run folder var/run, supervisor on 127.0.0.1:9001, web on
127.0.0.1:8000, 2 worker processes). Arguments are passed on to supervisord."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    defaults = {
        "NOTIFY_RUN_DIR": str(ROOT / "var" / "run"),
        "SUPERVISOR_PORT": "9001",
        "HOST": "127.0.0.1",
        "PORT": "8000",
        "WORKER_CONCURRENCY": "2",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    Path(os.environ["NOTIFY_RUN_DIR"]).mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    supervisord = Path(bin_dir) / "supervisord"
    os.execv(supervisord, [str(supervisord), "-c", str(ROOT / "deploy" / "supervisord.conf"), *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
