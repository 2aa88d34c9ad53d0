"""GET /metrics: Prometheus text format, for this web process and the outbox behind it.

Process-local: open sockets, doorbells, frames and replay sizes (delivery/metrics.py), and
the Python process collectors. From the database, read at scrape time and so the same in
every web process: events pending (by age), in flight, deferred and dead, the oldest pending
event's age, notifications stored (the sum of every inbox's last seq: a true counter,
since seqs are never reused), and how long ago the outbox sweep ran. From Redis, the same in
every web process too: the doorbells every worker has rung (with the pub/sub layer). Open to loopback
clients only, unless METRICS_TOKEN is set: then to `Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from delivery.doorbell import doorbells_rung
from delivery.models import Inbox
from events.outbox import relay_last_beat
from events.selectors import outbox_state

LOOPBACK = {"127.0.0.1", "::1"}
REDIS_TIMEOUT_S = 1.0

logger = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        state = outbox_state(recent_dead=0)
        pending = GaugeMetricFamily("notify_events_pending", "Events not yet delivered, by age", labels=["age"])
        for bucket, count in state.pending_by_age.items():
            pending.add_metric([bucket], count)
        yield pending
        yield GaugeMetricFamily(
            "notify_events_oldest_pending_seconds",
            "Age of the oldest pending event (0 when none is pending)",
            value=state.oldest_pending_age_s or 0.0,
        )
        yield GaugeMetricFamily(
            "notify_events_in_flight", "Pending events held by a worker's lease", value=state.in_flight
        )
        yield GaugeMetricFamily(
            "notify_events_deferred", "Pending events waiting out a retry delay", value=state.deferred
        )
        yield GaugeMetricFamily(
            "notify_events_dead", "Dead-lettered events (retry them in the admin)", value=state.dead
        )
        stored = Inbox.objects.aggregate(total=Sum("last_seq"))["total"] or 0
        yield CounterMetricFamily("notify_notifications_stored", "Notifications ever stored", value=stored)
        last = relay_last_beat()
        age = (timezone.now() - last).total_seconds() if last else float("inf")
        yield GaugeMetricFamily("notify_outbox_sweep_age_seconds", "Seconds since the outbox sweep last ran", value=age)


class SharedCountersCollector(Collector):
    """Counters the workers keep in Redis; none while Redis does not answer."""

    def collect(self) -> Iterator[Metric]:
        try:
            rung = doorbells_rung(timeout_s=REDIS_TIMEOUT_S)
        except (redis.RedisError, OSError) as exc:
            logger.warning("/metrics could not read the counters in Redis: %r", exc)
            return
        if rung is not None:
            yield CounterMetricFamily(
                "notify_doorbells_rung", "Doorbells rung by every worker (one per user per batch)", value=rung
            )


_database = CollectorRegistry(auto_describe=False)
_database.register(DatabaseCollector())
_database.register(SharedCountersCollector())


def allowed(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())
    return request.META.get("REMOTE_ADDR") in LOOPBACK


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    body = generate_latest(REGISTRY) + generate_latest(_database)
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")
