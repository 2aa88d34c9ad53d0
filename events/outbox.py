"""The outbox's state machine: every change of an event row's state is a function here.

    emit ──insert──▶ pending ──claim (lease)──▶ claimed ──store──▶ delivered
                        ▲                          │
                        │                          ├─ renderer raised ───────────▶ dead
                        ├── deferred (next_attempt_at) ◀─ database error
                        └── lease ran out / worker died: claimed again with fewer
                            batch-mates, one attempt counted; at EVENTS_MAX_ATTEMPTS ──▶ dead
    pending, many recipients ──split──▶ split (its parts are pending events)
    dead ──requeue (admin)──▶ pending          delivered, split, dead ──prune──▶ gone

Claims go to the oldest due events first, so a worker never numbers a later event for a
user before an earlier one that was already there to take (docs/DESIGN.md, "Order").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone

from events.heartbeats import heartbeat_last, heartbeat_record
from events.models import Event

logger = logging.getLogger(__name__)

ERROR_MAX = 5000
RELAY = "outbox"
CLAIM_LOCK_ID = 0x6E6F74696679  # "notify": the advisory lock that serialises claims on PostgreSQL
SUSPECT_SHRINK = 8


@dataclass(frozen=True)
class Claim:
    """Events one worker owns until their lease runs out."""

    token: str
    events: list[Event]
    # Nothing else was due when it was claimed: claiming again at once would find nothing.
    drained: bool = False
    # No event of it was claimed before: none can have a notification stored yet.
    fresh: bool = False

    @property
    def ids(self) -> list[int]:
        return [event.pk for event in self.events]

    @property
    def order_key(self) -> int:
        """Where this claim stands in emit order: parts stand where their parent does."""
        return min(event.parent_id or event.pk for event in self.events)


# --- insert ---------------------------------------------------------------------------------


def event_insert(event: Event) -> tuple[Event, bool]:
    """Write a new pending event in one INSERT; with an idempotency key that exists, return
    that event instead (first write wins) and False."""
    if event.idempotency_key is None:
        event.save(force_insert=True)
        return event, True
    using = router.db_for_write(Event)
    query = InsertQuery(Event, on_conflict=OnConflict.IGNORE)
    query.insert_values([f for f in Event._meta.concrete_fields if not f.primary_key], [event])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = [Event._meta.pk]
    ((sql, params),) = compiler.as_sql()
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        # The key exists (or a concurrent emit with it just committed): a lookup only now.
        return Event.objects.get(idempotency_key=event.idempotency_key), False
    event.pk = row[0]
    event._state.adding = False
    event._state.db = using
    return event, True


# --- claim, lease, release ------------------------------------------------------------------


def suspects_max(*, max_events: int, attempts: int, max_attempts: int) -> int:
    """How many suspects may share a claim after `attempts` claims that ended without an
    answer: an eighth as many each time, so a batch whose worker died is bisected, and an
    event that kills its worker every time is alone by its third attempt, and always on
    its last one, so that only it is dead-lettered."""
    if attempts >= max_attempts - 1:
        return 1
    return max(1, max_events // SUSPECT_SHRINK**attempts)


def events_claim(*, token: str, max_events: int, max_recipients: int, lease_s: float, max_attempts: int) -> Claim:
    """Claim the oldest due events for `token`, up to `max_events` and `max_recipients`.

    An event whose last claim ended without an answer (its worker died, or its lease ran
    out) is a suspect: it counts an attempt, shares its claim only with suspects of as many
    attempts, in groups that shrink with each attempt (suspects_max), and at `max_attempts` it is dead
    instead. So one event that kills its worker cannot take others down with it for long,
    while a batch whose worker was merely killed comes back in a few claims. An event
    with more than `max_recipients` recipients is claimed alone (it is split).
    """
    now = timezone.now()
    connection = connections[router.db_for_write(Event)]
    sql = _statements(connection)
    when = connection.ops.adapt_datetimefield_value
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # One claim at a time, so each claim sees every earlier one's leases: what lets
                # a later batch wait for an earlier one of the same users (events_earlier_in_flight).
                # SQLite's single writer serialises claims already.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_ID])
            candidates = list(
                Event.objects.db_manager(connection.alias).raw(
                    sql["claim"], [Event.Status.PENDING, when(now), when(now), max_events]
                )
            )
            chosen, dead = _choose(
                candidates, max_events=max_events, max_recipients=max_recipients, max_attempts=max_attempts
            )
            lease = now + timedelta(seconds=lease_s)
            if chosen:
                ids = [event.pk for event in chosen]
                cursor.execute(_in_list(sql["lease"], len(ids)), [when(lease), token, *ids])
        for event in dead:
            _dead_letter(event.pk, f"gave up after {event.attempts + 1} attempts that ended without an answer")
    fresh = all(event.claimed_until is None for event in chosen)
    for event in chosen:
        event.attempts += event.claimed_until is not None
        event.claimed_until, event.claimed_by = lease, token
    drained = len(candidates) < max_events and len(chosen) + len(dead) == len(candidates)
    return Claim(token=token, events=chosen, drained=drained, fresh=fresh)


def _choose(
    candidates: list[Event], *, max_events: int, max_recipients: int, max_attempts: int
) -> tuple[list[Event], list[Event]]:
    """Of the oldest due events, those this claim takes (a run of fresh events, or of suspects
    with as many attempts, within the bounds) and those out of attempts (dead)."""
    chosen: list[Event] = []
    dead: list[Event] = []
    recipients = 0
    limit = max_events
    for event in candidates:
        suspect = event.claimed_until is not None
        if suspect and event.attempts + 1 >= max_attempts:
            dead.append(event)
            continue
        big = len(event.recipient_ids) > max_recipients
        if chosen:
            leader = chosen[0]
            mixed = suspect != (leader.claimed_until is not None) or (suspect and event.attempts != leader.attempts)
            if big or mixed or recipients + len(event.recipient_ids) > max_recipients:
                break
        elif suspect:
            limit = suspects_max(max_events=max_events, attempts=event.attempts + 1, max_attempts=max_attempts)
        chosen.append(event)
        recipients += len(event.recipient_ids)
        if big or len(chosen) >= limit:
            break
    return chosen, dead


def events_extend_lease(claim: Claim, *, lease_s: float) -> None:
    """Keep a long claim (a large part of a fan-out) from being taken over mid-way."""
    Event.objects.filter(pk__in=claim.ids, claimed_by=claim.token, status=Event.Status.PENDING).update(
        claimed_until=timezone.now() + timedelta(seconds=lease_s)
    )


def events_release_crashed(*, token: str) -> int:
    """End the lease of events whose worker died or was timed out, so they are claimed
    again at once (one at a time, each counting the attempt) instead of after the lease."""
    return Event.objects.filter(claimed_by=token, status=Event.Status.PENDING, claimed_until__isnull=False).update(
        claimed_until=timezone.now()
    )


def events_defer(claim: Claim, *, delay_s: float, error: str) -> int:
    """Give the claim back after a database or Redis error: it is due again after
    `delay_s`, and no attempt is counted (the event did nothing wrong)."""
    return Event.objects.filter(pk__in=claim.ids, claimed_by=claim.token, status=Event.Status.PENDING).update(
        claimed_until=None,
        claimed_by="",
        next_attempt_at=timezone.now() + timedelta(seconds=delay_s),
        last_error=error[:ERROR_MAX],
    )


def events_earlier_in_flight(claim: Claim) -> list[tuple[int, list[int]]]:
    """Pending events before this claim in emit order that another worker holds on a live
    lease, with their recipients: for users they share, they must be numbered first."""
    connection = connections[router.db_for_read(Event)]
    recipients = Event._meta.get_field("recipient_ids")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_statements(connection)["earlier"], [Event.Status.PENDING, claim.order_key, now, claim.token])
        rows = cursor.fetchall()
    return [(pk, recipients.from_db_value(value, None, connection)) for pk, value in rows]


# --- ends -----------------------------------------------------------------------------------


def events_mark_delivered(event_ids: Sequence[int]) -> int:
    """Call inside the transaction that stored the events' notifications."""
    if not event_ids:
        return 0
    connection = connections[router.db_for_write(Event)]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            _in_list(_statements(connection)["delivered"], len(event_ids)),
            [Event.Status.DELIVERED, now, *event_ids, Event.Status.PENDING],
        )
        return cursor.rowcount


