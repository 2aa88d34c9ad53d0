"""The built-in event types: `notice` and `auth.new_sign_in`."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from events.registry import BODY_MAX, TITLE_MAX, InvalidEventData, Rendered, event_type

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from events.models import Event


def validate_notice(data: Mapping[str, Any]) -> None:
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise InvalidEventData("notice needs data.title, a non-empty string")
    if len(title) > TITLE_MAX:
        raise InvalidEventData(f"notice data.title is longer than {TITLE_MAX} characters")
    for optional in ("body", "url"):
        if optional in data and not isinstance(data[optional], str):
            raise InvalidEventData(f"notice data.{optional} must be a string")
    if len(data.get("body", "")) > BODY_MAX:
        raise InvalidEventData(f"notice data.body is longer than {BODY_MAX} characters")
    unknown = set(data) - {"title", "body", "url"}
    if unknown:
        raise InvalidEventData(f"notice data has unknown field(s): {', '.join(sorted(unknown))}")


@event_type("notice", validate=validate_notice)
def render_notice(event: Event, user: AbstractBaseUser) -> Rendered:
    """A plain message from an operator or another service, shown as given."""
    return Rendered(title=event.data["title"], body=event.data.get("body", ""), url=event.data.get("url", ""))


def _only_the_account_owner(event: Event, user: AbstractBaseUser) -> bool:
    return bool(user.is_active) and event.recipient_ids == [user.pk]


@event_type("auth.new_sign_in", may_receive=_only_the_account_owner)
def render_new_sign_in(event: Event, user: AbstractBaseUser) -> Rendered:
    """Someone signed in to this account; tells the owner which browser."""
    browser = describe_browser(event.data.get("user_agent", ""))
    return Rendered(
        title=f"New sign-in from {browser}",
        body="If this was not you, change your password and sign out everywhere.",
    )


@lru_cache(maxsize=256)
def describe_browser(user_agent: str) -> str:
    """'Chrome on Linux' from a User-Agent header; 'an unknown browser' when it says nothing."""
    # Imported here: ua-parser loads its rule set on first use, in the worker, not in requests.
    import ua_parser

    parsed = ua_parser.parse(user_agent[:1000]) if user_agent else None
    agent = parsed.user_agent if parsed else None
    if agent is None or agent.family == "Other":
        return "an unknown browser"
    os_ = parsed.os if parsed else None
    if os_ is None or os_.family == "Other":
        return agent.family
    return f"{agent.family} on {os_.family}"
