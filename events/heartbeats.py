"""Heartbeats: when a component last proved it works (the outbox sweep, each worker)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from events.models import Heartbeat

# Workers note each liveness ping as "worker:<name>" (workers/liveness.py); /healthz reads them.
WORKER_HEARTBEAT_PREFIX = "worker:"


def heartbeat_record(name: str) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": timezone.now()})


def heartbeat_forget(name: str) -> None:
    Heartbeat.objects.filter(name=name).delete()


def heartbeat_last(name: str) -> datetime | None:
    return Heartbeat.objects.filter(name=name).values_list("beat_at", flat=True).first()


def heartbeats_since(*, prefix: str, since: datetime) -> dict[str, datetime]:
    """Heartbeats whose name starts with `prefix`, last seen after `since`."""
    rows = Heartbeat.objects.filter(name__startswith=prefix, beat_at__gt=since).values_list("name", "beat_at")
    return dict(rows)
