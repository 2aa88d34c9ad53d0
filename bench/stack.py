"""What every benchmark needs: a stack of its own, child processes it talks to, and meters.

The stack is a throwaway PostgreSQL database on the local server (dropped afterwards), a
private redis-server on a free port (and, when asked, a second one as the Celery broker,
so the broker can be stopped without the channel layer), daphne and a Celery worker
started as tests/live.py starts them. Nothing shared is touched, and all traffic stays on
127.0.0.1.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from tests.live import ROOT, LiveStack, ManagedProcess
from tests.servers import PrivateRedis

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
PYTHON = sys.executable


def log(message: str) -> None:
    """Progress goes to stderr; stdout is kept for the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the throwaway database -----------------------------------------------------------------


def create_database(server_url: str) -> str:
    name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- the stack -------------------------------------------------------------------------------


@dataclass
class BenchStack:
    """daphne, a Celery worker and their private servers, for one benchmark configuration."""

    layer: str
    workdir: Path
    env: dict[str, str]
    database: str
    redis: PrivateRedis
    broker: PrivateRedis | None
    live: LiveStack = field(init=False)

    def __post_init__(self) -> None:
        self.live = LiveStack(env=self.env, workdir=self.workdir)

    @property
    def http_url(self) -> str:
        return self.live.http_url

    @property
    def ws_url(self) -> str:
        return self.live.ws_url

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.live.processes if p.name == name)

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout.strip()

    def child(self, module: str, name: str) -> Child:
        """A helper process of ours (the emitter, the tabs) with this stack's environment."""
        return Child.start([PYTHON, "-m", module], env=self.env, log_path=self.workdir / f"{name}.log")


