"""Real processes for end-to-end tests: daphne and Celery workers on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devtools.with_redis import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 30.0


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL naming the database that `settings_dict` (the test database) names."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    if engine.endswith("postgresql"):
        user = quote(settings_dict.get("USER") or "", safe="")
        password = quote(settings_dict.get("PASSWORD") or "", safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"
    raise NotImplementedError(f"no DATABASE_URL form for {engine}")


# What notable_logs() keeps: log levels, supervisord's and the watchdog's lines, deliveries.
NOTABLE = (" WARNING ", " ERROR ", " CRITICAL ", " WARN ", " INFO spawned", "watchdog", "deliver_events[")


@dataclass
class ManagedProcess:
    """A child in its own process group, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_timeout_s: float = 10.0  # SIGTERM, then SIGKILL to the group after this long

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group: the process and every child it forked."""
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def kill_children(self) -> list[int]:
        """SIGKILL the process's children (a Celery pool's workers), not the process."""
        children = subprocess.run(
            ["pgrep", "-P", str(self.popen.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)
        return [int(pid) for pid in children]

    def stop(self, timeout: float | None = None) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(self.stop_timeout_s if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class LiveStack:
    """daphne and Celery, started on demand against the test database and Redis."""

    env: dict[str, str]
    workdir: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    port: int = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/notifications/"

    def spawn(self, name: str, *command: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> ManagedProcess:
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            command, cwd=cwd, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process = ManagedProcess(name=name, popen=popen, log_path=log_path)
        self.processes.append(process)
        return process

    def start_web(self, *daphne_options: str) -> ManagedProcess:
        if not self.port:
            self.port = free_port()
        web = self.spawn(
            "web",
            str(BIN / "daphne"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            *daphne_options,
            "project.asgi:application",
        )
        self._wait(web, self._web_answers)
        return web

    def start_worker(self, name: str = "worker", concurrency: int = 2) -> ManagedProcess:
        worker = self.spawn(
            name,
            str(BIN / "celery"),
            "--app",
            "project",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{name}-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        )
        self._wait(worker, lambda: " ready." in worker.log())
        return worker

    def start_beat(self) -> ManagedProcess:
        schedule = self.workdir / "celerybeat-schedule"
        beat = self.spawn(
            "beat", str(BIN / "celery"), "--app", "project", "beat", "--loglevel", "INFO", "--schedule", str(schedule)
        )
        self._wait(beat, lambda: "beat: Starting" in beat.log())
        return beat

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log()[-6000:]}" for p in self.processes)

    def notable_logs(self, limit: int = 200) -> str:
        """The last `limit` lines of every log that are not access lines or tracebacks: the
        warnings, errors, restarts and deliveries, for a scenario whose tail is all requests."""
        lines = [
            f"{p.name}: {line}"
            for p in self.processes
            for line in p.log().splitlines()
            if any(mark in line for mark in NOTABLE) and not line.startswith((" ", "Traceback"))
        ]
        return "\n".join(lines[-limit:])

    def _web_answers(self) -> bool:
        """Whether daphne answers HTTP: /healthz may say 503 until beat's first sweep."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=2) as response:  # noqa: S310 (our URL)
                return response.status == 200
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, process: ManagedProcess, ready: Any) -> None:
        """Wait until `ready()` holds, failing at once if the process exits first."""
        self._wait(process, ready)

    def _wait(self, process: ManagedProcess, ready: Any) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if not process.alive():
                raise RuntimeError(f"{process.name} exited during start-up:\n{process.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.name} not ready after {START_TIMEOUT_S}s:\n{process.log()[-4000:]}")
            time.sleep(0.1)


async def in_db_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ORM code from a live test's event loop, closing the thread's connection after:
    PostgreSQL will not drop the test database while a pooled thread still holds one."""
    import asyncio

    from django.db import connections

    def run() -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)
