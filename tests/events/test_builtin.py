"""The built-in event types: `notice`, and `auth.new_sign_in` from Django's user_logged_in signal."""

from __future__ import annotations

import pytest

from delivery.models import Notification
from events import emit
from events.builtin import describe_browser
from events.models import Event
from events.signals import USER_AGENT_MAX, sign_in_id
from tests.conftest import PASSWORD
from tests.events.conftest import deliver_due

CHROME_ON_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX_ON_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"


@pytest.mark.parametrize(
    ("user_agent", "described"),
    [
        (CHROME_ON_LINUX, "Chrome on Linux"),
        (FIREFOX_ON_WINDOWS, "Firefox on Windows"),
        ("curl/8.5.0", "curl"),
        ("", "an unknown browser"),
        ("definitely not a browser", "an unknown browser"),
    ],
)
def test_describe_browser_names_browser_and_system(user_agent: str, described: str) -> None:
    assert describe_browser(user_agent) == described


def test_describe_browser_copes_with_a_huge_header() -> None:
    assert describe_browser(CHROME_ON_LINUX + " x" * 50_000) == "Chrome on Linux"


def log_in(client, username: str, user_agent: str):  # type: ignore[no-untyped-def]
    return client.post("/accounts/login/", {"username": username, "password": PASSWORD}, HTTP_USER_AGENT=user_agent)


@pytest.mark.django_db
def test_signing_in_emits_a_new_sign_in_event_for_that_user_only(client, alice, bob) -> None:
    response = log_in(client, "alice", FIREFOX_ON_WINDOWS)

    assert response.status_code == 302
    event = Event.objects.get()
    assert event.type == "auth.new_sign_in"
    assert event.recipient_ids == [alice.pk]
    assert event.actor == alice
    # The sign-in is named by a hash of its session, never by the session key itself.
    assert event.data == {"user_agent": FIREFOX_ON_WINDOWS, "sign_in": sign_in_id(client.session.session_key)}
    assert client.session.session_key not in str(event.data)


@pytest.mark.django_db
def test_a_failed_sign_in_emits_nothing(client, alice) -> None:
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})

    assert response.status_code == 200
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_the_user_agent_kept_in_the_event_is_bounded(client, alice) -> None:
    log_in(client, "alice", CHROME_ON_LINUX + "x" * 5000)

    assert Event.objects.get().data["user_agent"] == (CHROME_ON_LINUX + "x" * 5000)[:USER_AGENT_MAX]


@pytest.mark.django_db
def test_each_sign_in_from_a_new_session_is_its_own_event(client, alice, rings) -> None:
    log_in(client, "alice", CHROME_ON_LINUX)
    client.post("/accounts/logout/")
    log_in(client, "alice", FIREFOX_ON_WINDOWS)

    assert [e.data["user_agent"] for e in Event.objects.order_by("pk")] == [CHROME_ON_LINUX, FIREFOX_ON_WINDOWS]


@pytest.mark.django_db
def test_the_sign_in_event_does_not_store_the_session_key(client, alice) -> None:
    log_in(client, "alice", CHROME_ON_LINUX)
    session_key = client.cookies["sessionid"].value

    event = Event.objects.get()
    assert session_key not in (event.idempotency_key or "")
    assert session_key not in str(event.data)


@pytest.mark.django_db
def test_the_sign_in_notification_names_the_browser(client, alice, bob, rings) -> None:
    log_in(client, "alice", FIREFOX_ON_WINDOWS)

    deliver_due()

    notification = Notification.objects.get()
    assert notification.user == alice
    assert notification.event_type == "auth.new_sign_in"
    assert notification.title == "New sign-in from Firefox on Windows"
    assert "change your password" in notification.body


@pytest.mark.django_db
def test_a_sign_in_event_naming_more_than_its_owner_reaches_nobody(alice, bob, rings) -> None:
    emit("auth.new_sign_in", recipients=[alice, bob], actor=alice, data={"user_agent": CHROME_ON_LINUX})

    deliver_due()

    assert not Notification.objects.exists()


@pytest.mark.django_db
def test_a_notice_is_shown_as_given(alice, rings) -> None:
    data = {"title": "<b>Deploy</b> finished", "body": "</script><img src=x onerror=alert(1)>", "url": "/deploys/41"}
    emit("notice", recipients=[alice], data=data)

    deliver_due()

    notification = Notification.objects.get()
    assert (notification.title, notification.body, notification.url) == (data["title"], data["body"], data["url"])
