"""Delivery's fixtures: those of tests/events (throwaway types, the doorbell recorder, a
private channel-layer prefix) and a factory of stored notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connections, transaction

from delivery.models import Notification
from delivery.services import notifications_store
from events import emit
from events.outbox import events_mark_delivered
from events.registry import Rendered
from tests.events.conftest import event_types, fast_password_hashing, private_channel_layer, rings

__all__ = [
    "close_async_db_connections",
    "event_types",
    "fast_password_hashing",
    "private_channel_layer",
    "rings",
    "store_notices",
]


@pytest.fixture
def close_async_db_connections() -> Iterator[None]:
    """database_sync_to_async runs the ORM on one long-lived worker thread; close its
    connection after the test, or PostgreSQL refuses to drop the test database at the end."""
    yield
    asyncio.run(database_sync_to_async(connections.close_all)())


@pytest.fixture
def store_notices(db: None) -> Callable[..., list[Notification]]:
    """Factory: `count` notices for each of `users`, stored as the worker stores them but
    without ringing anyone. Returns the notifications in the order they were stored."""

    def store(*users: Any, count: int = 1, title: str = "Notice") -> list[Notification]:
        stored: list[Notification] = []
        for number in range(1, count + 1):
            event = emit("notice", recipients=list(users), data={"title": f"{title} {number}"})
            rendered = Rendered(title=f"{title} {number}")
            items = [(event, user.pk, rendered) for user in sorted(users, key=lambda u: u.pk)]
            with transaction.atomic():
                stored += [s.notification for s in notifications_store(items=items)]
                events_mark_delivered([event.pk])
        return stored

    return store
