"""Requests through the ASGI handler, as daphne serves them: hops to a thread, static files,
the security headers, Redis connections."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from asgiref.sync import SyncToAsync
from asgiref.testing import ApplicationCommunicator
from django.core.cache import cache
from django.core.handlers.asgi import ASGIHandler

from delivery.credentials import token_issue
from project.http import OneHopASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def close_the_request_threads_connections() -> Iterator[None]:
    """Django's ASGI handler runs each request's sync code in a thread of its own, which keeps
    its database connection when it ends (a web process returns it to its pool instead): let
    the collector close them, or PostgreSQL refuses to drop the test database at the end."""
    yield
    gc.collect()


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


async def asgi_get(app: Any, path: str, headers: dict[str, str] | None = None) -> Answer:
    """One GET through an ASGI application, as daphne would send it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(5)
    body = b""
    while True:
        message = await communicator.receive_output(5)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return Answer(start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body)


@pytest.fixture
def http_app() -> OneHopASGIHandler:
    """The HTTP application that project/asgi.py serves."""
    from project.asgi import application

    app = application.application_mapping["http"]
    assert isinstance(app, OneHopASGIHandler)
    return app


def test_a_request_hops_between_the_event_loop_and_a_thread_only_a_few_times(http_app, monkeypatch, alice) -> None:
    # Django's own handler runs the middleware in the loop, and each MiddlewareMixin hook in
    # the thread: a dozen hops and more for this request, each passing the GIL back and forth.
    headers = {"Authorization": f"Bearer {token_issue(user=alice)}"}
    real_init = SyncToAsync.__init__

    def hops_of(app: Any) -> list[str]:
        hops: list[str] = []

        def counting_init(self, func, *args, **kwargs):  # type: ignore[no-untyped-def]
            hops.append(getattr(func, "__qualname__", repr(func)))
            real_init(self, func, *args, **kwargs)

        assert asyncio.run(asgi_get(app, "/api/notifications/unread-count/", headers)).status == 200
        with monkeypatch.context() as patched:
            patched.setattr(SyncToAsync, "__init__", counting_init)
            assert asyncio.run(asgi_get(app, "/api/notifications/unread-count/", headers)).status == 200
        return hops

    ours, stock = hops_of(http_app), hops_of(ASGIHandler())

    assert len(ours) <= 3, ours  # the request; request_started's and request_finished's handlers
    assert len(stock) > 10, stock  # for comparison: what the hops above are about


def test_static_files_are_served(http_app) -> None:
    found = asyncio.run(asgi_get(http_app, "/static/delivery/notifications.js"))
    missing = asyncio.run(asgi_get(http_app, "/static/delivery/no-such-file.js"))

    assert (found.status, missing.status) == (200, 404)
    assert found.headers["content-type"].startswith("text/javascript")
    assert b"class NotificationClient" in found.body


def test_html_pages_carry_the_content_security_policy_and_json_none(http_app) -> None:
    page = asyncio.run(asgi_get(http_app, "/accounts/login/"))
    api = asyncio.run(asgi_get(http_app, "/api/notifications/"))

    assert page.status == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert api.status == 401
    assert "content-security-policy" not in api.headers


def test_rate_limited_requests_share_the_processes_redis_connections(http_app, alice, settings) -> None:
    # Django's cache objects are context-local, and an ASGI server runs each request in a
    # context of its own: with pools per cache object, each request counted its rate limit
    # on a new Redis connection.
    settings.API_RATE_LIMITS = {"api": {"user": "1000/m", "token": "1000/m"}}
    redis = cache._cache.get_client(write=True)
    headers = {"Authorization": f"Bearer {token_issue(user=alice)}"}

    def get_in_a_context_of_its_own() -> int:
        get = asgi_get(http_app, "/api/notifications/unread-count/", headers)
        return contextvars.Context().run(asyncio.run, get).status

    get_in_a_context_of_its_own()  # the pool's first connection
    before = redis.info("stats")["total_connections_received"]
    assert [get_in_a_context_of_its_own() for _ in range(30)] == [200] * 30
    opened = redis.info("stats")["total_connections_received"] - before

    assert opened <= 2  # other tests' processes may share this Redis
