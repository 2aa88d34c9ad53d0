"""Writes to notifications: per-user numbering, and read state that only its owner can change."""

from __future__ import annotations

import random

import pytest

from delivery.groups import user_group
from delivery.models import Inbox, Notification
from delivery.services import (
    ReadChange,
    notifications_mark_all_read,
    notifications_mark_read,
    notifications_store,
)
from events import emit
from events.registry import Rendered

pytestmark = pytest.mark.django_db


def store(*users, title: str = "Hello") -> list:  # type: ignore[no-untyped-def]
    event = emit("notice", recipients=list(users), data={"title": title})
    return notifications_store(items=[(event, user.pk, Rendered(title=title)) for user in users])


def unread_ids(user) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted(Notification.objects.filter(user=user, read_at__isnull=True).values_list("pk", flat=True))


def test_each_user_numbers_their_notifications_from_one(alice, bob) -> None:
    first = store(alice, bob, title="first")
    second = store(bob, title="second")
    third = store(alice, bob, title="third")

    assert [(s.notification.user, s.notification.seq, s.unread) for s in first] == [(alice, 1, 1), (bob, 1, 1)]
    assert [(s.notification.user, s.notification.seq, s.unread) for s in second] == [(bob, 2, 2)]
    assert [(s.notification.user, s.notification.seq, s.unread) for s in third] == [(alice, 2, 2), (bob, 3, 3)]
    assert list(Notification.objects.filter(user=alice).order_by("seq").values_list("title", flat=True)) == [
        "first",
        "third",
    ]
    assert (Inbox.objects.get(user=bob).last_seq, Inbox.objects.get(user=bob).unread) == (3, 3)


def test_storing_the_same_event_twice_keeps_the_first_notification_and_numbers_nothing(alice) -> None:
    event = emit("notice", recipients=[alice], data={"title": "once"})
    (first,) = notifications_store(items=[(event, alice.pk, Rendered(title="once"))])

    again = notifications_store(items=[(event, alice.pk, Rendered(title="rendered differently"))])

    assert again == []
    assert Notification.objects.get().title == "once"
    assert Notification.objects.get().pk == first.notification.pk
    assert (Inbox.objects.get(user=alice).last_seq, Inbox.objects.get(user=alice).unread) == (1, 1)


def test_storing_for_nobody_stores_nothing(alice) -> None:
    assert notifications_store(items=[]) == []
    assert not Inbox.objects.exists()


def test_mark_read_changes_only_the_callers_own_unread_notifications(alice, bob) -> None:
    alices = [s.notification for s in store(alice) + store(alice) + store(alice)]
    (bobs,) = [s.notification for s in store(bob)]

    change = notifications_mark_read(user=alice, ids=[alices[0].pk, alices[2].pk, bobs.pk, 987_654])

    assert change == ReadChange(ids=sorted([alices[0].pk, alices[2].pk]), unread=1)
    assert unread_ids(alice) == [alices[1].pk]
    assert Inbox.objects.get(user=alice).unread == 1
    assert unread_ids(bob) == [bobs.pk]
    assert Inbox.objects.get(user=bob).unread == 1


def test_marking_read_notifications_again_changes_nothing(alice) -> None:
    (stored,) = store(alice)
    notifications_mark_read(user=alice, ids=[stored.notification.pk])
    read_at = Notification.objects.get().read_at

    change = notifications_mark_read(user=alice, ids=[stored.notification.pk])

    assert change == ReadChange(ids=[], unread=0)
    assert Notification.objects.get().read_at == read_at


def test_mark_read_tells_every_tab_of_the_user_after_commit(alice, rings, django_capture_on_commit_callbacks) -> None:
    first, _second = store(alice) + store(alice)

    with django_capture_on_commit_callbacks(execute=True):
        notifications_mark_read(user=alice, ids=[first.notification.pk])
        assert rings == []

    assert rings == [
        (user_group(alice.pk), {"type": "notifications.read", "ids": [first.notification.pk], "unread": 1})
    ]


def test_mark_read_that_changes_nothing_rings_nothing(alice, bob, rings, django_capture_on_commit_callbacks) -> None:
    (bobs,) = store(bob)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        notifications_mark_read(user=alice, ids=[bobs.notification.pk])

    assert callbacks == []
    assert rings == []


def test_mark_all_read_reads_all_of_the_users_and_nobody_elses(alice, bob) -> None:
    alices = [s.notification.pk for s in store(alice, bob) + store(alice) if s.notification.user == alice]

    change = notifications_mark_all_read(user=alice)

    assert change == ReadChange(ids=sorted(alices), unread=0)
    assert unread_ids(alice) == []
    assert Inbox.objects.get(user=alice).unread == 0
    assert len(unread_ids(bob)) == 1
    assert Inbox.objects.get(user=bob).unread == 1


def test_a_user_without_notifications_can_mark_all_read(alice) -> None:
    assert notifications_mark_all_read(user=alice) == ReadChange(ids=[], unread=0)
    assert notifications_mark_read(user=alice, ids=[1, 2]) == ReadChange(ids=[], unread=0)


@pytest.mark.parametrize("seed", range(5))
def test_counters_always_match_the_rows(make_user, seed: int) -> None:
    """Any mix of stores and reads: unread equals the unread rows, seq is 1..n per user.
    (A hand-rolled property test: hypothesis is not among the dev requirements.)"""
    chooser = random.Random(seed)
    users = [make_user(f"user{n}") for n in range(3)]

    for _ in range(40):
        action = chooser.choice(["store", "store", "read", "read_all"])
        someone = chooser.choice(users)
        if action == "store":
            store(*chooser.sample(users, chooser.randint(1, len(users))))
        elif action == "read":
            everyone = list(Notification.objects.values_list("pk", flat=True))
            notifications_mark_read(user=someone, ids=chooser.sample(everyone, min(len(everyone), 3)))
        else:
            notifications_mark_all_read(user=someone)

        for user in users:
            inbox = Inbox.objects.filter(user=user).first()
            seqs = list(Notification.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))
            assert seqs == list(range(1, len(seqs) + 1))
            assert (inbox.last_seq if inbox else 0) == len(seqs)
            assert (inbox.unread if inbox else 0) == len(unread_ids(user))
