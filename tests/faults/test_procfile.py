"""Fault scenario: the stack started exactly as the Procfile says, from a fresh clone.

Each Procfile line runs as written (through the shell, as honcho or foreman would) in a
`git clone` of this checkout, with only the environment an operator sets (README,
"Settings"): no folder made beforehand, no extra option. Beat must keep running and its
outbox sweep must reach the worker; a pool child killed mid-delivery is delivered again
with nothing restarted by the test; and once beat is killed, /healthz says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devtools.with_redis import free_port
from tests.faults.conftest import MakeStack
from tests.faults.harness import FaultStack, assert_each_seq_once, open_tabs, oracle_problems, wait_until
from tests.live import BIN, ROOT, ManagedProcess

pytestmark = [pytest.mark.live, pytest.mark.faults]

USERS = ("alice", "bob")
EVENTS = 12
RELAY_INTERVAL_S = 2.0  # the default, stated so that the staleness wait below follows it


def procfile(clone: Path) -> dict[str, str]:
    lines = (line.split(":", 1) for line in (clone / "Procfile").read_text().splitlines() if line.strip())
    return {name.strip(): command.strip() for name, command in lines}


def healthz(stack: FaultStack) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{stack.http_url}/healthz", timeout=5) as response:  # noqa: S310 (our URL)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_as_the_procfile_says(stack: FaultStack, clone: Path) -> dict[str, ManagedProcess]:
    stack.port = free_port()
    env = dict(stack.env, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", HOST="127.0.0.1", PORT=str(stack.port))
    env.pop("PYTHONPATH", None)
    started = {
        name: stack.spawn(name, "bash", "-c", command, cwd=clone, env=env) for name, command in procfile(clone).items()
    }
    assert set(started) == {"web", "worker", "beat"}, sorted(started)
    stack.wait_ready(started["web"], stack._web_answers)
    stack.wait_ready(started["worker"], lambda: " ready." in started["worker"].log())
    stack.wait_ready(started["beat"], lambda: "beat: Starting" in started["beat"].log())
    return started


def test_the_procfile_stack_runs_from_a_fresh_clone_and_recovers_on_its_own(
    make_fault_stack: MakeStack, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    stack = make_fault_stack(EVENTS_RELAY_INTERVAL_S=str(RELAY_INTERVAL_S))
    started = start_as_the_procfile_says(stack, clone)

    # Beat stays up and its sweep reaches a worker: /healthz turns healthy on its own.
    deadline = time.monotonic() + 30
    while healthz(stack)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    status, body = healthz(stack)
    assert status == 200, f"{body}\n{stack.logs()}"
    assert all(process.alive() for process in started.values()), stack.logs()

    async def scenario() -> list:
        tabs = open_tabs(stack, USERS, per_user=2)
        assert await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=15)
        for number in range(EVENTS):
            if number == EVENTS // 2:
                # Mid-render when its pool child is killed: the worker's main process lives on.
                await asyncio.to_thread(stack.emit, list(USERS), f"event {number}", event_type="test.slow")
                await asyncio.sleep(0.5)
                assert started["worker"].kill_children(), "no pool child to kill"
            else:
                await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")
        await wait_until(lambda: all(tab.cursor == EVENTS for tab in tabs), timeout=30)
        for tab in tabs:
            await tab.stop()
        return tabs

    tabs = asyncio.run(scenario())
    assert oracle_problems(stack, tabs, expected=EVENTS) == [], stack.logs()
    assert_each_seq_once(tabs, EVENTS)
    assert all(process.alive() for process in started.values()), stack.logs()
    assert [process.name for process in stack.processes] == ["web", "worker", "beat"]  # none restarted

    # The Procfile's daphne faces clients itself, so it trusts no X-Forwarded-For: a client
    # cannot pass for a loopback one, nor for another (/metrics answers loopback clients only).
    assert stack.metrics_status(forwarded_for="203.0.113.9") == 200

    # Row 22: with beat gone, /healthz names the stale relay within three intervals (and a bit).
    started["beat"].kill()
    deadline = time.monotonic() + 3 * RELAY_INTERVAL_S + 10
    while healthz(stack)[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    status, body = healthz(stack)
    assert status == 503, body
    assert body["down"] == ["relay"], body
    assert body["checks"]["relay"].startswith("stale: last ran"), body
