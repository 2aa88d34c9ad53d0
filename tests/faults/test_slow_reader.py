"""Fault scenario: a tab stops reading while hundreds of notifications arrive."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from tests.faults.conftest import MakeStack
from tests.faults.harness import open_tabs, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

EVENTS = 500
STALL_S = 20


def test_a_stalled_tab_is_cut_off_and_catches_up_by_resume_with_memory_bounded(make_fault_stack: MakeStack) -> None:
    stack = make_fault_stack()
    # daphne pings every 2 s and drops a socket whose pong is 4 s late: what it buffers for a
    # tab that stopped reading is bounded by those seconds of traffic, not by how long it stalls.
    # (Production defaults: --ping-interval 20 --ping-timeout 30.)
    web = stack.start_web("--ping-interval", "2", "--ping-timeout", "4")
    stack.start_worker(concurrency=2)
    daphne = psutil.Process(web.popen.pid)

    async def scenario() -> tuple[list, int, int]:  # type: ignore[type-arg]
        (stalled, *healthy) = open_tabs(stack, ("alice",), per_user=3)
        await wait_until(lambda: all(tab.resumes for tab in [stalled, *healthy]), timeout=15)
        rss_before = daphne.memory_info().rss
        stalled.paused.clear()  # stops reading: its socket buffers fill, then TCP pushes back
        emitting = asyncio.create_task(asyncio.to_thread(_emit_many, stack))
        peak = rss_before
        for _ in range(STALL_S * 10):
            peak = max(peak, daphne.memory_info().rss)
            await asyncio.sleep(0.1)
        stalled.paused.set()
        await emitting
        await wait_until(lambda: all(tab.cursor == EVENTS for tab in [stalled, *healthy]), timeout=60)
        for tab in [stalled, *healthy]:
            await tab.stop()
        return [stalled, *healthy], rss_before, peak

    tabs, rss_before, peak = asyncio.run(scenario())

    assert oracle_problems(stack, tabs, expected=EVENTS) == []
    stalled, *healthy = tabs
    assert stalled.connections >= 2, "daphne should have dropped the stalled socket (its pong came too late)"
    assert all(tab.connections == 1 for tab in healthy), "the healthy tabs were never disturbed"
    grew_mib = (peak - rss_before) / 2**20
    print(f"daphne RSS grew {grew_mib:.1f} MiB; the stalled tab connected {stalled.connections} times")
    assert grew_mib < 64, f"daphne grew by {grew_mib:.0f} MiB while one tab stalled"


def _emit_many(stack) -> None:  # type: ignore[no-untyped-def]
    for number in range(EVENTS):
        stack.emit(["alice"], f"event {number} " + "x" * 150)
