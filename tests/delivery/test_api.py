"""The JSON API (README, "HTTP API"): a user sees and marks only their own notifications; bad input is a 400."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from delivery.credentials import TICKET_TTL, ticket_redeem, token_authenticate, token_issue, tokens_revoke
from delivery.models import Inbox, Notification
from events.models import Event, Heartbeat
from events.outbox import relay_heartbeat
from messaging.models import Message
from workers.tasks import worker_ping_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def as_user(api: APIClient) -> Callable[..., APIClient]:
    """Factory: the API client, signed in as `user` with a session or a bearer token."""

    def sign_in(user, *, token: bool = False) -> APIClient:  # type: ignore[no-untyped-def]
        if token:
            api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=user)}")
        else:
            api.force_login(user)
        return api

    return sign_in


def seqs(response) -> list[int]:  # type: ignore[no-untyped-def]
    return [item["seq"] for item in response.json()["results"]]


def assert_json_error(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    return response.json()


# --- the list ---------------------------------------------------------------------------


def test_the_list_is_newest_first_with_the_inbox_counters(as_user, alice, store_notices) -> None:
    store_notices(alice, count=3)

    response = as_user(alice).get("/api/notifications/")

    assert response.status_code == 200
    body = response.json()
    assert seqs(response) == [3, 2, 1]
    assert (body["unread"], body["last_seq"], body["next"]) == (3, 3, None)
    newest = Notification.objects.get(user=alice, seq=3)
    assert body["results"][0] == {
        "id": newest.pk,
        "seq": 3,
        "event": "notice",
        "title": "Notice 3",
        "body": "",
        "url": "",
        "data": {"title": "Notice 3"},
        "created_at": newest.created_at.isoformat(),
        "read": False,
    }


def test_the_list_shows_only_the_users_own_notifications(as_user, alice, bob, store_notices) -> None:
    store_notices(bob, count=2)
    store_notices(alice)

    response = as_user(alice, token=True).get("/api/notifications/")

    assert [item["title"] for item in response.json()["results"]] == ["Notice 1"]
    assert {n["id"] for n in response.json()["results"]} == set(
        Notification.objects.filter(user=alice).values_list("pk", flat=True)
    )


def test_after_seq_lists_what_came_after_it_oldest_first(as_user, alice, store_notices) -> None:
    store_notices(alice, count=5)

    response = as_user(alice).get("/api/notifications/", {"after_seq": 2})

    assert seqs(response) == [3, 4, 5]


def test_pages_link_to_the_next_page_until_the_last(as_user, alice, store_notices) -> None:
    store_notices(alice, count=5)
    client = as_user(alice)

    pages, url = [], "/api/notifications/?limit=2"
    while url:
        response = client.get(url)
        pages.append(seqs(response))
        url = response.json()["next"]

    assert pages == [[5, 4], [3, 2], [1]]


def test_after_seq_pages_link_forward(as_user, alice, store_notices) -> None:
    store_notices(alice, count=3)

    response = as_user(alice).get("/api/notifications/", {"after_seq": 0, "limit": 2})

    assert seqs(response) == [1, 2]
    assert parse_qs(urlsplit(response.json()["next"]).query) == {"after_seq": ["2"], "limit": ["2"]}


def test_unread_true_lists_only_unread(as_user, alice, store_notices) -> None:
    first, _, third = store_notices(alice, count=3)
    Notification.objects.filter(pk__in=[first.pk, third.pk]).update(read_at=timezone.now())

    response = as_user(alice).get("/api/notifications/", {"unread": "true"})

    assert seqs(response) == [2]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"after_seq": "abc"}, "after_seq"),
        ({"after_seq": "-1"}, "after_seq"),
        ({"after_seq": "99999999999999999999999"}, "after_seq"),
        ({"before_seq": "0"}, "before_seq"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10000"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"unread": "perhaps"}, "unread"),
        ({"after_seq": "1", "before_seq": "5"}, "non_field_errors"),
        ({"after_seq": "1", "unread": "true"}, "non_field_errors"),
    ],
)
def test_bad_list_parameters_answer_400_naming_the_problem(as_user, alice, query: dict, field: str) -> None:
    body = assert_json_error(as_user(alice).get("/api/notifications/", query), 400)

    assert list(body) == [field]
    assert body[field]


def test_the_list_needs_a_credential(api: APIClient) -> None:
    response = api.get("/api/notifications/")

    assert assert_json_error(response, 401) == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_bad_bearer_token_is_refused(api: APIClient, alice) -> None:
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

    assert_json_error(api.get("/api/notifications/"), 401)


def test_a_revoked_bearer_token_is_refused(api: APIClient, alice, rings) -> None:
    token = token_issue(user=alice)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/notifications/").status_code == 200

    tokens_revoke(user=alice)

    assert_json_error(api.get("/api/notifications/"), 401)


@pytest.mark.parametrize("ended", ["expired", "user deactivated"])
def test_a_bearer_token_of_an_expired_token_or_a_deactivated_user_is_refused(api: APIClient, alice, ended) -> None:
    token = token_issue(user=alice)
    if ended == "expired":
        AuthToken.objects.filter(user=alice).update(expiry=timezone.now() - timedelta(seconds=1))
    else:
        alice.is_active = False
        alice.save(update_fields=["is_active"])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert assert_json_error(api.get("/api/notifications/unread-count/"), 401) == {"detail": "Invalid token."}


def test_a_bearer_token_is_checked_with_one_query_however_many_tokens_the_user_has(api: APIClient, alice) -> None:
    for _ in range(5):
        token_issue(user=alice)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=alice)}")
    api.get("/api/notifications/unread-count/")  # the inbox row exists from now on

    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/notifications/unread-count/").status_code == 200

    assert sum('FROM "knox_authtoken"' in q["sql"] for q in queries.captured_queries) == 1


# --- counts and read state ------------------------------------------------------------------


def test_unread_count(as_user, alice, bob, store_notices) -> None:
    store_notices(alice, count=2)
    store_notices(bob, count=5)

    response = as_user(alice).get("/api/notifications/unread-count/")

    assert (response.status_code, response.json()) == (200, {"unread": 2})


def test_unread_count_of_a_user_without_notifications_is_zero(as_user, alice) -> None:
    assert as_user(alice).get("/api/notifications/unread-count/").json() == {"unread": 0}


def test_reading_ones_own_notification_lowers_the_unread_count(as_user, alice, store_notices) -> None:
    first, _ = store_notices(alice, count=2)

    response = as_user(alice).post(f"/api/notifications/{first.pk}/read/")

    assert (response.status_code, response.json()) == (200, {"id": first.pk, "read": True, "unread": 1})
    assert Notification.objects.get(pk=first.pk).read_at is not None
    assert Inbox.objects.get(user=alice).unread == 1


def test_reading_another_users_notification_is_404_and_changes_nothing(as_user, alice, bob, store_notices) -> None:
    (bobs,) = store_notices(bob)

    response = as_user(alice).post(f"/api/notifications/{bobs.pk}/read/")

    assert assert_json_error(response, 404) == {"detail": "no such notification"}
    assert Notification.objects.get(pk=bobs.pk).read_at is None
    assert Inbox.objects.get(user=bob).unread == 1


@pytest.mark.parametrize("notification_id", ["0", "987654", "99999999999999999999", str(2**63)])
def test_reading_a_notification_that_does_not_exist_is_404(as_user, alice, notification_id: str) -> None:
    assert_json_error(as_user(alice).post(f"/api/notifications/{notification_id}/read/"), 404)


def test_read_all_reads_all_of_the_users_notifications_only(as_user, alice, bob, store_notices) -> None:
    alices = store_notices(alice, count=3)
    store_notices(bob)

    response = as_user(alice, token=True).post("/api/notifications/read-all/")

    assert response.status_code == 200
    assert response.json() == {"ids": sorted(n.pk for n in alices), "unread": 0}
    assert not Notification.objects.filter(user=alice, read_at__isnull=True).exists()
    assert Inbox.objects.get(user=bob).unread == 1


def test_reading_needs_a_credential(api: APIClient, alice, store_notices) -> None:
    (notification,) = store_notices(alice)

    assert_json_error(api.post(f"/api/notifications/{notification.pk}/read/"), 401)
    assert_json_error(api.post("/api/notifications/read-all/"), 401)
    assert Notification.objects.get().read_at is None


# --- socket tickets -------------------------------------------------------------------------


def test_a_ws_ticket_for_a_session_is_tied_to_that_session(as_user, alice) -> None:
    client = as_user(alice)

    response = client.post("/api/ws-ticket/")

    body = response.json()
    assert response.status_code in (200, 201)
    assert set(body) == {"ticket", "expires_in"}
    assert body["expires_in"] == int(TICKET_TTL.total_seconds()) == 60
    redeemed = ticket_redeem(body["ticket"])
    assert redeemed.user == alice
    assert (redeemed.credential_kind, redeemed.credential_ref) == ("session", client.session.session_key)


def test_a_ws_ticket_for_a_bearer_token_is_tied_to_that_token(api: APIClient, alice) -> None:
    token = token_issue(user=alice)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    body = api.post("/api/ws-ticket/").json()

    assert body["expires_in"] == 60
    redeemed = ticket_redeem(body["ticket"])
    assert redeemed.user == alice
    assert (redeemed.credential_kind, redeemed.credential_ref) == ("token", token_authenticate(token)[1].ref)


def test_a_ws_ticket_needs_a_credential(api: APIClient) -> None:
    assert_json_error(api.post("/api/ws-ticket/"), 401)


# --- POST /api/events/ ------------------------------------------------------------------------


@pytest.fixture
def staff_token(make_user) -> str:
    return token_issue(user=make_user("ops", is_staff=True))


def post_event(api: APIClient, payload: object, token: str | None = None):  # type: ignore[no-untyped-def]
    if token:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api.post("/api/events/", payload, format="json")


def test_a_staff_token_emits_an_event(
    api: APIClient, staff_token: str, alice, bob, published_events, django_capture_on_commit_callbacks
) -> None:
    payload = {"type": "notice", "recipients": ["alice", "bob"], "data": {"title": "Maintenance at 22:00"}}

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_event(api, {**payload, "idempotency_key": "maint:1"}, staff_token)

    assert response.status_code == 202
    event = Event.objects.get()
    assert response.json() == {"id": event.pk}
    assert (event.type, event.recipient_ids, event.data) == ("notice", sorted([alice.pk, bob.pk]), payload["data"])
    assert event.idempotency_key == "maint:1"
    assert len(callbacks) == 1


def test_the_same_idempotency_key_over_http_gives_the_same_event(api: APIClient, staff_token: str, alice) -> None:
    payload = {"type": "notice", "recipients": ["alice"], "data": {"title": "t"}, "idempotency_key": "k"}

    first = post_event(api, payload, staff_token)
    again = post_event(api, payload)

    assert first.json() == again.json()
    assert Event.objects.count() == 1


def test_emitting_over_http_needs_a_credential(api: APIClient, alice) -> None:
    response = post_event(api, {"type": "notice", "recipients": ["alice"], "data": {"title": "t"}})

    assert response.status_code in (401, 403)
    assert not Event.objects.exists()


def test_a_staff_session_cannot_emit_over_http(api: APIClient, make_user, alice) -> None:
    api.force_login(make_user("ops", is_staff=True))

    response = post_event(api, {"type": "notice", "recipients": ["alice"], "data": {"title": "t"}})

    assert assert_json_error(response, 403)["detail"] == "emitting events over HTTP needs the API token of a staff user"
    assert not Event.objects.filter(type="notice").exists()  # only the sign-in of force_login


def test_a_token_of_a_user_who_is_not_staff_cannot_emit(api: APIClient, alice) -> None:
    response = post_event(
        api, {"type": "notice", "recipients": ["alice"], "data": {"title": "t"}}, token_issue(user=alice)
    )

    assert_json_error(response, 403)
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field", "says"),
    [
        ({"type": "comment.created", "recipients": ["alice"]}, "type", "unknown event type 'comment.created'"),
        ({"type": "notice", "recipients": ["alice", "nobody"], "data": {"title": "t"}}, "recipients", "nobody"),
        ({"type": "notice", "recipients": [], "data": {"title": "t"}}, "recipients", ""),
        ({"type": "notice", "recipients": "alice", "data": {"title": "t"}}, "recipients", ""),
        ({"type": "notice", "recipients": ["alice"], "data": {"body": "no title"}}, "data", "needs data.title"),
        ({"type": "notice", "recipients": ["alice"], "data": {"title": 5}}, "data", "needs data.title"),
        ({"type": "notice", "recipients": ["alice"], "data": {"title": "t", "x": 1}}, "data", "unknown field"),
        ({"type": "notice", "recipients": ["alice"], "data": ["title"]}, "data", ""),
        (
            {"type": "notice", "recipients": ["alice"], "data": {"title": "t"}, "idempotency_key": ""},
            "idempotency_key",
            "",
        ),
        ({"recipients": ["alice"], "data": {"title": "t"}}, "type", "required"),
    ],
)
def test_bad_events_answer_400_saying_what_is_wrong(
    api: APIClient, staff_token: str, alice, payload: dict, field: str, says: str
) -> None:
    body = assert_json_error(post_event(api, payload, staff_token), 400)

    assert field in body
    assert says in " ".join(body[field])
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "raw", ["[]", "not json", '{"type": "notice", "recipients": ["alice"], "data": {"title": NaN}}']
)
def test_a_body_that_is_no_json_object_answers_400(api: APIClient, staff_token: str, alice, raw: str) -> None:
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")

    assert_json_error(api.post("/api/events/", raw, content_type="application/json"), 400)
    assert not Event.objects.exists()


def test_event_data_with_a_nul_character_never_answers_500(staff_token: str, alice) -> None:
    api = APIClient(raise_request_exception=False)
    payload = {"type": "notice", "recipients": ["alice"], "data": {"title": "null\x00byte"}}

    response = post_event(api, payload, staff_token)

    assert response.status_code in (202, 400)


@pytest.mark.parametrize("path", ["/api/messages/", "/api/events/"])
def test_a_deeply_nested_json_body_answers_400(staff_token: str, path: str) -> None:
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    nested = "[" * 100_000 + "]" * 100_000  # 200 kB, well under Django's 2.5 MB body limit

    response = api.post(path, nested, content_type="application/json")

    assert_json_error(response, 400)


# --- POST /api/messages/ (the sample domain) --------------------------------------------------


def test_sending_a_message_stores_it_and_emits_an_event_for_the_recipient(as_user, alice, bob) -> None:
    response = as_user(alice).post("/api/messages/", {"to": "bob", "text": "  lunch?  "}, format="json")

    assert response.status_code == 201
    message = Message.objects.get()
    assert response.json() == {"id": message.pk}
    assert (message.sender, message.recipient, message.text) == (alice, bob, "lunch?")
    event = Event.objects.get(type="message.received")
    assert (event.recipient_ids, event.actor, event.target) == ([bob.pk], alice, message)
    assert event.idempotency_key == f"message:{message.pk}"


@pytest.mark.parametrize(
    ("payload", "field", "says"),
    [
        ({"to": "alice", "text": "hi"}, "text", "yourself"),
        ({"to": "nobody", "text": "hi"}, "to", "no such user"),
        ({"to": "bob", "text": "   "}, "text", "blank"),
        ({"to": "bob", "text": "x" * 2001}, "text", "2000"),
        ({"to": "bob"}, "text", "required"),
    ],
)
def test_a_message_that_cannot_be_sent_answers_400(as_user, alice, bob, payload: dict, field: str, says: str) -> None:
    body = assert_json_error(as_user(alice).post("/api/messages/", payload, format="json"), 400)

    assert says in " ".join(body[field])
    assert not Message.objects.exists()
    assert not Event.objects.filter(type="message.received").exists()


def test_a_message_to_an_inactive_user_answers_400(as_user, alice, make_user) -> None:
    make_user("gone", is_active=False)

    assert_json_error(as_user(alice).post("/api/messages/", {"to": "gone", "text": "hi"}, format="json"), 400)


def test_sending_a_message_needs_a_credential(api: APIClient, bob) -> None:
    assert_json_error(api.post("/api/messages/", {"to": "bob", "text": "hi"}, format="json"), 401)
    assert not Message.objects.exists()


# --- the rest ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nothing-here/", "/api/notifications/abc/read/", "/api/notifications/1/"])
def test_an_unknown_api_path_answers_404_in_json(as_user, alice, path: str) -> None:
    assert assert_json_error(as_user(alice).get(path), 404) == {"detail": "Not found."}


def test_a_wrong_method_answers_405_in_json(as_user, alice) -> None:
    assert_json_error(as_user(alice).get("/api/notifications/read-all/"), 405)


def test_healthz_answers_200_when_database_redis_broker_relay_and_workers_answer(client, settings, tmp_path) -> None:
    settings.WORKER_LIVENESS_DIR = str(tmp_path)
    relay_heartbeat()
    worker_ping_task.apply(args=("worker_0",))

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "down": [],
        "checks": {"database": "ok", "redis": "ok", "broker": "ok", "relay": "ok", "workers": "ok"},
    }


def test_healthz_reports_stale_workers_and_forgets_long_gone_ones(client, settings) -> None:
    settings.WORKER_LIVENESS_TIMEOUT_S = 60
    relay_heartbeat()
    assert client.get("/healthz").json()["checks"]["workers"] == "stale: no worker seen"

    now = timezone.now()
    Heartbeat.objects.create(name="worker:worker_0", beat_at=now - timedelta(seconds=5))
    Heartbeat.objects.create(name="worker:worker_1", beat_at=now - timedelta(seconds=75))
    Heartbeat.objects.create(name="worker:scaled_away", beat_at=now - timedelta(hours=1))

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["workers"]
    assert response.json()["checks"]["workers"] == "stale: worker_1 last pinged 75 s ago"


def test_healthz_answers_503_naming_what_is_down(client, settings) -> None:
    relay_heartbeat()
    Heartbeat.objects.create(name="worker:worker_0", beat_at=timezone.now())
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["redis"]
    assert body["checks"]["redis"].startswith("down: ")


def test_healthz_reports_a_relay_that_has_not_run_for_three_intervals(client, settings) -> None:
    settings.EVENTS_RELAY_INTERVAL_S = 2.0
    Heartbeat.objects.create(name="outbox", beat_at=timezone.now() - timedelta(seconds=6.2))
    Heartbeat.objects.create(name="worker:worker_0", beat_at=timezone.now())

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["relay"]
    assert response.json()["checks"]["relay"] == "stale: last ran 6 s ago"


def test_healthz_reports_a_relay_that_never_ran(client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["relay"] == "stale: never ran"


def test_a_relay_that_ran_within_three_intervals_is_fine(client, settings) -> None:
    settings.EVENTS_RELAY_INTERVAL_S = 2.0
    Heartbeat.objects.create(name="outbox", beat_at=timezone.now() - timedelta(seconds=5.5))

    assert client.get("/healthz").json()["checks"]["relay"] == "ok"


def test_the_database_being_down_answers_503_json_with_retry_after(staff_token: str, alice, monkeypatch) -> None:
    from django.db import OperationalError

    import events.api

    def database_down(*args: object, **kwargs: object) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(events.api, "emit", database_down)
    api = APIClient(raise_request_exception=False)

    response = post_event(api, {"type": "notice", "recipients": ["alice"], "data": {"title": "x"}}, staff_token)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "database is unavailable" in response.json()["detail"]


def test_a_lone_surrogate_in_the_data_answers_400_not_202(staff_token: str, alice) -> None:
    # Valid JSON (an escape), yet no text: it used to be accepted and then dead-lettered.
    body = '{"type": "notice", "recipients": ["alice"], "data": {"title": "\\ud800"}}'
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")

    response = api.post("/api/events/", body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert "no lone surrogates" in str(response.json())
    assert not Event.objects.exists()


@pytest.mark.parametrize("path", ["/api/events/", "/api/messages/"])
def test_a_body_over_the_size_limit_answers_json_400_and_logs_one_line(
    staff_token: str, path: str, settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = '{"type": "notice", "recipients": ["alice"], "data": {"title": "' + "x" * 20_000 + '"}}'
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")

    response = api.post(path, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"detail": "the request body is larger than 10000 bytes"}
    refused = [record for record in caplog.records if record.levelname in ("WARNING", "ERROR")]
    assert [record.getMessage() for record in refused] == [f"Bad Request: {path}"]  # no traceback
    assert not any(record.exc_info for record in refused)


def test_html_pages_carry_a_strict_content_security_policy_and_json_none(client, alice) -> None:
    client.force_login(alice)

    page = client.get("/")
    login = client.get("/accounts/login/")
    api = client.get("/api/notifications/")

    for response in (page, login):
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
    assert "Content-Security-Policy" not in api