def event_dead_letter(*, event_id: int, error: str) -> bool:
    """Give up on an event: it stays in the database, visible in the admin, not retried."""
    return _dead_letter(event_id, error)


def _dead_letter(event_id: int, error: str) -> bool:
    updated = Event.objects.filter(pk=event_id, status=Event.Status.PENDING).update(
        status=Event.Status.DEAD, finished_at=timezone.now(), claimed_until=None, last_error=error[:ERROR_MAX]
    )
    if updated:
        logger.error("event %s dead-lettered: %s", event_id, error)
    return bool(updated)


def event_split(event: Event, *, parts: Iterable[list[int]]) -> list[int]:
    """Replace a claimed large fan-out by pending parts, each an event with a slice of its
    recipients; returns the parts' ids. One transaction: the event and its parts are never
    both pending, and a rerun after a crash splits again from scratch."""
    with transaction.atomic():
        created = Event.objects.bulk_create(
            Event(
                type=event.type,
                actor_id=event.actor_id,
                target_type=event.target_type,
                target_id=event.target_id,
                data=event.data,
                recipient_ids=part,
                parent_id=event.pk,
            )
            for part in parts
        )
        Event.objects.filter(pk=event.pk, status=Event.Status.PENDING).update(
            status=Event.Status.SPLIT, finished_at=timezone.now(), claimed_until=None
        )
    return [part.pk for part in created]


