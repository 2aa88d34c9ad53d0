"""Issue 8: RabbitMQ as the broker (quorum queues, publisher confirms, acks late).

The test has a vhost of its own on the machine's RabbitMQ. When the broker drops every
connection (what its clients see of a restart) the worker reconnects on its own and every
event emitted around it arrives: no supervisor steps in here, the worker must not need one.
The other scenarios where the broker matters run on both brokers (BROKERS in conftest.py).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import MakeStack
from tests.faults.harness import assert_each_seq_once, open_tabs, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

USERS = ("alice", "bob")
BEFORE = 10
AFTER = 20
ARRIVE_WITHIN_S = 30.0


def test_the_worker_rides_out_rabbitmq_dropping_every_connection(make_fault_stack: MakeStack) -> None:
    stack = make_fault_stack(rabbitmq=True)
    assert stack.rabbitmq is not None
    stack.start_web()
    worker = stack.start_worker()
    stack.start_beat()

    async def scenario() -> tuple[list, float | None]:
        tabs = open_tabs(stack, USERS, per_user=2)
        assert await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=15)
        for number in range(BEFORE):
            await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")
        assert await wait_until(lambda: all(tab.cursor == BEFORE for tab in tabs), timeout=20)

        await asyncio.to_thread(stack.rabbitmq.close_connections)
        dropped = time.monotonic()
        for number in range(BEFORE, BEFORE + AFTER):
            await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")
            await asyncio.sleep(0.1)
        arrived = await wait_until(lambda: all(tab.cursor == BEFORE + AFTER for tab in tabs), timeout=ARRIVE_WITHIN_S)
        took = time.monotonic() - dropped if arrived else None
        for tab in tabs:
            await tab.stop()
        return tabs, took

    tabs, took = asyncio.run(scenario())
    print(f"\nevery event in every tab {took and round(took, 1)} s after RabbitMQ dropped every connection")
    assert took is not None, f"{oracle_problems(stack, tabs, expected=BEFORE + AFTER)}\n{stack.logs()}"
    assert oracle_problems(stack, tabs, expected=BEFORE + AFTER) == []
    assert_each_seq_once(tabs, BEFORE + AFTER)
    assert worker.alive(), worker.log()[-4000:]
    assert "Unrecoverable error" not in worker.log()
    assert [process.name for process in stack.processes] == ["web", "worker", "beat"]  # none restarted
