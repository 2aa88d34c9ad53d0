"""A saved message becomes a `message.received` event for its recipient."""

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from events import emit
from messaging.models import Message

EXCERPT_CHARS = 140


@receiver(post_save, sender=Message, dispatch_uid="messaging.message_received")
def emit_message_received(sender: type[Message], instance: Message, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    emit(
        "message.received",
        recipients=[instance.recipient_id],
        actor=instance.sender,
        target=instance,
        data={"excerpt": instance.text[:EXCERPT_CHARS], "from": instance.sender.get_username()},
        idempotency_key=f"message:{instance.pk}",
    )
