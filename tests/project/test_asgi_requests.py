"""Requests through Django's ASGI handler, as daphne serves them: every middleware in the
event loop, static files, the security headers."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import AsyncClient
from django.utils.module_loading import import_string

from delivery.credentials import token_issue

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_middleware_runs_in_the_event_loop() -> None:
    # A synchronous-only one makes Django run it, and all outside it, in a thread, and hop
    # back for those inside it: two more hops on every request, under load a third of a
    # request's CPU in the web process.
    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]
    assert sync_only == []


def test_static_files_are_served_through_the_asgi_handler() -> None:
    async def get() -> tuple[int, str, bytes, int]:
        client = AsyncClient()
        found = await client.get("/static/delivery/notifications.js")
        body = b"".join(found.streaming_content)
        missing = await client.get("/static/delivery/no-such-file.js")
        return found.status_code, found["Content-Type"], body, missing.status_code

    status, content_type, body, missing = asyncio.run(get())

    assert (status, missing) == (200, 404)
    assert content_type.startswith("text/javascript")
    assert b"class NotificationClient" in body


def test_html_pages_carry_the_content_security_policy_through_the_asgi_handler(alice) -> None:
    async def get() -> tuple[str, str | None]:
        client = AsyncClient()
        await client.aforce_login(alice)
        page = await client.get("/")
        api = await client.get("/api/notifications/")
        return page["Content-Security-Policy"], api.headers.get("Content-Security-Policy")

    page_policy, api_policy = asyncio.run(get())

    assert "script-src 'self'" in page_policy
    assert api_policy is None


def test_rate_limited_requests_share_the_processes_redis_connections(alice, settings) -> None:
    # Django's cache objects are context-local, and an ASGI server runs each request in a
    # context of its own: with pools per cache object, each request counted its rate limit
    # on a new Redis connection.
    settings.API_RATE_LIMITS = {"api": {"user": "1000/m", "token": "1000/m"}}
    redis = cache._cache.get_client(write=True)
    headers = {"Authorization": f"Bearer {token_issue(user=alice)}"}

    async def get() -> int:
        return (await AsyncClient().get("/api/notifications/unread-count/", headers=headers)).status_code

    def get_in_a_context_of_its_own() -> int:
        return contextvars.Context().run(asyncio.run, get())

    get_in_a_context_of_its_own()  # the pool's first connection
    before = redis.info("stats")["total_connections_received"]
    assert [get_in_a_context_of_its_own() for _ in range(30)] == [200] * 30
    opened = redis.info("stats")["total_connections_received"] - before

    assert opened <= 2  # other tests' processes may share this Redis
