"""Fault scenario: the Celery broker is down while requests emit.

The broker is a second private Redis of the test's own (CELERY_BROKER_URL), so stopping it
leaves the channel layer, and with it the open tabs, alone: what is tested is only the way
from the request to a worker. Every emit must still answer 202 at once (the event row is
written in the request; the hand-off to the broker happens after commit, off the request's
path), the events wait in the outbox, and the outbox sweep delivers them once the broker
is back, with no later emit to carry them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.conftest import MakeStack
from tests.faults.harness import FaultStack, ResumingTab, open_tabs, oracle_problems, wait_until
from tests.faults.serving import start_served_small
from tests.servers import PrivateRedis

pytestmark = [pytest.mark.live, pytest.mark.faults]

USERS = ("alice", "bob")
LIVE = 5  # delivered before the fault
WHILE_DOWN = 20  # emitted while the broker is down
AFTER = 5  # emitted once it is back
EMIT_MAX_S = 1.0
# The web process's hand-off thread gives up on each batch within about a second while the
# broker is down; the broker stays down until it gave up on all of them (at most this
# long), so that every event emitted meanwhile depends on the sweep, not on a late hand-off.
HAND_OFF_GIVE_UP_WAIT_S = 40.0
HAND_OFF_GAVE_UP = re.compile(r"could not hand (\d+) event")  # events/handoff.py's warning


# The stack runs as `make serve` runs it: a worker that the broker's loss kills or silences
# (Celery/kombu, docs/DESIGN.md "Broker") is restarted by supervisord or its watchdog.
LIVENESS_TIMEOUT_S = 10.0


def start_supervised(stack: FaultStack, run_dir: Path, **overrides: str) -> None:
    start_served_small(stack, run_dir, liveness_timeout_s=LIVENESS_TIMEOUT_S, **overrides)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of its own for the Celery broker. Request it before make_fault_stack, so that
    it is stopped after the stack's processes."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    server = PrivateRedis(workdir=workdir).start()
    yield server
    server.stop()


@dataclass
class Outcome:
    tabs: list[ResumingTab]
    expected: int = 0
    down_latencies: list[float] = field(default_factory=list)
    hand_off_gave_up: int = 0  # events the web process could not hand to the broker
    down_s: float = 0.0
    settled_after_s: float | None = None  # from the broker's restart until every tab caught up

    def summary(self) -> str:
        mean = sum(self.down_latencies) / len(self.down_latencies)
        return (
            f"{len(self.down_latencies)} emits while the broker was down ({self.down_s:.1f} s), all 202, "
            f"slowest {max(self.down_latencies):.3f} s, mean {mean:.3f} s; "
            f"the hand-off gave up on {self.hand_off_gave_up}; "
            f"tabs caught up {self.settled_after_s and round(self.settled_after_s, 1)} s after the restart; "
            f"connections per tab {[tab.connections for tab in self.tabs]}"
        )


def emit_expecting_202(stack: FaultStack, title: str) -> float:
    """POST /api/events/ as stack.emit does, but insisting on 202 Accepted; returns its duration."""
    body = {"type": "notice", "recipients": list(USERS), "data": {"title": title}}
    request = urllib.request.Request(  # noqa: S310 (our own test server)
        f"{stack.http_url}/api/events/",
        method="POST",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {stack.tokens['ops']}", "Content-Type": "application/json"},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        status = response.status
    took = time.monotonic() - started
    assert status == 202, status
    return took


def hand_off_failures(stack: FaultStack) -> int:
    supervised = stack.processes[-1]  # supervisord: every program's output
    return sum(int(count) for count in HAND_OFF_GAVE_UP.findall(supervised.log()))


def emit_while_the_broker_is_down(stack: FaultStack, broker: PrivateRedis, *, settle_s: float) -> Outcome:
    async def scenario() -> Outcome:
        tabs = open_tabs(stack, USERS, per_user=3)
        outcome = Outcome(tabs=tabs)
        assert await wait_until(lambda: all(tab.connections for tab in tabs), timeout=15)
        titles = iter(range(10_000))

        async def emit() -> float:
            took = await asyncio.to_thread(emit_expecting_202, stack, f"event {next(titles)}")
            outcome.expected += 1
            return took

        for _ in range(LIVE):
            await emit()
        assert await wait_until(lambda: all(tab.cursor == LIVE for tab in tabs), timeout=20)

        failures_before = hand_off_failures(stack)
        await asyncio.to_thread(broker.stop)
        stopped = time.monotonic()
        for _ in range(WHILE_DOWN):
            outcome.down_latencies.append(await emit())
            await asyncio.sleep(0.05)
        await wait_until(
            lambda: hand_off_failures(stack) - failures_before >= WHILE_DOWN, timeout=HAND_OFF_GIVE_UP_WAIT_S
        )
        outcome.hand_off_gave_up = hand_off_failures(stack) - failures_before
        await asyncio.to_thread(broker.start)  # same port, empty
        restarted = time.monotonic()
        outcome.down_s = restarted - stopped
        # Nothing is emitted until the outage's events arrived: a later emit's delivery task
        # would claim them too, and what is tested here is that nothing else is needed.
        await wait_until(
            lambda: all(tab.cursor == outcome.expected for tab in tabs),
            timeout=settle_s,
        )
        if not all(tab.cursor == outcome.expected for tab in tabs):
            for tab in tabs:
                await tab.stop()
            return outcome

        for _ in range(AFTER):
            await emit()
            await asyncio.sleep(0.1)
        await wait_until(
            lambda: all(tab.cursor == outcome.expected for tab in tabs),
            timeout=settle_s,
        )
        if all(tab.cursor == outcome.expected for tab in tabs):
            outcome.settled_after_s = time.monotonic() - restarted
        for tab in tabs:
            await tab.stop()
        return outcome

    return asyncio.run(scenario())


def test_emits_answer_at_once_while_the_broker_is_down_and_are_delivered_after(
    broker: PrivateRedis, make_fault_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_fault_stack(CELERY_BROKER_URL=broker.broker_url)
    assert stack.redis is not None
    assert stack.redis.port != broker.port  # the channel layer stays on the stack's own Redis
    start_supervised(stack, tmp_path / "run")

    outcome = emit_while_the_broker_is_down(stack, broker, settle_s=30)

    print(f"\n{outcome.summary()}")
    assert max(outcome.down_latencies) < EMIT_MAX_S, outcome.down_latencies
    problems = oracle_problems(stack, outcome.tabs, expected=outcome.expected)
    assert problems == [], f"{problems}\n{outcome.summary()}\n{stack.logs()}"
    for tab in outcome.tabs:
        assert [n["seq"] for n in tab.received] == list(range(1, outcome.expected + 1)), tab.name


def test_without_the_relay_events_emitted_while_the_broker_was_down_never_arrive(
    broker: PrivateRedis, make_fault_stack: MakeStack, tmp_path: Path
) -> None:
    # The sweep switched off: what the hand-off could not publish stays pending in the
    # outbox and, with no later emit whose delivery task would claim it, nothing delivers it.
    stack = make_fault_stack(CELERY_BROKER_URL=broker.broker_url, EVENTS_RELAY_INTERVAL_S="3600")
    start_supervised(stack, tmp_path / "run")

    outcome = emit_while_the_broker_is_down(stack, broker, settle_s=15)

    problems = oracle_problems(stack, outcome.tabs, expected=outcome.expected)
    print(f"\n[no relay] {outcome.summary()}; {problems}")
    assert max(outcome.down_latencies) < EMIT_MAX_S, outcome.down_latencies
    assert any("the database stored" in problem for problem in problems), problems
