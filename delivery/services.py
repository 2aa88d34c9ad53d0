"""Writes to notifications: numbering new ones per user, and read state."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from delivery.doorbell import doorbell
from delivery.groups import user_group
from delivery.models import Inbox, Notification
from delivery.payloads import notifications_read_message
from events.models import Event
from events.registry import Rendered


@dataclass(frozen=True)
class Stored:
    """A notification as stored, with its user's unread count right after it was."""

    notification: Notification
    unread: int


@dataclass(frozen=True)
class ReadChange:
    ids: list[int]
    unread: int


def notifications_store(*, event: Event, rendered: Mapping[int, Rendered]) -> list[Stored]:
    """Store `event`'s notification for each user in `rendered`, numbering each with that
    user's next `seq`. Safe to run twice: users who already have one keep it, unchanged.
    """
    user_ids = sorted(rendered)
    if not user_ids:
        return []
    Inbox.objects.bulk_create([Inbox(user_id=user_id) for user_id in user_ids], ignore_conflicts=True)
    with transaction.atomic():
        # Locked in user-id order, so two workers storing for overlapping users cannot
        # deadlock; held to commit, so seq N+1 never commits before seq N.
        inboxes = list(Inbox.objects.select_for_update().filter(user_id__in=user_ids).order_by("user_id"))
        stored = {n.user_id: n for n in Notification.objects.filter(event=event, user_id__in=user_ids)}
        changed: list[Inbox] = []
        new: list[Notification] = []
        for inbox in inboxes:
            if inbox.user_id in stored:
                continue
            inbox.last_seq += 1
            inbox.unread += 1
            changed.append(inbox)
            shown = rendered[inbox.user_id]
            new.append(
                Notification(
                    user_id=inbox.user_id,
                    seq=inbox.last_seq,
                    event=event,
                    event_type=event.type,
                    title=shown.title,
                    body=shown.body,
                    url=shown.url,
                    data=event.data,
                )
            )
        Notification.objects.bulk_create(new)
        Inbox.objects.bulk_update(changed, ["last_seq", "unread"])
    stored.update((n.user_id, n) for n in new)
    unread = {inbox.user_id: inbox.unread for inbox in inboxes}
    return [Stored(stored[user_id], unread[user_id]) for user_id in user_ids if user_id in stored]


def notifications_prune(*, created_before: datetime) -> int:
    """Delete notifications created before the cut-off; returns how many.

    Per user, everything up to the highest seq older than the cut-off goes, so what stays
    is always a gapless run ending at last_seq. Counts stay right, and seq is never reused:
    a cursor from before the cut gets `resync` instead of a partial replay.
    """
    deleted = 0
    cut_by_user = (
        Notification.objects.filter(created_at__lt=created_before)
        .values("user_id")
        .annotate(cut_seq=Max("seq"))
        .values_list("user_id", "cut_seq")
    )
    for user_id, cut_seq in list(cut_by_user):
        with transaction.atomic():
            inbox = Inbox.objects.select_for_update().get(user_id=user_id)
            old = Notification.objects.filter(user_id=user_id, seq__lte=cut_seq)
            unread = old.filter(read_at__isnull=True).count()
            count, _ = old.delete()
            inbox.unread = max(inbox.unread - unread, 0)
            inbox.save(update_fields=["unread"])
        deleted += count
    return deleted


def notifications_mark_read(*, user: AbstractBaseUser, ids: Collection[int]) -> ReadChange:
    """Mark these of the user's notifications read; ids that are not the user's are ignored."""
    return _mark_read(user=user, ids=ids)


def notifications_mark_all_read(*, user: AbstractBaseUser) -> ReadChange:
    return _mark_read(user=user, ids=None)


def _mark_read(*, user: AbstractBaseUser, ids: Collection[int] | None) -> ReadChange:
    Inbox.objects.get_or_create(user_id=user.pk)
    with transaction.atomic():
        inbox = Inbox.objects.select_for_update().get(user_id=user.pk)
        unread = Notification.objects.filter(user_id=user.pk, read_at__isnull=True)
        if ids is not None:
            unread = unread.filter(pk__in=list(ids))
        changed = sorted(unread.values_list("pk", flat=True))
        if changed:
            Notification.objects.filter(pk__in=changed).update(read_at=timezone.now())
            inbox.unread = max(inbox.unread - len(changed), 0)
            inbox.save(update_fields=["unread"])
            doorbell.ring_on_commit(user_group(user.pk), notifications_read_message(ids=changed, unread=inbox.unread))
    return ReadChange(ids=changed, unread=inbox.unread)
