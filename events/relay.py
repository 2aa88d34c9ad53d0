"""The outbox relay: re-drives events that were committed but not delivered.

The on-commit hand-off normally publishes every event within milliseconds; this catches
what it could not (broker down, process killed, queue lost in a Redis restart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from events.handoff import publish_to_celery
from events.models import Event

logger = logging.getLogger(__name__)

RELAY_BATCH = 500


def events_redrive(
    *,
    grace_s: float,
    redrive_after_s: float,
    publish: Callable[[int], None] = publish_to_celery,
    queue_is_empty: Callable[[], bool] = lambda: False,
) -> list[int]:
    """Publish again the pending events that look lost, and return their ids:

    - never handed to the broker (the hand-off failed, or its process died) and older
      than `grace_s`;
    - handed over or attempted more than `grace_s` ago while the broker's queue is empty:
      nothing is waiting, so the task was lost with a broker restart, or sits unacked
      with a killed worker;
    - handed over or attempted, and still unfinished `redrive_after_s` later, whatever
      the queue holds.

    Events merely waiting in a long queue were handed over recently enough to be left
    alone, so a backlog is not multiplied.
    """
    now = timezone.now()
    grace_cutoff = now - timedelta(seconds=grace_s)
    pending = Event.objects.filter(status=Event.Status.PENDING)
    lost = Q(dispatched_at__isnull=True, created_at__lt=grace_cutoff) | Q(
        dispatched_at__lt=now - timedelta(seconds=redrive_after_s)
    )
    if pending.filter(dispatched_at__lt=grace_cutoff).exists() and queue_is_empty():
        lost |= Q(dispatched_at__lt=grace_cutoff)
    due = list(pending.filter(lost).order_by("created_at").values_list("pk", flat=True)[:RELAY_BATCH])
    if not due:
        return []
    Event.objects.filter(pk__in=due).update(dispatched_at=now)
    for event_id in due:
        publish(event_id)
    logger.info("relay re-drove %d pending event(s)", len(due))
    return due


def events_requeue(*, event_ids: list[int]) -> int:
    """Give dead-lettered events a fresh set of attempts (the admin's "retry" action): the
    relay delivers them within EVENTS_RELAY_GRACE_S. Returns how many were dead."""
    return Event.objects.filter(pk__in=event_ids, status=Event.Status.DEAD).update(
        status=Event.Status.PENDING, attempts=0, last_error="", dispatched_at=None, finished_at=None
    )


def events_prune(*, finished_before: datetime) -> int:
    """Delete finished events older than the cut-off that no notification refers to any
    more (notifications go first, by retention: deleting an event would take its
    notifications with it, and could cut a hole in a user's seq)."""
    deleted, _ = (
        Event.objects.exclude(status=Event.Status.PENDING)
        .filter(finished_at__lt=finished_before, notifications__isnull=True)
        .delete()
    )
    return deleted
