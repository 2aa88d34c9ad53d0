"""End to end: seq follows emit order across worker processes, and a process that emits and exits delivers."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from delivery.credentials import token_issue
from delivery.models import Notification
from events import emit
from tests.conftest import wait_until_delivered
from tests.live import ROOT, LiveStack, in_db_thread
from tests.tabs import Tab

pytestmark = pytest.mark.live

BURST = 120


def test_events_emitted_one_after_another_are_numbered_in_emit_order_by_several_workers(
    private_stack: LiveStack, transactional_db: None, alice, bob
) -> None:
    private_stack.start_web()
    private_stack.start_worker("worker-a", concurrency=2)
    private_stack.start_worker("worker-b", concurrency=2)
    token = token_issue(user=alice)

    def emit_burst() -> None:
        for number in range(BURST):
            # Every other one also goes to bob, so batches share users in varying ways.
            recipients = [alice, bob] if number % 2 else [alice]
            emit("notice", recipients=recipients, data={"title": f"n {number}"})

    async def scenario() -> Tab:
        tab = await Tab(private_stack.ws_url, {"Authorization": f"Bearer {token}"}).open()
        await tab.wait_for("hello")
        await in_db_thread(emit_burst)
        await tab.wait_for("notification", count=BURST, timeout=60)
        await tab.close()
        return tab

    tab = asyncio.run(scenario())
    wait_until_delivered()

    expected = [f"n {number}" for number in range(BURST)]
    assert list(Notification.objects.filter(user=alice).order_by("seq").values_list("title", flat=True)) == expected
    assert [n["title"] for n in tab.notifications()] == expected
    assert [n["seq"] for n in tab.notifications()] == list(range(1, BURST + 1))
    bobs = list(Notification.objects.filter(user=bob).order_by("seq").values_list("title", flat=True))
    assert bobs == [f"n {number}" for number in range(1, BURST, 2)]


def test_a_script_that_emits_and_exits_is_delivered_at_once(live_stack: LiveStack, live_env, alice) -> None:
    # No beat runs here: without the flush at exit, the event would wait for a sweep forever.
    token = token_issue(user=alice)
    script = (
        "from django.contrib.auth import get_user_model; from events import emit; "
        "emit('notice', recipients=[get_user_model().objects.get(username='alice')], data={'title': 'from a script'})"
    )

    async def scenario() -> Tab:
        tab = await Tab(live_stack.ws_url, {"Authorization": f"Bearer {token}"}).open()
        await tab.wait_for("hello")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT,
            env=live_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        await tab.wait_for("notification", timeout=2.0)  # counted from the script's exit
        await tab.close()
        return tab

    tab = asyncio.run(scenario())
    assert tab.notifications()[0]["title"] == "from a script"
