"""Fault scenario: the Celery worker is SIGKILLed while events stream in."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import BROKERS, MakeStack
from tests.faults.harness import FaultStack, ResumingTab, open_tabs, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

EVENTS = 40
USERS = ("alice", "bob")


def stream_with_a_worker_kill(stack: FaultStack, *, kill: str, settle_s: float) -> list[ResumingTab]:
    """Three tabs per user; EVENTS events to both users; the worker is killed a third of
    the way in and a fresh one started. Returns the tabs once they caught up (or gave up)."""

    async def scenario() -> list[ResumingTab]:
        tabs = open_tabs(stack, USERS, per_user=3)
        await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=15)
        for number in range(EVENTS):
            if number != EVENTS // 3:
                await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")
                continue
            # A slow event, so that the kill lands while a task is mid-render (before persist).
            await asyncio.to_thread(stack.emit, list(USERS), f"event {number}", event_type="test.slow")
            await asyncio.sleep(0.5)
            worker = next(p for p in stack.processes if p.name == "worker")
            if kill == "whole worker":
                worker.kill()  # the main process and its pool children
                stack.start_worker("worker2")
            else:
                worker.kill_children()  # a pool child mid-task; the main process lives on
        await wait_until(lambda: all(tab.cursor == EVENTS for tab in tabs), timeout=settle_s)
        for tab in tabs:
            await tab.stop()
        return tabs

    return asyncio.run(scenario())


@BROKERS
@pytest.mark.parametrize("kill", ["whole worker", "pool child"])
def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(
    make_fault_stack: MakeStack, kill: str, broker: str
) -> None:
    stack = make_fault_stack(broker=broker)
    stack.start_web()
    stack.start_worker()
    stack.start_beat()

    tabs = stream_with_a_worker_kill(stack, kill=kill, settle_s=30)

    assert oracle_problems(stack, tabs, expected=EVENTS) == [], stack.logs()
    if stack.rabbitmq is not None:  # the queues are the kind Celery recommends for RabbitMQ
        queues = stack.rabbitmq.queue_types()
        assert (queues["faults"], queues["faults.sweep"]) == ("quorum", "quorum"), queues


def test_without_the_outbox_sweep_a_killed_worker_loses_events(make_fault_stack: MakeStack) -> None:
    # The same fault with the sweep switched off: the killed worker's claim holds its lease
    # (EVENTS_LEASE_S) past the last emit, so no later delivery task takes it over, and its
    # unacked task sits in Redis until the broker's visibility timeout (an hour).
    stack = make_fault_stack(EVENTS_RELAY_INTERVAL_S="3600")
    stack.start_web()
    stack.start_worker()
    stack.start_beat()

    tabs = stream_with_a_worker_kill(stack, kill="whole worker", settle_s=15)

    problems = oracle_problems(stack, tabs, expected=EVENTS)
    assert any("the database stored" in problem for problem in problems), problems
