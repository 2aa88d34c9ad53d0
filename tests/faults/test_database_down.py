"""Fault scenario: PostgreSQL is down for 30 to 40 s while events stream in.

While the database is down an emit cannot write its event row, so the API answers with an
error and that event was never accepted: it does not count. Every event the API accepted
(202) must reach every tab exactly once after the database is back, with the same web and
worker processes: a delivery that met the outage gives its events back to the outbox (or
its lease runs out), the outbox sweep delivers them once the database answers, and the
sockets fill their gaps from the database.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass, field

import pytest

from tests.faults.conftest import BROKERS, MakeStack
from tests.faults.harness import FaultStack, ResumingTab, assert_each_seq_once, open_tabs, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

USERS = ("alice", "bob")
LIVE = 8  # delivered before the fault
BURST = 10  # emitted at once right before the kill: tasks queued and running when it hits
# One stalling event before the burst (its renderer sleeps 5 s per recipient), so a delivery
# is certainly mid-way when the database goes: its events are still pending when it is back.
SLOW_LEAD_S = 0.5
DOWN_S = 30.0
# Long enough that a connection pool retrying with doubling delays (1, 2, 4 ... 32 s) has its
# next attempt some 20 s after the restart, longer than a request waits for a connection.
LONG_DOWN_S = 40.0
AFTER = 12  # emitted once the database is back


@dataclass
class Outcome:
    tabs: list[ResumingTab]
    accepted: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # HTTP status -> count, while down
    refused_latencies: list[float] = field(default_factory=list)
    accepted_while_down: int = 0
    settled_after_s: float | None = None  # from the database's restart until every tab caught up
    answered_after_s: float | None = None  # from the restart until the web process answered a read
    refused_after: Counter[int] = field(default_factory=Counter)  # HTTP status -> count, once back
    interrupted: int = 0  # accepted before the outage, not delivered when it began

    def summary(self) -> str:
        slowest = max(self.refused_latencies, default=0.0)
        return (
            f"{self.accepted} events accepted ({self.accepted_while_down} while the database was down); "
            f"refused while down: {dict(self.refused)}, slowest refusal {slowest:.3f} s; "
            f"{self.interrupted} not yet delivered when it went down; "
            f"web answered {self.answered_after_s and round(self.answered_after_s, 1)} s after the restart; "
            f"tabs caught up {self.settled_after_s and round(self.settled_after_s, 1)} s after the restart; "
            f"refused once back: {dict(self.refused_after)}; "
            f"connections per tab {[tab.connections for tab in self.tabs]}"
        )


def stream_through_a_database_outage(
    stack: FaultStack, *, settle_s: float, emit_after: bool = True, down_s: float = DOWN_S
) -> Outcome:
    """Emits before, during and (with `emit_after`) after the outage; emits after it only
    once the tabs caught up, so that what caught them up is not a later emit's delivery."""
    assert stack.postgres is not None

    async def scenario() -> Outcome:
        tabs = open_tabs(stack, USERS, per_user=3)
        outcome = Outcome(tabs=tabs)
        assert await wait_until(lambda: all(tab.connections for tab in tabs), timeout=15)
        titles = iter(range(10_000))

        async def emit(event_type: str = "notice", *, back: bool = False) -> bool:
            title = f"event {next(titles)}"
            started = time.monotonic()
            try:
                await asyncio.to_thread(stack.emit, list(USERS), title, event_type=event_type)
            except urllib.error.HTTPError as error:
                (outcome.refused_after if back else outcome.refused)[error.code] += 1
                outcome.refused_latencies.append(time.monotonic() - started)
                return False
            outcome.accepted += 1
            return True

        for _ in range(LIVE):
            assert await emit()
        assert await wait_until(lambda: all(tab.cursor == LIVE for tab in tabs), timeout=20)

        assert await emit("test.stall")
        for accepted in await asyncio.gather(*(emit() for _ in range(BURST))):
            assert accepted
        await asyncio.sleep(SLOW_LEAD_S)
        await asyncio.to_thread(stack.postgres.kill)
        outcome.interrupted = outcome.accepted - min(tab.cursor for tab in tabs)
        down_until = time.monotonic() + down_s
        while time.monotonic() < down_until:
            outcome.accepted_while_down += await emit()
            await asyncio.sleep(0.5)
        await asyncio.to_thread(stack.postgres.start)
        restarted = time.monotonic()
        # A read, not an emit, so that only the sweep can catch the tabs up. The web process's
        # connection pool must reconnect at once, not at its next backoff attempt (by default
        # up to half a minute away after a 30 s outage, and requests time out waiting for it).
        try:
            await asyncio.to_thread(stack.api, "GET", "/api/notifications/?limit=1", token=stack.tokens["alice"])
            outcome.answered_after_s = time.monotonic() - restarted
        except urllib.error.HTTPError as error:
            outcome.refused_after[error.code] += 1

        if await wait_until(lambda: all(tab.cursor == outcome.accepted for tab in tabs), timeout=settle_s):
            outcome.settled_after_s = time.monotonic() - restarted
        if emit_after and outcome.settled_after_s is not None:
            for _ in range(AFTER):
                assert await emit(back=True), f"the web process did not recover: {outcome.summary()}"
                await asyncio.sleep(0.1)
            await wait_until(lambda: all(tab.cursor == outcome.accepted for tab in tabs), timeout=settle_s)
        for tab in tabs:
            await tab.stop()
        return outcome

    return asyncio.run(scenario())


@BROKERS
def test_a_database_outage_loses_and_doubles_no_accepted_event(make_fault_stack: MakeStack, broker: str) -> None:
    stack = make_fault_stack(postgres=True, broker=broker)
    web = stack.start_web()
    worker = stack.start_worker()
    stack.start_beat()

    outcome = stream_through_a_database_outage(stack, settle_s=30, down_s=LONG_DOWN_S)

    print(f"\n{outcome.summary()}")
    assert outcome.refused, "no emit met the outage"
    assert outcome.interrupted > 0, "no delivery was under way when the database went"
    assert outcome.settled_after_s is not None, f"not caught up 30 s after the restart: {outcome.summary()}"
    assert outcome.answered_after_s is not None, f"the web process did not answer once back: {outcome.summary()}"
    # The same processes carried on: nothing was restarted, nothing died.
    assert [p.name for p in stack.processes] == ["web", "worker", "beat"]
    assert all(process.alive() for process in (web, worker)), stack.logs()
    problems = oracle_problems(stack, outcome.tabs, expected=outcome.accepted)
    assert problems == [], f"{problems}\n{outcome.summary()}\n{stack.logs()}"
    assert_each_seq_once(outcome.tabs, outcome.accepted)


def test_without_the_outbox_sweep_an_interrupted_delivery_waits(make_fault_stack: MakeStack) -> None:
    # The same outage with the sweep switched off and nothing emitted after it: the events
    # whose delivery the outage interrupted stay pending, since no other task comes to
    # claim them. What the sweep buys is that nothing else has to happen.
    stack = make_fault_stack(postgres=True, EVENTS_RELAY_INTERVAL_S="3600")
    stack.start_web()
    stack.start_worker()
    stack.start_beat()

    outcome = stream_through_a_database_outage(stack, settle_s=10, emit_after=False)

    problems = oracle_problems(stack, outcome.tabs, expected=outcome.accepted)
    print(f"\n[no sweep] {outcome.summary()}; {problems}")
    assert outcome.interrupted > 0, outcome.summary()
    assert outcome.settled_after_s is None, outcome.summary()
