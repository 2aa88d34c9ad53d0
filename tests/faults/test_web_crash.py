"""Fault scenario: the web process (daphne) is SIGKILLed with tabs open, mid-stream."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import MakeStack
from tests.faults.harness import FaultStack, ResumingTab, open_tabs, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

EVENTS = 40
USERS = ("alice", "bob")


def stream_across_a_web_crash(stack: FaultStack, *, resume: bool, settle_s: float) -> list[ResumingTab]:
    async def scenario() -> list[ResumingTab]:
        tabs = open_tabs(stack, USERS, per_user=3, resume=resume)
        await wait_until(lambda: all(tab.connections for tab in tabs), timeout=15)
        for number in range(EVENTS):
            if number == EVENTS // 2:
                web = next(p for p in stack.processes if p.name == "web")
                web.kill()
                # Emitted while no web process runs: the worker stores them, nobody hears.
                for late in range(5):
                    await asyncio.to_thread(_emit_through_manage, stack, f"while down {late}")
                await asyncio.to_thread(stack.start_web)  # same port: the tabs come back
            await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")
        await wait_until(lambda: all(tab.cursor == EVENTS + 5 for tab in tabs), timeout=settle_s)
        for tab in tabs:
            await tab.stop()
        return tabs

    return asyncio.run(scenario())


def _emit_through_manage(stack: FaultStack, title: str) -> None:
    stack.manage("emit_event", "notice", "--to", ",".join(USERS), "--data", f'{{"title": "{title}"}}')


def test_tabs_reconnect_and_resume_after_the_web_process_dies(make_fault_stack: MakeStack) -> None:
    stack = make_fault_stack()
    stack.start_web()
    stack.start_worker()

    tabs = stream_across_a_web_crash(stack, resume=True, settle_s=60)

    assert oracle_problems(stack, tabs, expected=EVENTS + 5) == []
    assert all(tab.connections >= 2 for tab in tabs), "every tab should have reconnected"


def test_tabs_that_reconnect_without_resuming_miss_what_was_sent_meanwhile(make_fault_stack: MakeStack) -> None:
    # The same crash with clients that never send `resume`: what was stored while they
    # were away never reaches them, and the oracle must say so.
    stack = make_fault_stack(WS_RECONCILE_INTERVAL_S="3600")
    stack.start_web()
    stack.start_worker()

    tabs = stream_across_a_web_crash(stack, resume=False, settle_s=10)

    problems = oracle_problems(stack, tabs, expected=EVENTS + 5)
    assert any("missing seq" in problem for problem in problems), problems
