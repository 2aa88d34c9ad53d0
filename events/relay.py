"""The outbox relay: re-drives events that were committed but not delivered.

The on-commit hand-off normally publishes every event within milliseconds; this catches
what it could not (broker down, process killed, queue lost in a Redis restart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from events.handoff import publish_to_celery
from events.models import Event

logger = logging.getLogger(__name__)

RELAY_BATCH = 500


def events_redrive(*, grace_s: float, publish: Callable[[int], None] = publish_to_celery) -> list[int]:
    """Publish again every pending event older than `grace_s` that was not re-driven in the
    last `grace_s` either. Returns the ids it published."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=grace_s)
    due = list(
        Event.objects.filter(status=Event.Status.PENDING, created_at__lt=cutoff)
        .filter(Q(relayed_at__isnull=True) | Q(relayed_at__lt=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:RELAY_BATCH]
    )
    if not due:
        return []
    Event.objects.filter(pk__in=due).update(relayed_at=now)
    for event_id in due:
        publish(event_id)
    logger.info("relay re-drove %d pending event(s)", len(due))
    return due
