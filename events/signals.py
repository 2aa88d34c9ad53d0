"""Signal receivers that turn Django signals into events. They translate; they hold no logic."""

import hashlib
from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from events.emitting import emit

USER_AGENT_MAX = 512


def sign_in_id(session_key: str) -> str:
    """Names a sign-in (a login session) without being its credential: the session key is a
    live one, and the event table is shown in the admin."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:40]


@receiver(user_logged_in, dispatch_uid="events.new_sign_in")
def emit_new_sign_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX] if request else ""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    sign_in = sign_in_id(session_key) if session_key else None
    data = {"user_agent": user_agent}
    if sign_in:
        data["sign_in"] = sign_in  # the page of this very sign-in does not alert itself
    # One sign-in, one event, even if the signal fires twice.
    emit(
        "auth.new_sign_in",
        recipients=[user],
        actor=user,
        data=data,
        idempotency_key=f"sign-in:{sign_in}" if sign_in else None,
    )
