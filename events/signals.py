"""Signal receivers that turn Django signals into events. They translate; they hold no logic."""

from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from events.emitting import emit

USER_AGENT_MAX = 512


@receiver(user_logged_in, dispatch_uid="events.new_sign_in")
def emit_new_sign_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX] if request else ""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    emit(
        "auth.new_sign_in",
        recipients=[user],
        actor=user,
        data={"user_agent": user_agent},
        idempotency_key=f"sign-in:{session_key}" if session_key else None,
    )
