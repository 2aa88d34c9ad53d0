"""`make run`: migrate, create the demo users, then run the Procfile in the foreground."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from project.run_env import run_env_write

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], check=True, cwd=ROOT)


def main() -> int:
    os.environ.setdefault("DJANGO_DEBUG", "1")
    port = os.environ.setdefault("PORT", "8000")
    (ROOT / "var").mkdir(exist_ok=True)
    # honcho replaces this process below and keeps its pid: the file is good while it runs.
    run_env_write(os.environ, os.getpid())
    manage("migrate", "--verbosity", "0")
    manage("seed_demo")
    print(f"\n  Demo page: http://127.0.0.1:{port}/  (log in as alice or bob; Ctrl-C stops everything)\n", flush=True)
    honcho = shutil.which("honcho", path=str(Path(sys.executable).parent)) or "honcho"
    # honcho starts web, worker and beat, prefixes their logs, and stops all of them on
    # Ctrl-C; exec so that its exit status is ours.
    os.execv(honcho, [honcho, "--procfile", str(ROOT / "Procfile"), "--app-root", str(ROOT), "start", "--port", port])
    return 0


if __name__ == "__main__":
    sys.exit(main())
