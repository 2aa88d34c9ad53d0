"""Delivering one event: render it per recipient, store the notifications, ring the doorbells."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone

from delivery.doorbell import LayerUnavailable, doorbell
from delivery.groups import user_group
from delivery.payloads import notification_created_message
from delivery.services import Stored, notifications_store
from events.models import Event
from events.registry import get_event_type

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Recipients per transaction: bounds how long each inbox lock is held in a large fan-out,
# and lets the first users' tabs light up before the last users are stored.
FANOUT_BATCH = 500
RING_RETRY_PAUSES_S = (0.2, 1.0, 0)  # three tries within ~1 s, then reconcile takes over


def event_deliver(*, event_id: int) -> None:
    """Deliver a pending event. Safe to run twice or concurrently: a rerun stores nothing
    new (unique constraints) and rings again, which open tabs ignore by seq."""
    event = _begin_attempt(event_id)
    if event is None:
        return
    event_type = get_event_type(event.type)
    users = get_user_model().objects.filter(pk__in=event.recipient_ids).order_by("pk")
    for batch in batched(users.iterator(chunk_size=FANOUT_BATCH), FANOUT_BATCH):
        rendered = {
            user.pk: event_type.render(event, user).cleaned() for user in batch if event_type.may_receive(event, user)
        }
        stored = notifications_store(event=event, rendered=rendered)
        _ring_for(stored)
    Event.objects.filter(pk=event.pk, status=Event.Status.PENDING).update(
        status=Event.Status.DELIVERED, finished_at=timezone.now(), last_error=""
    )


def _ring_for(stored: list[Stored]) -> None:
    """Ring each user's group, retrying briefly. Giving up loses no notification: they are
    stored, and every open socket reconciles from the database within
    WS_RECONCILE_INTERVAL_S, and every reconnecting one resumes from it."""
    rings = [
        (user_group(s.notification.user_id), notification_created_message(s.notification, unread=s.unread))
        for s in stored
    ]
    for pause in RING_RETRY_PAUSES_S:
        try:
            doorbell.ring_and_wait(rings)
            return
        except LayerUnavailable as exc:
            error = exc
            time.sleep(pause)
    logger.warning("%d doorbell(s) not rung, left to reconcile: %s", len(rings), error)


def event_give_up(*, event_id: int, error: str) -> None:
    """Dead-letter an event: it stays in the database, visible in the admin, not retried."""
    updated = Event.objects.filter(pk=event_id, status=Event.Status.PENDING).update(
        status=Event.Status.DEAD, finished_at=timezone.now(), last_error=error[:5000]
    )
    if updated:
        logger.error("event %s dead-lettered: %s", event_id, error)


def _begin_attempt(event_id: int) -> Event | None:
    """Count this attempt, and give up once the event has used up its attempts: a
    renderer that kills its worker would otherwise be redelivered forever."""
    Event.objects.filter(pk=event_id, status=Event.Status.PENDING).update(
        attempts=F("attempts") + 1, dispatched_at=timezone.now()
    )
    event = Event.objects.select_related("actor").filter(pk=event_id).first()
    if event is None:
        logger.warning("event %s does not exist; nothing to deliver", event_id)
        return None
    if event.status != Event.Status.PENDING:
        return None
    if event.attempts > settings.EVENTS_MAX_ATTEMPTS:
        event_give_up(event_id=event_id, error=f"gave up after {event.attempts - 1} attempts")
        return None
    return event


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """itertools.batched, which arrives only in Python 3.12."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
