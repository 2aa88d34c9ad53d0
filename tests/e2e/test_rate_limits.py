"""The attacks of docs/SECURITY.md's rate-limit rows, against real daphne: guessing a
password, and flooding another user's inbox with messages."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.conf import settings
from django_ratelimit.core import _get_window

from delivery.credentials import token_issue
from messaging.models import Message
from tests.browserlike import BrowserSession
from tests.conftest import PASSWORD
from tests.live import LiveStack

pytestmark = pytest.mark.live


def test_guessing_a_password_is_locked_out_and_the_right_one_then_refused(live_stack: LiveStack, alice) -> None:
    attacker = BrowserSession(live_stack.http_url)
    answers = [attacker.login_status("alice", f"guess-{number}") for number in range(settings.AXES_FAILURE_LIMIT + 5)]
    assert answers[: settings.AXES_FAILURE_LIMIT - 1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert set(answers[settings.AXES_FAILURE_LIMIT - 1 :]) == {429}
    assert attacker.login_status("alice", PASSWORD) == 429
    assert int(attacker.last_headers["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert "sessionid" not in attacker.cookies


def test_one_token_cannot_flood_another_users_inbox(live_stack: LiveStack, alice, bob) -> None:
    token = token_issue(user=alice)
    limit = int(settings.API_RATE_LIMITS["messages"]["user"].split("/")[0])
    # The count runs in fixed one-minute windows (each key its own offset): start the flood
    # early in one, so that the whole of it falls in the same window.
    window_ends_in = _get_window(str(alice.pk), 60) - time.time()
    if window_ends_in < 20:
        time.sleep(window_ends_in + 1)
    statuses, retry_after, body = [], None, None
    for number in range(limit + 20):
        request = urllib.request.Request(  # noqa: S310 (our test server)
            f"{live_stack.http_url}/api/messages/",
            data=json.dumps({"to": "bob", "text": f"flood {number}"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                statuses.append(response.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
            retry_after, body = error.headers["Retry-After"], json.loads(error.read())
    assert statuses == [201] * limit + [429] * 20
    assert 1 <= int(retry_after) <= 60
    assert "throttled" in body["detail"]
    assert Message.objects.filter(sender=alice).count() == limit
