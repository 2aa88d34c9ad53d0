"""GET /metrics: who may read it, what the outbox and the sockets of this process look like."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from delivery.credentials import token_issue
from delivery.deliver_events import deliver_events
from events import emit
from events.models import Event
from events.outbox import relay_heartbeat
from tests.delivery.test_consumer import Socket, bearer, run

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client, **headers: str) -> str:  # type: ignore[no-untyped-def]
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.content.decode()


def value(text: str, name: str, labels: str = "") -> float:
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name}{labels} not in /metrics"
    return float(found.group(1))


def test_metrics_are_for_loopback_clients_only_unless_a_token_is_set(client, settings) -> None:
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    scrape(client)  # the test client is 127.0.0.1

    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    scrape(client, REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-me")


def test_the_outbox_and_the_stored_count_come_from_the_database(client, alice, store_notices) -> None:
    store_notices(alice, count=3)
    now = timezone.now()
    old = Event.objects.create(type="notice", data={"title": "t"}, recipient_ids=[alice.pk])
    Event.objects.filter(pk=old.pk).update(created_at=now - timedelta(seconds=90))
    Event.objects.create(type="notice", data={"title": "t"}, recipient_ids=[alice.pk])
    Event.objects.create(type="notice", data={"title": "t"}, recipient_ids=[alice.pk], status=Event.Status.DEAD)
    relay_heartbeat()

    text = scrape(client)

    assert value(text, "notify_events_pending", '{age="<10s"}') == 1
    assert value(text, "notify_events_pending", '{age="<600s"}') == 1
    assert 89 < value(text, "notify_events_oldest_pending_seconds") < 120
    assert value(text, "notify_events_dead") == 1
    assert value(text, "notify_notifications_stored_total") == 3
    assert value(text, "notify_outbox_sweep_age_seconds") < 5


def test_open_sockets_are_counted_while_open(client, alice) -> None:
    before = value(scrape(client), "notify_sockets_open")
    headers = bearer(token_issue(user=alice))

    async def scenario() -> tuple[float, float]:
        socket = Socket(headers)
        await socket.open_authenticated()
        during = value(await asyncio.to_thread(scrape, client), "notify_sockets_open")
        await socket.shut()
        return during, value(await asyncio.to_thread(scrape, client), "notify_sockets_open")

    during, after = run(scenario())
    assert (during - before, after - before) == (1, 0)


def test_every_metric_the_sample_dashboard_plots_is_exported(client, alice) -> None:
    dashboard = (Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text()
    plotted = set(re.findall(r"notify_[a-z_]+", dashboard))
    exported = set(re.findall(r"^(notify_[a-z_]+)", scrape(client), re.MULTILINE))

    assert plotted, "the dashboard plots nothing"
    assert plotted <= exported, plotted - exported


def test_doorbells_rung_by_workers_are_counted_in_redis_one_per_user_per_batch(client, alice, bob) -> None:
    before = value(scrape(client), "notify_doorbells_rung_total")
    for title in ("one", "two"):
        emit("notice", recipients=[alice, bob], data={"title": title})
    emit("notice", recipients=[alice], data={"title": "three"})

    assert deliver_events(token="metrics-test") == 3

    # One batch: alice's three notifications are one ring, bob's two another.
    assert value(scrape(client), "notify_doorbells_rung_total") == before + 2