@contextmanager
def bench_stack(
    layer: str,
    *,
    postgres: str = DEFAULT_POSTGRES,
    separate_broker: bool = False,
    workers: int = 2,
    log_level: str = "INFO",
    extra_env: dict[str, str] | None = None,
    keep_logs: bool = False,
) -> Iterator[BenchStack]:
    """A migrated database, Redis, daphne and one Celery worker (`workers` processes)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{layer}-"))
    redis = PrivateRedis(workdir=workdir).start()
    broker: PrivateRedis | None = None
    if separate_broker:
        broker_dir = workdir / "broker"
        broker_dir.mkdir()
        broker = PrivateRedis(workdir=broker_dir).start()
    database = create_database(postgres)
    env = dict(
        os.environ,
        DATABASE_URL=f"{postgres}/{database}",
        REDIS_URL=redis.url,
        CELERY_BROKER_URL=broker.url if broker is not None else redis.broker_url,
        REDIS_NAMESPACE=f"bench-{secrets.token_hex(3)}",
        CHANNEL_LAYER=layer,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-secret-key",  # noqa: S106 (a throwaway stack on 127.0.0.1)
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL=log_level,
        **(extra_env or {}),
    )
    stack = BenchStack(layer=layer, workdir=workdir, env=env, database=database, redis=redis, broker=broker)
    try:
        stack.manage("migrate", "--noinput")
        stack.live.start_web()
        stack.live.start_worker(concurrency=workers)
        log(f"stack up: layer={layer} db={database} redis={redis.port} daphne={stack.live.port} logs={workdir}")
        yield stack
    finally:
        stack.live.stop_all()
        redis.stop()
        if broker is not None:
            broker.stop()
        try:
            drop_database(postgres, database)
        except psycopg.Error as exc:
            log(f"could not drop database {database}: {exc}")
        for name, count, message in log_problems(workdir):
            log(f"  {name}.log: {count} x {message}")
        if not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        log(f"stack down: {database} dropped" + ("" if not keep_logs else f", logs kept in {workdir}"))


LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (.*)$")


def log_problems(workdir: Path, limit: int = 5) -> list[tuple[str, int, str]]:
    """The WARNING and ERROR lines of the processes' logs, alike ones counted together
    (numbers blanked), most frequent first: what went wrong during the run, if anything."""
    found: list[tuple[str, int, str]] = []
    for path in sorted(workdir.glob("*.log")):
        counts: dict[str, int] = {}
        for line in path.read_text(errors="replace").splitlines():
            matched = LOG_LINE.match(line)
            if matched:
                message = re.sub(r"\d+", "N", f"{matched.group(1)} {matched.group(2)}")[:160]
                counts[message] = counts.get(message, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:limit]
        found += [(path.stem, count, message) for message, count in ranked]
    return found


# --- helper processes that answer JSON lines -------------------------------------------------


class Child:
    """A process of ours that reads one JSON command per line and answers JSON lines."""

    def __init__(self, popen: subprocess.Popen[str], log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    @classmethod
    def start(cls, command: list[str], *, env: dict[str, str], log_path: Path) -> Child:
        popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_path.open("ab"),
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        return cls(popen, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, **command: Any) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(command) + "\n")
        self.popen.stdin.flush()

    def reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer within {timeout}s; log:\n{self.log_tail()}") from None
        if line is None:
            raise RuntimeError(f"helper exited ({self.popen.wait()}); log:\n{self.log_tail()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"helper failed: {answer['error']}; log:\n{self.log_tail()}")
        return answer

    def ask(self, within: float, /, **command: Any) -> dict[str, Any]:
        """Send a command and wait up to `within` seconds for its answer."""
        self.send(**command)
        return self.reply(within)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                self.send(cmd="quit")
                self.popen.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.popen.kill()
                self.popen.wait(5)


def serve_json_lines(handlers: dict[str, Callable[..., Any]]) -> None:
    """The loop of a synchronous helper: one command per stdin line, one answer per line.
    A handler may also call `answer()` itself before it returns (progress lines)."""
    for line in sys.stdin:
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "quit":
            return
        try:
            result = handlers[name](**command)
        except Exception as exc:  # reported to the parent, which stops the run
            import traceback

            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        answer(result)


def answer(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


# --- meters ----------------------------------------------------------------------------------

TASK_DONE = re.compile(r"Task workers\.tasks\.deliver_event_task\[[^\]]+\] succeeded in ([0-9.]+)s")


class TaskLog:
    """Reads the run times of delivery tasks from the worker's log, from where it last stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def since_last(self) -> list[float]:
        with self.path.open("rb") as log_file:
            log_file.seek(self.offset)
            text = log_file.read().decode(errors="replace")
        complete = text.rfind("\n") + 1  # a line still being written waits for the next call
        self.offset += len(text[:complete].encode())
        return [float(found) for found in TASK_DONE.findall(text[:complete])]


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _postgres_backends(database: str) -> list[psutil.Process]:
    """The PostgreSQL server processes serving this database (their title names it)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and cmdline[0].startswith("postgres:") and f" {database} " in f"{cmdline[0]} ":
            found.append(process)
    return found


@dataclass
class CpuSnapshot:
    at: float
    per_source: dict[str, dict[int, float]]
    system_busy: float


class CpuMeter:
    """CPU used by named process trees between two snapshots, as % of one core (200% = both)."""

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], list[psutil.Process]]] = {}

    def add_tree(self, name: str, pid: int) -> None:
        self.sources[name] = lambda: _tree(pid)

    def add_postgres(self, database: str) -> None:
        self.sources["postgres"] = lambda: _postgres_backends(database)

    def snapshot(self) -> CpuSnapshot:
        per_source: dict[str, dict[int, float]] = {}
        for name, processes in self.sources.items():
            times: dict[int, float] = {}
            for process in processes():
                try:
                    cpu = process.cpu_times()
                    times[process.pid] = cpu.user + cpu.system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            per_source[name] = times
        system = psutil.cpu_times()
        busy = system.user + system.nice + system.system + system.irq + system.softirq + system.steal
        return CpuSnapshot(at=time.monotonic(), per_source=per_source, system_busy=busy)

    @staticmethod
    def percent(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
        wall = max(after.at - before.at, 1e-6)
        result: dict[str, float] = {}
        for name, times in after.per_source.items():
            earlier = before.per_source.get(name, {})
            used = sum(seconds - earlier.get(pid, 0.0) for pid, seconds in times.items())
            result[name] = 100.0 * used / wall
        result["machine"] = 100.0 * (after.system_busy - before.system_busy) / wall
        ours = sum(value for key, value in result.items() if key != "machine")
        result["others"] = max(result["machine"] - ours, 0.0)
        return result


# --- numbers and tables ----------------------------------------------------------------------


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
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": values[-1] if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def ms(value: float) -> str:
    """A latency for a table: ms below 10 s, else seconds."""
    if value != value:  # nan
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def header(title: str, module: str, argv: Sequence[str]) -> str:
    """What every printed report starts with: the command, the date and the machine."""
    command = " ".join([".venv/bin/python -m", module, *argv])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"## {title}\n\n`{command}`  \n{when}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
