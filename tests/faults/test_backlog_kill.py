"""Fault scenario: a worker is SIGKILLed mid-batch while 1,000 events are queued.

The killed batch must come back within 30 s, not after the backlog drains: re-delivery
depends on the outbox's leases, not on the broker's queue. A pool child killed mid-batch
is reported by the worker's main process, which ends the claim's lease at once; a whole
worker killed leaves its lease to run out (EVENTS_LEASE_S), and the worker started in its
place, busy with the backlog meanwhile, takes the events over.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import BROKERS, MakeStack
from tests.faults.harness import FaultStack, ResumingTab, assert_each_seq_once, open_tabs, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

USERS = ("alice", "bob")
BACKLOG = 1_000
KILL_AFTER_S = 1.0  # after the worker is ready: the slow event's batch renders for 3 s
ARRIVE_WITHIN_S = 30.0

# One process emits the whole backlog and exits (its hand-off is flushed at exit): the
# first event's renderer sleeps 1.5 s per recipient, so the batch that holds it is
# certainly mid-render when the kill lands.
EMIT_BACKLOG = f"""
from django.contrib.auth import get_user_model
from django.db import transaction
from events import emit
users = list(get_user_model().objects.filter(username__in={list(USERS)!r}).order_by("username"))
with transaction.atomic():
    emit("test.slow", recipients=users, data={{"title": "event 0"}})
    for number in range(1, {BACKLOG}):
        emit("notice", recipients=users, data={{"title": f"event {{number}}"}})
"""


def backlog_with_a_kill(stack: FaultStack, *, kill: str) -> tuple[list[ResumingTab], float | None]:
    """Returns the tabs and how long after the kill every tab had every event (None: not
    within ARRIVE_WITHIN_S)."""

    async def scenario() -> tuple[list[ResumingTab], float | None]:
        tabs = open_tabs(stack, USERS, per_user=2)
        assert await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=15)
        await asyncio.to_thread(stack.manage, "shell", "-c", EMIT_BACKLOG)
        worker = await asyncio.to_thread(stack.start_worker)
        await asyncio.sleep(KILL_AFTER_S)
        if kill == "whole worker":
            worker.kill()
            killed = time.monotonic()
            await asyncio.to_thread(stack.start_worker, "worker2")
        else:
            assert worker.kill_children(), "no pool child to kill"
            killed = time.monotonic()
        arrived = await wait_until(lambda: all(tab.cursor == BACKLOG for tab in tabs), timeout=ARRIVE_WITHIN_S)
        took = time.monotonic() - killed if arrived else None
        for tab in tabs:
            await tab.stop()
        return tabs, took

    return asyncio.run(scenario())


@BROKERS
@pytest.mark.parametrize("kill", ["pool child", "whole worker"])
def test_a_batch_killed_under_a_backlog_arrives_within_30_s(
    make_fault_stack: MakeStack, kill: str, broker: str
) -> None:
    stack = make_fault_stack(postgres=True, broker=broker)  # SKIP LOCKED claims, as in production
    stack.start_web()
    stack.start_beat()

    tabs, took = backlog_with_a_kill(stack, kill=kill)

    print(f"\n[{kill}] every event in every tab {took and round(took, 1)} s after the kill")
    assert took is not None, f"{oracle_problems(stack, tabs, expected=BACKLOG)}\n{stack.logs()}"
    assert oracle_problems(stack, tabs, expected=BACKLOG) == []
    assert_each_seq_once(tabs, BACKLOG)
    killed_worker = next(process for process in stack.processes if process.name == "worker")
    assert "deliver_events" in killed_worker.log()  # it was delivering when it was killed
