"""Fault scenario: events whose renderer always raises, or kills its worker process."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.faults.conftest import BROKERS, MakeStack
from tests.faults.harness import FaultStack, open_tabs, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

GOOD_EVENTS = 10


def event_states(stack: FaultStack) -> dict[str, dict[str, object]]:
    """Status, attempts and error of every event by type, as an operator sees them in the admin."""
    script = (
        "import json; from events.models import Event; "
        "print(json.dumps({e.type + ':' + str(e.pk): {'status': e.status, 'attempts': e.attempts, "
        "'error': e.last_error} for e in Event.objects.all()}))"
    )
    return json.loads(stack.manage("shell", "-c", script).splitlines()[-1])


@BROKERS
@pytest.mark.parametrize("poison", ["test.poison", "test.crash"])
def test_a_poison_event_is_dead_lettered_and_the_queue_keeps_moving(
    make_fault_stack: MakeStack, poison: str, broker: str
) -> None:
    stack = make_fault_stack(EVENTS_MAX_ATTEMPTS="3", broker=broker)
    stack.start_web()
    stack.start_worker(concurrency=1)  # one process: a stuck poison event would block the rest
    stack.start_beat()

    async def scenario() -> list:  # type: ignore[type-arg]
        tabs = open_tabs(stack, ("alice",), per_user=2)
        await wait_until(lambda: all(tab.connections for tab in tabs), timeout=15)
        await asyncio.to_thread(stack.emit, ["alice"], "poison", event_type=poison)
        for number in range(GOOD_EVENTS):
            await asyncio.to_thread(stack.emit, ["alice"], f"good {number}")
        await wait_until(lambda: all(tab.cursor == GOOD_EVENTS for tab in tabs), timeout=60)
        await wait_until(lambda: _dead(stack, poison), timeout=60)
        for tab in tabs:
            await tab.stop()
        return tabs

    tabs = asyncio.run(scenario())

    assert oracle_problems(stack, tabs, expected=GOOD_EVENTS) == []
    states = event_states(stack)
    (poisoned,) = [state for name, state in states.items() if name.startswith(poison)]
    assert poisoned["status"] == "dead"
    assert poisoned["error"]
    assert int(poisoned["attempts"]) <= 4  # bounded: EVENTS_MAX_ATTEMPTS, plus the one that gives up
    assert all(state["status"] == "delivered" for name, state in states.items() if name.startswith("notice"))


def _dead(stack: FaultStack, event_type: str) -> bool:
    return any(name.startswith(event_type) and state["status"] == "dead" for name, state in event_states(stack).items())
