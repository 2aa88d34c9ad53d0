"""Celery tasks. Thin: call a service, declare how the task runs.

Retries are not Celery's: a delivery that meets a database error gives its events back to
the outbox with a next-attempt time, and a worker that dies leaves leases that run out.
So re-delivery depends on the database alone, never on a broker message surviving.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.signals import task_failure, worker_ready, worker_shutdown
from django.conf import settings
from django.utils import timezone

from delivery.credentials import tickets_purge_expired
from delivery.deliver_events import deliver_events
from delivery.services import notifications_prune
from events.handoff import DELIVER_EVENTS_TASK, delivery_started, send_delivery_task
from events.outbox import events_prune, events_release_crashed, relay_heartbeat
from workers.liveness import WORKER_PING_TASK, Pinger, liveness_touch

OUTBOX_SWEEP_TASK = "outbox_sweep"
# A sweep stops after this long, so that the next one (EVENTS_RELAY_INTERVAL_S later) is
# never queued behind it for long.
SWEEP_BUDGET_S = 20.0


def wake_workers(count: int) -> None:
    """Publish `count` more deliver_events tasks, so idle worker processes help."""
    for _ in range(count):
        send_delivery_task([])


@shared_task(name=DELIVER_EVENTS_TASK, ignore_result=True, acks_late=True, reject_on_worker_lost=False)
def deliver_events_task(event_ids: list[int] | None = None) -> int:
    """Deliver due events, oldest first: those handed off (`event_ids`, for the log) and
    whatever else is due by then."""
    delivery_started()
    return deliver_events(token=deliver_events_task.request.id or "eager", wake=wake_workers)


@shared_task(name=OUTBOX_SWEEP_TASK, ignore_result=True)
def outbox_sweep_task() -> int:
    """The relay, every EVENTS_RELAY_INTERVAL_S from beat, in a queue of its own: delivers
    whatever is due and nobody holds (lost hand-offs, expired leases, deferred retries)."""
    relay_heartbeat()
    return deliver_events(token=outbox_sweep_task.request.id or "eager", budget_s=SWEEP_BUDGET_S, wake=wake_workers)


@shared_task(ignore_result=True)
def prune_expired_task() -> int:
    """Retention: notifications older than NOTIFICATIONS_RETENTION_DAYS, then their events
    and the used or expired socket tickets."""
    cutoff = timezone.now() - timedelta(days=settings.NOTIFICATIONS_RETENTION_DAYS)
    pruned = notifications_prune(created_before=cutoff)
    events_prune(finished_before=cutoff)
    tickets_purge_expired()
    return pruned


@task_failure.connect
def release_claims_of_lost_delivery(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    """A delivery's process died (or hit the time limit): its events are due again now,
    each counting an attempt, instead of after their lease. Sent in the worker's main
    process, which outlives the child that died."""
    if task_id and getattr(sender, "name", None) in (DELIVER_EVENTS_TASK, OUTBOX_SWEEP_TASK):
        events_release_crashed(token=task_id)


@shared_task(name=WORKER_PING_TASK, ignore_result=True)
def worker_ping_task(name: str) -> None:
    """Run by a pool process: the worker consumes and runs tasks (workers/liveness.py)."""
    liveness_touch(name)


_pingers: list[Pinger] = []


@worker_ready.connect
def start_liveness_pings(sender: Any = None, **kwargs: Any) -> None:
    _pingers.append(Pinger(hostname=sender.hostname, interval_s=settings.WORKER_PING_INTERVAL_S).start())


@worker_shutdown.connect
def stop_liveness_pings(**kwargs: Any) -> None:
    while _pingers:
        _pingers.pop().stop()
