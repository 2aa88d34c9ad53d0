"""The sample domain: a saved message becomes a `message.received` event in the same transaction."""

from __future__ import annotations

import pytest
from django.db import transaction

from delivery.models import Notification
from events.models import Event
from messaging.models import Message
from messaging.services import MessageRejected, message_send
from messaging.signals import EXCERPT_CHARS
from tests.events.conftest import deliver_due

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def test_sending_a_message_emits_an_event_for_the_recipient(alice, bob) -> None:
    message = message_send(sender=alice, recipient=bob, text="  lunch at noon?  ")

    assert message.text == "lunch at noon?"
    event = Event.objects.get()
    assert (event.type, event.recipient_ids, event.actor, event.target) == (
        "message.received",
        [bob.pk],
        alice,
        message,
    )
    assert event.data == {"excerpt": "lunch at noon?", "from": "alice"}
    assert event.idempotency_key == f"message:{message.pk}"


def test_the_excerpt_is_the_start_of_a_long_message(alice, bob) -> None:
    text = "word " * 100

    message_send(sender=alice, recipient=bob, text=text)

    assert Event.objects.get().data["excerpt"] == text.strip()[:EXCERPT_CHARS]


def test_a_message_rolled_back_with_its_transaction_emits_nothing(
    alice, bob, published_events, django_capture_on_commit_callbacks
) -> None:
    def send_then_fail() -> None:
        with transaction.atomic():
            message_send(sender=alice, recipient=bob, text="never sent")
            raise Boom

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(Boom):
        send_then_fail()

    assert callbacks == []
    assert not Message.objects.exists()
    assert not Event.objects.exists()


def test_saving_a_message_again_emits_nothing_more(alice, bob) -> None:
    message = message_send(sender=alice, recipient=bob, text="hello")

    message.text = "hello, edited"
    message.save()

    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [("", "needs some text"), ("   \n ", "needs some text"), ("x" * 2001, "at most 2000 characters")],
)
def test_a_message_without_text_or_too_long_is_rejected(alice, bob, text: str, says: str) -> None:
    with pytest.raises(MessageRejected, match=says):
        message_send(sender=alice, recipient=bob, text=text)

    assert not Message.objects.exists()
    assert not Event.objects.exists()


def test_a_message_to_oneself_is_rejected(alice) -> None:
    with pytest.raises(MessageRejected, match="yourself"):
        message_send(sender=alice, recipient=alice, text="note to self")

    assert not Event.objects.exists()


def test_the_recipient_is_told_who_wrote_and_the_sender_is_not(alice, bob, rings) -> None:
    message_send(sender=alice, recipient=bob, text="lunch?")

    deliver_due()

    notification = Notification.objects.get()
    assert (notification.user, notification.title, notification.body, notification.url) == (
        bob,
        "New message from alice",
        "lunch?",
        "/?reply_to=alice#message-form",
    )
