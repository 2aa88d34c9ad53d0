"""Fault scenario: delivery starts only after the emitting transaction commits."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.db import transaction

from delivery.credentials import token_issue
from delivery.models import Notification
from events import emit
from events.models import Event
from tests.live import LiveStack, in_db_thread
from tests.tabs import Tab

pytestmark = pytest.mark.live


class RolledBack(Exception):
    pass


def emit_then_wait_inside_a_transaction(user, *, hold_s: float, roll_back: bool) -> None:  # type: ignore[no-untyped-def]
    try:
        with transaction.atomic():
            emit("notice", recipients=[user], data={"title": "rolled back" if roll_back else "committed"})
            time.sleep(hold_s)  # the worker is idle and the broker is up: only the commit is missing
            if roll_back:
                raise RolledBack
    except RolledBack:
        pass


def test_no_task_runs_before_commit_and_a_rollback_delivers_nothing(live_stack: LiveStack, alice) -> None:
    token = token_issue(user=alice)

    async def scenario() -> tuple[Tab, list[dict]]:  # type: ignore[type-arg]
        tab = await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open()
        await tab.wait_for("hello")
        await in_db_thread(emit_then_wait_inside_a_transaction, alice, hold_s=2, roll_back=True)
        holding = asyncio.create_task(
            in_db_thread(emit_then_wait_inside_a_transaction, alice, hold_s=2, roll_back=False)
        )
        await asyncio.sleep(1.5)
        seen_while_uncommitted = list(tab.notifications())
        await holding
        await tab.wait_for("notification")
        await asyncio.sleep(1)  # room for anything else that might (wrongly) arrive
        await tab.close()
        return tab, seen_while_uncommitted

    tab, seen_while_uncommitted = asyncio.run(scenario())

    assert seen_while_uncommitted == []
    assert [n["title"] for n in tab.notifications()] == ["committed"]
    assert list(Event.objects.values_list("data__title", flat=True)) == ["committed"]
    assert Notification.objects.get(user=alice).seq == 1
