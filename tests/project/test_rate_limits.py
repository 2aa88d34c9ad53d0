"""Rate limits of sign-in (django-axes) and of the JSON API (docs/SECURITY.md), in process
against the real Redis that counts them."""

from __future__ import annotations

import time
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.test import Client
from rest_framework.test import APIClient

from delivery.credentials import token_issue
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_rate_limit_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """django-ratelimit counts in fixed one-minute windows: a test's requests must all fall in
    one, which a running clock cannot promise (a window can end between two requests)."""
    now = time.time()
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: now))


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(client: Client, username: str, password: str, address: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def bearer_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_throttled(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/json"
    assert "throttled" in response.json()["detail"]
    assert 1 <= int(response["Retry-After"]) <= 3600


def test_failed_sign_ins_lock_the_username_out_even_with_the_right_password(alice, settings) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "alice", "wrong").status_code == 200  # the form again, with its error
    assert sign_in(client, "alice", "wrong").status_code == 429  # the last failure allowed locks
    locked = sign_in(client, "alice", PASSWORD, address="10.0.0.9")  # another address: the user is locked
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert b"Too many failed sign-ins" in locked.content
    assert "sessionid" not in locked.cookies


def test_failed_sign_ins_from_one_address_lock_that_address_out(alice, bob, settings) -> None:
    client = Client()
    for number in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"nobody{number}", "wrong", address="10.0.0.7")
    assert sign_in(client, "bob", PASSWORD, address="10.0.0.7").status_code == 429
    assert sign_in(Client(), "alice", PASSWORD, address="10.0.0.8").status_code == 302  # others sign in


def test_a_success_before_the_limit_forgets_the_failures(alice, settings) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(Client(), "alice", "wrong")
    assert sign_in(Client(), "alice", PASSWORD).status_code == 302


def test_messages_are_limited_per_sender_with_429_json_and_retry_after(alice, bob, make_user, settings) -> None:
    limit = int(settings.API_RATE_LIMITS["messages"]["user"].split("/")[0])
    alices = bearer_client(token_issue(user=alice))
    for number in range(limit):
        assert alices.post("/api/messages/", {"to": "bob", "text": f"hi {number}"}, format="json").status_code == 201
    assert_throttled(alices.post("/api/messages/", {"to": "bob", "text": "one more"}, format="json"))
    # Another token of the same sender is the same sender; another sender is not limited.
    assert_throttled(
        bearer_client(token_issue(user=alice)).post("/api/messages/", {"to": "bob", "text": "x"}, format="json")
    )
    carol = bearer_client(token_issue(user=make_user("carol")))
    assert carol.post("/api/messages/", {"to": "bob", "text": "hello"}, format="json").status_code == 201
    assert alices.get("/api/notifications/").status_code == 200  # other calls have their own limit


def test_api_calls_are_limited_per_token_and_per_user(alice, bob, settings) -> None:
    settings.API_RATE_LIMITS = {"api": {"user": "5/m", "token": "3/m"}}
    first, second = bearer_client(token_issue(user=alice)), bearer_client(token_issue(user=alice))
    assert [first.get("/api/notifications/unread-count/").status_code for _ in range(3)] == [200] * 3
    # The second token has its own 3, but the user only 5 in all: 2 left.
    assert [second.get("/api/notifications/unread-count/").status_code for _ in range(3)] == [200, 200, 429]
    assert_throttled(first.get("/api/notifications/unread-count/"))
    session = APIClient()
    session.force_authenticate(user=alice)
    assert_throttled(session.get("/api/notifications/unread-count/"))
    assert bearer_client(token_issue(user=bob)).get("/api/notifications/unread-count/").status_code == 200


def test_events_over_http_have_a_limit_per_staff_token(make_user, alice, settings) -> None:
    settings.API_RATE_LIMITS = {"events": {"token": "2/m"}}
    service = bearer_client(token_issue(user=make_user("service", is_staff=True)))
    body = {"type": "notice", "recipients": ["alice"], "data": {"title": "x"}}
    assert [service.post("/api/events/", body, format="json").status_code for _ in range(2)] == [202, 202]
    assert_throttled(service.post("/api/events/", body, format="json"))


def test_without_redis_the_api_is_not_limited_and_answers(alice, settings, caplog) -> None:
    settings.API_RATE_LIMITS = {"api": {"user": "1/m", "token": "1/m"}}
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    client = bearer_client(token_issue(user=alice))
    assert [client.get("/api/notifications/unread-count/").status_code for _ in range(3)] == [200] * 3
    assert "not checked, cache unavailable" in caplog.text
