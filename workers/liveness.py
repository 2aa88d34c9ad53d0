"""Worker liveness: proof that a worker still consumes and runs tasks, for its supervisor.

Celery 5.7 / kombu 5.7 on a Redis broker can leave a worker alive but consuming nothing after
a broker restart; a frozen process (SIGSTOP, a stuck pool) looks alive to anything that only
checks the PID. So the worker's main process publishes a `worker_ping` to its own direct
queue every WORKER_PING_INTERVAL_S, and the task, run by a pool process like any delivery,
touches the worker's liveness file. A file older than WORKER_LIVENESS_TIMEOUT_S means the
worker stopped consuming: `manage.py worker_alive NAME` exits 1, and the shipped supervisor
(deploy/supervisord.conf, workers/watchdog.py) restarts it. Files, not database rows, decide
liveness, so a database outage does not make every worker look dead; the ping also notes a
heartbeat in the database (best effort) so that /healthz, on another host, can tell too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError

from events.heartbeats import WORKER_HEARTBEAT_PREFIX, heartbeat_forget, heartbeat_record

logger = logging.getLogger(__name__)

WORKER_PING_TASK = "worker_ping"


def worker_name(hostname: str) -> str:
    """The name a worker's liveness file goes by: the supervisor's process name when it
    runs under supervisord (which sets SUPERVISOR_PROCESS_NAME), else its Celery hostname."""
    name = os.environ.get("SUPERVISOR_PROCESS_NAME") or hostname
    return re.sub(r"[^A-Za-z0-9@._-]", "_", name)


def liveness_file(name: str) -> Path:
    return Path(settings.WORKER_LIVENESS_DIR) / f"{name}.alive"


def liveness_touch(name: str) -> None:
    path = liveness_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    try:
        heartbeat_record(WORKER_HEARTBEAT_PREFIX + name)
    except DatabaseError as exc:  # the file is what liveness goes by
        logger.warning("could not note the worker's heartbeat in the database: %r", exc)


def liveness_age(name: str) -> float | None:
    """Seconds since the worker last ran a ping; None if it never did."""
    try:
        return time.time() - liveness_file(name).stat().st_mtime
    except FileNotFoundError:
        return None


def liveness_forget(name: str) -> None:
    liveness_file(name).unlink(missing_ok=True)


class Pinger:
    """A daemon thread in the worker's main process that sends it a ping now and then."""

    def __init__(self, *, hostname: str, interval_s: float) -> None:
        self.hostname = hostname
        self.name = worker_name(hostname)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness-pinger", daemon=True)

    def start(self) -> Pinger:
        liveness_touch(self.name)  # ready counts as alive: the first ping is on its way
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        liveness_forget(self.name)
        with contextlib.suppress(DatabaseError):
            heartbeat_forget(WORKER_HEARTBEAT_PREFIX + self.name)  # gone on purpose: not stale

    def _run(self) -> None:
        from celery import current_app
        from celery.utils.nodenames import worker_direct

        while not self._stop.wait(self.interval_s):
            try:
                current_app.send_task(
                    WORKER_PING_TASK,
                    args=(self.name,),
                    queue=worker_direct(self.hostname),
                    expires=self.interval_s * 2,
                    ignore_result=True,
                )
            except Exception as exc:  # the broker is down: the file ages, as it should
                logger.warning("could not send the liveness ping: %r", exc)
