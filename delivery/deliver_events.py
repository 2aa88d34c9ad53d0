"""deliver_events: claim due events from the outbox, store them in batches, ring each user once.

Per batch: one claim (a short transaction that leases the events), the renders, one
transaction that numbers every user's new notifications (one upsert), stores them (one
bulk INSERT) and marks the events delivered, then one pipelined ring per batch with one
doorbell per user. A batch that fails is tried again one event at a time, so a poison
event is dead-lettered alone. Safe in any number of processes at once: claims are leases,
and a rerun stores nothing twice (unique constraints) and rings again, which tabs skip.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TypeVar

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction

from delivery.doorbell import LayerUnavailable, doorbell
from delivery.groups import user_group
from delivery.payloads import notifications_created_message
from delivery.services import Stored, notifications_store
from events.models import Event
from events.outbox import (
    Claim,
    event_dead_letter,
    event_split,
    events_claim,
    events_defer,
    events_earlier_in_flight,
    events_mark_delivered,
)
from events.registry import Rendered, get_event_type

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Recipients per batch, and per part of a larger fan-out: bounds a transaction's locks and
# its ring, lets the first tabs light up while later parts are stored, and spreads a large
# fan-out over the worker processes.
FANOUT_PART = 1000
BATCH_EVENTS_MAX = 500
# Earlier events of the same users that another worker is storing are waited for, so a
# user's seqs follow emit order; a worker that died holding one is not waited for longer.
ORDER_WAIT_S = 2.0
DEFER_S = 2.0  # after a database error; jittered
RING_RETRY_PAUSES_S = (0.2, 1.0, 0)  # three tries within ~1 s, then reconcile takes over
# Faults that pass: the database is restarting or a lock timed out. Anything else (a
# renderer bug) fails the same way every time.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


def deliver_events(*, token: str, budget_s: float = 5.0, wake: Callable[[int], None] | None = None) -> int:
    """Claim and deliver due events, oldest first, until none is due or `budget_s` has
    passed; returns how many were delivered. `token` names the claims (the task's id), and
    `wake(n)` asks n more workers to help with the parts of a split fan-out."""
    deadline = time.monotonic() + budget_s
    delivered = 0
    while True:
        if time.monotonic() > deadline:
            if wake is not None:
                wake(1)  # more may be due: another task goes on, after what else is queued
            break
        try:
            claim = events_claim(
                token=token,
                max_events=BATCH_EVENTS_MAX,
                max_recipients=FANOUT_PART,
                lease_s=settings.EVENTS_LEASE_S,
                max_attempts=settings.EVENTS_MAX_ATTEMPTS,
            )
        except TRANSIENT_ERRORS as exc:
            logger.warning("could not claim events (the outbox retries them): %r", exc)
            break
        if not claim.events:
            break
        if _is_fanout(claim):
            _split(claim.events[0], wake=wake)
            continue  # this task takes one of the parts
        delivered += _deliver_claim(claim)
        if claim.drained:
            # Events emitted meanwhile have hand-off tasks of their own, and the sweep
            # catches any whose task was lost: another claim now would only find nothing,
            # at the cost of a transaction (the idle case: one event per task).
            break
    return delivered


def _is_fanout(claim: Claim) -> bool:
    """One event with more recipients than a part: it is split, not delivered."""
    return len(claim.events) == 1 and len(claim.events[0].recipient_ids) > FANOUT_PART


def _split(event: Event, *, wake: Callable[[int], None] | None) -> None:
    parts = event_split(event, parts=batched(event.recipient_ids, FANOUT_PART))
    logger.info("event %s split into %d parts of up to %d recipients", event.pk, len(parts), FANOUT_PART)
    if wake is not None:
        wake(len(parts) - 1)


def _deliver_claim(claim: Claim) -> int:
    try:
        try:
            stored = _store(claim, first_try=claim.fresh)
        except IntegrityError:
            # A worker whose lease ran out stored some of these meanwhile: again, skipping them.
            stored = _store(claim, first_try=False)
    except TRANSIENT_ERRORS as exc:
        _defer(claim, exc)
        return 0
    except Exception as exc:
        if len(claim.events) == 1:
            event_dead_letter(event_id=claim.events[0].pk, error=f"{type(exc).__name__}: {exc}")
            return 0
        logger.warning("a batch of %d events failed (%r); delivering them one by one", len(claim.events), exc)
        return sum(_deliver_claim(Claim(token=claim.token, events=[event])) for event in claim.events)
    _ring(stored)
    return len(claim.events)


def _store(claim: Claim, *, first_try: bool) -> list[Stored]:
    items = _rendered(claim.events)
    _wait_for_earlier_events(claim, {user_id for _, user_id, _ in items})
    with transaction.atomic():
        stored = notifications_store(items=items, first_try=first_try)
        events_mark_delivered(claim.ids)
    return stored


def _rendered(events: list[Event]) -> list[tuple[Event, int, Rendered]]:
    """Each event rendered for each recipient its type lets receive it, in claim order.
    Rendered before the storing transaction, so a slow renderer holds no lock."""
    user_ids = {user_id for event in events for user_id in event.recipient_ids}
    user_ids |= {event.actor_id for event in events if event.actor_id is not None}
    users = get_user_model().objects.in_bulk(list(user_ids))
    _prefetch_targets(events)
    items: list[tuple[Event, int, Rendered]] = []
    for event in events:
        if event.actor_id is not None:
            event.actor = users.get(event.actor_id)
        event_type = get_event_type(event.type)
        for user_id in event.recipient_ids:
            user = users.get(user_id)
            if user is not None and event_type.may_receive(event, user):
                items.append((event, user_id, event_type.render(event, user).cleaned()))
    return items


def _prefetch_targets(events: list[Event]) -> None:
    """Load the events' targets with one query per model, not one per event."""
    wanted: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.target_type:
            wanted[event.target_type].append(event)
    for label, of_model in wanted.items():
        found = apps.get_model(label)._default_manager.in_bulk([event.target_id for event in of_model])
        by_key = {str(pk): target for pk, target in found.items()}
        for event in of_model:
            event.__dict__["target"] = by_key.get(event.target_id)  # fills the cached_property


def _wait_for_earlier_events(claim: Claim, user_ids: set[int]) -> None:
    deadline = time.monotonic() + ORDER_WAIT_S
    pause = 0.002
    while True:
        blocking = [pk for pk, recipients in events_earlier_in_flight(claim) if not user_ids.isdisjoint(recipients)]
        if not blocking:
            return
        if time.monotonic() > deadline:
            logger.warning("events %s held by another worker past %.0f s; not waiting", blocking[:5], ORDER_WAIT_S)
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _defer(claim: Claim, exc: Exception) -> None:
    logger.warning("database error while delivering events %s; retrying in ~%.0f s: %r", claim.ids[:5], DEFER_S, exc)
    _drop_broken_connection()
    # If the database is still away, the lease runs out instead and the events are claimed again.
    with contextlib.suppress(*TRANSIENT_ERRORS):
        delay_s = DEFER_S * random.uniform(0.5, 1.5)  # noqa: S311 (jitter, not crypto)
        events_defer(claim, delay_s=delay_s, error=f"{type(exc).__name__}: {exc}")


def _drop_broken_connection() -> None:
    """After a database restart the connection is dead: the next statement opens a new one."""
    if connection.connection is not None and not connection.in_atomic_block and not connection.is_usable():
        connection.close()


def _ring(stored: list[Stored]) -> None:
    """One doorbell per user, all in one round trip, retried briefly. Giving up loses no
    notification: they are stored, and every open socket reconciles from the database
    within WS_RECONCILE_INTERVAL_S, and every reconnecting one resumes from it."""
    by_user: dict[int, list[Stored]] = defaultdict(list)
    for item in stored:
        by_user[item.notification.user_id].append(item)
    rings = [(user_group(user_id), notifications_created_message(items)) for user_id, items in by_user.items()]
    error: Exception | None = None
    for pause in RING_RETRY_PAUSES_S:
        try:
            doorbell.ring_and_wait(rings)
            return
        except LayerUnavailable as exc:
            error = exc
            time.sleep(pause)
    logger.warning("%d doorbell(s) not rung, left to reconcile: %s", len(rings), error)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """itertools.batched, which arrives only in Python 3.12."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
