"""Fault scenarios: Redis drops the web process's pub/sub connection.

redis-py reconnects at once and subscribes again. When that resubscription fails (here Redis
refuses SUBSCRIBE for a moment, as an ACL change or a failover can), the connection stays
open but subscribed to nothing, and channels_redis never notices: the web process is deaf
for good. The sockets never reconnect and their reconcile is off, so only the web process
itself can notice: its probe (delivery/socket_watch.py) finds, in Redis's own count, that its
probe channel has no subscriber, subscribes everything again, and every socket behind its
inbox catches up.
"""

from __future__ import annotations

import asyncio

import pytest
import redis

from tests.faults.conftest import MakeStack
from tests.faults.harness import FaultStack, oracle_problems, wait_until
from tests.faults.test_redis_restart import SingleConnectionTab

pytestmark = [pytest.mark.live, pytest.mark.faults]

TABS = 3


def kill_layer_connections(stack: FaultStack) -> int:
    """CLIENT KILL the channel layer's subscribed connections (named by the settings), not
    Celery's: returns how many there were."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        ids = [c["id"] for c in client.client_list() if c.get("name") == "notify-layer" and int(c.get("sub", 0))]
        for client_id in ids:
            client.client_kill_filter(_id=client_id)
        return len(ids)
    finally:
        client.close()


def refuse_subscribe(stack: FaultStack, refuse: bool) -> None:
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        client.execute_command("ACL", "SETUSER", "default", "-subscribe" if refuse else "+subscribe")
    finally:
        client.close()


@pytest.mark.parametrize("resubscription", ["works", "fails"])
def test_sockets_hear_rings_again_after_the_layer_connection_drops(
    make_fault_stack: MakeStack, resubscription: str
) -> None:
    stack = make_fault_stack(WS_RECONCILE_INTERVAL_S="3600")
    stack.start_web()
    stack.start_worker()

    async def scenario() -> tuple[list[SingleConnectionTab], int]:
        tabs = [
            SingleConnectionTab(stack.ws_url, stack.tokens["alice"], user="alice", name=f"alice-tab{n}").start()
            for n in range(TABS)
        ]
        assert await wait_until(lambda: all(tab.connections for tab in tabs), timeout=15)
        await asyncio.to_thread(stack.emit, ["alice"], "before")
        assert await wait_until(lambda: all(tab.cursor == 1 for tab in tabs), timeout=15), "live delivery"

        if resubscription == "fails":
            await asyncio.to_thread(refuse_subscribe, stack, True)
        killed = await asyncio.to_thread(kill_layer_connections, stack)
        await asyncio.sleep(1.0)  # the web process has reconnected, and tried to subscribe
        await asyncio.to_thread(refuse_subscribe, stack, False)
        await asyncio.to_thread(stack.emit, ["alice"], "after the connection dropped")
        await wait_until(lambda: all(tab.cursor == 2 for tab in tabs), timeout=15)
        for tab in tabs:
            await tab.stop()
        return tabs, killed

    tabs, killed = asyncio.run(scenario())

    assert killed == 1, "the web process should hold one subscribed layer connection"
    assert all(tab.connections == 1 and not tab.close_codes for tab in tabs), [tab.close_codes for tab in tabs]
    problems = oracle_problems(stack, tabs, expected=2)
    assert problems == [], f"{problems}\n{stack.notable_logs()}"
