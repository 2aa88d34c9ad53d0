"""Credential changes reach the sockets within a second (docs/PROTOCOL.md): logging out
closes every socket opened with that session; a password change or a deactivation makes
every socket of the user check its credential at once (sessions the change ended close,
and all of them for a deactivated user)."""

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from delivery.credentials import signed_in_session_forget, signed_in_session_note
from delivery.doorbell import doorbell
from delivery.groups import session_group, user_group
from delivery.payloads import CREDENTIAL_REVOKED_MESSAGE, CREDENTIALS_CHANGED_MESSAGE

CREDENTIAL_FIELDS = ("password", "is_active")


@receiver(user_logged_out, dispatch_uid="delivery.close_session_sockets")
def close_session_sockets(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        doorbell.ring(session_group(session_key), CREDENTIAL_REVOKED_MESSAGE)
        signed_in_session_forget(session_key=session_key)


@receiver(user_logged_in, dispatch_uid="delivery.note_signed_in_session")
def note_signed_in_session(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        signed_in_session_note(user=user, session_key=session_key)


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="delivery.note_credential_change")
def note_credential_change(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    instance._notify_credentials_changed = False
    if instance.pk is None or (update_fields is not None and not set(CREDENTIAL_FIELDS) & set(update_fields)):
        return  # a new user, or a save of other fields (last_login on every sign-in)
    before = sender._default_manager.filter(pk=instance.pk).values(*CREDENTIAL_FIELDS).first()
    if before is not None:
        instance._notify_credentials_changed = any(
            before[name] != getattr(instance, name) for name in CREDENTIAL_FIELDS
        )


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="delivery.check_sockets_after_credential_change")
def check_sockets_after_credential_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    if getattr(instance, "_notify_credentials_changed", False):
        doorbell.ring_on_commit(user_group(instance.pk), CREDENTIALS_CHANGED_MESSAGE)
