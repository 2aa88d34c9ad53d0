"""Reads of notifications. The HTTP list and the socket's replay share these, so they agree."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Min

from delivery.models import Inbox, Notification

PAGE_MAX = 200


@dataclass(frozen=True)
class InboxState:
    last_seq: int
    unread: int


def inbox_state(*, user_id: int) -> InboxState:
    row = Inbox.objects.filter(user_id=user_id).values_list("last_seq", "unread").first()
    return InboxState(*row) if row else InboxState(last_seq=0, unread=0)


def inboxes_last_seq(*, user_ids: set[int]) -> dict[int, int]:
    """{user id: last seq} for those of the users who have an inbox."""
    return dict(Inbox.objects.filter(user_id__in=user_ids).values_list("user_id", "last_seq"))


def notifications_after_seq(*, user_id: int, after_seq: int, limit: int = PAGE_MAX) -> list[Notification]:
    """The user's notifications with seq > after_seq, oldest first."""
    return list(Notification.objects.filter(user_id=user_id, seq__gt=after_seq).order_by("seq")[:limit])


def notifications_newest_first(
    *, user_id: int, before_seq: int | None = None, unread_only: bool = False, limit: int = 50
) -> list[Notification]:
    notifications = Notification.objects.filter(user_id=user_id)
    if before_seq is not None:
        notifications = notifications.filter(seq__lt=before_seq)
    if unread_only:
        notifications = notifications.filter(read_at__isnull=True)
    return list(notifications.order_by("-seq")[:limit])


def cursor_is_resumable(*, user_id: int, after_seq: int) -> bool:
    """Whether everything after `after_seq` is still stored: a cursor from the future, or
    one older than what retention kept, cannot be replayed faithfully."""
    last_seq = inbox_state(user_id=user_id).last_seq
    if after_seq > last_seq:
        return False
    if after_seq == last_seq:
        return True
    oldest = Notification.objects.filter(user_id=user_id).aggregate(oldest=Min("seq"))["oldest"]
    return oldest is not None and oldest <= after_seq + 1


def notification_ids_of_user(*, user_id: int, ids: list[int]) -> list[int]:
    """Those of `ids` that are notifications of this user."""
    return sorted(Notification.objects.filter(user_id=user_id, pk__in=ids).values_list("pk", flat=True))
