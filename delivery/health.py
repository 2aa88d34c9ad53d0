"""Health checks of what delivery depends on: the database, Redis and the broker."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from kombu import Connection

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2


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


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
}


def health_report() -> dict[str, str]:
    """{"database": "ok", "redis": "down: ...", ...}"""
    report = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            logger.warning("health check %s failed: %r", name, exc)
            report[name] = f"down: {type(exc).__name__}"
        else:
            report[name] = "ok"
    return report
