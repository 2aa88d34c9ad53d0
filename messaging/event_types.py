"""The `message.received` event type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from events.registry import Rendered, event_type

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from events.models import Event


def _only_the_addressee(event: Event, user: AbstractBaseUser) -> bool:
    # Recipient selection is where a wrong list leaks data: a message has one reader.
    return bool(user.is_active) and event.recipient_ids == [user.pk] and user.pk != event.actor_id


@event_type("message.received", may_receive=_only_the_addressee)
def render_message_received(event: Event, user: AbstractBaseUser) -> Rendered:
    """Someone sent the user a direct message."""
    return Rendered(
        title=f"New message from {event.data.get('from', 'someone')}",
        body=event.data.get("excerpt", ""),
        url="/#messages",
    )
