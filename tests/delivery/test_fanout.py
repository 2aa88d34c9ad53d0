"""Delivering one event: one notification per allowed recipient, numbered per user, then a ring."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from delivery import fanout
from delivery.doorbell import LayerUnavailable, doorbell
from delivery.fanout import event_deliver
from delivery.groups import user_group
from delivery.models import Inbox, Notification
from delivery.payloads import notification_payload
from events import emit
from events.models import Event
from events.registry import TITLE_MAX, Rendered, unregister
from tests.events.conftest import ThrowawayTypes
from workers.tasks import deliver_event_task

pytestmark = pytest.mark.django_db


def notice(*recipients, title: str = "Deploy finished", **data) -> Event:  # type: ignore[no-untyped-def]
    return emit("notice", recipients=list(recipients), data={"title": title, **data})


def seqs_of(user) -> list[int]:  # type: ignore[no-untyped-def]
    return list(Notification.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))


def test_each_recipient_gets_one_notification_and_one_ring(alice, bob, rings) -> None:
    event = notice(alice, bob, body="All green", url="/deploys/41")

    event_deliver(event_id=event.pk)

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
    assert rings == [
        (
            user_group(user.pk),
            {
                "type": "notification.created",
                "seq": 1,
                "unread": 1,
                "notification": notification_payload(Notification.objects.get(user=user)),
            },
        )
        for user in sorted([alice, bob], key=lambda u: u.pk)
    ]
    event.refresh_from_db()
    assert event.status == Event.Status.DELIVERED
    assert event.attempts == 1
    assert event.finished_at is not None


def test_seq_counts_up_per_user_without_gaps(alice, bob, rings) -> None:
    for recipients in ([alice], [alice, bob], [bob], [alice]):
        event_deliver(event_id=notice(*recipients).pk)

    assert seqs_of(alice) == [1, 2, 3]
    assert seqs_of(bob) == [1, 2]
    assert [message["seq"] for group, message in rings if group == user_group(alice.pk)] == [1, 2, 3]
    assert Inbox.objects.get(user=alice).last_seq == 3
    assert Inbox.objects.get(user=alice).unread == 3
    assert rings[-1][1]["unread"] == 3


def test_delivering_a_delivered_event_again_stores_and_rings_nothing(alice, rings) -> None:
    event = notice(alice)
    event_deliver(event_id=event.pk)
    rings.clear()

    event_deliver(event_id=event.pk)

    assert seqs_of(alice) == [1]
    assert Inbox.objects.get(user=alice).unread == 1
    assert rings == []


def test_a_rerun_after_a_crash_stores_nothing_new_and_rings_the_same_seqs(alice, bob, rings) -> None:
    event = notice(alice, bob)
    event_deliver(event_id=event.pk)
    first_rings = list(rings)
    rings.clear()
    # The worker died after storing and ringing, before it marked the event delivered.
    Event.objects.filter(pk=event.pk).update(status=Event.Status.PENDING, finished_at=None)

    event_deliver(event_id=event.pk)

    assert Notification.objects.count() == 2
    assert seqs_of(alice) == seqs_of(bob) == [1]
    assert Inbox.objects.get(user=alice).unread == 1
    assert [(group, message["seq"], message["notification"]["id"]) for group, message in rings] == [
        (group, message["seq"], message["notification"]["id"]) for group, message in first_rings
    ]
    assert Event.objects.get(pk=event.pk).status == Event.Status.DELIVERED


def test_a_doorbell_that_cannot_ring_does_not_fail_the_delivery(
    alice, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[int] = []

    def layer_down(rings, timeout: float = 0) -> None:  # type: ignore[no-untyped-def]
        tries.append(len(rings))
        raise LayerUnavailable("redis is restarting")

    monkeypatch.setattr(doorbell, "ring_and_wait", layer_down)
    monkeypatch.setattr(fanout, "RING_RETRY_PAUSES_S", (0, 0, 0))
    event = notice(alice)

    with caplog.at_level(logging.WARNING, logger="delivery.fanout"):
        event_deliver(event_id=event.pk)

    assert tries == [1, 1, 1]
    assert seqs_of(alice) == [1]  # stored: open sockets reconcile, new ones resume
    assert Event.objects.get(pk=event.pk).status == Event.Status.DELIVERED
    assert "1 doorbell(s) not rung, left to reconcile" in caplog.text


def test_a_doorbell_that_rings_on_a_second_try_is_enough(alice, monkeypatch: pytest.MonkeyPatch) -> None:
    rung: list[list] = []

    def flaky(rings, timeout: float = 0) -> None:  # type: ignore[no-untyped-def]
        rung.append(list(rings))
        if len(rung) == 1:
            raise LayerUnavailable("a blip")

    monkeypatch.setattr(doorbell, "ring_and_wait", flaky)
    monkeypatch.setattr(fanout, "RING_RETRY_PAUSES_S", (0, 0, 0))

    event_deliver(event_id=notice(alice).pk)

    assert len(rung) == 2
    assert rung[0] == rung[1]


def test_an_attempt_marks_the_event_dispatched(alice, rings) -> None:
    event = notice(alice)

    event_deliver(event_id=event.pk)

    assert Event.objects.get(pk=event.pk).dispatched_at is not None


def test_a_message_reaches_its_addressee_only(make_user, alice, bob, rings) -> None:
    carol = make_user("carol")
    to_bob = emit("message.received", recipients=[bob], actor=alice, data={"from": "alice", "excerpt": "hi"})
    to_two = emit("message.received", recipients=[bob, carol], actor=alice, data={"from": "alice"})
    to_self = emit("message.received", recipients=[alice], actor=alice, data={"from": "alice"})

    for event in (to_bob, to_two, to_self):
        event_deliver(event_id=event.pk)

    (delivered,) = Notification.objects.all()
    assert (delivered.user, delivered.event, delivered.title, delivered.body) == (
        bob,
        to_bob,
        "New message from alice",
        "hi",
    )
    assert [group for group, _ in rings] == [user_group(bob.pk)]
    assert Event.objects.get(pk=to_two.pk).status == Event.Status.DELIVERED  # nobody to tell is not a failure


def test_inactive_users_get_nothing(make_user, alice, rings) -> None:
    gone = make_user("gone", is_active=False)

    event_deliver(event_id=notice(alice, gone).pk)

    assert [n.user for n in Notification.objects.all()] == [alice]
    assert not Inbox.objects.filter(user=gone).exists()


def test_recipient_ids_of_no_user_are_skipped(alice, rings) -> None:
    event_deliver(event_id=notice(alice, 987_654).pk)

    assert [n.user for n in Notification.objects.all()] == [alice]


def test_what_is_stored_is_trimmed_and_the_url_made_safe(alice, rings, event_types: ThrowawayTypes) -> None:
    event_types.add(
        "test.sloppy",
        render=lambda event, user: Rendered(title="t" * 500, body="b", url="javascript:alert(document.cookie)"),
    )

    event_deliver(event_id=emit("test.sloppy", recipients=[alice]).pk)

    notification = Notification.objects.get()
    assert notification.title == "t" * TITLE_MAX
    assert notification.url == ""


def test_a_renderer_that_raises_propagates_and_stores_nothing(alice, rings, event_types: ThrowawayTypes) -> None:
    def explode(event, user):  # type: ignore[no-untyped-def]
        raise RuntimeError("renderer exploded")

    event_types.add("test.poison", render=explode)
    event = emit("test.poison", recipients=[alice])

    with pytest.raises(RuntimeError, match="renderer exploded"):
        event_deliver(event_id=event.pk)

    assert not Notification.objects.exists()
    assert rings == []
    event.refresh_from_db()
    assert (event.status, event.attempts) == (Event.Status.PENDING, 1)


def test_the_task_dead_letters_an_event_whose_renderer_raises(
    alice, rings, event_types: ThrowawayTypes, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event, user):  # type: ignore[no-untyped-def]
        raise RuntimeError("renderer exploded")

    event_types.add("test.poison", render=explode)
    event = emit("test.poison", recipients=[alice])

    with caplog.at_level(logging.ERROR, logger="delivery.fanout"):
        deliver_event_task.apply(args=[event.pk])

    event.refresh_from_db()
    assert event.status == Event.Status.DEAD
    assert event.last_error == "RuntimeError: renderer exploded"
    assert event.finished_at is not None
    assert event.attempts == 1
    assert not Notification.objects.exists()
    assert any(f"event {event.pk} dead-lettered" in r.getMessage() for r in caplog.records)


def test_the_task_dead_letters_an_event_whose_type_is_no_longer_registered(alice, rings, event_types) -> None:
    event_types.add("test.retired")
    event = emit("test.retired", recipients=[alice])
    unregister("test.retired")  # a deploy removed the type while its event waited

    deliver_event_task.apply(args=[event.pk])

    event.refresh_from_db()
    assert event.status == Event.Status.DEAD
    assert event.last_error.startswith("UnknownEventType: unknown event type 'test.retired'")


def test_an_event_that_used_up_its_attempts_is_dead_lettered_without_delivery(alice, rings) -> None:
    event = notice(alice)
    Event.objects.filter(pk=event.pk).update(attempts=settings.EVENTS_MAX_ATTEMPTS)

    event_deliver(event_id=event.pk)

    event.refresh_from_db()
    assert event.status == Event.Status.DEAD
    assert event.last_error == f"gave up after {settings.EVENTS_MAX_ATTEMPTS} attempts"
    assert not Notification.objects.exists()
    assert rings == []


def test_the_last_allowed_attempt_still_delivers(alice, rings) -> None:
    event = notice(alice)
    Event.objects.filter(pk=event.pk).update(attempts=settings.EVENTS_MAX_ATTEMPTS - 1)

    event_deliver(event_id=event.pk)

    event.refresh_from_db()
    assert (event.status, event.attempts) == (Event.Status.DELIVERED, settings.EVENTS_MAX_ATTEMPTS)
    assert seqs_of(alice) == [1]


@pytest.mark.parametrize("status", [Event.Status.DEAD, Event.Status.DELIVERED])
def test_a_finished_event_is_left_alone(alice, rings, status: str) -> None:
    event = notice(alice)
    Event.objects.filter(pk=event.pk).update(status=status)

    event_deliver(event_id=event.pk)

    event.refresh_from_db()
    assert (event.status, event.attempts) == (status, 0)
    assert not Notification.objects.exists()


def test_a_missing_event_id_is_a_no_op(rings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="delivery.fanout"):
        event_deliver(event_id=987_654)

    assert rings == []
    assert "event 987654 does not exist" in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_async_db_connections")
def test_delivery_rings_the_users_group_on_the_real_channel_layer(alice) -> None:
    event = notice(alice)

    async def listen_while_delivering() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(user_group(alice.pk), channel)
        await database_sync_to_async(event_deliver)(event_id=event.pk)
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    message = asyncio.run(listen_while_delivering())

    stored = Notification.objects.get(user=alice)
    assert message == {
        "type": "notification.created",
        "seq": 1,
        "unread": 1,
        "notification": notification_payload(stored),
    }
