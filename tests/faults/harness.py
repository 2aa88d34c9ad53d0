"""The fault-injection harness: a stack on private servers, resuming tabs, and the oracle.

Nothing here touches pytest-django's test database: a fault stack has its own database
(a private PostgreSQL cluster, or a SQLite file when PostgreSQL is not installed) and its
own Redis, migrated and seeded through manage.py, and the test talks to it only as
clients do: over HTTP and WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from tests.live import ROOT, LiveStack
from tests.servers import PrivatePostgres, PrivateRedis, RabbitVhost


@dataclass
class FaultStack(LiveStack):
    """A LiveStack whose database and Redis belong to this test alone."""

    redis: PrivateRedis | None = None
    postgres: PrivatePostgres | None = None
    rabbitmq: RabbitVhost | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout.strip()

    def add_user(self, username: str, *, staff: bool = False) -> str:
        """Create the user and return an API token for it."""
        self.tokens[username] = self.manage("issue_token", username, "--create", *(["--staff"] if staff else []))
        return self.tokens[username]

    def emit(self, recipients: list[str], title: str, *, event_type: str = "notice", key: str | None = None) -> float:
        """POST /api/events/ as a staff service would; returns how long the request took."""
        body: dict[str, Any] = {"type": event_type, "recipients": recipients, "data": {"title": title}}
        if key is not None:
            body["idempotency_key"] = key
        started = time.monotonic()
        self.api("POST", "/api/events/", token=self.tokens["ops"], body=body)
        return time.monotonic() - started

    def stored(self, username: str) -> list[dict[str, Any]]:
        """Every notification of the user, oldest first, from the HTTP API."""
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.api("GET", f"/api/notifications/?after_seq={after}&limit=200", token=self.tokens[username])
            found += page["results"]
            if not page["next"]:
                return found
            after = found[-1]["seq"]

    def api(self, method: str, path: str, *, token: str, body: Any = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 (our own test server)
            f"{self.http_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def metrics_status(self, *, forwarded_for: str) -> int:
        """The status of GET /metrics (loopback clients only) with this X-Forwarded-For."""
        request = urllib.request.Request(  # noqa: S310 (our own test server)
            f"{self.http_url}/metrics", headers={"X-Forwarded-For": forwarded_for}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def stop_all(self) -> None:
        super().stop_all()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def fault_env(*, database_url: str, redis: PrivateRedis, **overrides: str) -> dict[str, str]:
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        REDIS_URL=redis.url,
        CELERY_BROKER_URL=redis.broker_url,
        REDIS_NAMESPACE="faults",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="fault-tests-only",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        EVENT_TYPE_MODULES="tests.faults.event_types",
        # Short timers, so that repairs happen within a test's patience.
        WS_RECONCILE_INTERVAL_S="2",
        EVENTS_RELAY_INTERVAL_S="1",
    )
    env.update(overrides)
    return env


# The browser client's helloTimeoutMs: a handshake that neither opens nor fails this long is
# given up and retried with backoff.
OPEN_TIMEOUT_S = 10
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.5, 10.0
SPREAD_OUT = {1012, 1013, 4409, 4429}


@dataclass
class ResumingTab:
    """A tab as the browser client behaves: reconnects with backoff and jitter, resumes
    from the last seq it holds, keeps every notification frame it was sent (duplicates too).
    """

    url: str
    token: str
    user: str
    name: str = "tab"
    resume: bool = True  # False: a client without resume, to show the oracle can fail
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    connected_at: list[float] = field(default_factory=list)  # time.monotonic() of each open
    resumes: int = 0  # `resumed` frames: the tab has caught up and is live
    close_codes: list[int | None] = field(default_factory=list)
    paused: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False

    def start(self) -> ResumingTab:
        self.paused.set()  # set = reading; clear() makes the tab stop reading (a slow reader)
        self._task = asyncio.create_task(self._run())
        return self

    @property
    def cursor(self) -> int:
        """The highest seq up to which this tab has everything."""
        seqs = {n["seq"] for n in self.received}
        cursor = 0
        while cursor + 1 in seqs:
            cursor += 1
        return cursor

    async def _run(self) -> None:
        attempts = 0
        while not self._stopping:
            try:
                async with websockets.connect(
                    self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, open_timeout=OPEN_TIMEOUT_S
                ) as socket:
                    self.connections += 1
                    self.connected_at.append(time.monotonic())
                    attempts = 0
                    await self._session(socket)
                    self.close_codes.append(socket.close_code)
            except (OSError, websockets.WebSocketException, TimeoutError) as error:
                code = getattr(getattr(error, "rcvd", None), "code", None)
                self.close_codes.append(code)
            if self.close_codes and self.close_codes[-1] == 4401:
                return
            # The browser client's backoff: full jitter under an exponential ceiling, starting a
            # few steps in when the server asked for room (capped lower, to keep scenarios short).
            step = max(attempts, 3) if self.close_codes[-1] in SPREAD_OUT else attempts
            attempts += 1
            await asyncio.sleep(random.random() * min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**step))

    async def _session(self, socket: Any) -> None:
        async for raw in socket:
            await self.paused.wait()
            frame = json.loads(raw)
            if frame["type"] == "hello" and self.resume:
                await socket.send(json.dumps({"type": "resume", "after_seq": self.cursor}))
            elif frame["type"] == "notification":
                self.received.append(frame["notification"])
            elif frame["type"] == "resumed":
                self.resumes += 1
            elif frame["type"] == "resync":
                # Too far behind for one replay: page over HTTP up to where the socket goes on.
                self.received += await asyncio.to_thread(self._fetch_after, self.cursor, frame["last_seq"])
                self.resumes += 1

    def _fetch_after(self, after_seq: int, last_seq: int) -> list[dict[str, Any]]:
        base = self.url.replace("ws://", "http://", 1).split("/ws/", 1)[0]
        fetched: list[dict[str, Any]] = []
        url: str | None = f"{base}/api/notifications/?after_seq={after_seq}&limit=200"
        while url and (not fetched or fetched[-1]["seq"] < last_seq):
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})  # noqa: S310
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own stack)
                page = json.load(response)
            fetched += [n for n in page["results"] if n["seq"] <= last_seq]
            url = page["next"]
        return fetched

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_until(condition: Any, *, timeout: float) -> bool:
    """Wait for `condition()`; False if it did not come true within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def open_tabs(stack: FaultStack, users: tuple[str, ...], per_user: int, **options: Any) -> list[ResumingTab]:
    return [
        ResumingTab(stack.ws_url, stack.tokens[user], user=user, name=f"{user}-tab{number}", **options).start()
        for user in users
        for number in range(per_user)
    ]


