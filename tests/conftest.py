"""Shared fixtures: users, the hand-off recorder, and the live stack of real processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from redis.exceptions import RedisError

from events.handoff import hand_off, publish_delivery
from events.models import Event
from tests.live import LiveStack, database_url

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def published_events(request: pytest.FixtureRequest) -> Iterator[list[int]]:
    """The event ids the on-commit hand-off published. Unit tests record instead of
    publishing; tests marked `live` publish to the real broker for the real worker.

    Both set the publisher at setup and teardown restores the real one, rather than
    trusting the teardown order of other fixtures (a test's own monkeypatch of
    hand_off.publish is undone after this fixture's teardown, and put a recorder back)."""
    if request.node.get_closest_marker("live"):
        hand_off.publish = publish_delivery
        yield []
        return
    recorded: list[int] = []
    hand_off.publish = recorded.extend
    try:
        yield recorded
    finally:
        hand_off.flush(timeout=5)
        hand_off.publish = publish_delivery


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Iterator[None]:
    """Each test starts with no rate-limit counts: user ids repeat between tests."""
    yield
    try:
        client = cache._cache.get_client(write=True)
        for key in client.scan_iter(match=f"{cache.key_prefix}:*", count=1000):
            client.delete(key)
    except (RedisError, OSError):
        pass  # a test that stopped Redis, or pointed the cache elsewhere


@pytest.fixture
def make_user(db: None) -> object:
    def make(username: str, **fields: object) -> AbstractBaseUser:
        return get_user_model().objects.create_user(username=username, password=PASSWORD, **fields)

    return make


@pytest.fixture
def alice(make_user) -> AbstractBaseUser:  # type: ignore[no-untyped-def]
    return make_user("alice")


@pytest.fixture
def bob(make_user) -> AbstractBaseUser:  # type: ignore[no-untyped-def]
    return make_user("bob")


@pytest.fixture(scope="session")
def live_env(django_db_setup: None, django_db_blocker, tmp_path_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The environment of the processes a live test starts: the test database, our Redis."""
    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    # Sockets reconcile every 2 s here, so tests of what reconciling repairs stay short.
    return dict(os.environ, DATABASE_URL=url, PYTHONUNBUFFERED="1", LOG_LEVEL="INFO", WS_RECONCILE_INTERVAL_S="2")


@pytest.fixture(scope="session")
def live_processes(live_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """daphne and one Celery worker, started once for the whole session."""
    stack = LiveStack(env=live_env, workdir=Path(tmp_path_factory.mktemp("live")))
    try:
        stack.start_web()
        stack.start_worker()
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def live_stack(live_processes: LiveStack, transactional_db: None) -> Iterator[LiveStack]:
    """The session's daphne and worker, on a test database that is emptied after the test.

    Before it is emptied, the worker must have finished this test's events: a delivery
    still in flight would deadlock with the flush, or land in the next test."""
    yield live_processes
    wait_until_delivered()


def wait_until_delivered(timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while Event.objects.filter(status=Event.Status.PENDING).exists():
        if time.monotonic() > deadline:
            raise AssertionError("events still pending after the test: " + repr(list(Event.objects.values())))
        time.sleep(0.05)


@pytest.fixture
def private_stack(live_env: dict[str, str], tmp_path: Path) -> Iterator[LiveStack]:
    """A stack of this test's own, for tests that kill or restart its processes."""
    stack = LiveStack(env=live_env, workdir=tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On a failed live test, attach the processes' logs to the report."""
    report = yield
    if report.failed:
        for name in ("live_processes", "private_stack"):
            stack = getattr(item, "funcargs", {}).get(name)
            if isinstance(stack, LiveStack):
                report.sections.append((f"{name} logs", stack.logs()))
    return report
