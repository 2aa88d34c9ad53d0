"""The stacks a benchmark runs against, and the helper processes it drives.

The product stack is a throwaway PostgreSQL database on the local server (dropped
afterwards), two private redis-servers (the channel layer, and the Celery broker, so the
broker can be stopped alone), a web process serving project.asgi:application (daphne,
uvicorn or granian), a Celery worker and beat, as the Procfile runs them. The naive stack
is the tutorial design in bench/naive: one daphne process and a redis-server, nothing
stored. Nothing shared is touched, and all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from devtools.with_redis import free_port
from tests.live import ROOT, ManagedProcess
from tests.servers import PrivateRedis

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
PYTHON = sys.executable
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0
PRODUCT_APP = "project.asgi:application"
NAIVE_APP = "bench.naive.asgi:application"
WS_PATH = "/ws/notifications/"


def log(message: str) -> None:
    """Progress goes to stderr; stdout is kept for the report."""
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


# --- web servers ----------------------------------------------------------------------------


def web_command(server: str, app: str, port: int) -> list[str]:
    """How each ASGI server is started: one process, defaults otherwise, as a deployer would."""
    if server == "daphne":
        return [str(BIN / "daphne"), "--bind", "127.0.0.1", "--port", str(port), app]
    if server == "uvicorn":
        # --lifespan off: Channels' router has no lifespan handler. uvloop and httptools are
        # picked up automatically (requirements-bench.txt installs them).
        return [
            str(BIN / "uvicorn"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
            app,
        ]
    if server == "granian":
        # asginl: ASGI without lifespan, for the same reason.
        return [
            str(BIN / "granian"),
            "--interface",
            "asginl",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            app,
        ]
    raise ValueError(f"unknown web server {server!r}")


def http_answers(url: str) -> bool:
    """Whether anything answers HTTP at `url` (an error status counts: the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own server on 127.0.0.1)
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


