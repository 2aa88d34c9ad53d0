"""The JSON shapes clients see (docs/PROTOCOL.md) and the channel-layer messages that carry them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from delivery.models import Notification


def encode_frame(frame: dict[str, Any]) -> str:
    """A server -> client frame as the text the socket sends."""
    return json.dumps(frame, separators=(",", ":"))


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


def notification_frame(notification: Notification, *, unread: int) -> str:
    return encode_frame({"type": "notification", "notification": notification_payload(notification), "unread": unread})


# Channel-layer messages: "type" routes to the consumer method of that name (dots -> _).


def notifications_created_message(stored: Sequence[tuple[Notification, int]]) -> dict[str, Any]:
    """One doorbell for one user's new notifications, each with the unread count right
    after it (consecutive seqs, oldest first). The frames are encoded here, once, not by
    each socket that forwards them."""
    return {
        "type": "notifications.created",
        "first_seq": stored[0][0].seq,
        "frames": [notification_frame(notification, unread=unread) for notification, unread in stored],
    }


def notifications_read_message(*, ids: list[int], unread: int) -> dict[str, Any]:
    return {"type": "notifications.read", "ids": ids, "unread": unread}


CREDENTIAL_REVOKED_MESSAGE: dict[str, Any] = {"type": "credential.revoked"}
# To every socket of a user whose password or active flag changed: check your credential now.
CREDENTIALS_CHANGED_MESSAGE: dict[str, Any] = {"type": "credentials.changed"}
