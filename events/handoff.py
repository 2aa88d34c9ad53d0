"""Hands committed events to the workers off the caller's path: a bounded queue and one thread.

The thread publishes whatever accumulated while its previous publish was under way as one
`deliver_events` task, named, not imported: one event when idle, hundreds under load. While
a published task still waits in the queue, no other is published (QueuedMark): when it
starts, it claims every event committed by then, so another would only find nothing. The
request that emitted has returned before the broker is contacted, so a slow or down broker
never delays it. Whatever is not published (broker down, queue full, process killed) is a
pending row that the outbox sweep delivers. A process that exits (a script, a cron job,
`manage.py shell -c`) first gives the thread up to EXIT_FLUSH_S to publish.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable

import redis
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

DELIVER_EVENTS_TASK = "deliver_events"  # workers/tasks.py registers it under this name
QUEUE_MAX = 10_000  # beyond this the outbox sweep, not memory, carries the backlog
BATCH_MAX = 500  # event ids per published task; a delivery claims its own batch anyway
EXIT_FLUSH_S = 2.0
DELIVERY_QUEUED_S = 2
REDIS_TIMEOUT_S = 0.5


class QueuedMark:
    """Whether a deliver_events task waits in the queue: set in Redis (SET NX, expiring after
    DELIVERY_QUEUED_S) by whoever publishes one, cleared by the task when it starts. Every
    empty task costs a worker 3-5 ms of CPU: under load, without this, most tasks found
    nothing. A task that is lost keeps it set for DELIVERY_QUEUED_S at most; the outbox sweep
    delivers what was not published meanwhile. One client per process, not Django's cache API,
    which builds a client object and a key per call (163-183 us of CPU against 54-71 us)."""

    def __init__(self) -> None:
        self._client: tuple[int, str, redis.Redis] | None = None

    def set_if_clear(self) -> bool:
        """Mark a task as queued; False if one already is. True if Redis cannot be reached:
        an extra task costs a little CPU, a missing one costs latency."""
        try:
            return bool(self._redis().set(self._key(), 1, nx=True, ex=DELIVERY_QUEUED_S))
        except (RedisError, OSError):
            logger.warning("could not read the queued-delivery mark; publishing", exc_info=True)
            return True

    def clear(self) -> None:
        try:
            self._redis().delete(self._key())
        except (RedisError, OSError):
            logger.warning("could not clear the queued-delivery mark; it expires in %d s", DELIVERY_QUEUED_S)

    def _key(self) -> str:
        return f"{settings.REDIS_NAMESPACE}:deliver_events:queued"

    def _redis(self) -> redis.Redis:
        pid, url = os.getpid(), settings.REDIS_URL
        if self._client is None or self._client[:2] != (pid, url):
            client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
            self._client = (pid, url, client)
        return self._client[2]


queued_mark = QueuedMark()


def publish_delivery(event_ids: list[int]) -> None:
    """Publish one `deliver_events` task for these committed events, unless one is queued
    and not started yet: that one claims them."""
    if not queued_mark.set_if_clear():
        return
    try:
        send_delivery_task(event_ids)
    except Exception:
        queued_mark.clear()  # nothing waits in the queue after all
        raise


def send_delivery_task(event_ids: list[int]) -> None:
    """Publish one `deliver_events` task, whatever is queued (to wake more workers)."""
    from celery import current_app

    current_app.send_task(DELIVER_EVENTS_TASK, args=(event_ids,), ignore_result=True)


def delivery_started() -> None:
    """A deliver_events task calls this before it claims: events committed from now on need
    a task of their own."""
    queued_mark.clear()


class EventHandOff:
    """Publishes event ids in batches from a daemon thread, started lazily (again after a fork)."""

    def __init__(self, publish: Callable[[list[int]], None] = publish_delivery) -> None:
        # A plain attribute: tests swap it for a recorder.
        self.publish = publish
        # Items are event ids, or a flush() marker that is set once reached.
        self._queue: queue.Queue[int | threading.Event] = queue.Queue(maxsize=QUEUE_MAX)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._exit_hook_pid = 0

    def submit(self, event_id: int) -> None:
        """Queue an event for publishing; never blocks and never raises."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(event_id)
        except queue.Full:
            logger.warning("hand-off queue full; event %s left for the outbox sweep", event_id)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far was published or given up (True if so)."""
        marker = threading.Event()
        self._ensure_thread()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.wait(timeout)

    def flush_at_exit(self) -> None:
        """Publish what this process submitted before it exits, for at most EXIT_FLUSH_S."""
        if self._thread is None or self._pid != os.getpid():
            return
        if not self.flush(timeout=EXIT_FLUSH_S):
            logger.warning("exiting before the hand-off was done; the outbox sweep delivers the rest")

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue = queue.Queue(maxsize=QUEUE_MAX)
                self._thread = threading.Thread(target=self._run, name="event-hand-off", daemon=True)
                self._thread.start()
                if self._exit_hook_pid != self._pid:
                    # Runs before the interpreter stops daemon threads.
                    atexit.register(self.flush_at_exit)
                    self._exit_hook_pid = self._pid

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < BATCH_MAX:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            event_ids = [item for item in items if isinstance(item, int)]
            if event_ids:
                try:
                    self.publish(event_ids)
                except Exception:
                    # Whatever went wrong, the events are pending rows: the sweep delivers them.
                    logger.warning(
                        "could not hand %d event(s) to the broker (first %s); the outbox sweep will",
                        len(event_ids),
                        event_ids[0],
                        exc_info=True,
                    )
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()


hand_off = EventHandOff()
