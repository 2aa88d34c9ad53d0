"""Signal receivers that turn Django signals into events. They translate; they hold no logic."""

import hashlib
from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from events.emitting import emit

USER_AGENT_MAX = 512


@receiver(user_logged_in, dispatch_uid="events.new_sign_in")
def emit_new_sign_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX] if request else ""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    # One sign-in, one event, even if the signal fires twice; keyed by a hash, because the
    # session key is a live credential and the event table is shown in the admin.
    sign_in = hashlib.sha256(session_key.encode()).hexdigest()[:40] if session_key else None
    emit(
        "auth.new_sign_in",
        recipients=[user],
        actor=user,
        data={"user_agent": user_agent},
        idempotency_key=f"sign-in:{sign_in}" if sign_in else None,
    )
