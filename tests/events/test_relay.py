"""The outbox relay: re-drives committed events that look lost, and leaves queued ones alone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import Event
from events.relay import events_redrive

pytestmark = pytest.mark.django_db

GRACE_S = 30.0  # how long the on-commit hand-off has to hand an event over
REDRIVE_AFTER_S = 300.0  # how long the broker (or a worker) may hold one unfinished


@pytest.fixture
def make_event(alice) -> Callable[..., Event]:
    """Factory: an event of a given status, `age_s` old, last dispatched `dispatched_s` ago
    (never, by default)."""

    def make(*, age_s: float, status: str = Event.Status.PENDING, dispatched_s: float | None = None) -> Event:
        event = Event.objects.create(type="notice", data={"title": "t"}, recipient_ids=[alice.pk], status=status)
        now = timezone.now()
        Event.objects.filter(pk=event.pk).update(
            created_at=now - timedelta(seconds=age_s),
            dispatched_at=None if dispatched_s is None else now - timedelta(seconds=dispatched_s),
        )
        event.refresh_from_db()
        return event

    return make


class Recorder(list):
    """A publish that records the ids it was given."""

    def __call__(self, event_id: int) -> None:
        self.append(event_id)


def redrive(publish: Recorder) -> list[int]:
    return events_redrive(grace_s=GRACE_S, redrive_after_s=REDRIVE_AFTER_S, publish=publish)


def test_events_never_handed_over_are_published_once_older_than_the_grace_oldest_first(make_event) -> None:
    newer = make_event(age_s=GRACE_S + 30)
    older = make_event(age_s=GRACE_S + 600)
    publish = Recorder()

    assert redrive(publish) == [older.pk, newer.pk]
    assert publish == [older.pk, newer.pk]


def test_young_events_are_left_to_the_hand_off(make_event) -> None:
    make_event(age_s=GRACE_S - 5)
    publish = Recorder()

    assert redrive(publish) == []
    assert publish == []


@pytest.mark.parametrize("status", [Event.Status.DELIVERED, Event.Status.DEAD])
def test_finished_events_are_never_redriven(make_event, status: str) -> None:
    make_event(age_s=10 * REDRIVE_AFTER_S, status=status)
    make_event(age_s=10 * REDRIVE_AFTER_S, status=status, dispatched_s=10 * REDRIVE_AFTER_S)
    publish = Recorder()

    assert redrive(publish) == []
    assert publish == []


def test_an_event_the_broker_has_is_left_alone_while_it_may_still_be_queued(make_event) -> None:
    make_event(age_s=GRACE_S + 600, dispatched_s=REDRIVE_AFTER_S - 10)
    publish = Recorder()

    assert redrive(publish) == []
    assert publish == []


def test_an_event_dispatched_but_unfinished_for_too_long_is_redriven(make_event) -> None:
    lost = make_event(age_s=REDRIVE_AFTER_S + 600, dispatched_s=REDRIVE_AFTER_S + 10)
    publish = Recorder()

    assert redrive(publish) == [lost.pk]


def test_redriving_marks_the_event_dispatched_now(make_event) -> None:
    event = make_event(age_s=GRACE_S + 600)
    before = timezone.now()

    redrive(Recorder())

    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert before <= event.dispatched_at <= timezone.now()
    assert event.status == Event.Status.PENDING  # the worker, not the relay, finishes it


def test_a_second_run_right_after_the_first_publishes_nothing(make_event) -> None:
    event = make_event(age_s=GRACE_S + 600)
    first, second = Recorder(), Recorder()

    redrive(first)
    redrive(second)

    assert first == [event.pk]
    assert second == []


def test_only_the_events_it_publishes_are_marked(make_event) -> None:
    young = make_event(age_s=1)
    delivered = make_event(age_s=GRACE_S + 600, status=Event.Status.DELIVERED)

    redrive(Recorder())

    assert Event.objects.get(pk=young.pk).dispatched_at is None
    assert Event.objects.get(pk=delivered.pk).dispatched_at is None


def test_a_handed_over_event_is_re_driven_after_the_grace_when_the_broker_queue_is_empty(make_event) -> None:
    # A Redis restarted empty lost the queued task: nothing waits, so the event is not
    # "merely queued" and need not wait EVENTS_REDRIVE_AFTER_S.
    lost = make_event(age_s=60, dispatched_s=40)
    published: list[int] = []

    while_queued = events_redrive(
        grace_s=30, redrive_after_s=300, publish=published.append, queue_is_empty=lambda: False
    )
    when_empty = events_redrive(grace_s=30, redrive_after_s=300, publish=published.append, queue_is_empty=lambda: True)

    assert while_queued == []
    assert when_empty == published == [lost.pk]
