"""Health checks of what delivery depends on: the database, Redis, the broker, the relay
(the outbox sweep) and the workers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from events.heartbeats import WORKER_HEARTBEAT_PREFIX, heartbeats_since
from events.outbox import relay_last_beat

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2
RELAY_STALE_INTERVALS = 3
WORKER_FORGET_AFTER_S = 600  # a worker silent this long is taken for scaled away, not stale


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()


def check_broker() -> None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_S) as broker:
        broker.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)


class Stale(Exception):
    """Something that should run now and then has not run for too long."""


class RelayStale(Stale):
    """The outbox sweep has not run for three of its intervals (beat or every worker is gone)."""


def check_relay() -> None:
    last = relay_last_beat()
    if last is None:
        raise RelayStale("never ran")
    age = (timezone.now() - last).total_seconds()
    if age > RELAY_STALE_INTERVALS * settings.EVENTS_RELAY_INTERVAL_S:
        raise RelayStale(f"last ran {age:.0f} s ago")


def check_workers() -> None:
    """Every worker seen in the last WORKER_FORGET_AFTER_S ran a liveness ping within
    WORKER_LIVENESS_TIMEOUT_S, and there is at least one."""
    now = timezone.now()
    seen = heartbeats_since(prefix=WORKER_HEARTBEAT_PREFIX, since=now - timedelta(seconds=WORKER_FORGET_AFTER_S))
    if not seen:
        raise Stale("no worker seen")
    silent = {
        name.removeprefix(WORKER_HEARTBEAT_PREFIX): (now - beat_at).total_seconds()
        for name, beat_at in sorted(seen.items())
        if (now - beat_at).total_seconds() > settings.WORKER_LIVENESS_TIMEOUT_S
    }
    if silent:
        raise Stale(", ".join(f"{name} last pinged {age:.0f} s ago" for name, age in silent.items()))


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "relay": check_relay,
    "workers": check_workers,
}


def health_report() -> dict[str, str]:
    """{"database": "ok", "redis": "down: ...", ...}"""
    report = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            logger.warning("health check %s failed: %r", name, exc)
            report[name] = f"stale: {exc}" if isinstance(exc, Stale) else f"down: {type(exc).__name__}"
        else:
            report[name] = "ok"
    return report
