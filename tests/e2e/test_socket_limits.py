"""What one user's sockets can make the server hold, against real daphne processes and Redis:
the per-user socket cap across web processes, and a resume flood from a socket that stops
reading (docs/SECURITY.md)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis
import websockets
from django.conf import settings
from django.db import transaction

from delivery.consumers import CLOSE_TOO_MANY_SOCKETS, REPLAY_MAX
from delivery.credentials import token_issue
from delivery.groups import user_group
from delivery.services import notifications_store
from events import emit
from events.outbox import events_mark_delivered
from events.registry import Rendered
from tests.live import LiveStack
from tests.tabs import Tab

pytestmark = pytest.mark.live


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_socket_cap_counts_every_web_process(
    live_env: dict[str, str], tmp_path: Path, transactional_db: None, alice
) -> None:
    env = dict(live_env, WS_SOCKETS_PER_USER_MAX="4")
    stacks = [LiveStack(env=env, workdir=tmp_path / name) for name in ("a", "b")]
    token = token_issue(user=alice)
    try:
        for stack in stacks:
            stack.workdir.mkdir()
            stack.start_web()
        first, second = stacks

        async def scenario() -> tuple[list[int | None], bool]:
            tabs = [await Tab(stack.ws_url, bearer(token)).open() for stack in (first, first, second, second)]
            for tab in tabs:
                await tab.wait_for("hello")
            refused = []
            for stack in stacks:
                extra = await Tab(stack.ws_url, bearer(token)).open()
                refused.append(await extra.wait_closed())
            await tabs[0].close()  # a slot on the first process comes free: the second may use it
            await asyncio.sleep(0.5)
            fifth = await Tab(second.ws_url, bearer(token)).open()
            await fifth.wait_for("hello")
            accepted = not fifth.closed
            for tab in [*tabs[1:], fifth]:
                await tab.close()
            return refused, accepted

        refused, accepted = asyncio.run(scenario())
        assert refused == [CLOSE_TOO_MANY_SOCKETS, CLOSE_TOO_MANY_SOCKETS]
        assert accepted
    finally:
        for stack in stacks:
            stack.stop_all()


def group_members(client: redis.Redis, group: str) -> int:
    """How many channels the channel layer has in this group, by its keys in Redis."""
    if settings.CHANNEL_LAYER == "pubsub":
        return client.pubsub_numsub(f"{settings.REDIS_NAMESPACE}__group__{group}")[0][1]
    return client.zcard(f"{settings.REDIS_NAMESPACE}:group:{group}")


def store_many(user, count: int) -> None:  # type: ignore[no-untyped-def]
    with transaction.atomic():
        events = [emit("notice", recipients=[user], data={"title": f"n{n}"}) for n in range(count)]
        notifications_store(items=[(event, user.pk, Rendered(title=f"flood {n}")) for n, event in enumerate(events)])
        events_mark_delivered([event.pk for event in events])


def test_a_resume_flood_from_sockets_that_stop_reading_leaves_nothing_behind(live_stack: LiveStack, alice) -> None:
    store_many(alice, 3 * REPLAY_MAX)
    token = token_issue(user=alice)
    log_start = len(live_stack.logs())
    redis_client = redis.Redis.from_url(settings.REDIS_URL)

    async def flood() -> None:
        # A small receive queue: once it is full the client stops reading, and TCP pushes back.
        connections = [
            await websockets.connect(live_stack.ws_url, additional_headers=bearer(token), max_queue=1) for _ in range(8)
        ]
        for connection in connections:
            for after_seq in range(60):
                await connection.send(f'{{"type": "resume", "after_seq": {after_seq}}}')
        await asyncio.sleep(1)
        for connection in connections:
            connection.transport.abort()  # gone without a close frame, mid-replay

    asyncio.run(flood())

    def nothing_left() -> bool:
        subscribed = group_members(redis_client, user_group(alice.pk))
        slots = redis_client.zcard(f"{settings.REDIS_NAMESPACE}:sockets:{alice.pk}")
        return subscribed == 0 and slots == 0

    deadline = time.monotonic() + 15
    while not nothing_left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert nothing_left(), "a socket's group subscription or slot outlived it"
    flood_log = live_stack.logs()[log_start:]
    assert "Traceback" not in flood_log, flood_log[-3000:]

    async def still_serves() -> list[dict]:
        tab = await Tab(live_stack.ws_url, bearer(token)).open()
        await tab.wait_for("hello")
        await tab.send({"type": "resume", "after_seq": 3 * REPLAY_MAX - 2})
        await tab.wait_for("resumed")
        await tab.close()
        return tab.notifications()

    assert [n["seq"] for n in asyncio.run(still_serves())] == [3 * REPLAY_MAX - 1, 3 * REPLAY_MAX]
