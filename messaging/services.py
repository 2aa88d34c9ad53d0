"""Sending a direct message."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from messaging.models import TEXT_MAX, Message


class MessageRejected(ValueError):
    """The message cannot be sent as written."""


@transaction.atomic
def message_send(*, sender: AbstractBaseUser, recipient: AbstractBaseUser, text: str) -> Message:
    text = text.strip()
    if not text:
        raise MessageRejected("a message needs some text")
    if len(text) > TEXT_MAX:
        raise MessageRejected(f"a message is at most {TEXT_MAX} characters")
    if sender.pk == recipient.pk:
        raise MessageRejected("you cannot send a message to yourself")
    # The post_save receiver emits "message.received" in this same transaction.
    return Message.objects.create(sender=sender, recipient=recipient, text=text)
