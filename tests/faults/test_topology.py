"""Issue 8: the production topology (`make serve`): nginx, two web processes, two workers.

One user's tabs spread over both web processes through nginx, and every tab gets every
notification; one web process is SIGKILLed, its tabs reconnect through nginx to the other
and resume with nothing lost or doubled, and supervisord starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import websockets

from tests.faults.conftest import MakeStack
from tests.faults.harness import assert_each_seq_once, open_tabs, oracle_problems, wait_until
from tests.faults.serving import start_served

pytestmark = [pytest.mark.live, pytest.mark.faults]

USERS = ("alice", "bob")
TABS_PER_USER = 4
BEFORE = 10
AFTER = 10


def test_tabs_on_two_web_processes_behind_nginx_survive_the_loss_of_one(
    make_fault_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_fault_stack(postgres=True)
    supervisord, rpc = start_served(stack, tmp_path / "run", WEB_PROCESSES="2", WORKER_PROCESSES="2")
    killed_pid = rpc.supervisor.getProcessInfo("web:web_0")["pid"]

    async def scenario() -> list:
        tabs = open_tabs(stack, USERS, per_user=TABS_PER_USER)
        assert await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=20), supervisord.log()[-4000:]
        for number in range(BEFORE):
            await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")
        assert await wait_until(lambda: all(tab.cursor == BEFORE for tab in tabs), timeout=20)

        os.kill(killed_pid, signal.SIGKILL)
        for number in range(BEFORE, BEFORE + AFTER):
            await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")
            await asyncio.sleep(0.1)
        caught_up = await wait_until(lambda: all(tab.cursor == BEFORE + AFTER for tab in tabs), timeout=30)
        for tab in tabs:
            await tab.stop()
        assert caught_up, f"{[tab.cursor for tab in tabs]}\n{supervisord.log()[-6000:]}"
        return tabs

    tabs = asyncio.run(scenario())

    moved = [tab.name for tab in tabs if tab.connections > 1]
    stayed = [tab.name for tab in tabs if tab.connections == 1]
    assert moved, "no tab was on the killed web process: nginx did not spread them"
    assert stayed, "every tab reconnected: they were not spread over both web processes"
    assert oracle_problems(stack, tabs, expected=BEFORE + AFTER) == []
    # Tabs that stayed got each notification once, in order. A moved tab may be sent one
    # twice: a ring that reaches its new socket between hello and resume, then the resume's
    # replay (docs/PROTOCOL.md: clients de-duplicate by id); the oracle above de-duplicates.
    assert_each_seq_once([tab for tab in tabs if tab.connections == 1], BEFORE + AFTER)

    async def restarted() -> bool:
        return await wait_until(
            lambda: rpc.supervisor.getProcessInfo("web:web_0")["statename"] == "RUNNING", timeout=30
        )

    assert asyncio.run(restarted()), supervisord.log()[-4000:]
    assert rpc.supervisor.getProcessInfo("web:web_0")["pid"] != killed_pid


def test_through_nginx_a_page_of_our_origin_may_open_a_socket_and_another_port_may_not(
    make_fault_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_fault_stack()
    start_served(stack, tmp_path / "run", WEB_PROCESSES="1", WORKER_PROCESSES="1")
    token = {"Authorization": f"Bearer {stack.tokens['alice']}"}

    async def hello(origin: str) -> str:
        async with websockets.connect(stack.ws_url, origin=origin, additional_headers=token) as socket:
            return json.loads(await socket.recv())["type"]

    # nginx writes X-Forwarded-For itself: a client's own is not what Django sees.
    assert stack.metrics_status(forwarded_for="203.0.113.9") == 200
    assert asyncio.run(hello(stack.http_url)) == "hello"
    for foreign in ("http://127.0.0.1:1", f"https://127.0.0.1:{stack.port}"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            asyncio.run(hello(foreign))
        assert refused.value.response.status_code == 403, foreign


def test_through_nginx_clients_that_drip_their_headers_are_cut_off(make_fault_stack: MakeStack, tmp_path: Path) -> None:
    """Slowloris: each client sends a header line every 2 s and never ends its request.
    daphne alone holds such a connection as long as the client goes on; nginx's
    client_header_timeout (10 s, deploy/nginx.conf.template) cuts every one of them."""
    stack = make_fault_stack()
    start_served(stack, tmp_path / "run", WEB_PROCESSES="1", WORKER_PROCESSES="1")
    drippers = 300

    async def drip(started: float) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        writer.write(b"GET /ws/notifications/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for line in range(60):
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), 2) == b"":
                        break  # closed by the server (after its 408, if it sent one)
                writer.write(f"X-Drip-{line}: 1\r\n".encode())
        except (ConnectionError, OSError):
            pass
        writer.close()
        return time.monotonic() - started

    async def scenario() -> tuple[list[float], str]:
        started = time.monotonic()
        held = [asyncio.create_task(drip(started)) for _ in range(drippers)]
        await asyncio.sleep(3)
        # While they drip, a real client gets in.
        async with websockets.connect(stack.ws_url, additional_headers=token) as socket:
            first = json.loads(await socket.recv())["type"]
        return await asyncio.gather(*held), first

    token = {"Authorization": f"Bearer {stack.tokens['alice']}"}
    cut_after, first = asyncio.run(scenario())
    assert first == "hello"
    assert max(cut_after) < 30, sorted(cut_after)[-5:]  # a client left alone would drip for 120 s