def oracle_problems(stack: FaultStack, tabs: list[ResumingTab], *, expected: int | dict[str, int]) -> list[str]:
    """The oracle, for every user: the database stored `expected` notifications (a count, or
    a count per user) with seq 1..N, and each of the user's tabs holds exactly those
    (de-duplicated), nothing foreign. Returns what is wrong; empty means the promise held."""
    problems: list[str] = []
    for user in sorted({tab.user for tab in tabs}):
        stored = stack.stored(user)
        wanted = expected if isinstance(expected, int) else expected.get(user, 0)
        if len(stored) != wanted:
            problems.append(f"{user}: the database stored {len(stored)} notifications, not {wanted}")
        if [n["seq"] for n in stored] != list(range(1, len(stored) + 1)):
            problems.append(f"{user}: the database's seq has a gap")
        stored_by_id = {n["id"]: n for n in stored}
        for tab in (tab for tab in tabs if tab.user == user):
            held = {n["id"]: n for n in tab.received}
            foreign = sorted(set(held) - set(stored_by_id))
            missing = [n["seq"] for n in stored if n["id"] not in held]
            wrong_seq = [i for i in held.keys() & stored_by_id.keys() if held[i]["seq"] != stored_by_id[i]["seq"]]
            if foreign:
                problems.append(f"{tab.name}: holds ids that are not {user}'s: {foreign[:10]}")
            if missing:
                problems.append(f"{tab.name}: missing seq {missing[:10]} ({len(missing)} of {len(stored)})")
            if wrong_seq:
                problems.append(f"{tab.name}: ids with another seq than stored: {wrong_seq[:10]}")
    return problems


def assert_each_seq_once(tabs: list[ResumingTab], expected: int) -> None:
    """Beyond the oracle's de-duplicated view: no tab was sent any notification twice, even
    across a reconnect (it resumes from the last seq it holds without a hole), and a tab
    whose one socket lived through it all got them in seq order."""
    for tab in tabs:
        assert len(tab.received) == expected, (tab.name, [n["seq"] for n in tab.received])
        if tab.connections == 1:
            assert [n["seq"] for n in tab.received] == list(range(1, expected + 1)), tab.name


def build_fault_stack(
    workdir: Path,
    *,
    postgres: bool = False,
    rabbitmq: bool = False,
    users: tuple[str, ...] = ("alice", "bob"),
    **overrides: str,
) -> FaultStack:
    """A migrated FaultStack on a private Redis (and a private PostgreSQL cluster, or a
    SQLite file; with `rabbitmq`, a vhost of its own on the machine's RabbitMQ as the
    broker), with the given users and the staff user ops; nothing started yet. The caller
    stops it with stop_all(), removes a cluster's folder and deletes the vhost."""
    redis = PrivateRedis(workdir=workdir).start()
    vhost = None
    if rabbitmq:
        vhost = RabbitVhost(name=f"notify-faults-{os.getpid()}-{os.urandom(4).hex()}").create()
        overrides = {"CELERY_BROKER_URL": vhost.broker_url, **overrides}
    cluster = None
    if postgres:
        # Outside workdir: the postgres user cannot enter root's temporary folders.
        cluster = PrivatePostgres(workdir=Path(tempfile.mkdtemp(prefix="notify-faults-pg-"))).init()
        cluster.start()
        cluster.create_database("notify")
        database_url = cluster.url("notify")
    else:
        database_url = f"sqlite:///{workdir / 'faults.sqlite3'}"
    stack = FaultStack(
        env=fault_env(database_url=database_url, redis=redis, **overrides),
        workdir=workdir,
        redis=redis,
        postgres=cluster,
        rabbitmq=vhost,
    )
    try:
        stack.manage("migrate", "--verbosity", "0")
        for username in users:
            stack.add_user(username)
        stack.add_user("ops", staff=True)
    except BaseException:
        stack.stop_all()
        raise
    return stack