def events_requeue(*, event_ids: list[int]) -> int:
    """Give dead-lettered events a fresh set of attempts (the admin's "retry" action); the
    relay delivers them within EVENTS_RELAY_INTERVAL_S. Returns how many were dead."""
    return Event.objects.filter(pk__in=event_ids, status=Event.Status.DEAD).update(
        status=Event.Status.PENDING,
        attempts=0,
        last_error="",
        claimed_until=None,
        claimed_by="",
        next_attempt_at=None,
        finished_at=None,
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


# --- the hot path's SQL -------------------------------------------------------------------


@cache
def _statements_for(vendor: str, quote: Any, skip_locked: bool) -> dict[str, str]:
    """The statements every delivery runs, written out once: the ORM compiled them again on
    every call, most of a lone event's claim (docs/BENCHMARKS.md, "Where the CPU goes").
    `{ids}` stands for a list of ids (_in_list)."""
    table = quote(Event._meta.db_table)
    columns = ", ".join(quote(field.column) for field in Event._meta.concrete_fields)
    # Other claimers' rows are skipped, not waited for; SQLite has one writer at a time.
    lock = f" FOR UPDATE OF {table} SKIP LOCKED" if skip_locked else ""
    return {
        "claim": (
            f"SELECT {columns} FROM {table} WHERE status = %s"  # noqa: S608 (names are ours)
            " AND (claimed_until IS NULL OR claimed_until < %s)"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"
            f" ORDER BY COALESCE(parent_id, id), id LIMIT %s{lock}"
        ),
        # SET reads the row as it was: a claim that ended without an answer counts an attempt.
        "lease": (
            f"UPDATE {table} SET claimed_until = %s, claimed_by = %s,"  # noqa: S608
            " attempts = attempts + CASE WHEN claimed_until IS NULL THEN 0 ELSE 1 END WHERE id IN ({ids})"
        ),
        "earlier": (
            f"SELECT id, recipient_ids FROM {table} WHERE status = %s"  # noqa: S608
            " AND COALESCE(parent_id, id) < %s AND claimed_until >= %s AND claimed_by <> %s"
        ),
        "delivered": (
            f"UPDATE {table} SET status = %s, finished_at = %s, claimed_until = NULL,"  # noqa: S608
            " next_attempt_at = NULL, last_error = '' WHERE id IN ({ids}) AND status = %s"
        ),
    }


def _statements(connection: BaseDatabaseWrapper) -> dict[str, str]:
    return _statements_for(
        connection.vendor, connection.ops.quote_name, connection.features.has_select_for_update_skip_locked
    )


def _in_list(sql: str, count: int) -> str:
    return sql.replace("{ids}", ", ".join(["%s"] * count))


# --- the relay's heartbeat --------------------------------------------------------------------


def relay_heartbeat() -> None:
    """Note that the outbox sweep ran just now."""
    heartbeat_record(RELAY)


def relay_last_beat() -> datetime | None:
    return heartbeat_last(RELAY)
