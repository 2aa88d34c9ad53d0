"""Celery tasks. Thin: take ids, call a service, declare the retry policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from delivery.credentials import tickets_purge_expired
from delivery.fanout import event_deliver, event_give_up
from delivery.services import notifications_prune
from events.relay import events_prune, events_redrive
from workers.broker import broker_queue_is_empty

# Faults that pass: the database or Redis is restarting. Anything else (a renderer bug,
# an unknown type) fails the same way every time, so it is dead-lettered at once. A
# doorbell that cannot ring is not among them: see event_deliver.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)


class DeliverEventTask(Task):
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        event_id = args[0] if args else kwargs["event_id"]
        event_give_up(event_id=event_id, error=f"{type(exc).__name__}: {exc}")


@shared_task(
    base=DeliverEventTask,
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def deliver_event_task(event_id: int) -> None:
    event_deliver(event_id=event_id)


@shared_task(ignore_result=True)
def prune_expired_task() -> int:
    """Retention: notifications older than NOTIFICATIONS_RETENTION_DAYS, then their events
    and the used or expired socket tickets."""
    cutoff = timezone.now() - timedelta(days=settings.NOTIFICATIONS_RETENTION_DAYS)
    pruned = notifications_prune(created_before=cutoff)
    events_prune(finished_before=cutoff)
    tickets_purge_expired()
    return pruned


@shared_task(ignore_result=True)
def relay_pending_events_task() -> int:
    due = events_redrive(
        grace_s=settings.EVENTS_RELAY_GRACE_S,
        redrive_after_s=settings.EVENTS_REDRIVE_AFTER_S,
        queue_is_empty=broker_queue_is_empty,
    )
    return len(due)
