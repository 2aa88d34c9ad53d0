"""Hands committed events to Celery off the caller's path: a bounded queue and one thread.

The request that emitted has already returned when the broker is contacted, so a slow or
down broker never delays it. Anything this hand-off fails to publish (broker down, queue
full, process exiting) is still a pending row in the database, and the relay re-drives it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger(__name__)

QUEUE_MAX = 10_000  # beyond this the relay, not memory, carries the backlog


def publish_to_celery(event_id: int) -> None:
    """Publish the delivery task, then note that the broker has it: from now on the relay
    waits EVENTS_REDRIVE_AFTER_S, not EVENTS_RELAY_GRACE_S, before re-driving the event."""
    from django.utils import timezone

    from events.models import Event
    from workers.tasks import deliver_event_task

    deliver_event_task.apply_async((event_id,), ignore_result=True)
    Event.objects.filter(pk=event_id, dispatched_at__isnull=True).update(dispatched_at=timezone.now())


class EventHandOff:
    """Publishes event ids from a daemon thread, started lazily (and again after a fork)."""

    def __init__(self, publish: Callable[[int], None] = publish_to_celery) -> None:
        # A plain attribute: tests swap it for a recorder.
        self.publish = publish
        # Items are event ids, or a flush() marker that is set once reached.
        self._queue: queue.Queue[int | threading.Event] = queue.Queue(maxsize=QUEUE_MAX)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, event_id: int) -> None:
        """Queue an event for publishing; never blocks and never raises."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(event_id)
        except queue.Full:
            logger.warning("hand-off queue full; event %s left for the outbox relay", event_id)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far was published or given up (True if so)."""
        marker = threading.Event()
        self._ensure_thread()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.wait(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue = queue.Queue(maxsize=QUEUE_MAX)
                self._thread = threading.Thread(target=self._run, name="event-hand-off", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            event_id = self._queue.get()
            if isinstance(event_id, threading.Event):
                event_id.set()
                continue
            try:
                self.publish(event_id)
            except Exception:
                # Whatever went wrong, the event is a pending row: the relay re-drives it.
                logger.warning("could not hand event %s to the broker; the relay will", event_id, exc_info=True)
            if self._queue.empty():
                # Idle most of the time: hold no database connection while waiting.
                connections.close_all()


hand_off = EventHandOff()
