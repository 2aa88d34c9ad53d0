"""Logging out closes every socket opened with that session (docs/PROTOCOL.md)."""

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from delivery.doorbell import doorbell
from delivery.groups import session_group
from delivery.payloads import CREDENTIAL_REVOKED_MESSAGE


@receiver(user_logged_out, dispatch_uid="delivery.close_session_sockets")
def close_session_sockets(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        doorbell.ring(session_group(session_key), CREDENTIAL_REVOKED_MESSAGE)
