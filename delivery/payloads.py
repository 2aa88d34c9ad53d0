"""The JSON shapes of notifications as clients see them (CONTRACT §5), in one place."""

from typing import Any

from delivery.models import Notification


def notification_payload(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "seq": notification.seq,
        "event": notification.event_type,
        "title": notification.title,
        "body": notification.body,
        "url": notification.url,
        "data": notification.data,
        "created_at": notification.created_at.isoformat(),
        "read": notification.read_at is not None,
    }


# Channel-layer messages: "type" routes to the consumer method of that name (dots -> _).


def notification_created_message(notification: Notification, *, unread: int) -> dict[str, Any]:
    return {
        "type": "notification.created",
        "seq": notification.seq,
        "unread": unread,
        "notification": notification_payload(notification),
    }


def notifications_read_message(*, ids: list[int], unread: int) -> dict[str, Any]:
    return {"type": "notifications.read", "ids": ids, "unread": unread}


CREDENTIAL_REVOKED_MESSAGE: dict[str, Any] = {"type": "credential.revoked"}
