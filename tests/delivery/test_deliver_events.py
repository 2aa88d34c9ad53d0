"""deliver_events: due events, oldest first, stored in batches, one ring per user per batch."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import operator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from delivery import deliver_events as module
from delivery.deliver_events import deliver_events
from delivery.doorbell import LayerUnavailable, doorbell
from delivery.groups import user_group
from delivery.models import Inbox, Notification
from delivery.payloads import notification_payload
from events import emit
from events.models import Event
from events.registry import TITLE_MAX, Rendered, unregister
from tests.events.conftest import ThrowawayTypes
from workers.tasks import deliver_events_task, release_claims_of_lost_delivery

pytestmark = pytest.mark.django_db


def notice(*recipients, title: str = "Deploy finished", **data) -> Event:  # type: ignore[no-untyped-def]
    return emit("notice", recipients=list(recipients), data={"title": title, **data})


def deliver(**options: Any) -> int:
    return deliver_events(token="test-worker", **options)


def seqs_of(user) -> list[int]:  # type: ignore[no-untyped-def]
    return list(Notification.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))


def frames_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in message["frames"]]


def status_of(event: Event) -> str:
    return Event.objects.get(pk=event.pk).status


def test_each_recipient_gets_one_notification_and_one_ring(alice, bob, rings) -> None:
    event = notice(alice, bob, body="All green", url="/deploys/41")

    assert deliver() == 1

    for user in (alice, bob):
        notification = Notification.objects.get(user=user)
        assert (notification.seq, notification.event, notification.event_type) == (1, event, "notice")
        assert (notification.title, notification.body, notification.url) == (
            "Deploy finished",
            "All green",
            "/deploys/41",
        )
        assert notification.data == event.data
        assert notification.read_at is None
        assert Inbox.objects.get(user=user).unread == 1
    assert [(group, message["type"], message["first_seq"], frames_of(message)) for group, message in rings] == [
        (
            user_group(user.pk),
            "notifications.created",
            1,
            [
                {
                    "type": "notification",
                    "notification": notification_payload(Notification.objects.get(user=user)),
                    "unread": 1,
                }
            ],
        )
        for user in sorted([alice, bob], key=lambda u: u.pk)
    ]
    event.refresh_from_db()
    assert (event.status, event.attempts, event.claimed_until) == (Event.Status.DELIVERED, 0, None)
    assert event.finished_at is not None


def test_a_batch_numbers_each_users_notifications_in_emit_order_and_rings_each_user_once(alice, bob, rings) -> None:
    for recipients in ([alice], [alice, bob], [bob], [alice]):
        notice(*recipients)

    assert deliver() == 4

    assert seqs_of(alice) == [1, 2, 3]
    assert seqs_of(bob) == [1, 2]
    assert list(Notification.objects.filter(user=alice).order_by("seq").values_list("event", flat=True)) == sorted(
        Notification.objects.filter(user=alice).values_list("event", flat=True)
    )
    (alices_ring,) = [message for group, message in rings if group == user_group(alice.pk)]
    assert alices_ring["first_seq"] == 1
    assert [(f["notification"]["seq"], f["unread"]) for f in frames_of(alices_ring)] == [(1, 1), (2, 2), (3, 3)]
    assert len(rings) == 2
    assert (Inbox.objects.get(user=alice).last_seq, Inbox.objects.get(user=alice).unread) == (3, 3)


def test_the_statements_of_a_batch_do_not_grow_with_its_size(make_user, rings) -> None:
    users = [make_user(f"user{number}") for number in range(40)]

    def statements_to_deliver(events: int) -> int:
        for number in range(events):
            notice(users[number % len(users)], title=f"n{number}")
        with CaptureQueriesContext(connection) as queries:
            assert deliver() == events
        return len(queries)

    one = statements_to_deliver(1)
    many = statements_to_deliver(200)

    # PostgreSQL takes the 200 notifications in one INSERT; Django splits it for SQLite's
    # limit on parameters per statement, and that is the only difference.
    fields = [field for field in Notification._meta.concrete_fields if not field.primary_key]
    per_insert = connection.ops.bulk_batch_size(fields, [None] * 200)
    assert many == one + math.ceil(200 / per_insert) - 1


def claims_in(queries: CaptureQueriesContext) -> int:
    return sum('FROM "events_event"' in q["sql"] and "ORDER BY" in q["sql"] for q in queries.captured_queries)


def test_a_claim_that_took_everything_due_is_not_followed_by_an_empty_one(alice, rings) -> None:
    notice(alice)
    with CaptureQueriesContext(connection) as queries:
        assert deliver() == 1
    assert claims_in(queries) == 1


def test_a_full_claim_is_followed_by_another(alice, rings, monkeypatch) -> None:
    monkeypatch.setattr(module, "BATCH_EVENTS_MAX", 2)
    for number in range(5):
        notice(alice, title=f"n{number}")
    with CaptureQueriesContext(connection) as queries:
        assert deliver() == 5
    assert claims_in(queries) == 3  # 2 and 2, both full; then 1, with nothing left
    assert seqs_of(alice) == [1, 2, 3, 4, 5]


def test_delivered_events_are_not_delivered_again(alice, rings) -> None:
    notice(alice)
    deliver()
    rings.clear()

    assert deliver() == 0

    assert seqs_of(alice) == [1]
    assert rings == []


def test_a_rerun_of_an_event_another_worker_stored_stores_nothing_new(alice, bob, rings) -> None:
    event = notice(alice, bob)
    deliver()
    # Another worker stored it, but its lease ran out before we saw it delivered.
    Event.objects.filter(pk=event.pk).update(status=Event.Status.PENDING, finished_at=None)
    rings.clear()

    assert deliver() == 1

    assert Notification.objects.count() == 2
    assert seqs_of(alice) == seqs_of(bob) == [1]
    assert Inbox.objects.get(user=alice).unread == 1
    assert rings == []
    assert status_of(event) == Event.Status.DELIVERED


def lookups_of_stored_notifications(queries: CaptureQueriesContext) -> int:
    return sum(q["sql"].startswith('SELECT "delivery_notification"') for q in queries.captured_queries)


def test_events_never_claimed_before_are_stored_without_looking_for_earlier_notifications(alice, rings) -> None:
    notice(alice)
    with CaptureQueriesContext(connection) as queries:
        assert deliver() == 1
    assert lookups_of_stored_notifications(queries) == 0


def test_an_event_claimed_before_whose_worker_stored_it_is_not_stored_twice(alice, bob, rings) -> None:
    event = notice(alice, bob)
    deliver()
    # Its worker stored it and then its lease ran out: claimed again, it is a suspect.
    Event.objects.filter(pk=event.pk).update(
        status=Event.Status.PENDING, finished_at=None, claimed_until=timezone.now() - timedelta(seconds=1)
    )
    rings.clear()

    with CaptureQueriesContext(connection) as queries:
        assert deliver() == 1

    assert lookups_of_stored_notifications(queries) == 1
    assert seqs_of(alice) == seqs_of(bob) == [1]
    assert rings == []


awkward_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
json_data = st.dictionaries(awkward_text, st.none() | st.booleans() | st.integers() | awkward_text, max_size=4)


@given(titles=st.lists(awkward_text, min_size=1, max_size=3), data=json_data)
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_what_is_rung_is_what_was_stored_whatever_the_text(alice, bob, rings, event_types, titles, data) -> None:
    # Quotes, backslashes, braces and commas pass through one array per column on PostgreSQL.
    if "anything" not in event_types.names:
        event_types.add("anything")
    rings.clear()
    events = [
        emit("anything", recipients=[alice, bob], data={**data, "title": title, "body": title}) for title in titles
    ]

    assert deliver() == len(events)

    rung = [frame["notification"] for _, message in rings for frame in frames_of(message)]
    stored = [notification_payload(n) for n in Notification.objects.filter(event__in=events).order_by("user", "seq")]
    assert sorted(rung, key=lambda p: p["id"]) == sorted(stored, key=lambda p: p["id"])
    assert {n.event_id: n.data for n in Notification.objects.filter(event__in=events)} == {e.pk: e.data for e in events}


def test_a_doorbell_that_cannot_ring_does_not_fail_the_delivery(
    alice, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[int] = []

    def layer_down(rings) -> None:  # type: ignore[no-untyped-def]
        tries.append(len(rings))
        raise LayerUnavailable("redis is restarting")

    monkeypatch.setattr(doorbell, "ring_and_wait", layer_down)
    monkeypatch.setattr(module, "RING_RETRY_PAUSES_S", (0, 0, 0))
    event = notice(alice)

    with caplog.at_level(logging.WARNING, logger="delivery.deliver_events"):
        deliver()

    assert tries == [1, 1, 1]
    assert seqs_of(alice) == [1]  # stored: open sockets reconcile, new ones resume
    assert status_of(event) == Event.Status.DELIVERED
    assert "1 doorbell(s) not rung, left to reconcile" in caplog.text


def test_a_doorbell_that_rings_on_a_second_try_is_enough(alice, monkeypatch: pytest.MonkeyPatch) -> None:
    rung: list[list] = []

    def flaky(rings) -> None:  # type: ignore[no-untyped-def]
        rung.append(list(rings))
        if len(rung) == 1:
            raise LayerUnavailable("a blip")

    monkeypatch.setattr(doorbell, "ring_and_wait", flaky)
    monkeypatch.setattr(module, "RING_RETRY_PAUSES_S", (0, 0, 0))
    notice(alice)

    deliver()

    assert len(rung) == 2
    assert rung[0] == rung[1]


def test_a_message_reaches_its_addressee_only(make_user, alice, bob, rings) -> None:
    carol = make_user("carol")
    to_bob = emit("message.received", recipients=[bob], actor=alice, data={"from": "alice", "excerpt": "hi"})
    to_two = emit("message.received", recipients=[bob, carol], actor=alice, data={"from": "alice"})
    emit("message.received", recipients=[alice], actor=alice, data={"from": "alice"})

    deliver()

    (delivered,) = Notification.objects.all()
    assert (delivered.user, delivered.event, delivered.title, delivered.body) == (
        bob,
        to_bob,
        "New message from alice",
        "hi",
    )
    assert [group for group, _ in rings] == [user_group(bob.pk)]
    assert status_of(to_two) == Event.Status.DELIVERED  # nobody to tell is not a failure


def test_inactive_users_get_nothing(make_user, alice, rings) -> None:
    gone = make_user("gone", is_active=False)
    notice(alice, gone)

    deliver()

    assert [n.user for n in Notification.objects.all()] == [alice]
    assert not Inbox.objects.filter(user=gone).exists()


def test_recipient_ids_of_no_user_are_skipped(alice, rings) -> None:
    notice(alice, 987_654)

    deliver()

    assert [n.user for n in Notification.objects.all()] == [alice]


def test_what_is_stored_is_trimmed_and_the_url_made_safe(alice, rings, event_types: ThrowawayTypes) -> None:
    event_types.add(
        "test.sloppy",
        render=lambda event, user: Rendered(title="t" * 500, body="b", url="javascript:alert(document.cookie)"),
    )
    emit("test.sloppy", recipients=[alice])

    deliver()

    notification = Notification.objects.get()
    assert notification.title == "t" * TITLE_MAX
    assert notification.url == ""


def test_a_poison_event_in_a_batch_is_dead_lettered_alone_and_the_others_are_delivered(
    alice, bob, rings, event_types: ThrowawayTypes, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event, user):  # type: ignore[no-untyped-def]
        raise RuntimeError("renderer exploded")

    event_types.add("test.poison", render=explode)
    before = notice(alice, title="before")
    poison = emit("test.poison", recipients=[alice, bob])
    after = notice(alice, bob, title="after")

    with caplog.at_level(logging.WARNING, logger="delivery.deliver_events"):
        assert deliver() == 2

    poison.refresh_from_db()
    assert poison.status == Event.Status.DEAD
    assert poison.last_error == "RuntimeError: renderer exploded"
    assert poison.finished_at is not None
    assert (status_of(before), status_of(after)) == (Event.Status.DELIVERED, Event.Status.DELIVERED)
    assert list(Notification.objects.filter(user=alice).order_by("seq").values_list("title", "seq")) == [
        ("before", 1),
        ("after", 2),
    ]
    assert seqs_of(bob) == [1]
    assert "a batch of 3 events failed" in caplog.text
    assert f"event {poison.pk} dead-lettered" in caplog.text


def test_an_event_whose_type_is_no_longer_registered_is_dead_lettered(alice, rings, event_types) -> None:
    event_types.add("test.retired")
    event = emit("test.retired", recipients=[alice])
    unregister("test.retired")  # a deploy removed the type while its event waited

    deliver()

    event.refresh_from_db()
    assert event.status == Event.Status.DEAD
    assert event.last_error.startswith("UnknownEventType: unknown event type 'test.retired'")


def test_a_database_error_gives_the_batch_back_for_later_without_counting_an_attempt(
    alice, rings, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = notice(alice)

    def database_blip(**kwargs: Any) -> None:
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(module, "notifications_store", database_blip)
    before = timezone.now()

    assert deliver() == 0

    event.refresh_from_db()
    assert (event.status, event.attempts, event.claimed_until, event.claimed_by) == (Event.Status.PENDING, 0, None, "")
    assert event.next_attempt_at is not None
    assert before + timedelta(seconds=0.9) <= event.next_attempt_at <= timezone.now() + timedelta(seconds=3.1)
    assert event.last_error == "OperationalError: deadlock detected"
    monkeypatch.undo()
    assert deliver() == 0  # not due yet

    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    assert deliver() == 1
    assert seqs_of(alice) == [1]


def test_events_of_a_worker_that_died_are_due_again_at_once_and_count_an_attempt(alice, rings) -> None:
    event = notice(alice)
    lease = timezone.now() + timedelta(seconds=60)
    Event.objects.filter(pk=event.pk).update(claimed_until=lease, claimed_by="task-that-died")
    assert deliver() == 0  # held by its lease

    release_claims_of_lost_delivery(sender=deliver_events_task, task_id="task-that-died")
    assert deliver() == 1

    event.refresh_from_db()
    assert (event.status, event.attempts) == (Event.Status.DELIVERED, 1)


def test_an_event_that_keeps_killing_its_worker_is_dead_lettered(alice, rings, settings) -> None:
    event = notice(alice)
    expired = timezone.now() - timedelta(seconds=1)
    Event.objects.filter(pk=event.pk).update(claimed_until=expired, attempts=settings.EVENTS_MAX_ATTEMPTS - 1)

    assert deliver() == 0

    event.refresh_from_db()
    assert event.status == Event.Status.DEAD
    assert event.attempts == settings.EVENTS_MAX_ATTEMPTS - 1
    assert event.last_error == f"gave up after {settings.EVENTS_MAX_ATTEMPTS} attempts that ended without an answer"
    assert not Notification.objects.exists()


@pytest.mark.parametrize("status", [Event.Status.DEAD, Event.Status.DELIVERED, Event.Status.SPLIT])
def test_a_finished_event_is_left_alone(alice, rings, status: str) -> None:
    event = notice(alice)
    Event.objects.filter(pk=event.pk).update(status=status)

    assert deliver() == 0

    assert status_of(event) == status
    assert not Notification.objects.exists()


def test_a_large_fan_out_is_split_into_parts_that_other_workers_are_woken_for(
    make_user, alice, rings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "FANOUT_PART", 4)
    users = [make_user(f"user{number}") for number in range(9)]
    first = notice(alice, title="first")
    event = notice(*users, title="to many")
    later = notice(users[8], title="later")
    woken: list[int] = []

    assert deliver(wake=woken.append) == 5  # first + 3 parts + later

    event.refresh_from_db()
    assert event.status == Event.Status.SPLIT
    parts = list(Event.objects.filter(parent=event).order_by("pk"))
    assert [len(part.recipient_ids) for part in parts] == [4, 4, 1]
    assert sorted(functools.reduce(operator.iadd, (part.recipient_ids for part in parts), [])) == sorted(
        u.pk for u in users
    )
    assert all(part.status == Event.Status.DELIVERED for part in parts)
    assert woken == [2]
    for user in users[:8]:
        assert seqs_of(user) == [1]
    # The part that holds users[8] was numbered before "later", though "later" has the lower id.
    assert list(Notification.objects.filter(user=users[8]).order_by("seq").values_list("title", flat=True)) == [
        "to many",
        "later",
    ]
    assert status_of(first) == status_of(later) == Event.Status.DELIVERED


def test_a_batch_waits_while_another_worker_stores_an_earlier_event_of_the_same_user(
    alice, bob, rings, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier = notice(alice, title="earlier")
    Event.objects.filter(pk=earlier.pk).update(
        claimed_until=timezone.now() + timedelta(seconds=60), claimed_by="another-worker"
    )
    notice(bob, title="for bob")
    notice(alice, title="later")
    checks: list[list[int]] = []

    def earlier_in_flight(claim):  # type: ignore[no-untyped-def]
        found = list(
            Event.objects.filter(pk=earlier.pk, status=Event.Status.PENDING).values_list("pk", "recipient_ids")
        )
        checks.append([pk for pk, _ in found])
        if len(checks) == 3:  # the other worker finishes while we wait
            Event.objects.filter(pk=earlier.pk).update(status=Event.Status.DELIVERED)
        return found

    monkeypatch.setattr(module, "events_earlier_in_flight", earlier_in_flight)

    assert deliver() == 2

    assert checks == [[earlier.pk], [earlier.pk], [earlier.pk], []]


def test_a_worker_that_holds_an_earlier_event_too_long_is_not_waited_for_forever(
    alice, rings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    earlier = notice(alice, title="earlier")
    Event.objects.filter(pk=earlier.pk).update(
        claimed_until=timezone.now() + timedelta(seconds=60), claimed_by="a-stuck-worker"
    )
    later = notice(alice, title="later")
    monkeypatch.setattr(module, "ORDER_WAIT_S", 0.2)

    with caplog.at_level(logging.WARNING, logger="delivery.deliver_events"):
        assert deliver() == 1

    assert status_of(later) == Event.Status.DELIVERED
    assert f"events [{earlier.pk}] held by another worker" in caplog.text


def test_a_batch_stops_at_the_time_budget_and_asks_for_another_worker(alice, rings) -> None:
    for number in range(3):
        notice(alice, title=f"n{number}")
    woken: list[int] = []

    assert deliver(budget_s=-1, wake=woken.append) == 0

    assert woken == [1]
    assert Event.objects.filter(status=Event.Status.PENDING).count() == 3


def test_the_task_delivers_what_is_due(alice, rings) -> None:
    event = notice(alice)

    deliver_events_task.apply(args=[[event.pk]])

    assert status_of(event) == Event.Status.DELIVERED


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_async_db_connections")
def test_delivery_rings_the_users_group_on_the_real_channel_layer(alice) -> None:
    notice(alice)

    async def listen_while_delivering() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(user_group(alice.pk), channel)
        await database_sync_to_async(deliver)()
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    message = asyncio.run(listen_while_delivering())

    stored = Notification.objects.get(user=alice)
    assert message["type"] == "notifications.created"
    assert message["first_seq"] == 1
    assert frames_of(message) == [{"type": "notification", "notification": notification_payload(stored), "unread": 1}]
