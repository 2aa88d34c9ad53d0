"""TESTPLAN row 15: Redis restarts without persistence (SHUTDOWN NOSAVE) mid-stream.

The Redis that goes down is the stack's only one: the channel layer and the Celery broker
both live there, so the restart takes the queued tasks and every group membership with it.
While it is down the API must keep accepting events (emit only writes the database), and
once it is back the outbox relay re-drives what never reached a worker and each socket's
reconcile rejoins its groups and sends what is stored past its cursor.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
import websockets

from tests.faults.conftest import MakeStack
from tests.faults.harness import FaultStack, ResumingTab, oracle_problems, wait_until

pytestmark = [pytest.mark.live, pytest.mark.faults]

USERS = ("alice", "bob")
TABS_PER_USER = 3
BEFORE = 14  # events emitted before the restart
DOWN_S = 2.0  # how long Redis stays down; events keep being emitted meanwhile
AFTER = 20  # events emitted once Redis is back
EMIT_WHILE_DOWN_MAX_S = 1.0


class SingleConnectionTab(ResumingTab):
    """A tab that never reconnects: whatever its one socket is not sent, it never gets."""

    async def _run(self) -> None:
        try:
            async with websockets.connect(
                self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, open_timeout=5
            ) as socket:
                self.connections += 1
                await self._session(socket)
                self.close_codes.append(socket.close_code)
        except (OSError, websockets.WebSocketException, TimeoutError) as error:
            self.close_codes.append(getattr(getattr(error, "rcvd", None), "code", None))


@dataclass
class Outcome:
    tabs: list[ResumingTab]
    expected: int
    down_latencies: list[float] = field(default_factory=list)
    settled_after_s: float | None = None  # seconds from Redis's restart to the tabs all caught up


def stream_through_a_redis_restart(stack: FaultStack, *, tab_class: type[ResumingTab], settle_s: float) -> Outcome:
    async def scenario() -> Outcome:
        tabs = [
            tab_class(stack.ws_url, stack.tokens[user], user=user, name=f"{user}-tab{number}").start()
            for user in USERS
            for number in range(TABS_PER_USER)
        ]
        assert await wait_until(lambda: all(tab.connections for tab in tabs), timeout=15)
        emitted = 0

        async def emit() -> float:
            nonlocal emitted
            took = await asyncio.to_thread(stack.emit, list(USERS), f"event {emitted}")
            emitted += 1
            return took

        for _ in range(BEFORE):
            await emit()
        # Let the first part land, so the restart hits tabs that are live and caught up.
        await wait_until(lambda: all(tab.cursor == BEFORE for tab in tabs), timeout=20)

        await asyncio.to_thread(stack.redis.shutdown_nosave)
        outcome = Outcome(tabs=tabs, expected=0)
        down_until = time.monotonic() + DOWN_S
        while time.monotonic() < down_until:
            outcome.down_latencies.append(await emit())
            await asyncio.sleep(0.1)
        await asyncio.to_thread(stack.redis.start)
        restarted = time.monotonic()

        for _ in range(AFTER):
            await emit()
            await asyncio.sleep(0.05)
        outcome.expected = emitted
        if await wait_until(lambda: all(tab.cursor == emitted for tab in tabs), timeout=settle_s):
            outcome.settled_after_s = time.monotonic() - restarted
        for tab in tabs:
            await tab.stop()
        return outcome

    return asyncio.run(scenario())


def start_everything(stack: FaultStack) -> None:
    stack.start_web()
    stack.start_worker()
    stack.start_beat()


@pytest.mark.parametrize("layer", ["pubsub", "core"])
def test_a_redis_restart_loses_and_doubles_nothing(make_fault_stack: MakeStack, layer: str) -> None:
    stack = make_fault_stack(CHANNEL_LAYER=layer)
    start_everything(stack)

    outcome = stream_through_a_redis_restart(stack, tab_class=ResumingTab, settle_s=60)

    print(
        f"\n[{layer}] emits while Redis was down: {len(outcome.down_latencies)}, "
        f"max {max(outcome.down_latencies):.3f}s; settled {outcome.settled_after_s}s after the restart; "
        f"connections per tab {[tab.connections for tab in outcome.tabs]}"
    )
    assert outcome.down_latencies, "no event was emitted while Redis was down"
    assert max(outcome.down_latencies) < EMIT_WHILE_DOWN_MAX_S, outcome.down_latencies
    assert oracle_problems(stack, outcome.tabs, expected=outcome.expected) == [], stack.logs()
    # Every tab saw every notification exactly once, in seq order (a resume after a
    # reconnect may legitimately re-send what the cut-off socket already delivered).
    for tab in outcome.tabs:
        if tab.connections == 1:
            seqs = [n["seq"] for n in tab.received]
            assert seqs == list(range(1, outcome.expected + 1)), (tab.name, seqs)


@pytest.mark.parametrize("layer", ["pubsub", "core"])
def test_without_reconcile_or_reconnect_a_redis_restart_leaves_tabs_behind(
    make_fault_stack: MakeStack, layer: str
) -> None:
    # The same restart with the repairs switched off: reconcile every hour, and tabs that
    # never reconnect (their sockets stay open through the outage, so a reconnecting tab
    # would not resume anyway). The core layer keeps group memberships in Redis, so the
    # restart forgets them and nothing rejoins: every later doorbell goes to no one.
    stack = make_fault_stack(CHANNEL_LAYER=layer, WS_RECONCILE_INTERVAL_S="3600")
    start_everything(stack)

    outcome = stream_through_a_redis_restart(stack, tab_class=SingleConnectionTab, settle_s=15)

    assert all(tab.connections == 1 for tab in outcome.tabs)
    problems = oracle_problems(stack, outcome.tabs, expected=outcome.expected)
    print(layer, problems, [t.close_codes for t in outcome.tabs], outcome.settled_after_s, max(outcome.down_latencies))
    # The database has everything (the relay re-drove the lost tasks); the tabs do not.
    assert not any("the database" in problem for problem in problems), problems
    assert any("missing seq" in problem for problem in problems), problems