# --- a stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """Processes of one system under test, their private servers and their logs."""

    name: str
    app: str
    workdir: Path
    env: dict[str, str]
    redis: PrivateRedis
    broker: PrivateRedis | None = None
    database: str | None = None
    port: int = 0
    api_port: int = 0
    server: str = ""
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    def pid(self, name: str) -> int:
        return self.processes[name].popen.pid

    def spawn(self, name: str, command: list[str]) -> ManagedProcess:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        process = ManagedProcess(name=name, popen=popen, log_path=log_path)
        self.processes[name] = process
        return process

    def wait_until(self, process: ManagedProcess, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if not process.alive():
                raise RuntimeError(f"{process.name} exited during start-up:\n{process.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.name} not ready after {START_TIMEOUT_S}s:\n{process.log()[-4000:]}")
            time.sleep(0.1)

    def start_web(self, server: str = "daphne") -> ManagedProcess:
        self.port = free_port()
        self.server = server
        web = self.spawn("web", web_command(server, self.app, self.port))
        self.wait_until(web, lambda: http_answers(f"{self.http_url}/healthz"))
        return web

    def start_api(self) -> ManagedProcess:
        """A second daphne process of the same application for HTTP only: the deployment that
        routes the API away from the process holding the sockets."""
        self.api_port = free_port()
        api = self.spawn("api", web_command("daphne", self.app, self.api_port))
        self.wait_until(api, lambda: http_answers(f"http://127.0.0.1:{self.api_port}/healthz"))
        return api

    def stop_web(self) -> None:
        web = self.processes.pop("web", None)
        if web is not None:
            web.stop()
            # The next server's log starts fresh; this one's is kept under its name.
            web.log_path.rename(web.log_path.with_name(f"web-{self.server}-{web.popen.pid}.log"))

    def start_worker(self, concurrency: int) -> ManagedProcess:
        worker = self.spawn(
            "worker",
            [
                str(BIN / "celery"),
                "--app",
                "project",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"bench-{os.getpid()}@%h",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
        )
        self.wait_until(worker, lambda: " ready." in worker.log())
        return worker

    def start_beat(self) -> ManagedProcess:
        beat = self.spawn(
            "beat",
            [
                str(BIN / "celery"),
                "--app",
                "project",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.workdir / "s"),
            ],
        )
        self.wait_until(beat, lambda: "beat: Starting" in beat.log())
        return beat

    def stop_process(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process.stop()

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout.strip()

    def child(self, module: str, name: str) -> Child:
        """A helper process of ours (an emitter, the tabs) with this stack's environment."""
        return Child.start([PYTHON, "-m", module], env=self.env, log_path=self.workdir / f"{name}.log")

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop_process(name)


def _base_env(redis: PrivateRedis, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        REDIS_URL=redis.url,
        REDIS_NAMESPACE=f"bench-{secrets.token_hex(3)}",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-secret-key",  # noqa: S106 (a throwaway stack on 127.0.0.1)
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        **extra,
    )


def _private_redis(workdir: Path, name: str) -> PrivateRedis:
    folder = workdir / name
    folder.mkdir()
    return PrivateRedis(workdir=folder).start()


@contextmanager
def product_stack(
    *, postgres: str = DEFAULT_POSTGRES, workers: int = 2, server: str = "daphne", keep_logs: bool = False
) -> Iterator[Stack]:
    """A migrated database, the channel layer's Redis, a broker Redis, the web process,
    a Celery worker with `workers` processes and beat."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-product-"))
    redis = _private_redis(workdir, "redis")
    broker = _private_redis(workdir, "broker")
    database = create_database(postgres)
    env = _base_env(redis, DATABASE_URL=f"{postgres}/{database}", CELERY_BROKER_URL=broker.url, CHANNEL_LAYER="pubsub")
    stack = Stack(
        name="product", app=PRODUCT_APP, workdir=workdir, env=env, redis=redis, broker=broker, database=database
    )
    try:
        stack.manage("migrate", "--noinput")
        stack.start_web(server)
        stack.start_worker(workers)
        stack.start_beat()
        log(f"product stack up: db {database}, {server} on {stack.port}, logs in {workdir}")
        yield stack
    finally:
        _tear_down(stack, keep_logs, lambda: drop_database(postgres, database))


@contextmanager
def naive_stack(*, keep_logs: bool = False) -> Iterator[Stack]:
    """bench/naive under one daphne process, with a redis-server of its own."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-naive-"))
    redis = _private_redis(workdir, "redis")
    env = _base_env(
        redis,
        DJANGO_SETTINGS_MODULE="bench.naive.settings",
        NAIVE_STAFF_TOKEN=secrets.token_hex(16),
    )
    stack = Stack(name="naive", app=NAIVE_APP, workdir=workdir, env=env, redis=redis)
    try:
        stack.start_web("daphne")
        log(f"naive stack up: daphne on {stack.port}, logs in {workdir}")
        yield stack
    finally:
        _tear_down(stack, keep_logs, lambda: None)


def _tear_down(stack: Stack, keep_logs: bool, drop: Callable[[], None]) -> None:
    stack.stop_all()
    for server in (stack.redis, stack.broker):
        if server is not None:
            server.stop()
    try:
        drop()
    except psycopg.Error as exc:
        log(f"could not drop database {stack.database}: {exc}")
    for name, count, message in log_problems(stack.workdir):
        log(f"  {stack.name} {name}.log: {count} x {message}")
    if not keep_logs:
        shutil.rmtree(stack.workdir, ignore_errors=True)
    log(f"{stack.name} stack down" + (f", logs kept in {stack.workdir}" if keep_logs else ""))


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
                self.popen.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.popen.kill()
                self.popen.wait(5)


def serve_json_lines(handlers: dict[str, Callable[..., Any]]) -> None:
    """The loop of a synchronous helper: one command per stdin line, one answer per line.
    A handler may also call `answer()` itself before it returns (a 'started' line)."""
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
