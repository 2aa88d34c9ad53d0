"""Fixtures for the unit tests of events, delivery and messaging: throwaway event types, a
doorbell recorder and a channel-layer namespace of this test's own."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from delivery.doorbell import doorbell
from events.registry import EventType, Rendered, register, unregister

Ring = tuple[str, dict[str, Any]]


def render_title_from_data(event: Any, user: Any) -> Rendered:
    """The renderer of throwaway types: shows data.title (or the type name) as given."""
    return Rendered(title=event.data.get("title", event.type), body=event.data.get("body", ""))


class ThrowawayTypes:
    """Registers event types for one test; every name it registered is unregistered after."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def add(self, name: str, render: Any = render_title_from_data, **options: Any) -> EventType:
        registered = register(EventType(name=name, render=render, **options))
        self.names.add(name)
        return registered

    def forget_after_test(self, name: str) -> str:
        """For types registered some other way (the decorator)."""
        self.names.add(name)
        return name


@pytest.fixture
def event_types() -> Iterator[ThrowawayTypes]:
    types = ThrowawayTypes()
    try:
        yield types
    finally:
        for name in types.names:
            unregister(name)


@pytest.fixture(autouse=True)
def private_channel_layer(settings: Any) -> str:
    """A key prefix of this test's own on the shared Redis. Pub/sub ignores database numbers,
    so without it a ring for user 1 here would reach user 1's sockets in any other test run
    on this machine (and theirs ours)."""
    prefix = f"notify-test-{uuid.uuid4().hex[:12]}"
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["prefix"] = prefix
    settings.CHANNEL_LAYERS = layers  # channels drops its cached layer on setting_changed
    return prefix


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Users are made by the dozen here; the production hasher costs a third of a second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def rings(monkeypatch: pytest.MonkeyPatch) -> list[Ring]:
    """What the doorbell was asked to ring, recorded instead of sent."""
    rung: list[Ring] = []

    def ring_and_wait(many: list[Ring], timeout: float = 0) -> None:
        rung.extend(many)

    def ring(group: str, message: dict[str, Any]) -> None:
        rung.append((group, message))

    monkeypatch.setattr(doorbell, "ring_and_wait", ring_and_wait)
    monkeypatch.setattr(doorbell, "ring", ring)
    return rung


def deliver_due() -> int:
    """What a worker's deliver_events task does, in this process: every due event, now."""
    from delivery.deliver_events import deliver_events

    return deliver_events(token="test")
