"""End to end with real processes: emit -> Celery worker -> database -> group_send -> daphne -> tabs."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from delivery.credentials import token_issue
from delivery.models import Notification
from events import emit
from tests.live import ROOT, LiveStack, in_db_thread
from tests.tabs import Tab

pytestmark = pytest.mark.live


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_event_reaches_every_tab_of_its_user_and_no_one_else(live_stack: LiveStack, alice, bob) -> None:
    alice_token, bob_token = token_issue(user=alice), token_issue(user=bob)

    async def scenario() -> tuple[list[Tab], Tab]:
        alice_tabs = [await Tab(live_stack.ws_url, bearer(alice_token)).open() for _ in range(5)]
        bob_tab = await Tab(live_stack.ws_url, bearer(bob_token)).open()
        for tab in [*alice_tabs, bob_tab]:
            (hello,) = await tab.wait_for("hello")
            assert hello["last_seq"] == 0
        await in_db_thread(emit, "notice", recipients=[alice], data={"title": "Deploy finished"})
        for tab in alice_tabs:
            await tab.wait_for("notification")
        # Bob's socket is alive and answers, and nothing of alice's came before the pong.
        await bob_tab.send({"type": "ping"})
        await bob_tab.wait_for("pong")
        for tab in [*alice_tabs, bob_tab]:
            await tab.close()
        return alice_tabs, bob_tab

    alice_tabs, bob_tab = asyncio.run(scenario())

    stored = Notification.objects.get(user=alice)
    for tab in alice_tabs:
        (received,) = tab.notifications()
        assert received["id"] == stored.pk
        assert received["seq"] == 1
        assert received["title"] == "Deploy finished"
        assert tab.of_type("notification")[0]["unread"] == 1
    assert bob_tab.notifications() == []
    assert not Notification.objects.filter(user=bob).exists()


def test_seq_counts_up_per_user_across_events(live_stack: LiveStack, alice, bob) -> None:
    token = token_issue(user=alice)

    async def scenario() -> Tab:
        tab = await Tab(live_stack.ws_url, bearer(token)).open()
        await tab.wait_for("hello")
        for number in range(1, 6):
            await in_db_thread(emit, "notice", recipients=[alice, bob], data={"title": f"n{number}"})
        await tab.wait_for("notification", count=5)
        await tab.close()
        return tab

    tab = asyncio.run(scenario())

    # Two workers run concurrently, so seq follows commit order, not emit order: the
    # promise is a gapless seq in order, matching what the database stored.
    assert [n["seq"] for n in tab.notifications()] == [1, 2, 3, 4, 5]
    stored = dict(Notification.objects.filter(user=alice).values_list("seq", "title"))
    assert {n["seq"]: n["title"] for n in tab.notifications()} == stored
    assert sorted(stored.values()) == ["n1", "n2", "n3", "n4", "n5"]
    assert list(Notification.objects.filter(user=bob).order_by("seq").values_list("seq", flat=True)) == [1, 2, 3, 4, 5]


def test_a_tab_left_idle_longer_than_redis_socket_timeouts_still_receives(live_stack: LiveStack, alice) -> None:
    # redis-py 8 defaults to a 5 s socket timeout; an idle subscription must outlive it.
    token = token_issue(user=alice)

    async def scenario() -> Tab:
        tab = await Tab(live_stack.ws_url, bearer(token)).open()
        await tab.wait_for("hello")
        await asyncio.sleep(8)
        await in_db_thread(emit, "notice", recipients=[alice], data={"title": "after a nap"})
        await tab.wait_for("notification")
        await tab.close()
        return tab

    tab = asyncio.run(scenario())
    assert tab.notifications()[0]["title"] == "after a nap"
    assert tab.close_code == 1000


def test_emit_event_command_delivers_and_prints_the_event_id(live_stack: LiveStack, live_env, alice) -> None:
    token = token_issue(user=alice)

    async def scenario() -> tuple[Tab, subprocess.CompletedProcess[str]]:
        tab = await Tab(live_stack.ws_url, bearer(token)).open()
        await tab.wait_for("hello")
        command = [
            sys.executable,
            "manage.py",
            "emit_event",
            "notice",
            "--to",
            "alice",
            "--data",
            '{"title": "From the CLI"}',
        ]
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, env=live_env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        await tab.wait_for("notification")
        await tab.close()
        return tab, done

    tab, done = asyncio.run(scenario())
    assert tab.notifications()[0]["title"] == "From the CLI"
    assert done.stdout.strip() == str(Notification.objects.get(user=alice).event_id)
