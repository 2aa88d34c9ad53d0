"""Issue 8, workers that heal: the stack as `make serve` runs it, under the shipped supervision.

A worker whose main process is frozen (SIGSTOP: alive to anything that checks its PID,
consuming nothing) stops refreshing its liveness file; `manage.py worker_alive` says so,
the watchdog in deploy/supervisord.conf restarts it, and what was emitted meanwhile is
delivered. Nothing here restarts a process: only the supervision the project ships.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.conftest import BROKERS, MakeStack
from tests.faults.harness import FaultStack, assert_each_seq_once, open_tabs, oracle_problems, wait_until
from tests.faults.serving import start_served_small
from tests.live import ROOT

pytestmark = [pytest.mark.live, pytest.mark.faults]

USERS = ("alice", "bob")
BEFORE = 5
WHILE_FROZEN = 5
LIVENESS_TIMEOUT_S = 10.0
HEALED_WITHIN_S = 60.0  # the timeout, a TICK_5, stopwaitsecs (10 s) and a worker's start-up


def worker_alive(stack: FaultStack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "worker_alive", "worker_0"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@BROKERS
def test_a_frozen_worker_is_restarted_by_the_shipped_supervision_and_delivers(
    make_fault_stack: MakeStack, tmp_path: Path, broker: str
) -> None:
    stack = make_fault_stack(broker=broker)
    supervisord, rpc = start_served_small(stack, tmp_path / "run", liveness_timeout_s=LIVENESS_TIMEOUT_S)

    async def scenario() -> list:
        tabs = open_tabs(stack, USERS, per_user=2)
        assert await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=15)
        for number in range(BEFORE):
            await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")
        assert await wait_until(lambda: all(tab.cursor == BEFORE for tab in tabs), timeout=20), supervisord.log()

        frozen_pid = rpc.supervisor.getProcessInfo("worker:worker_0")["pid"]
        os.kill(frozen_pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        for number in range(BEFORE, BEFORE + WHILE_FROZEN):
            await asyncio.to_thread(stack.emit, list(USERS), f"event {number}")

        # The liveness check fails once the file is older than the timeout...
        checks: list[subprocess.CompletedProcess[str]] = []
        assert await wait_until(
            lambda: checks.append(worker_alive(stack)) or checks[-1].returncode == 1,
            timeout=LIVENESS_TIMEOUT_S + 10,
        )
        assert "worker_0: last liveness ping" in checks[-1].stderr, checks[-1].stderr
        # ...the watchdog restarts the worker, and the new one delivers what waited.
        everything = BEFORE + WHILE_FROZEN
        healed = await wait_until(lambda: all(tab.cursor == everything for tab in tabs), timeout=HEALED_WITHIN_S)
        took = time.monotonic() - frozen_at
        for tab in tabs:
            await tab.stop()
        assert healed, f"not delivered {HEALED_WITHIN_S} s after the freeze:\n{supervisord.log()[-6000:]}"
        print(f"\nfrozen worker replaced and its events delivered {took:.1f} s after the freeze")
        assert rpc.supervisor.getProcessInfo("worker:worker_0")["pid"] != frozen_pid
        return tabs

    tabs = asyncio.run(scenario())
    assert "watchdog: restarting worker:worker_0: last ping" in supervisord.log()
    assert oracle_problems(stack, tabs, expected=BEFORE + WHILE_FROZEN) == []
    assert_each_seq_once(tabs, BEFORE + WHILE_FROZEN)
    assert worker_alive(stack).returncode == 0
