"""Fault scenario: two workers store notifications for the same user at the same time."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import BROKERS, MakeStack
from tests.faults.harness import open_tabs, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

EVENTS = 120


@BROKERS
def test_concurrent_workers_give_every_tab_seq_1_to_n_in_order_once(make_fault_stack: MakeStack, broker: str) -> None:
    stack = make_fault_stack(broker=broker)
    stack.start_web()
    stack.start_worker("worker1", concurrency=3)
    stack.start_worker("worker2", concurrency=3)

    async def scenario() -> list:  # type: ignore[type-arg]
        tabs = open_tabs(stack, ("alice",), per_user=3)
        # Emit only once every tab is live: a doorbell that beats the tab's own `resume` is sent
        # again by the replay (the contract's resume sends everything after the cursor).
        await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=15)
        # Eight services emit at once, so six worker processes race for alice's inbox.
        with ThreadPoolExecutor(max_workers=8) as pool:
            await asyncio.gather(
                *(
                    asyncio.wrap_future(pool.submit(stack.emit, ["alice", "bob"], f"event {number}"))
                    for number in range(EVENTS)
                )
            )
        await wait_until(lambda: all(tab.cursor == EVENTS for tab in tabs), timeout=60)
        for tab in tabs:
            await tab.stop()
        return tabs

    tabs = asyncio.run(scenario())

    assert oracle_problems(stack, tabs, expected=EVENTS) == []
    for tab in tabs:
        # Not only complete after de-duplication: on one connection each seq came once, in order.
        assert tab.connections == 1
        assert [n["seq"] for n in tab.received] == list(range(1, EVENTS + 1))
    assert len(stack.stored("bob")) == EVENTS
