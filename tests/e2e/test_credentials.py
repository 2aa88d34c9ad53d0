"""End to end: signing in, logging out and revoking tokens, across real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import websockets

from delivery.consumers import CLOSE_UNAUTHENTICATED
from delivery.credentials import token_issue
from tests.browserlike import BrowserSession
from tests.conftest import PASSWORD
from tests.live import ROOT, LiveStack
from tests.tabs import Tab

pytestmark = pytest.mark.live


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.05)


def session_tab(stack: LiveStack, session: BrowserSession) -> Tab:
    return Tab(stack.ws_url, {"Cookie": session.cookie_header}, origin=stack.http_url)


def test_signing_in_tells_the_user_which_browser(live_stack: LiveStack, alice) -> None:
    laptop = BrowserSession(live_stack.http_url)
    laptop.login("alice", PASSWORD)

    async def scenario() -> Tab:
        tab = await session_tab(live_stack, laptop).open()
        await tab.wait_for("hello")
        # The laptop's own sign-in may be delivered before or after the socket opened: ask for
        # everything, as a client does on its first connection.
        await tab.send({"type": "resume", "after_seq": 0})
        await tab.wait_for("resumed")
        await asyncio.to_thread(BrowserSession(live_stack.http_url).login, "alice", PASSWORD)  # a second device
        await asyncio.wait_for(_until(lambda: {n["seq"] for n in tab.notifications()} == {1, 2}), 15)
        await tab.close()
        return tab

    tab = asyncio.run(scenario())
    titles = {n["title"] for n in tab.notifications()}
    assert titles == {"New sign-in from Chrome on Linux"}
    assert sorted({n["seq"] for n in tab.notifications()}) == [1, 2]


def test_logout_closes_that_sessions_sockets_within_a_second_and_no_others(live_stack: LiveStack, alice) -> None:
    laptop, phone = BrowserSession(live_stack.http_url), BrowserSession(live_stack.http_url)
    laptop.login("alice", PASSWORD)
    phone.login("alice", PASSWORD)
    token = token_issue(user=alice)

    async def scenario() -> tuple[list[Tab], list[Tab], float]:
        laptop_tabs = [await session_tab(live_stack, laptop).open() for _ in range(3)]
        others = [
            await session_tab(live_stack, phone).open(),
            await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open(),
        ]
        for tab in [*laptop_tabs, *others]:
            await tab.wait_for("hello")
        started = time.monotonic()
        await asyncio.to_thread(laptop.logout)
        for tab in laptop_tabs:
            await tab.wait_closed(timeout=5)
        elapsed = time.monotonic() - started
        for tab in others:
            await tab.send({"type": "ping"})
            await tab.wait_for("pong")
            await tab.close()
        return laptop_tabs, others, elapsed

    laptop_tabs, others, elapsed = asyncio.run(scenario())
    assert [tab.close_code for tab in laptop_tabs] == [CLOSE_UNAUTHENTICATED] * 3
    assert elapsed < 1.0, f"sockets closed {elapsed:.2f}s after logout"
    assert [tab.close_code for tab in others] == [1000, 1000]


def test_revoke_token_closes_sockets_opened_with_it(live_stack: LiveStack, live_env, alice) -> None:
    session = BrowserSession(live_stack.http_url)
    session.login("alice", PASSWORD)
    token = token_issue(user=alice)

    async def scenario() -> tuple[Tab, Tab, subprocess.CompletedProcess[str]]:
        bearer_tab = await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open()
        cookie_tab = await session_tab(live_stack, session).open()
        for tab in (bearer_tab, cookie_tab):
            await tab.wait_for("hello")
        command = [sys.executable, "manage.py", "revoke_token", "alice"]
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, env=live_env, capture_output=True, text=True, timeout=60
        )
        await bearer_tab.wait_closed(timeout=5)
        await cookie_tab.send({"type": "ping"})
        await cookie_tab.wait_for("pong")
        await cookie_tab.close()
        return bearer_tab, cookie_tab, done

    bearer_tab, cookie_tab, done = asyncio.run(scenario())
    assert done.returncode == 0, done.stderr
    assert "revoked 1 token(s)" in done.stdout
    assert bearer_tab.close_code == CLOSE_UNAUTHENTICATED
    assert cookie_tab.close_code == 1000

    async def reconnect_with_revoked_token() -> Tab:
        tab = await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open()
        await tab.wait_closed()
        return tab

    assert asyncio.run(reconnect_with_revoked_token()).close_code == CLOSE_UNAUTHENTICATED


def test_a_page_on_a_foreign_origin_cannot_open_a_socket_with_the_cookie(live_stack: LiveStack, alice) -> None:
    session = BrowserSession(live_stack.http_url)
    session.login("alice", PASSWORD)

    async def attempt(origin: str) -> int:
        try:
            await Tab(live_stack.ws_url, {"Cookie": session.cookie_header}, origin=origin).open()
        except websockets.InvalidStatus as refused:
            return refused.response.status_code
        raise AssertionError(f"a socket from {origin} was accepted")

    for origin in ("http://evil.example", "http://127.0.0.1.evil.example", "null"):
        assert asyncio.run(attempt(origin)) == 403


def test_a_direct_message_reaches_the_recipient(live_stack: LiveStack, alice, bob) -> None:
    sender = BrowserSession(live_stack.http_url)
    sender.login("bob", PASSWORD)
    token = token_issue(user=alice)

    async def scenario() -> Tab:
        tab = await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open()
        await tab.wait_for("hello")
        await asyncio.to_thread(sender.post_json, "/api/messages/", {"to": "alice", "text": "lunch at noon?"})
        await tab.wait_for("notification")
        await tab.close()
        return tab

    (notification,) = asyncio.run(scenario()).notifications()
    assert notification["event"] == "message.received"
    assert notification["title"] == "New message from bob"
    assert notification["body"] == "lunch at noon?"


CHANGE_PASSWORD = (
    "from django.contrib.auth import get_user_model; user = get_user_model().objects.get(username='alice'); "
    "user.set_password('a-new-password-42'); user.save()"
)
DEACTIVATE = (
    "from django.contrib.auth import get_user_model; user = get_user_model().objects.get(username='alice'); "
    "user.is_active = False; user.save()"
)


@pytest.mark.parametrize(
    ("change", "token_tab_closes"), [(CHANGE_PASSWORD, False), (DEACTIVATE, True)], ids=["password", "deactivate"]
)
def test_a_password_change_or_deactivation_closes_the_sockets_it_ends_within_a_second(
    live_env, tmp_path, transactional_db: None, alice, change: str, token_tab_closes: bool
) -> None:
    # Reconcile once an hour, so that only the change's own ring can close a socket in time.
    live_stack = LiveStack(env=dict(live_env, WS_RECONCILE_INTERVAL_S="3600"), workdir=tmp_path)
    live_stack.start_web()
    try:
        _close_the_sockets_it_ends(live_stack, live_env, alice, change, token_tab_closes=token_tab_closes)
    finally:
        live_stack.stop_all()


def _close_the_sockets_it_ends(
    live_stack: LiveStack, live_env: dict[str, str], alice, change: str, *, token_tab_closes: bool
) -> None:  # type: ignore[no-untyped-def]
    laptop, phone = BrowserSession(live_stack.http_url), BrowserSession(live_stack.http_url)
    laptop.login("alice", PASSWORD)
    phone.login("alice", PASSWORD)
    token = token_issue(user=alice)

    async def scenario() -> tuple[list[Tab], Tab, float]:
        session_tabs = [await session_tab(live_stack, session).open() for session in (laptop, phone, phone)]
        token_tab = await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open()
        for tab in [*session_tabs, token_tab]:
            await tab.wait_for("hello")
        command = [sys.executable, "manage.py", "shell", "-c", change]
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, env=live_env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        changed = time.monotonic()
        for tab in session_tabs:
            await tab.wait_closed(timeout=5)
        elapsed = time.monotonic() - changed
        if token_tab_closes:
            await token_tab.wait_closed(timeout=5)
        else:
            await token_tab.send({"type": "ping"})
            await token_tab.wait_for("pong")
            await token_tab.close()
        return session_tabs, token_tab, elapsed

    session_tabs, token_tab, elapsed = asyncio.run(scenario())
    assert [tab.close_code for tab in session_tabs] == [CLOSE_UNAUTHENTICATED] * 3
    assert elapsed < 1.0, f"sockets closed {elapsed:.2f}s after the change"
    assert token_tab.close_code == (CLOSE_UNAUTHENTICATED if token_tab_closes else 1000)


def test_sign_out_everywhere_ends_every_session_token_and_socket_within_a_second(live_stack: LiveStack, alice) -> None:
    laptop, phone = BrowserSession(live_stack.http_url), BrowserSession(live_stack.http_url)
    laptop.login("alice", PASSWORD)
    phone.login("alice", PASSWORD)
    token, other_token = token_issue(user=alice), token_issue(user=alice)

    async def scenario() -> tuple[list[Tab], float, Tab]:
        tabs = [
            *[await session_tab(live_stack, session).open() for session in (laptop, laptop, phone)],
            await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open(),
            await Tab(live_stack.ws_url, {"Authorization": f"Bearer {other_token}"}).open(),
        ]
        for tab in tabs:
            await tab.wait_for("hello")
        started = time.monotonic()
        answer = await asyncio.to_thread(api_post, live_stack.http_url + "/api/sign-out-everywhere/", token)
        assert answer == {"sessions": 2, "tokens": 2}, answer
        for tab in tabs:
            await tab.wait_closed(timeout=5)
        elapsed = time.monotonic() - started
        again = await session_tab(live_stack, phone).open()  # the old cookie cannot come back
        await again.wait_closed(timeout=5)
        return tabs, elapsed, again

    tabs, elapsed, again = asyncio.run(scenario())
    assert [tab.close_code for tab in tabs] == [CLOSE_UNAUTHENTICATED] * 5
    assert elapsed < 1.0, f"sockets closed {elapsed:.2f}s after signing out everywhere"
    assert again.close_code == CLOSE_UNAUTHENTICATED
    with pytest.raises(urllib.error.HTTPError) as refused:
        api_post(live_stack.http_url + "/api/sign-out-everywhere/", other_token)
    assert refused.value.code == 401


def api_post(url: str, token: str) -> object:
    request = urllib.request.Request(  # noqa: S310 (our own test server)
        url, method="POST", data=b"{}", headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())
