"""Reads of the outbox for operators: what is pending, how old, what is held, what died."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q
from django.utils import timezone

from events.models import Event

# Upper bounds (seconds) of the pending-age buckets an operator sees.
AGE_BUCKETS_S = (10, 60, 600)


@dataclass(frozen=True)
class DeadEvent:
    id: int
    type: str
    error: str
    finished_at: datetime | None


@dataclass(frozen=True)
class OutboxState:
    pending: int
    pending_by_age: dict[str, int]  # "<10s", "<60s", "<600s", ">=600s"
    oldest_pending_age_s: float | None
    in_flight: int  # pending and held by a worker's live lease
    deferred: int  # pending and waiting for their next attempt after an infrastructure error
    dead: int
    recent_dead: list[DeadEvent] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "pending": self.pending,
            "pending_by_age": self.pending_by_age,
            "oldest_pending_age_s": self.oldest_pending_age_s,
            "in_flight": self.in_flight,
            "deferred": self.deferred,
            "dead": self.dead,
            "recent_dead": [
                {
                    "id": dead.id,
                    "type": dead.type,
                    "error": dead.error,
                    "finished_at": dead.finished_at.isoformat() if dead.finished_at else None,
                }
                for dead in self.recent_dead
            ],
        }


def outbox_state(*, recent_dead: int = 5) -> OutboxState:
    """The outbox at a glance, in two queries (one aggregate, one for the latest dead)."""
    now = timezone.now()
    pending = Q(status=Event.Status.PENDING)
    ages: dict[str, Q] = {}
    lower: float = 0
    for upper in AGE_BUCKETS_S:
        ages[f"<{upper}s"] = (
            pending
            & Q(created_at__gt=now - timedelta(seconds=upper))
            & Q(created_at__lte=now - timedelta(seconds=lower))
        )
        lower = upper
    ages[f">={AGE_BUCKETS_S[-1]}s"] = pending & Q(created_at__lte=now - timedelta(seconds=AGE_BUCKETS_S[-1]))
    totals = Event.objects.aggregate(
        pending=Count("pk", filter=pending),
        in_flight=Count("pk", filter=pending & Q(claimed_until__gte=now)),
        deferred=Count("pk", filter=pending & Q(next_attempt_at__gt=now)),
        dead=Count("pk", filter=Q(status=Event.Status.DEAD)),
        oldest=Min("created_at", filter=pending),
        **{f"age{index}": Count("pk", filter=q) for index, q in enumerate(ages.values())},
    )
    latest_dead = Event.objects.filter(status=Event.Status.DEAD).order_by("-finished_at", "-pk")[:recent_dead]
    return OutboxState(
        pending=totals["pending"],
        pending_by_age={name: totals[f"age{index}"] for index, name in enumerate(ages)},
        oldest_pending_age_s=(now - totals["oldest"]).total_seconds() if totals["oldest"] else None,
        in_flight=totals["in_flight"],
        deferred=totals["deferred"],
        dead=totals["dead"],
        recent_dead=[
            DeadEvent(id=event.pk, type=event.type, error=event.last_error[:300], finished_at=event.finished_at)
            for event in latest_dead
        ],
    )
