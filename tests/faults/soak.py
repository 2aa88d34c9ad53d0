"""`make soak`: TESTPLAN row 21. Ten users with three tabs each, events for MINUTES minutes,
and every so often a random fault from rows 11-16: a worker or one of its pool children
killed, the web process killed and restarted, Redis restarted empty, PostgreSQL stopped for a
while. At the end: the oracle for every tab, and whether the processes' memory stayed flat.

    python -m tests.faults.soak [--minutes 10] [--seed N] [--rate 5]

Exit status 0 only if the promise held. Not part of `make test` (it runs for minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.error
from collections import Counter
from pathlib import Path

import django
import psutil

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "soak-only")
django.setup()

from tests.faults.harness import (  # noqa: E402
    FaultStack,
    build_fault_stack,
    open_tabs,
    oracle_problems,
    supervise_worker,
    the_worker,
    wait_until,
)
from tests.servers import postgres_bin  # noqa: E402

USERS = tuple(f"user{number}" for number in range(10))
FAULT_EVERY_S = (20, 45)
DATABASE_DOWN_S = 10


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} soak: {message}", flush=True)


def rss_mib(stack: FaultStack) -> dict[str, float]:
    """Resident memory of each running process with its children (Celery's pool)."""
    sizes = {}
    for process in stack.processes:
        if not process.alive():
            continue
        try:
            parent = psutil.Process(process.popen.pid)
            family = [parent, *parent.children(recursive=True)]
            role = "worker" if process.name.startswith("worker") else process.name  # restarts too
            sizes[role] = sizes.get(role, 0) + sum(p.memory_info().rss for p in family) / 2**20
        except psutil.NoSuchProcess:
            continue
    return sizes


async def inject(stack: FaultStack, fault: str) -> None:
    log(f"fault: {fault}")
    if fault == "worker killed":
        # The supervisor notices the dead worker and starts another, as systemd would.
        the_worker(stack).kill()
    elif fault == "pool child killed":
        the_worker(stack).kill_children()
    elif fault == "web killed":
        next(p for p in stack.processes if p.name == "web" and p.alive()).kill()
        await asyncio.sleep(1)
        await asyncio.to_thread(stack.start_web)
    elif fault == "redis restarted empty":
        assert stack.redis is not None
        stack.redis.shutdown_nosave()
        await asyncio.sleep(2)
        stack.redis.start()
    elif fault == "database down":
        assert stack.postgres is not None
        stack.postgres.kill()
        await asyncio.sleep(DATABASE_DOWN_S)
        stack.postgres.start()


async def soak(stack: FaultStack, *, minutes: float, rate: float, rng: random.Random) -> int:
    faults = ["worker killed", "pool child killed", "web killed", "redis restarted empty"]
    if stack.postgres is not None:
        faults.append("database down")
    tabs = open_tabs(stack, USERS, per_user=3)
    await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=60)
    accepted: Counter[str] = Counter()
    refused = 0
    memory = [rss_mib(stack)]
    deadline = time.monotonic() + minutes * 60
    next_fault = time.monotonic() + rng.uniform(*FAULT_EVERY_S)
    next_sample = time.monotonic() + 60
    injected: Counter[str] = Counter()
    fault_task: asyncio.Task[None] | None = None
    restarts: list[str] = []
    finished = False
    supervisor = asyncio.create_task(supervise_worker(stack, restarts, until=lambda: finished))
    while time.monotonic() < deadline:
        user = rng.choice(USERS)
        try:
            await asyncio.to_thread(stack.emit, [user], f"for {user} #{accepted[user] + 1}")
            accepted[user] += 1
        except (urllib.error.URLError, OSError):
            refused += 1  # the web process or the database is down: not emitted, not owed
        if time.monotonic() > next_fault and (fault_task is None or fault_task.done()):
            # Concurrent with the emitting: requests arrive while the fault lasts.
            fault = rng.choice(faults)
            injected[fault] += 1
            fault_task = asyncio.create_task(inject(stack, fault))
            next_fault = time.monotonic() + rng.uniform(*FAULT_EVERY_S)
        if time.monotonic() > next_sample:
            memory.append(rss_mib(stack))
            log(f"memory (MiB): {', '.join(f'{k} {v:.0f}' for k, v in memory[-1].items())}")
            next_sample += 60
        await asyncio.sleep(1 / rate)

    if fault_task is not None:
        await fault_task
    log(f"stopped emitting: {sum(accepted.values())} accepted, {refused} refused; faults {dict(injected)}")
    expected = dict(accepted)
    await wait_until(lambda: all(tab.cursor == expected.get(tab.user, 0) for tab in tabs), timeout=120)
    finished = True
    await supervisor  # re-raises if the supervisor itself failed
    for tab in tabs:
        await tab.stop()
    log(f"worker restarted by the supervisor: {restarts or 'never'}")

    problems = oracle_problems(stack, tabs, expected=expected)
    for problem in problems:
        log(f"PROBLEM: {problem}")
    grown = {
        name: (memory[-1].get(name, 0), memory[0].get(name, 0))
        for name in ("web", "worker")
        if name in memory[0] and memory[-1].get(name, 0) > 2 * memory[0][name] + 50
    }
    for name, (last, first) in grown.items():
        log(f"PROBLEM: {name} memory grew from {first:.0f} to {last:.0f} MiB")
    log("the promise held" if not problems and not grown else "the promise did NOT hold")
    return 0 if not problems and not grown else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=5, help="events per second")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    log(f"seed {seed} (rerun with --seed {seed})")
    workdir = Path(tempfile.mkdtemp(prefix="notify-soak-"))
    stack = build_fault_stack(workdir, postgres=postgres_bin() is not None, users=USERS)
    try:
        stack.start_web()
        stack.start_worker("worker", concurrency=2)
        stack.start_beat()
        return asyncio.run(soak(stack, minutes=args.minutes, rate=args.rate, rng=random.Random(seed)))
    finally:
        stack.stop_all()
        if stack.postgres is not None:
            shutil.rmtree(stack.postgres.workdir, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
