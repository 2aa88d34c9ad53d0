"""The `message.received` event type."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

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
    sender = event.data.get("from", "")
    return Rendered(
        title=f"New message from {sender or 'someone'}",
        body=event.data.get("excerpt", ""),
        # The sample domain has no conversation view: the link opens the reply form.
        url=f"/?{urlencode({'reply_to': sender})}#message-form" if sender else "",
    )
