"""End to end: what a socket's periodic reconcile repairs when a doorbell or a ring is lost."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.sessions.models import Session
from django.db import transaction

from delivery.consumers import CLOSE_UNAUTHENTICATED
from delivery.credentials import token_issue
from delivery.services import notifications_store
from events.models import Event
from events.registry import Rendered
from tests.browserlike import BrowserSession
from tests.conftest import PASSWORD
from tests.live import LiveStack, in_db_thread
from tests.tabs import Tab

pytestmark = pytest.mark.live


def store_without_ringing(user) -> None:  # type: ignore[no-untyped-def]
    """A notification whose doorbell was lost: stored, never rung."""
    event = Event.objects.create(
        type="notice", data={"title": "rung by nobody"}, recipient_ids=[user.pk], status=Event.Status.DELIVERED
    )
    with transaction.atomic():
        notifications_store(items=[(event, user.pk, Rendered(title="rung by nobody"))])


def test_a_notification_whose_doorbell_was_lost_arrives_by_reconcile(live_stack: LiveStack, alice) -> None:
    token = token_issue(user=alice)

    async def scenario() -> Tab:
        tab = await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open()
        await tab.wait_for("hello")
        await in_db_thread(store_without_ringing, alice)
        await tab.wait_for("notification", timeout=10)
        await tab.close()
        return tab

    (notification,) = asyncio.run(scenario()).notifications()
    assert notification["seq"] == 1
    assert notification["title"] == "rung by nobody"


def test_a_session_ended_without_a_logout_ring_closes_its_sockets_by_reconcile(live_stack: LiveStack, alice) -> None:
    session = BrowserSession(live_stack.http_url)
    session.login("alice", PASSWORD)

    async def scenario() -> Tab:
        tab = await Tab(live_stack.ws_url, {"Cookie": session.cookie_header}, origin=live_stack.http_url).open()
        await tab.wait_for("hello")
        # The session disappears the way an expiry or `clearsessions` ends it: no signal, no ring.
        await in_db_thread(lambda: Session.objects.all().delete())
        await tab.wait_closed(timeout=10)
        return tab

    assert asyncio.run(scenario()).close_code == CLOSE_UNAUTHENTICATED


def test_changing_the_password_closes_sockets_of_older_sessions_by_reconcile(live_stack: LiveStack, alice) -> None:
    session = BrowserSession(live_stack.http_url)
    session.login("alice", PASSWORD)

    def change_password() -> None:
        alice.set_password("a-brand-new-password")
        alice.save()

    async def scenario() -> Tab:
        tab = await Tab(live_stack.ws_url, {"Cookie": session.cookie_header}, origin=live_stack.http_url).open()
        await tab.wait_for("hello")
        await in_db_thread(change_password)
        await tab.wait_closed(timeout=10)
        return tab

    assert asyncio.run(scenario()).close_code == CLOSE_UNAUTHENTICATED
