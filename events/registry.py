"""The registry of event types: a name, how to render it, who may receive it, what data it takes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from events.models import Event

EVENT_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
TITLE_MAX = 200
BODY_MAX = 2000
URL_MAX = 2000


class UnknownEventType(LookupError):
    """emit() or delivery named a type that no code registered."""

    def __init__(self, name: str) -> None:
        known = ", ".join(sorted(_registry)) or "none"
        super().__init__(f"unknown event type {name!r} (registered: {known})")
        self.name = name


class DuplicateEventType(ValueError):
    """Two registrations claimed the same type name."""


class InvalidEventData(ValueError):
    """The data given to emit() does not fit the event type."""


@dataclass(frozen=True)
class Rendered:
    """What a recipient sees. Plain text: clients must never treat it as HTML."""

    title: str
    body: str = ""
    url: str = ""

    def cleaned(self) -> Rendered:
        """Trim to the stored sizes and drop any url that is not http(s) or site-relative."""
        return Rendered(
            title=self.title[:TITLE_MAX],
            body=self.body[:BODY_MAX],
            url=safe_url(self.url),
        )


Renderer = Callable[["Event", "AbstractBaseUser"], Rendered]
AudienceRule = Callable[["Event", "AbstractBaseUser"], bool]
DataValidator = Callable[[Mapping[str, Any]], None]


def any_active_user(event: Event, user: AbstractBaseUser) -> bool:
    """The default audience: whoever emit() named, as long as the account is active."""
    return bool(user.is_active)


def accept_any_data(data: Mapping[str, Any]) -> None:
    """The default data check: any JSON object."""


@dataclass(frozen=True)
class EventType:
    """A registered kind of domain event."""

    name: str
    render: Renderer
    may_receive: AudienceRule = any_active_user
    validate: DataValidator = accept_any_data
    description: str = ""


_registry: dict[str, EventType] = {}


def register(event_type: EventType) -> EventType:
    """Add a type; a second registration of the same name is a programming error."""
    if not EVENT_TYPE_NAME.match(event_type.name):
        raise ValueError(f"event type name {event_type.name!r} must be dotted lowercase, like 'comment.created'")
    existing = _registry.get(event_type.name)
    if existing is not None and existing != event_type:
        raise DuplicateEventType(f"event type {event_type.name!r} is already registered")
    _registry[event_type.name] = event_type
    return event_type


def event_type(
    name: str,
    *,
    may_receive: AudienceRule = any_active_user,
    validate: DataValidator = accept_any_data,
) -> Callable[[Renderer], Renderer]:
    """Decorator form of register(): the decorated function is the type's renderer."""

    def decorate(render: Renderer) -> Renderer:
        register(
            EventType(
                name=name,
                render=render,
                may_receive=may_receive,
                validate=validate,
                description=(render.__doc__ or "").strip(),
            )
        )
        return render

    return decorate


def get_event_type(name: str) -> EventType:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownEventType(name) from None


def registered_types() -> list[EventType]:
    return [_registry[name] for name in sorted(_registry)]


def unregister(name: str) -> None:
    """Remove a type (tests register throwaway types)."""
    _registry.pop(name, None)


# What browsers read as "." and ".." path segments (WHATWG URL), percent-encoded dots too.
DOT_SEGMENTS = frozenset({".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"})


def safe_url(url: str) -> str:
    """The url if it is site-relative or http(s), else empty: no javascript:, data: or //host."""
    url = (url or "").strip()
    # Browsers drop tabs and newlines inside URLs: "/\t/evil.com" would become "//evil.com".
    if len(url) > URL_MAX or any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return ""
    if url.startswith("/") and not url.startswith("//") and "\\" not in url:
        # "/.//evil.com", "/..//evil.com", "/%2e//evil.com": a browser resolves the dot
        # segment and is left with "//evil.com", another host. Such paths are refused.
        path = url.split("?", 1)[0].split("#", 1)[0]
        if any(segment.lower() in DOT_SEGMENTS for segment in path.split("/")):
            return ""
        return url
    lowered = url.lower()
    if lowered.startswith(("https://", "http://")):
        return url
    return ""
