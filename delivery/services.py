"""Writes to notifications: numbering new ones per user, and read state."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from delivery.doorbell import doorbell
from delivery.groups import user_group
from delivery.models import Inbox, Notification
from delivery.payloads import notifications_read_message
from events.models import Event
from events.registry import Rendered


class Stored(NamedTuple):
    """A notification as stored, with its user's unread count right after it was."""

    notification: Notification
    unread: int


@dataclass(frozen=True)
class ReadChange:
    ids: list[int]
    unread: int


def notifications_store(*, items: Sequence[tuple[Event, int, Rendered]], first_try: bool = False) -> list[Stored]:
    """Store a notification for each (event, user id, rendered) and number each user's new
    ones with the next seqs, in the order given. Call inside the transaction that also
    marks the events delivered. Pairs that are stored already are left as they are; with
    `first_try` (no event was ever claimed before) none can be, and nothing is looked up.

    The numbers come from one upsert of the users' inbox rows, which locks them in user-id
    order (two batches that share users cannot deadlock) until commit (so seq N+1 never
    commits before seq N); then one bulk INSERT of the notifications.
    """
    done: set[tuple[int, int]] = set()
    if not first_try:
        event_ids = sorted({event.pk for event, _, _ in items})
        done = set(Notification.objects.filter(event_id__in=event_ids).values_list("event_id", "user_id"))
    new = [(event, user_id, shown) for event, user_id, shown in items if (event.pk, user_id) not in done]
    if not new:
        return []
    counts = Counter(user_id for _, user_id, _ in new)
    last = _inboxes_advance(counts)
    next_seq = {user_id: last[user_id][0] - count + 1 for user_id, count in counts.items()}
    left = dict(counts)
    notifications: list[Notification] = []
    unread_after: list[int] = []
    for event, user_id, shown in new:
        notifications.append(
            Notification(
                user_id=user_id,
                seq=next_seq[user_id],
                event=event,
                event_type=event.type,
                title=shown.title,
                body=shown.body,
                url=shown.url,
                data=event.data,
            )
        )
        next_seq[user_id] += 1
        left[user_id] -= 1
        unread_after.append(last[user_id][1] - left[user_id])
    _notifications_insert(notifications)
    return [Stored(notification, unread) for notification, unread in zip(notifications, unread_after, strict=True)]


def _notifications_insert(notifications: list[Notification]) -> None:
    """One INSERT for all of them. On PostgreSQL one array per column through unnest():
    bulk_create prepares, and psycopg quotes, each of the nine values of every row, which
    was most of the CPU of storing a 1,000-recipient part. Elsewhere, bulk_create."""
    if connection.vendor != "postgresql":
        Notification.objects.bulk_create(notifications)
        return
    now = timezone.now()
    table = connection.ops.quote_name(Notification._meta.db_table)
    columns = ("user_id", "seq", "event_id", "event_type", "title", "body", "url", "data")
    arrays = [
        [n.user_id for n in notifications],
        [n.seq for n in notifications],
        [n.event_id for n in notifications],
        [n.event_type for n in notifications],
        [n.title for n in notifications],
        [n.body for n in notifications],
        [n.url for n in notifications],
        [json.dumps(n.data) for n in notifications],
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}, created_at)"  # noqa: S608 (names are ours)
            " SELECT u, s, e, t, ti, b, l, d::jsonb, %s FROM unnest("
            "%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]"
            ") AS row(u, s, e, t, ti, b, l, d) RETURNING id, user_id, seq",
            [now, *arrays],
        )
        ids = {(user_id, seq): pk for pk, user_id, seq in cursor.fetchall()}
    for notification in notifications:
        notification.pk = ids[(notification.user_id, notification.seq)]
        notification.created_at = now
        notification._state.adding = False
        notification._state.db = connection.alias


INBOX_UPSERT_ROWS = 1000  # 3 parameters a row: far under SQLite's 32,766


def _inboxes_advance(counts: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    """Add counts[user] to each user's last_seq and unread (creating missing inboxes);
    returns {user: (last_seq, unread)} after. Works on PostgreSQL and SQLite 3.35+."""
    table = connection.ops.quote_name(Inbox._meta.db_table)
    after: dict[int, tuple[int, int]] = {}
    users = sorted(counts)
    with connection.cursor() as cursor:
        for start in range(0, len(users), INBOX_UPSERT_ROWS):
            chunk = users[start : start + INBOX_UPSERT_ROWS]
            cursor.execute(
                f"INSERT INTO {table} (user_id, last_seq, unread) VALUES "  # noqa: S608 (names are ours)
                + ", ".join(["(%s, %s, %s)"] * len(chunk))
                + f" ON CONFLICT (user_id) DO UPDATE SET last_seq = {table}.last_seq + excluded.last_seq,"
                f" unread = {table}.unread + excluded.unread RETURNING user_id, last_seq, unread",
                [value for user_id in chunk for value in (user_id, counts[user_id], counts[user_id])],
            )
            after.update((user_id, (last_seq, unread)) for user_id, last_seq, unread in cursor.fetchall())
    return after


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
