"""Retention: old notifications are pruned without holes, and old cursors get resync."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from delivery.credentials import token_issue
from delivery.models import Inbox, Notification
from delivery.selectors import cursor_is_resumable
from delivery.services import notifications_mark_read, notifications_prune
from events.models import Event
from events.outbox import events_prune, events_requeue

pytestmark = pytest.mark.django_db


def age(notifications: list[Notification], days: int) -> None:
    Notification.objects.filter(pk__in=[n.pk for n in notifications]).update(
        created_at=timezone.now() - timedelta(days=days)
    )


def test_pruning_removes_a_users_oldest_run_and_keeps_the_unread_count(alice, bob, store_notices, rings) -> None:
    old = store_notices(alice, count=3, title="old")
    recent = store_notices(alice, count=2, title="recent")
    bobs = store_notices(bob, count=2, title="bob's")
    alice_old = [n for n in old if n.user_id == alice.pk]
    notifications_mark_read(user=alice, ids=[alice_old[0].pk])
    age(alice_old, days=100)

    pruned = notifications_prune(created_before=timezone.now() - timedelta(days=90))

    assert pruned == 3
    assert list(Notification.objects.filter(user=alice).order_by("seq").values_list("seq", flat=True)) == [4, 5]
    assert Inbox.objects.get(user=alice).unread == 2  # the two unread of the three pruned are gone from the count
    assert Inbox.objects.get(user=alice).last_seq == 5  # seq is never reused
    assert Notification.objects.filter(user=bob).count() == len(bobs) == 2
    assert [n.seq for n in recent] == [4, 5]


def test_pruning_cuts_at_the_highest_old_seq_so_no_hole_is_left(alice, store_notices, rings) -> None:
    first, second, third = store_notices(alice, count=3)
    age([first, third], days=100)  # seq 2 is younger than seq 3, as a late worker could make it

    notifications_prune(created_before=timezone.now() - timedelta(days=90))

    assert not Notification.objects.filter(user=alice).exists()
    assert second.seq == 2


def test_a_cursor_from_before_the_cut_cannot_be_resumed(alice, store_notices, rings) -> None:
    stored = store_notices(alice, count=4)
    age(stored[:2], days=100)
    notifications_prune(created_before=timezone.now() - timedelta(days=90))

    assert not cursor_is_resumable(user_id=alice.pk, after_seq=0)
    assert not cursor_is_resumable(user_id=alice.pk, after_seq=1)
    assert cursor_is_resumable(user_id=alice.pk, after_seq=2)
    assert cursor_is_resumable(user_id=alice.pk, after_seq=4)
    assert not cursor_is_resumable(user_id=alice.pk, after_seq=5)


def test_the_http_api_answers_an_unresumable_cursor_with_410_resync(alice, store_notices, rings) -> None:
    stored = store_notices(alice, count=4)
    age(stored[:2], days=100)
    notifications_prune(created_before=timezone.now() - timedelta(days=90))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=alice)}")

    too_old = api.get("/api/notifications/?after_seq=0")
    from_the_future = api.get("/api/notifications/?after_seq=99")
    fine = api.get("/api/notifications/?after_seq=2")

    assert too_old.status_code == from_the_future.status_code == 410
    assert too_old.json()["type"] == "resync"
    assert too_old.json()["last_seq"] == 4
    assert fine.status_code == 200
    assert [n["seq"] for n in fine.json()["results"]] == [3, 4]
    assert AuthToken.objects.count() == 1


def test_events_are_pruned_only_once_no_notification_refers_to_them(alice, store_notices, rings) -> None:
    kept, gone = store_notices(alice, count=2)
    Event.objects.update(status=Event.Status.DELIVERED, finished_at=timezone.now() - timedelta(days=100))
    Notification.objects.filter(pk=gone.pk).delete()

    deleted = events_prune(finished_before=timezone.now() - timedelta(days=90))

    assert deleted == 1
    assert list(Event.objects.values_list("pk", flat=True)) == [kept.event_id]


def test_a_dead_event_can_be_queued_again_and_a_pending_one_is_left_alone(alice) -> None:
    dead = Event.objects.create(type="notice", recipient_ids=[alice.pk], status=Event.Status.DEAD, attempts=9)
    pending = Event.objects.create(type="notice", recipient_ids=[alice.pk], attempts=2)

    assert events_requeue(event_ids=[dead.pk, pending.pk]) == 1

    dead.refresh_from_db()
    pending.refresh_from_db()
    assert (dead.status, dead.attempts, dead.claimed_until, dead.next_attempt_at) == (
        Event.Status.PENDING,
        0,
        None,
        None,
    )
    assert pending.attempts == 2
